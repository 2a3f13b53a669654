import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A client of the management API (what `peerway index` uses): sends one request with the admin
/// token and returns the JSON answer, or the API's error as `IndexAdminClientError.api`.
public struct IndexAdminClient: Sendable {
    /// The API's base URL (`http://127.0.0.1:7480`).
    public let baseURL: URL
    let token: String
    /// Seconds one request may take.
    public var timeout: TimeInterval = 30

    public init(url: String, token: String) throws(IndexAdminClientError) {
        let trimmed = url.hasSuffix("/") ? String(url.dropLast()) : url
        guard let base = URL(string: trimmed), let scheme = base.scheme, scheme == "http" || scheme == "https", base.host != nil else {
            throw .invalidURL(url)
        }
        baseURL = base
        self.token = token
    }

    /// Sends `method` to `path` (segments, each percent-encoded here) with `query` and an optional
    /// JSON `body`; returns the answer's body (empty for 204).
    public func send(_ method: String, _ path: [String], query: [(String, String)] = [],
                     body: (any Encodable & Sendable)? = nil) async throws(IndexAdminClientError) -> Data {
        var text = baseURL.absoluteString
        for segment in path { text += "/" + Self.encode(segment) }
        if !query.isEmpty { text += "?" + query.map { Self.encode($0.0) + "=" + Self.encode($0.1) }.joined(separator: "&") }
        guard let url = URL(string: text) else { throw .invalidURL(text) }
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = method
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        if let body {
            do { request.httpBody = try IndexAPIJSON.encoder.encode(body) } catch { throw .transport("cannot encode the request: \(error)") }
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let data: Data
        let response: URLResponse
        let session = URLSession(configuration: .ephemeral)
        defer { session.finishTasksAndInvalidate() }
        do { (data, response) = try await session.data(for: request) } catch {
            throw .transport("\(method) \(url.absoluteString): \(error.localizedDescription)")
        }
        guard let http = response as? HTTPURLResponse else { throw .transport("no HTTP answer from \(url.absoluteString)") }
        guard (200..<300).contains(http.statusCode) else {
            if let refusal = try? IndexAPIJSON.decoder.decode(IndexAPIErrorBody.self, from: data) {
                throw .api(status: http.statusCode, code: refusal.error.code, message: refusal.error.message)
            }
            throw .api(status: http.statusCode, code: "http_\(http.statusCode)", message: String(decoding: data.prefix(512), as: UTF8.self))
        }
        return data
    }

    /// `send`, with the answer decoded as `T`.
    public func call<T: Decodable>(_ type: T.Type, _ method: String, _ path: [String], query: [(String, String)] = [],
                                   body: (any Encodable & Sendable)? = nil) async throws(IndexAdminClientError) -> T {
        let data = try await send(method, path, query: query, body: body)
        do { return try IndexAPIJSON.decoder.decode(T.self, from: data) } catch {
            throw .transport("unexpected answer to \(method) /\(path.joined(separator: "/")): \(error)")
        }
    }

    /// Percent-encodes everything but unreserved characters (RFC 3986).
    static func encode(_ text: String) -> String {
        var allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

/// Why a management API call failed.
public enum IndexAdminClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The API refused: its status, code and message.
    case api(status: Int, code: String, message: String)
    /// No answer, or not one of the API's.
    case transport(String)
    /// The base URL is not an http(s) URL.
    case invalidURL(String)

    public var description: String {
        switch self {
        case .api(let status, let code, let message): return "\(status) \(code): \(message)"
        case .transport(let why): return why
        case .invalidURL(let url): return "'\(url)' is not an http:// or https:// URL"
        }
    }
}
