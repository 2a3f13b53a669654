import Foundation
import Hummingbird
import HummingbirdTesting
import PeerwayCheckpoint
import PeerwayIndex
import Logging
import ServiceLifecycle
import Testing
@testable import PeerwayIndexAPI

@Suite("Management API: OpenAPI document, admin token, a real socket")
struct IndexAPIDocumentTests {
    static func document() throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(IndexAPIOpenAPI.document)) as? [String: Any])
    }

    @Test("the OpenAPI document is valid JSON, OpenAPI 3.1, and every $ref resolves")
    func documentShape() throws {
        let document = try Self.document()
        #expect(document["openapi"] as? String == "3.1.0")
        #expect((document["info"] as? [String: Any])?["title"] as? String != nil)
        let text = String(decoding: IndexAPIOpenAPI.document, as: UTF8.self)
        let components = try #require(document["components"] as? [String: Any])
        // Every reference points at a component that exists.
        let refs = text.components(separatedBy: "\"$ref\" : \"#/components/").dropFirst().map { $0.prefix { $0 != "\"" } }
        #expect(!refs.isEmpty)
        for ref in refs {
            let parts = ref.split(separator: "/").map(String.init)
            #expect(parts.count == 2)
            #expect((components[parts[0]] as? [String: Any])?[parts[1]] != nil, "dangling $ref \(ref)")
        }
        // Every operation has an id, answers 401, and names its path parameters.
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        var ids = Set<String>()
        for (path, operations) in paths {
            for (method, value) in operations {
                let operation = try #require(value as? [String: Any])
                let id = try #require(operation["operationId"] as? String)
                #expect(ids.insert(id).inserted, "operationId \(id) twice")
                let responses = try #require(operation["responses"] as? [String: Any])
                if path != "/openapi.json" { #expect(responses["401"] != nil, "\(method) \(path) lacks 401") }
                let names = (operation["parameters"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
                for segment in path.split(separator: "/") where segment.hasPrefix("{") {
                    #expect(names.contains(String(segment.dropFirst().dropLast())), "\(method) \(path) lacks \(segment)")
                }
            }
        }
    }

    @Test("the document's operations are exactly the router's routes")
    func routeCoverage() async throws {
        let routed = try await withTemporaryStore { store in
            let router = IndexAdminServer(configuration: IndexAdminConfiguration(token: testToken, store: store)).router()
            return Set(router.routes.map { "\($0.method.rawValue) \($0.path.description)" })
        }
        let paths = try #require(try Self.document()["paths"] as? [String: [String: Any]])
        let documented = Set(paths.flatMap { path, operations in operations.keys.map { "\($0.uppercased()) \(path)" } })
        #expect(routed.count >= 20)
        #expect(routed.subtracting(documented).isEmpty, "routes missing from the document: \(routed.subtracting(documented).sorted())")
        #expect(documented.subtracting(routed).isEmpty, "documented operations no route serves: \(documented.subtracting(routed).sorted())")
    }

    @Test("GET /openapi.json serves the document")
    func served() async throws {
        try await withAPI { api in
            let reply = try await api.call(.get, "/openapi.json", token: nil)
            #expect(reply.status == 200)
            #expect(reply.headers[.contentType]?.hasPrefix("application/json") == true)
            #expect(reply.body == Data(IndexAPIOpenAPI.document))
        }
    }

    @Test("admin token: created once with mode 0600, read back, too-open and malformed files refused")
    func adminToken() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peerway-token-\(UUID().uuidString)/data").path
        defer { try? FileManager.default.removeItem(atPath: (directory as NSString).deletingLastPathComponent) }
        let token = try AdminToken.loadOrCreate(directory: directory)
        let path = directory + "/" + AdminToken.fileName
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(token.value.utf8.count == 43)
        #expect(token.value.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        #expect(try AdminToken.loadOrCreate(directory: directory) == token)
        #expect(AdminToken.generate() != token)
        #expect(!token.description.contains(token.value))
        #expect(token.matches(token.value))
        #expect(!token.matches(token.value + "a"))
        #expect(!token.matches(String(token.value.dropLast())))
        #expect(!token.matches(""))

        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        #expect(throws: AdminTokenError.tooOpen(path: path, mode: 0o644)) { try AdminToken.loadOrCreate(directory: directory) }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        try "short\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: AdminTokenError.self) { try AdminToken.loadOrCreate(directory: directory) }

        #expect(throws: AdminTokenError.self) { try AdminToken("too-short") }
        #expect(throws: AdminTokenError.self) { try AdminToken("has spaces in the middle of it") }
        #expect(try AdminToken("sixteen-bytes-ok").value == "sixteen-bytes-ok")
    }

    @Test("listen addresses parse as HOST:PORT and [IPv6]:PORT")
    func listenParsing() {
        #expect(IndexAdminConfiguration.parseListen("127.0.0.1:7480")! == ("127.0.0.1", 7480))
        #expect(IndexAdminConfiguration.parseListen("[::1]:0")! == ("::1", 0))
        #expect(IndexAdminConfiguration.parseListen("localhost:80")! == ("localhost", 80))
        for bad in ["127.0.0.1", ":80", "::1:80", "[::1]80", "host:99999", "host:x"] {
            #expect(IndexAdminConfiguration.parseListen(bad) == nil, "\(bad)")
        }
    }

    @Test("a real socket on port 0: the client creates and lists users; graceful shutdown ends the service", .timeLimit(.minutes(1)))
    func realSocket() async throws {
        try await withTemporaryStore { store in
            let (urls, continuation) = AsyncStream.makeStream(of: String.self)
            let server = IndexAdminServer(configuration: IndexAdminConfiguration(
                host: "127.0.0.1", port: 0, token: testToken, store: store, onListening: { continuation.yield($0) }))
            let group = ServiceGroup(configuration: .init(services: [server], logger: Logger(label: "test")))
            let running = Task { try await group.run() }
            var iterator = urls.makeAsyncIterator()
            let url = try #require(await iterator.next())
            #expect(url.hasPrefix("http://127.0.0.1:"))
            #expect(!url.hasSuffix(":0"))

            let client = try IndexAdminClient(url: url, token: testToken.value)
            let created = try await client.call(IndexAPIUser.self, "POST", ["v1", "users"],
                                                body: IndexAPICreateUser(name: "alice", password: "password1", metadata: ["team": "red"]))
            #expect(created.name == "alice")
            #expect(created.metadata == ["team": "red"])
            let page = try await client.call(IndexAPIPage<IndexAPIUser>.self, "GET", ["v1", "users"], query: [("q", "team=red or team=blue")])
                .items.map(\.name)
            #expect(page == ["alice"])
            let listed = try await client.call(IndexAPIPage<IndexAPIUser>.self, "GET", ["v1", "users"], query: [("q", "team=red")])
            #expect(listed.items.map(\.name) == ["alice"])
            do {
                _ = try await client.send("GET", ["v1", "users", "bob"])
                Issue.record("expected 404")
            } catch let error as IndexAdminClientError {
                #expect(error == .api(status: 404, code: "no_such_user", message: IndexError.noSuchUser("bob").description))
            }
            let wrong = try IndexAdminClient(url: url, token: "not-the-token-at-all")
            await #expect(throws: IndexAdminClientError.self) { try await wrong.send("GET", ["v1", "users"]) }

            await group.triggerGracefulShutdown()
            try await running.value
        }
    }
}
