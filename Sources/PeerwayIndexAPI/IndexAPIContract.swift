import Foundation
import Hummingbird
import PeerwayCheckpoint
import PeerwayIndex

/// The management API's input rules, stated once: the JSON Schema fragments the OpenAPI document
/// declares and the checks the server makes, both built from the same named limits
/// (`IndexLimits`, `PeerMetadata`, `IndexAPILimits`), so that the document says exactly what the
/// server enforces and the two cannot drift apart.
///
/// Two rules JSON Schema cannot state are carried as extension keywords, which a client (and the
/// contract test's schemathesis hooks, `scripts/schemathesis/peerway_hooks.py`) can read:
/// - `x-maxBytes`: a string's UTF-8 bytes (JSON Schema's `maxLength` counts code points; it is
///   declared too, with the same number, as every string that long in code points is longer in
///   bytes);
/// - `x-maxTotalBytes`: the bytes of a metadata object's keys and values together (for metadata
///   changes, of the keys and values set).
///
/// The search language (`q`) is context-free, so no pattern can describe it: it is declared as
/// `format: peerway-query`, with its grammar in the description.
///
/// `IndexAPIMethodMiddleware` (below) answers methods the document does not declare with 405.
enum IndexAPIContract {
    typealias Object = [String: Any]

    /// The format name of `q` (the CHECKPOINT's query language).
    static let queryFormat = "peerway-query"

    // MARK: Names

    /// Usernames and network names: a lowercase letter or digit, then `a-z 0-9 _ . -`
    /// (`IndexLimits.validate(username:)`); all ASCII, so code points are bytes.
    static let namePattern = "^[a-z0-9][a-z0-9_.-]*$"

    /// A name of `bytes` length under `namePattern`.
    static func nameSchema(_ bytes: ClosedRange<Int>, _ description: String) -> Object {
        ["type": "string", "pattern": namePattern, "minLength": bytes.lowerBound, "maxLength": bytes.upperBound,
         "description": description]
    }

    static var username: Object { nameSchema(IndexLimits.usernameBytes, "A username (\(IndexLimits.usernameBytes) bytes).") }
    static var networkName: Object { nameSchema(IndexLimits.networkNameBytes, "A network name (\(IndexLimits.networkNameBytes) bytes).") }

    // MARK: Passwords

    /// A password: at least `IndexAPILimits.minimumPasswordCharacters` code points (checked by the
    /// API as such), at most `IndexLimits.passwordBytes.upperBound` bytes of UTF-8 (by the INDEX).
    static var password: Object {
        ["type": "string", "minLength": IndexAPILimits.minimumPasswordCharacters,
         "maxLength": IndexLimits.passwordBytes.upperBound, "x-maxBytes": IndexLimits.passwordBytes.upperBound,
         "description": "\(IndexAPILimits.minimumPasswordCharacters) characters or more, at most \(IndexLimits.passwordBytes.upperBound) bytes of UTF-8."]
    }

    /// Refuses (400 `invalid_password`) a password of fewer code points than the document's
    /// `minLength`; the INDEX checks its bytes.
    static func checkPassword(_ password: String) throws(IndexAPIError) {
        let characters = password.unicodeScalars.count
        guard characters >= IndexAPILimits.minimumPasswordCharacters else {
            throw IndexAPIError(status: 400, code: "invalid_password",
                                message: "password has \(characters) characters: use at least \(IndexAPILimits.minimumPasswordCharacters) (and at most \(IndexLimits.passwordBytes.upperBound) bytes)")
        }
    }

    // MARK: Metadata

    /// Metadata keys (`PeerMetadata.validate(key:value:)`).
    static var metadataKey: Object {
        ["type": "string", "pattern": "^[a-z0-9_.-]+$", "minLength": 1, "maxLength": PeerMetadata.maximumKeyBytes]
    }

    /// A metadata value: at most `PeerMetadata.maximumValueBytes` bytes, no NUL (`IndexLimits`).
    static var metadataValue: Object {
        ["type": "string", "pattern": "^[^\\u0000]*$", "maxLength": PeerMetadata.maximumValueBytes,
         "x-maxBytes": PeerMetadata.maximumValueBytes]
    }

    /// The metadata of a user or network as a whole (bodies and answers).
    static var metadata: Object {
        ["type": "object", "propertyNames": metadataKey, "additionalProperties": metadataValue,
         "maxProperties": PeerMetadata.maximumEntries, "x-maxTotalBytes": PeerMetadata.maximumTotalBytes,
         "description": "At most \(PeerMetadata.maximumEntries) entries; keys of 1-\(PeerMetadata.maximumKeyBytes) bytes of a-z 0-9 _ . -; values of at most \(PeerMetadata.maximumValueBytes) bytes without NUL; \(PeerMetadata.maximumTotalBytes) bytes of keys and values in all."]
    }

    /// Changes to metadata: a string sets a key, null removes it.
    static var metadataChanges: Object {
        var value = metadataValue
        value["type"] = ["string", "null"]
        return ["type": "object", "propertyNames": metadataKey, "additionalProperties": value,
                "x-maxSetProperties": PeerMetadata.maximumEntries, "x-maxTotalBytes": PeerMetadata.maximumTotalBytes,
                "description": "Keys to set (a string) or remove (null), all or nothing. The keys set follow the metadata rules on their own (at most \(PeerMetadata.maximumEntries), \(PeerMetadata.maximumTotalBytes) bytes in all: else 400 `invalid_metadata`); when the record's metadata would break them once changed, 409 `metadata_full`."]
    }

    /// Refuses (400 `invalid_metadata`) changes that break the metadata rules whatever the record
    /// holds: a bad key or value, or more entries or bytes set than metadata may hold. Changes
    /// that pass can still overflow a record's metadata: that is `metadataFull`.
    static func checkChanges(_ changes: [String: String?]) throws(IndexAPIError) {
        var set: [String: String] = [:]
        for (key, value) in changes {
            do { try PeerMetadata.validate(key: key, value: value ?? "") } catch {
                throw IndexAPIError(IndexError.invalidMetadata(error.description))
            }
            if let value { set[key] = value }
        }
        do { _ = try IndexLimits.validate(metadata: set) } catch { throw IndexAPIError(error) }
    }

    /// 409: changes that are valid on their own would leave the record's metadata over its limits.
    static func metadataFull(_ error: IndexError) -> IndexAPIError {
        IndexAPIError(status: 409, code: "metadata_full",
                      message: "\(error.description): remove keys (null) in the same request, or set fewer")
    }

    /// Runs a store update whose metadata changes passed `checkChanges`: an `invalidMetadata` it
    /// throws can only come from the record's metadata, so it becomes `metadataFull`.
    static func metadataFullAsConflict<T: Sendable>(_ update: () async throws -> T) async throws -> T {
        do {
            return try await update()
        } catch let error as IndexError {
            if case .invalidMetadata = error { throw metadataFull(error) }
            throw error
        }
    }

    // MARK: Paging and query strings

    /// A page cursor of `parts` parts of 1-`IndexAPILimits.maximumCursorDigits` digits, separated by `.`.
    static func cursorPattern(parts: ClosedRange<Int>) -> String {
        let part = "[0-9]{1,\(IndexAPILimits.maximumCursorDigits)}"
        let more = parts.upperBound - 1
        let repeats = parts.lowerBound == parts.upperBound ? "{\(more)}" : "{\(parts.lowerBound - 1),\(more)}"
        return more == 0 ? "^\(part)$" : "^\(part)(\\.\(part))\(repeats)$"
    }

    /// Whether `text` is a cursor of `parts` parts by `cursorPattern(parts:)`.
    static func isCursor(_ text: Substring, parts: Int) -> Bool {
        let fields = text.split(separator: ".", omittingEmptySubsequences: false)
        return fields.count == parts && fields.allSatisfy { field in
            (1...IndexAPILimits.maximumCursorDigits).contains(field.utf8.count)
                && field.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        }
    }

    /// `after` of a listing whose cursors have `parts` parts: a page's `next`, or empty (the first page).
    static func after(parts: Int) -> Object {
        ["type": "string", "pattern": "^$|" + cursorPattern(parts: parts...parts)]
    }

    /// `next` in a page whose cursors have `parts` parts.
    static func next(parts: ClosedRange<Int>) -> Object {
        ["type": "string", "pattern": cursorPattern(parts: parts), "description": "Absent on the last page; pass it back as `after`."]
    }

    /// The query string as `application/x-www-form-urlencoded` reads it (`+` is a space, then
    /// percent-decoding), one value per name. Refuses (400 `invalid_parameter`) a name given
    /// twice and a value whose percent-encoding is broken.
    static func queryParameters(_ query: String?) throws(IndexAPIError) -> [String: String] {
        var result: [String: String] = [:]
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = formDecode(parts[0]), let value = formDecode(parts.count > 1 ? parts[1] : "") else {
                throw .invalidParameter("query parameter '\(pair)' has a broken percent-encoding")
            }
            guard result.updateValue(value, forKey: name) == nil else {
                throw .invalidParameter("query parameter '\(name)' is given twice: give it once")
            }
        }
        return result
    }

    private static func formDecode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    /// `limit` with this maximum.
    static func limit(maximum: Int) -> Object {
        ["type": "integer", "minimum": 1, "maximum": maximum, "default": min(IndexAPILimits.defaultPageSize, maximum)]
    }

    /// `q`: a query of the CHECKPOINT's language.
    static var query: Object {
        ["type": "string", "format": queryFormat, "minLength": 1, "maxLength": IndexAPILimits.maximumQueryBytes,
         "x-maxBytes": IndexAPILimits.maximumQueryBytes]
    }

    // MARK: Routes

    /// The methods the served document declares on each path, as path segments (`nil`: a parameter).
    static let declaredMethods: [(segments: [Substring?], methods: [String])] = {
        let document = (try? JSONSerialization.jsonObject(with: Data(IndexAPIOpenAPI.document))) as? Object
        return ((document?["paths"] as? Object) ?? [:]).map { path, operations in
            let segments: [Substring?] = path.split(separator: "/").map { $0.hasPrefix("{") ? nil : $0 }
            let methods = ((operations as? Object) ?? [:]).keys.map { $0.uppercased() }.sorted()
            return (segments, methods)
        }
    }()

    /// The methods declared on the document's path that `path` names; nil when it names none.
    static func methods(on path: String) -> [String]? {
        let segments = path.split(separator: "/")
        var found: Set<String>?
        for route in declaredMethods where route.segments.count == segments.count {
            guard zip(route.segments, segments).allSatisfy({ $0.0 == nil || $0.0 == $0.1 }) else { continue }
            found = (found ?? []).union(route.methods)
        }
        return found?.sorted()
    }
}

/// Answers a method the OpenAPI document does not declare on a path it does declare with 405
/// `method_not_allowed` and `Allow` (RFC 9110 §15.5.6) listing the declared methods, before the
/// token is looked at (the routes are public in `/openapi.json`). Paths the document does not
/// name pass on (to their route, or to 404).
struct IndexAPIMethodMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let allowed = IndexAPIContract.methods(on: request.uri.path), !allowed.contains(request.method.rawValue) else {
            return try await next(request, context)
        }
        let list = allowed.joined(separator: ", ")
        let error = IndexAPIError(status: 405, code: "method_not_allowed",
                                  message: "\(request.uri.path) does not take \(request.method.rawValue): it takes \(list) (see /openapi.json)")
        var response = try error.response(from: request, context: context)
        response.headers[.allow] = list
        return response
    }
}
