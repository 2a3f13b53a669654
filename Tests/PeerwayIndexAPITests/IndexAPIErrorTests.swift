import Foundation
import Hummingbird
import HummingbirdTesting
import PeerwayCheckpoint
import PeerwayIndex
import Testing
@testable import PeerwayIndexAPI

@Suite("Management API: errors and limits")
struct IndexAPIErrorTests {
    /// One of each `IndexError`, with the status it must map to.
    static let cases: [(IndexError, Int)] = {
        let u = UserID(1), n = NetworkID(2)
        return [
            (.invalidUsername("X"), 400), (.invalidNetworkName("X"), 400), (.invalidPassword(bytes: 1), 400),
            (.invalidMetadata("m"), 400), (.invalidQuery("q"), 400), (.invalidCursor("c"), 400),
            (.invalidPageSize(0, maximum: 5), 400), (.invalidRole("owner"), 400),
            (.usernameTaken("a"), 409), (.networkNameTaken("n"), 409), (.alreadyMember(user: u, network: n), 409),
            (.alreadyInvited(user: u, network: n), 409),
            (.noSuchUser("a"), 404), (.noSuchNetwork("n"), 404), (.notMember(user: u, network: n), 404),
            (.notInvited(user: u, network: n), 404), (.notLoggedIn(PeerID(high: 1, low: 2)), 404),
            (.badCredentials, 403), (.rateLimited(retryAfterSeconds: 7), 429),
            (.notYourRecord(actor: .user(u), user: UserID(3)), 403), (.notNetworkManager(actor: .user(u), network: n), 403),
            (.notNetworkOwner(actor: .user(u), network: n), 403), (.inviteOnly(n), 403), (.ownerCannotLeave(n), 403),
            (.cannotRemoveOwner(n), 403), (.adminCannotManageAdmin(network: n, user: u), 403), (.ownsNetworks(user: u, count: 1), 403),
            (.tooManyNetworks(user: u, limit: 1), 422), (.tooManyMembers(network: n, limit: 1), 422),
            (.tooManyInvitations(network: n, limit: 1), 422), (.storage("disk"), 503), (.closed, 503),
            (.unreachable("no answer"), 503),
        ]
    }()

    @Test("every IndexError maps to its status, a documented code and its own message")
    func mapping() throws {
        let documented = Dictionary(uniqueKeysWithValues: IndexAPIError.indexErrorCodes.map { ($0.code, $0.status) })
        var codes = Set<String>()
        for (error, status) in Self.cases {
            let mapped = IndexAPIError(error)
            #expect(mapped.statusCode == status, "\(error)")
            #expect(mapped.message == error.description)
            #expect(documented[mapped.code] == status, "\(mapped.code) is not documented with \(status)")
            #expect(mapped.retryAfterSeconds == (status == 429 ? 7 : nil))
            codes.insert(mapped.code)
        }
        // One code per case, and the documented list is exactly these.
        #expect(codes.count == Self.cases.count)
        #expect(codes == Set(documented.keys))
    }

    @Test("errors thrown by routes: JSON body, Retry-After on 429, 503 on storage, 500 for the unexpected")
    func errorMiddleware() async throws {
        struct Unexpected: Error {}
        let router = Router(context: IndexAPIRequestContext.self)
        router.add(middleware: IndexAPIErrorMiddleware())
        router.get("limited") { _, _ -> Response in throw IndexError.rateLimited(retryAfterSeconds: 9) }
        router.get("storage") { _, _ -> Response in throw IndexError.storage("disk full") }
        router.get("unexpected") { _, _ -> Response in throw Unexpected() }
        try await Application(router: router).test(.router) { client in
            let limited = try await client.execute(uri: "/limited", method: .get)
            #expect(limited.status.code == 429)
            #expect(limited.headers[.retryAfter] == "9")
            let body = try JSONDecoder().decode(IndexAPIErrorBody.self, from: Data(limited.body.readableBytesView))
            #expect(body.error.code == "rate_limited")
            #expect(body.error.message == IndexError.rateLimited(retryAfterSeconds: 9).description)
            let storage = try await client.execute(uri: "/storage", method: .get)
            #expect(storage.status.code == 503)
            let unexpected = try await client.execute(uri: "/unexpected", method: .get)
            #expect(unexpected.status.code == 500)
            let internalBody = try JSONDecoder().decode(IndexAPIErrorBody.self, from: Data(unexpected.body.readableBytesView))
            #expect(internalBody.error.code == "internal")
        }
    }

    @Test("API-level refusals: unknown route 404, wrong method 405, bad JSON 400, unknown fields 400, oversize body 413")
    func apiRefusals() async throws {
        try await withAPI { api in
            let unknown = try await api.get("/v1/nothing/here")
            #expect(unknown.status == 404)
            #expect(unknown.errorCode == "not_found")
            #expect(try await api.get("/").errorCode == "not_found")
            let method = try await api.call(.put, "/v1/users")
            #expect([404, 405].contains(method.status))
            #expect(method.errorCode != nil, "\(method.text)")

            let notJSON = try await api.call(.post, "/v1/users", json: "name=alice")
            #expect(notJSON.status == 400)
            #expect(notJSON.errorCode == "invalid_json")
            let array = try await api.call(.post, "/v1/users", json: "[1,2]")
            #expect(array.errorCode == "invalid_json")
            let misspelt = try await api.call(.post, "/v1/users", json: #"{"name":"alice","password":"password1","metdata":{}}"#)
            #expect(misspelt.errorCode == "invalid_json")
            #expect((misspelt.object["error"] as? [String: Any])?["message"] as? String ?? "" != "")
            let missing = try await api.call(.post, "/v1/users", json: #"{"name":"alice"}"#)
            #expect(missing.errorCode == "invalid_json")
            let wrongType = try await api.call(.post, "/v1/users", json: #"{"name":"alice","password":12345678}"#)
            #expect(wrongType.errorCode == "invalid_json")
            #expect(try await api.call(.post, "/v1/users").errorCode == "invalid_json")

            let padding = String(repeating: "x", count: IndexAPILimits.maximumBodyBytes)
            let large = try await api.call(.post, "/v1/users", json: #"{"name":"alice","password":"\#(padding)"}"#)
            #expect(large.status == 413)
            #expect(large.errorCode == "body_too_large")
            #expect(try await api.store.user(named: "alice") == nil)
            // Just under the limit is read (and refused by the INDEX's own password limit).
            let under = try await api.call(.post, "/v1/users", json: #"{"name":"alice","password":"\#(String(padding.prefix(2_000)))"}"#)
            #expect(under.errorCode == "invalid_password")
        }
    }

    @Test("a closed store answers 503")
    func closedStore() async throws {
        try await withAPI { api in
            try await api.createUser("alice")
            await api.store.close()
            let reply = try await api.get("/v1/users")
            #expect(reply.status == 503)
            // IndexStore documents `.closed` after close(); SQLiteIndexStore reports GRDB's closed connection as `.storage`.
            #expect(["closed", "storage"].contains(reply.errorCode ?? ""), "\(reply.text)")
            #expect(try await api.get("/v1/users/alice").status == 503)
        }
    }

    @Test("limits: networks per user is 422 too_many_networks")
    func limitReached() async throws {
        try await withAPI { api in
            try await api.createUser("alice")
            try await api.createUser("bob")
            try await api.createNetwork("net0", owner: "alice")
            for i in 1..<IndexLimits.maximumNetworksPerUser {
                _ = try await api.store.createNetwork(name: "net\(i)", owner: try #require(try await api.store.user(named: "alice")).id,
                                                      access: .open, metadata: [:], by: .administrator)
            }
            let over = try await api.call(.post, "/v1/networks", json: #"{"name":"one-more","owner":"alice"}"#)
            #expect(over.status == 422)
            #expect(over.errorCode == "too_many_networks")
            // Into a network owned by another: still 422 for alice.
            try await api.createNetwork("bobs", owner: "bob", access: "invite-only")
            let add = try await api.call(.post, "/v1/networks/bobs/members", json: #"{"user":"alice"}"#)
            #expect(add.status == 422)
            // The invitation made on the way was withdrawn again.
            #expect(try await api.get("/v1/networks/bobs/invitations").items.isEmpty)
        }
    }
}
