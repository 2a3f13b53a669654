import Foundation
import Hummingbird
import HummingbirdTesting
import PeerwayCheckpoint
import Testing
@testable import PeerwayIndexAPI

/// A clock a test moves.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var time = Date(timeIntervalSince1970: 1_800_000_000)
    var now: Date { lock.withLock { time } }
    func advance(seconds: Int) { lock.withLock { time += TimeInterval(seconds) } }
}

/// The dashboard's way in, over Hummingbird's in-memory client: the token once (query or login
/// form) opens a session cookie; a wrong token is the login page (401); sessions expire and end
/// at logout; the cookie opens the dashboard only.
@Suite("Dashboard: token, session cookie, login form, expiry, logout")
struct DashboardSessionTests {
    /// The cookie name the in-memory client's requests get (they carry no `Host` with a port).
    static let cookie = DashboardLimits.cookiePrefix

    func withDashboard(reporter: FakeReporter? = FakeReporter(), clock: ManualClock? = nil,
                       _ body: @escaping @Sendable (TestAPI) async throws -> Void) async throws {
        try await withTemporaryStore { store in
            var configuration = IndexAdminConfiguration(port: 0, token: testToken, store: store)
            configuration.reporter = reporter
            let server = IndexAdminServer(configuration: configuration)
            if let clock { await server.dashboard.sessions.setClock { clock.now } }
            try await server.application().test(.router) { client in
                try await body(TestAPI(client: client, store: store))
            }
        }
    }

    /// The `Set-Cookie` value of a reply, split into its name=value and its attributes.
    static func setCookie(_ reply: Reply) throws -> (pair: String, value: String, attributes: Set<String>) {
        let header = try #require(reply.headers[.setCookie])
        let parts = header.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        let pair = try #require(parts.first)
        let value = String(pair.drop { $0 != "=" }.dropFirst())
        return (pair, value, Set(parts.dropFirst().map { $0.lowercased() }))
    }

    /// Opens a session with `?token=`: the cookie header to send afterwards.
    static func logIn(_ api: TestAPI) async throws -> String {
        let reply = try await api.call(.get, "/dashboard?token=\(testToken.value)", token: nil)
        #expect(reply.status == 303)
        return try setCookie(reply).pair
    }

    @Test("?token= opens a session: 303 to /dashboard (token gone), cookie HttpOnly, SameSite=Strict, Path=/dashboard; the cookie opens the page")
    func tokenToCookie() async throws {
        try await withDashboard { api in
            let reply = try await api.call(.get, "/dashboard?token=\(testToken.value)", token: nil)
            #expect(reply.status == 303)
            #expect(reply.headers[.location] == "/dashboard")
            #expect(reply.headers[.cacheControl] == "no-store")
            let cookie = try Self.setCookie(reply)
            #expect(cookie.pair.hasPrefix(Self.cookie + "="))
            #expect(cookie.value.count == 43, "32 random bytes, base64url")
            #expect(cookie.value != testToken.value)
            #expect(cookie.attributes.isSuperset(of: ["httponly", "samesite=strict", "path=/dashboard",
                                                      "max-age=\(DashboardLimits.sessionLifetimeSeconds)"]), "\(cookie.attributes)")

            let page = try await api.call(.get, "/dashboard", token: nil, headers: [.cookie: cookie.pair])
            #expect(page.status == 200)
            #expect(page.headers[.contentType] == "text/html; charset=utf-8")
            #expect(page.text.contains("id=\"peers-online\"") && page.text.contains("new EventSource('/dashboard/events')"))
            // The CSP lets in exactly the page's inline style and script, by their nonce.
            let policy = try #require(page.headers[.contentSecurityPolicy])
            let nonce = try #require(policy.split(separator: "'").first { $0.hasPrefix("nonce-") }?.dropFirst(6))
            #expect(page.text.contains("<script nonce=\"\(nonce)\">") && page.text.contains("<style nonce=\"\(nonce)\">"))
            #expect(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"))
            // The first snapshot is in the page, `<` escaped.
            #expect(page.text.contains("\"online\":2"))
            #expect(!page.text.contains(" src=") && !page.text.contains("href=\"http"), "nothing is loaded from elsewhere")

            // The cookie opens the dashboard's routes only.
            #expect(try await api.call(.get, "/dashboard/snapshot", token: nil, headers: [.cookie: cookie.pair]).status == 200)
            #expect(try await api.call(.get, "/v1/users", token: nil, headers: [.cookie: cookie.pair]).status == 401)
            #expect(try await api.call(.get, "/status", token: nil, headers: [.cookie: cookie.pair]).status == 401)
        }
    }

    @Test("a wrong token, no credential, an unknown session: the login page, 401, no session")
    func refusals() async throws {
        try await withDashboard { api in
            let wrong = try await api.call(.get, "/dashboard?token=not-the-token-at-all", token: nil)
            #expect(wrong.status == 401)
            #expect(wrong.headers[.contentType] == "text/html; charset=utf-8")
            #expect(wrong.headers[.wwwAuthenticate] != nil)
            #expect(wrong.headers[.setCookie] == nil)
            #expect(wrong.text.contains(DashboardPage.escape(DashboardAuthFailure.wrongToken.description)))
            #expect(wrong.text.contains("action=\"/dashboard/login\"") && !wrong.text.contains("peers-online"))
            // A wrong ?token= is refused even with the right bearer token: the URL says who the browser wants to be.
            #expect(try await api.call(.get, "/dashboard?token=not-the-token-at-all").status == 401)

            let none = try await api.call(.get, "/dashboard", token: nil)
            #expect(none.status == 401 && none.text.contains(DashboardPage.escape(DashboardAuthFailure.noCredential.description)))
            let forged = try await api.call(.get, "/dashboard", token: nil, headers: [.cookie: "\(Self.cookie)=\(DashboardRandom.base64URL(bytes: 32))"])
            #expect(forged.status == 401 && forged.text.contains(DashboardPage.escape(DashboardAuthFailure.sessionEnded.description)))
            #expect(try Self.setCookie(forged).attributes.contains("max-age=0"), "an unknown session's cookie is cleared")
            #expect(try await api.call(.get, "/dashboard", token: "wrong-token-0123456789").status == 401)
            // The feed and the snapshot answer JSON errors.
            let events = try await api.call(.get, "/dashboard/events", token: nil)
            #expect(events.status == 401 && events.errorCode == "unauthorized")
            #expect(try await api.call(.get, "/dashboard/snapshot", token: nil).errorCode == "unauthorized")
            // The bearer token opens the page too (scripts, curl).
            #expect(try await api.get("/dashboard").status == 200)
        }
    }

    @Test("the login form: the right token opens a session (303); wrong or missing: 401; not a form: 415; other fields: 400; too large: 413")
    func loginForm() async throws {
        try await withDashboard { api in
            func post(_ body: String, type: String = "application/x-www-form-urlencoded") async throws -> Reply {
                let response = try await api.client.execute(uri: "/dashboard/login", method: .post, headers: [.contentType: type],
                                                            body: ByteBuffer(string: body))
                return Reply(status: Int(response.status.code), headers: response.headers, body: Data(response.body.readableBytesView))
            }
            let encoded = try #require(testToken.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
            let right = try await post("token=\(encoded)")
            #expect(right.status == 303 && right.headers[.location] == "/dashboard")
            let cookie = try Self.setCookie(right)
            #expect(cookie.attributes.contains("httponly") && cookie.attributes.contains("samesite=strict"))
            #expect(try await api.call(.get, "/dashboard", token: nil, headers: [.cookie: cookie.pair]).status == 200)

            let wrong = try await post("token=wrong-token-0123456789")
            #expect(wrong.status == 401 && wrong.text.contains(DashboardPage.escape(DashboardAuthFailure.wrongToken.description)) && wrong.headers[.setCookie] == nil)
            let missing = try await post("token=")
            #expect(missing.status == 401 && missing.text.contains(DashboardPage.escape(DashboardAuthFailure.missingToken.description)))
            #expect(try await post("").status == 401)
            #expect(try await post("{\"token\":\"\(testToken.value)\"}", type: "application/json").status == 415)
            #expect(try await post("token=\(encoded)&next=/evil").errorCode == "invalid_parameter")
            #expect(try await post("token=a&token=b").status == 400)
            #expect(try await post("token=" + String(repeating: "a", count: DashboardLimits.maximumFormBytes)).status == 413)
            // The form's route takes POST only; the page's GET only.
            let get = try await api.get("/dashboard/login")
            #expect(get.status == 405 && get.headers[.allow] == "POST")
            #expect(try await api.call(.delete, "/dashboard").headers[.allow] == "GET")
        }
    }

    @Test("sessions expire after their lifetime; logout ends one and clears its cookie")
    func expiryAndLogout() async throws {
        let clock = ManualClock()
        try await withDashboard(clock: clock) { api in
            let cookie = try await Self.logIn(api)
            clock.advance(seconds: DashboardLimits.sessionLifetimeSeconds - 1)
            #expect(try await api.call(.get, "/dashboard", token: nil, headers: [.cookie: cookie]).status == 200)
            clock.advance(seconds: 1)
            let expired = try await api.call(.get, "/dashboard", token: nil, headers: [.cookie: cookie])
            #expect(expired.status == 401 && expired.text.contains(DashboardPage.escape(DashboardAuthFailure.sessionEnded.description)))

            let second = try await Self.logIn(api)
            #expect(second != cookie)
            let out = try await api.call(.post, "/dashboard/logout", token: nil, headers: [.cookie: second])
            #expect(out.status == 303 && out.headers[.location] == "/dashboard")
            let cleared = try Self.setCookie(out)
            #expect(cleared.value.isEmpty && cleared.attributes.contains("max-age=0") && cleared.attributes.contains("path=/dashboard"))
            #expect(try await api.call(.get, "/dashboard", token: nil, headers: [.cookie: second]).status == 401)
            // Logging out again, or with nothing: 401 (the login page).
            #expect(try await api.call(.post, "/dashboard/logout", token: nil, headers: [.cookie: second]).status == 401)
            #expect(try await api.call(.post, "/dashboard/logout", token: nil).status == 401)
            #expect(try await api.call(.post, "/dashboard/logout").status == 303, "the bearer token may always log out")
        }
    }

    @Test("the session table: expiry at its lifetime, at most maximumSessions (the oldest ends first), close")
    func sessionTable() {
        var table = DashboardSessionTable()
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        table.open("first", now: start)
        #expect(table.isValid("first", now: start.addingTimeInterval(TimeInterval(DashboardLimits.sessionLifetimeSeconds) - 0.001)))
        #expect(!table.isValid("first", now: start.addingTimeInterval(TimeInterval(DashboardLimits.sessionLifetimeSeconds))))
        for i in 1...DashboardLimits.maximumSessions {
            table.open("s\(i)", now: start.addingTimeInterval(TimeInterval(i)))
        }
        #expect(table.count == DashboardLimits.maximumSessions)
        #expect(!table.isValid("first", now: start.addingTimeInterval(100)), "the oldest made room")
        #expect(table.isValid("s1", now: start.addingTimeInterval(100)))
        let closed = table.close("s1", now: start.addingTimeInterval(100))
        let closedAgain = table.close("s1", now: start.addingTimeInterval(100))
        #expect(closed && !closedAgain)
        #expect(!table.isValid("s1", now: start.addingTimeInterval(100)))
        table.prune(now: start.addingTimeInterval(TimeInterval(DashboardLimits.sessionLifetimeSeconds + 1_000)))
        #expect(table.count == 0)
    }

    @Test("event streams: at most maximumStreams at once; a stream's slot comes back when its body goes away")
    func streamSlots() async throws {
        let sessions = DashboardSessions()
        var slots: [DashboardStreamSlot] = []
        for _ in 0..<DashboardLimits.maximumStreams {
            #expect(await sessions.openStream())
            slots.append(DashboardStreamSlot(sessions))
        }
        #expect(await !sessions.openStream(), "one over the limit")
        slots.removeAll()
        for _ in 0..<100 where await sessions.openStreams > 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(await sessions.openStreams == 0)
        #expect(await sessions.openStream())
    }

    @Test("the cookie's name carries the Host's port, so supernodes on one host keep their own")
    func cookieNames() {
        #expect(DashboardCookie.name(host: "127.0.0.1:7480") == "peerway_dashboard_7480")
        #expect(DashboardCookie.name(host: "[::1]:7481") == "peerway_dashboard_7481")
        #expect(DashboardCookie.name(host: "[::1]") == "peerway_dashboard")
        #expect(DashboardCookie.name(host: "example.org") == "peerway_dashboard")
        #expect(DashboardCookie.name(host: "example.org:x;y") == "peerway_dashboard")
        #expect(DashboardCookie.name(host: nil) == "peerway_dashboard")
    }

    @Test("GET /dashboard/snapshot: the status as the dashboard shows it (network, NAT kinds, history); 503 without a supernode")
    func snapshot() async throws {
        try await withDashboard { api in
            let reply = try await api.get("/dashboard/snapshot")
            #expect(reply.status == 200)
            let snapshot = try IndexAPIJSON.decoder.decode(DashboardSnapshot.self, from: reply.body)
            #expect(snapshot.supernode.address == FakeReporter.sample.address && snapshot.supernode.key == "key")
            #expect(snapshot.peers == .init(online: 2, sessions: 3, network: 7))
            #expect(snapshot.traversals == .init(direct: 1, relayed: 0, failed: 0, methods: ["lan": 1]))
            #expect(snapshot.relay?.bytesPerSecond == 1_200)
            #expect(snapshot.supernodes.map(\.key) == ["a", "b"])
            #expect(snapshot.supernodes[0].isSelf && snapshot.supernodes[0].linkUp && !snapshot.supernodes[1].linkUp)
            #expect(snapshot.history?.count == 1)
            #expect(snapshot.natTypes.isEmpty, "FakeReporter keeps no NAT tally")
        }
        try await withDashboard(reporter: nil) { api in
            let snapshot = try await api.get("/dashboard/snapshot")
            #expect(snapshot.status == 503)
            #expect(try await api.get("/dashboard/events").status == 503)
            #expect(try await api.get("/dashboard").status == 200, "the page works without a supernode, empty")
        }
    }

    @Test("NAT kinds from netcheck profiles: cone names for endpoint-independent mappings, symmetric ones by port predictability")
    func natKinds() {
        #expect(NATKind(.unknown) == .unknown)
        #expect(NATKind(NATProfile(mapping: .none)) == .open)
        #expect(NATKind(NATProfile(mapping: .endpointIndependent, filtering: .endpointIndependent)) == .fullCone)
        #expect(NATKind(NATProfile(mapping: .endpointIndependent, filtering: .addressDependent)) == .restrictedCone)
        #expect(NATKind(NATProfile(mapping: .endpointIndependent, filtering: .addressAndPortDependent)) == .portRestrictedCone)
        #expect(NATKind(NATProfile(mapping: .endpointIndependent)) == .cone)
        #expect(NATKind(NATProfile(mapping: .addressAndPortDependent, portDelta: 1)) == .symmetricPredictable)
        #expect(NATKind(NATProfile(mapping: .addressDependent)) == .symmetricRandom)
        #expect(NATKind(NATProfile(mapping: .none, udpBlocked: true)) == .udpBlocked)
    }

    @Test("the document declares the dashboard's routes; the endless feed is marked for the contract test to leave out")
    func document() throws {
        let document = try #require(try JSONSerialization.jsonObject(with: Data(IndexAPIOpenAPI.document)) as? [String: Any])
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        #expect(paths["/dashboard"]?.keys.sorted() == ["get"])
        #expect(paths["/dashboard/login"]?.keys.sorted() == ["post"])
        #expect(paths["/dashboard/logout"]?.keys.sorted() == ["post"])
        #expect(paths["/dashboard/snapshot"]?.keys.sorted() == ["get"])
        let events = try #require(paths["/dashboard/events"]?["get"] as? [String: Any])
        #expect(events[IndexAPIOpenAPI.streamExtension] as? Bool == true)
        let login = try #require(paths["/dashboard/login"]?["post"] as? [String: Any])
        #expect((login["security"] as? [Any])?.isEmpty == true, "the login form needs no token: it takes it")
        let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any])
        #expect(schemas["DashboardSnapshot"] != nil)
    }
}
