import Foundation
import Hummingbird
import HummingbirdTesting
import PeerwayCheckpoint
import PeerwayIndex
import Testing
@testable import PeerwayIndexAPI

/// The token every in-memory test server takes.
let testToken = try! AdminToken("test-token-0123456789abcdef")

/// Presence that says the peers in `online` are online.
struct FakePresence: IndexPresence {
    let online: Set<PeerID>
    func isOnline(_ peer: PeerID) -> Bool { online.contains(peer) }
}

/// A fresh SQLite store in a temporary directory (removed afterwards), closed after `body`.
func withTemporaryStore<T>(_ body: (SQLiteIndexStore) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peerway-api-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let store = try SQLiteIndexStore(directory: directory, hasher: .testing)
    do {
        let result = try await body(store)
        await store.close()
        return result
    } catch {
        await store.close()
        throw error
    }
}

/// Runs `body` against the API over Hummingbird's in-memory router test client, with a real
/// SQLite store.
func withAPI(presence: any IndexPresence = NoIndexPresence(), _ body: @escaping @Sendable (TestAPI) async throws -> Void) async throws {
    try await withTemporaryStore { store in
        let server = IndexAdminServer(configuration: IndexAdminConfiguration(port: 0, token: testToken, store: store, presence: presence))
        try await server.application().test(.router) { client in
            try await body(TestAPI(client: client, store: store))
        }
    }
}

/// An answer: status, headers, and the body as JSON.
struct Reply: @unchecked Sendable {
    let status: Int
    let headers: HTTPFields
    let body: Data

    /// The body as a JSON object (empty when it is not one).
    var object: [String: Any] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:] }
    /// `error.code` of an error body.
    var errorCode: String? { (object["error"] as? [String: Any])?["code"] as? String }
    /// `items` of a page.
    var items: [[String: Any]] { object["items"] as? [[String: Any]] ?? [] }
    /// The `name`s (or `user`s) of a page's items.
    var names: [String] { items.compactMap { ($0["name"] ?? $0["user"]) as? String } }
    var next: String? { object["next"] as? String }
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// The client side of a test: requests with the token (or another, or none).
struct TestAPI: Sendable {
    let client: any TestClientProtocol
    let store: SQLiteIndexStore

    func call(_ method: HTTPRequest.Method, _ uri: String, json: String? = nil, token: String? = testToken.value,
              headers extra: HTTPFields = [:]) async throws -> Reply {
        var headers = extra
        if let token { headers[.authorization] = "Bearer \(token)" }
        if json != nil { headers[.contentType] = "application/json" }
        let response = try await client.execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
        return Reply(status: Int(response.status.code), headers: response.headers, body: Data(response.body.readableBytesView))
    }

    func get(_ uri: String) async throws -> Reply { try await call(.get, uri) }

    /// Creates a user through the API, expecting 201.
    @discardableResult
    func createUser(_ name: String, metadata: [String: String] = [:], sourceLocation: SourceLocation = #_sourceLocation) async throws -> Reply {
        let meta = try String(decoding: JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys]), as: UTF8.self)
        let reply = try await call(.post, "/v1/users", json: #"{"name":"\#(name)","password":"password-\#(name)","metadata":\#(meta)}"#)
        #expect(reply.status == 201, "\(reply.text)", sourceLocation: sourceLocation)
        return reply
    }

    /// Creates a network through the API, expecting 201.
    @discardableResult
    func createNetwork(_ name: String, owner: String, access: String = "open", metadata: String = "{}",
                       sourceLocation: SourceLocation = #_sourceLocation) async throws -> Reply {
        let reply = try await call(.post, "/v1/networks", json: #"{"name":"\#(name)","owner":"\#(owner)","access":"\#(access)","metadata":\#(metadata)}"#)
        #expect(reply.status == 201, "\(reply.text)", sourceLocation: sourceLocation)
        return reply
    }
}
