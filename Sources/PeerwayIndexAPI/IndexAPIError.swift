import Foundation
import Hummingbird
import Logging
import PeerwayIndex

/// A refusal of the management API: an HTTP status, a stable machine-readable `code`, and a
/// message for the operator. Sent as `{"error": {"code": "...", "message": "..."}}`.
///
/// Every `IndexError` maps to one (`init(_ error: IndexError)`): 400 for invalid input, 403 for a
/// policy refusal, 404 for a missing record, 409 for a name taken or a state already reached, 422
/// for an INDEX limit reached, 429 (with `Retry-After`) when rate limited, 503 when the store
/// failed or is closed. The API's own refusals: 401 (with `WWW-Authenticate: Bearer`) for a
/// missing or wrong token, 404 `not_found` for an unknown route, 405 for a method a route lacks,
/// 400 `invalid_json`/`invalid_parameter`, 413 `body_too_large`.
public struct IndexAPIError: Error, Hashable, Sendable, CustomStringConvertible, HTTPResponseError {
    /// The HTTP status code.
    public let statusCode: Int
    /// A stable, machine-readable code (snake_case), documented in the OpenAPI document.
    public let code: String
    /// What went wrong and what to do, for the operator.
    public let message: String
    /// Seconds to wait before retrying (429 only): sent as `Retry-After`.
    public let retryAfterSeconds: Int?

    /// A refusal with these parts.
    public init(status: Int, code: String, message: String, retryAfterSeconds: Int? = nil) {
        self.statusCode = status
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String { "\(statusCode) \(code): \(message)" }

    /// The status as Hummingbird's type.
    public var status: HTTPResponse.Status { HTTPResponse.Status(code: statusCode) }

    /// The JSON error response, with `WWW-Authenticate` on 401 and `Retry-After` on 429.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        if statusCode == 401 { headers[.wwwAuthenticate] = "Bearer realm=\"peerway-index\"" }
        if let retryAfterSeconds { headers[.retryAfter] = String(retryAfterSeconds) }
        let body = try IndexAPIJSON.encoder.encode(IndexAPIErrorBody(error: .init(code: code, message: message)))
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    // MARK: The API's own refusals

    /// 401: no `Authorization: Bearer` header, or not the admin token.
    public static let unauthorized = IndexAPIError(
        status: 401, code: "unauthorized",
        message: "missing or wrong admin token: send 'Authorization: Bearer TOKEN' (the token is in DATA_DIR/admin-token)")

    /// 404 for a path no route serves.
    public static func notFound(_ path: String) -> IndexAPIError {
        IndexAPIError(status: 404, code: "not_found", message: "no route \(path): see /openapi.json")
    }

    /// 413: the body is larger than `IndexAPILimits.maximumBodyBytes`.
    public static let bodyTooLarge = IndexAPIError(
        status: 413, code: "body_too_large",
        message: "request body is larger than \(IndexAPILimits.maximumBodyBytes) bytes")

    /// 400: the body is not the JSON object the route takes.
    public static func invalidJSON(_ why: String) -> IndexAPIError {
        IndexAPIError(status: 400, code: "invalid_json", message: "request body is not valid: \(why)")
    }

    /// 400: a query or body parameter is out of its range or form.
    public static func invalidParameter(_ why: String) -> IndexAPIError {
        IndexAPIError(status: 400, code: "invalid_parameter", message: why)
    }

    /// Any other HTTP-level refusal (405, 413 from the server, ...), with a code derived from the status.
    static func http(_ status: HTTPResponse.Status, path: String) -> IndexAPIError {
        switch status.code {
        case 404: return notFound(path)
        case 405: return IndexAPIError(status: 405, code: "method_not_allowed", message: "this route does not take that method: see /openapi.json")
        case 413: return bodyTooLarge
        default:
            let code = status.reasonPhrase.lowercased().split(whereSeparator: { !$0.isLetter }).joined(separator: "_")
            return IndexAPIError(status: status.code, code: code.isEmpty ? "http_\(status.code)" : code, message: status.reasonPhrase)
        }
    }

    /// 500: an error nobody expected (logged; the message says no more).
    static let internalError = IndexAPIError(status: 500, code: "internal", message: "internal error: see the supernode's log")

    // MARK: IndexError

    /// The refusal the API sends for an INDEX refusal or failure.
    public init(_ error: IndexError) {
        let message = error.description
        switch error {
        case .invalidUsername: self.init(status: 400, code: "invalid_username", message: message)
        case .invalidNetworkName: self.init(status: 400, code: "invalid_network_name", message: message)
        case .invalidPassword: self.init(status: 400, code: "invalid_password", message: message)
        case .invalidMetadata: self.init(status: 400, code: "invalid_metadata", message: message)
        case .invalidQuery: self.init(status: 400, code: "invalid_query", message: message)
        case .invalidCursor: self.init(status: 400, code: "invalid_cursor", message: message)
        case .invalidPageSize: self.init(status: 400, code: "invalid_page_size", message: message)
        case .invalidRole: self.init(status: 400, code: "invalid_role", message: message)
        case .usernameTaken: self.init(status: 409, code: "username_taken", message: message)
        case .networkNameTaken: self.init(status: 409, code: "network_name_taken", message: message)
        case .alreadyMember: self.init(status: 409, code: "already_member", message: message)
        case .alreadyInvited: self.init(status: 409, code: "already_invited", message: message)
        case .noSuchUser: self.init(status: 404, code: "no_such_user", message: message)
        case .noSuchNetwork: self.init(status: 404, code: "no_such_network", message: message)
        case .notMember: self.init(status: 404, code: "not_member", message: message)
        case .notInvited: self.init(status: 404, code: "not_invited", message: message)
        case .notLoggedIn: self.init(status: 404, code: "not_logged_in", message: message)
        case .badCredentials: self.init(status: 403, code: "bad_credentials", message: message)
        case .rateLimited(let seconds):
            self.init(status: 429, code: "rate_limited", message: message, retryAfterSeconds: max(seconds, 1))
        case .notYourRecord: self.init(status: 403, code: "not_your_record", message: message)
        case .notNetworkManager: self.init(status: 403, code: "not_network_manager", message: message)
        case .notNetworkOwner: self.init(status: 403, code: "not_network_owner", message: message)
        case .inviteOnly: self.init(status: 403, code: "invite_only", message: message)
        case .ownerCannotLeave: self.init(status: 403, code: "owner_cannot_leave", message: message)
        case .cannotRemoveOwner: self.init(status: 403, code: "cannot_remove_owner", message: message)
        case .adminCannotManageAdmin: self.init(status: 403, code: "admin_cannot_manage_admin", message: message)
        case .ownsNetworks: self.init(status: 403, code: "owns_networks", message: message)
        case .tooManyNetworks: self.init(status: 422, code: "too_many_networks", message: message)
        case .tooManyMembers: self.init(status: 422, code: "too_many_members", message: message)
        case .tooManyInvitations: self.init(status: 422, code: "too_many_invitations", message: message)
        case .storage: self.init(status: 503, code: "storage", message: message)
        case .closed: self.init(status: 503, code: "closed", message: message)
        case .unreachable: self.init(status: 503, code: "unavailable", message: message)
        }
    }

    /// Every code an `IndexError` maps to, with its status (the OpenAPI document lists them).
    static let indexErrorCodes: [(code: String, status: Int)] = [
        ("invalid_username", 400), ("invalid_network_name", 400), ("invalid_password", 400), ("invalid_metadata", 400),
        ("invalid_query", 400), ("invalid_cursor", 400), ("invalid_page_size", 400), ("invalid_role", 400),
        ("username_taken", 409), ("network_name_taken", 409), ("already_member", 409), ("already_invited", 409),
        ("no_such_user", 404), ("no_such_network", 404), ("not_member", 404), ("not_invited", 404), ("not_logged_in", 404),
        ("bad_credentials", 403), ("rate_limited", 429), ("not_your_record", 403), ("not_network_manager", 403),
        ("not_network_owner", 403), ("invite_only", 403), ("owner_cannot_leave", 403), ("cannot_remove_owner", 403),
        ("admin_cannot_manage_admin", 403), ("owns_networks", 403), ("too_many_networks", 422), ("too_many_members", 422),
        ("too_many_invitations", 422), ("storage", 503), ("closed", 503), ("unavailable", 503),
    ]
}

/// The body of every error response.
public struct IndexAPIErrorBody: Codable, Hashable, Sendable {
    /// The error's code and message.
    public struct Detail: Codable, Hashable, Sendable {
        public let code: String
        public let message: String
    }

    public let error: Detail
}

/// Turns every error a route or middleware throws into `IndexAPIError`'s JSON response: INDEX
/// refusals by their mapping, Hummingbird's HTTP errors (unknown route, method, body size) by
/// status, anything else as 500 (logged).
struct IndexAPIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return try Self.apiError(error, path: request.uri.path, logger: context.logger).response(from: request, context: context)
        }
    }

    static func apiError(_ error: any Error, path: String, logger: Logger) -> IndexAPIError {
        switch error {
        case let error as IndexAPIError: return error
        case let error as IndexError:
            if case .storage = error { logger.error("index storage failed", metadata: ["error": "\(error)"]) }
            if case .unreachable = error { logger.warning("index database unreachable", metadata: ["error": "\(error)"]) }
            return IndexAPIError(error)
        case let error as HTTPError:
            if error.status.code == 400, let message = error.body { return .invalidJSON(message) }
            return .http(error.status, path: path)
        case let error as any HTTPResponseError: return .http(error.status, path: path)
        default:
            logger.error("management API request failed", metadata: ["error": "\(error)"])
            return .internalError
        }
    }
}
