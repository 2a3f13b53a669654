import Foundation
import Hummingbird
import HummingbirdTesting
import PeerwayCheckpoint
import PeerwayIndex
import Testing
@testable import PeerwayIndexAPI

@Suite("Management API: token and users")
struct IndexAPIUserTests {
    @Test("every /v1 route and unknown routes need the token (401 with WWW-Authenticate); the right one is let in")
    func authentication() async throws {
        try await withAPI { api in
            for token in [nil, "wrong-token-0123456789abcdef", testToken.value + "x", String(testToken.value.dropLast()), ""] as [String?] {
                for uri in ["/v1/users", "/v1/networks", "/v1/memberships", "/v1/users/alice", "/v1/nothing"] {
                    let reply = try await api.call(.get, uri, token: token)
                    #expect(reply.status == 401, "\(uri) with \(token ?? "no token")")
                    #expect(reply.errorCode == "unauthorized")
                    #expect(reply.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                }
            }
            // Not a bearer credential, or one too long to look at.
            let basic = try await api.call(.get, "/v1/users", token: nil, headers: [.authorization: "Basic \(testToken.value)"])
            #expect(basic.status == 401)
            let huge = try await api.call(.get, "/v1/users", token: String(repeating: "a", count: IndexAPILimits.maximumAuthorizationBytes))
            #expect(huge.status == 401)
            // Nothing was created by refused requests.
            let refused = try await api.call(.post, "/v1/users", json: #"{"name":"mallory","password":"password1"}"#, token: "nope-nope-nope-nope")
            #expect(refused.status == 401)
            #expect(try await api.store.user(named: "mallory") == nil)
            // The right token, with the scheme in any case.
            #expect(try await api.get("/v1/users").status == 200)
            let lower = try await api.call(.get, "/v1/users", token: nil, headers: [.authorization: "bearer \(testToken.value)"])
            #expect(lower.status == 200)
            // The OpenAPI document is open (it describes the API and holds no data).
            #expect(try await api.call(.get, "/openapi.json", token: nil).status == 200)
        }
    }

    @Test("users: create, read, update metadata and password, delete")
    func userLifecycle() async throws {
        try await withAPI { api in
            let created = try await api.createUser("alice", metadata: ["team": "red", "level": "3"])
            #expect(created.object["name"] as? String == "alice")
            #expect((created.object["id"] as? String)?.hasPrefix("u") == true)
            #expect(created.object["metadata"] as? [String: String] == ["team": "red", "level": "3"])
            #expect(created.object["password"] == nil)
            #expect(created.headers[.contentType]?.hasPrefix("application/json") == true)
            // Dates are ISO 8601 with milliseconds.
            let createdAt = try #require(created.object["created"] as? String)
            #expect(createdAt.hasSuffix("Z") && createdAt.contains("."))

            let shown = try await api.get("/v1/users/alice")
            #expect(shown.status == 200)
            #expect(shown.object["sessions"] as? [Any] != nil)

            // Metadata: set one key, remove another (null), all at once.
            let patched = try await api.call(.patch, "/v1/users/alice", json: #"{"metadata":{"team":"blue","level":null,"new":"x"}}"#)
            #expect(patched.status == 200, "\(patched.text)")
            #expect(patched.object["metadata"] as? [String: String] == ["team": "blue", "new": "x"])
            // Password: the new one verifies, the old one does not.
            let password = try await api.call(.patch, "/v1/users/alice", json: #"{"password":"a-new-password"}"#)
            #expect(password.status == 200)
            _ = try await api.store.verifyPassword(name: "alice", password: "a-new-password")
            await #expect(throws: IndexError.badCredentials) { try await api.store.verifyPassword(name: "alice", password: "password-alice") }

            let deleted = try await api.call(.delete, "/v1/users/alice")
            #expect(deleted.status == 204)
            #expect(deleted.body.isEmpty)
            let gone = try await api.get("/v1/users/alice")
            #expect(gone.status == 404)
            #expect(gone.errorCode == "no_such_user")
            #expect(try await api.call(.delete, "/v1/users/alice").errorCode == "no_such_user")
            #expect(try await api.call(.patch, "/v1/users/alice", json: "{}").errorCode == "no_such_user")
        }
    }

    @Test("users: refusals of the store map to statuses (409 taken, 400 invalid input)")
    func userRefusals() async throws {
        try await withAPI { api in
            try await api.createUser("alice")
            let taken = try await api.call(.post, "/v1/users", json: #"{"name":"alice","password":"password1"}"#)
            #expect(taken.status == 409)
            #expect(taken.errorCode == "username_taken")
            let badName = try await api.call(.post, "/v1/users", json: #"{"name":"Alice!","password":"password1"}"#)
            #expect(badName.status == 400)
            #expect(badName.errorCode == "invalid_username")
            let badPassword = try await api.call(.post, "/v1/users", json: #"{"name":"bob","password":"short"}"#)
            #expect(badPassword.errorCode == "invalid_password")
            let badMeta = try await api.call(.post, "/v1/users", json: #"{"name":"bob","password":"password1","metadata":{"BAD KEY":"x"}}"#)
            #expect(badMeta.errorCode == "invalid_metadata")
            let badPatch = try await api.call(.patch, "/v1/users/alice", json: #"{"password":"x"}"#)
            #expect(badPatch.errorCode == "invalid_password")
            // Nothing of the refused ones was created.
            #expect(try await api.get("/v1/users").names == ["alice"])
        }
    }

    @Test("users: listing pages in id order with after/limit; search in the query language")
    func listingAndSearch() async throws {
        try await withAPI { api in
            for i in 0..<7 {
                try await api.createUser("user\(i)", metadata: ["team": i % 2 == 0 ? "red" : "blue", "level": "\(i)"])
            }
            var names: [String] = []
            var after: String?
            var pages = 0
            repeat {
                let page = try await api.get("/v1/users?limit=3" + (after.map { "&after=\($0)" } ?? ""))
                #expect(page.status == 200)
                #expect(page.items.count <= 3)
                names += page.names
                after = page.next
                pages += 1
            } while after != nil && pages < 10
            #expect(names == (0..<7).map { "user\($0)" })
            #expect(pages == 3)
            // Without limit: the default page.
            #expect(try await api.get("/v1/users").names.count == 7)

            let red = try await api.get("/v1/users?q=" + "team=red and level>=2".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
            #expect(red.status == 200, "\(red.text)")
            #expect(red.names == ["user2", "user4", "user6"])
            let paged = try await api.get("/v1/users?q=team%3Dred&limit=2")
            #expect(paged.names == ["user0", "user2"])
            let rest = try await api.get("/v1/users?q=team%3Dred&limit=2&after=\(try #require(paged.next))")
            #expect(rest.names == ["user4", "user6"])
            #expect(try await api.get("/v1/users?q=*").names.count == 7)

            let badQuery = try await api.get("/v1/users?q=team%3D")
            #expect(badQuery.status == 400)
            #expect(badQuery.errorCode == "invalid_query")
            let longQuery = try await api.get("/v1/users?q=" + String(repeating: "a", count: IndexAPILimits.maximumQueryBytes + 1))
            #expect(longQuery.errorCode == "invalid_query")
            #expect(try await api.get("/v1/users?after=zz").errorCode == "invalid_cursor")
            #expect(try await api.get("/v1/users?limit=0").errorCode == "invalid_page_size")
            #expect(try await api.get("/v1/users?limit=\(IndexAPILimits.maximumListPage + 1)").errorCode == "invalid_page_size")
            #expect(try await api.get("/v1/users?limit=\(IndexAPILimits.maximumListPage)").status == 200)
            // A search asking for more than a search page holds gets a search page (the document's range is the listing's).
            #expect(try await api.get("/v1/users?q=*&limit=\(IndexAPILimits.maximumSearchPage + 1)").status == 200)
            #expect(try await api.get("/v1/users?limit=many").errorCode == "invalid_parameter")
        }
    }

    @Test("a user shows their sessions' PeerIDs with online from the injected presence")
    func sessionsAndPresence() async throws {
        let online = PeerID(high: 1, low: 1)
        let offline = PeerID(high: 1, low: 2)
        try await withAPI(presence: FakePresence(online: [online])) { api in
            try await api.createUser("alice")
            let alice = try #require(try await api.store.user(named: "alice"))
            _ = try await api.store.login(user: alice.id, peer: online)
            _ = try await api.store.login(user: alice.id, peer: offline)
            let shown = try await api.get("/v1/users/alice")
            let sessions = try #require(shown.object["sessions"] as? [[String: Any]])
            #expect(sessions.count == 2)
            let state = Dictionary(uniqueKeysWithValues: sessions.map { ($0["peer"] as! String, $0["online"] as! Bool) })
            #expect(state == [online.description: true, offline.description: false])
            #expect(sessions.allSatisfy { $0["since"] is String })
            // Listings do not carry sessions.
            #expect(try await api.get("/v1/users").items.first?["sessions"] == nil)
        }
    }
}
