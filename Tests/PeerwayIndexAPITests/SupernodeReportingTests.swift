import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import PeerwayIndexAPI

/// A reporter with fixed answers that remembers the requests it was told of.
final class FakeReporter: SupernodeReporter, @unchecked Sendable {
    private let lock = NSLock()
    private var requests: [String] = []
    var answered: [String] { lock.withLock { requests } }

    static let sample = SupernodeStatus(
        address: "peerway://key@127.0.0.1:7400", startedAt: Date(timeIntervalSince1970: 1_700_000_000), uptimeSeconds: 3_725,
        checkpoint: .init(udp: "127.0.0.1:7400", tcp: "127.0.0.1:7400", peersRegistered: 2, sessions: 3, remotePeers: 5, watchers: 1,
                          watchedPeers: 1, registrations: 4, keepalives: 10, messagesDelivered: 6, messagesOffline: 1,
                          messagesTimedOut: 0, dropped: 2),
        handshake: .init(offers: 2, plans: 1, offerTimeouts: 0, traversals: ["direct": 1], methods: ["lan": 1]),
        relay: .init(udp: "127.0.0.1:7401", tcp: nil, allocations: 1, allocationsTotal: 3, forwardedBytes: 2_500_000,
                     bytesPerSecond: 1_200, dropped: 0),
        stun: nil, index: .init(location: "/data/index.sqlite", operations: 7, failedOperations: 1),
        cluster: .init(members: [
            .init(address: "peerway://a@10.0.0.1:7400", isSelf: true, linkUp: false, peers: 2, relayAllocations: 1, heartbeatAgeMillis: 100),
            .init(address: "peerway://b@10.0.0.2:7400", isSelf: false, linkUp: false, peers: 5, relayAllocations: 0, heartbeatAgeMillis: 900),
        ], linked: 0, databaseUnavailable: "connection refused"))

    func metrics() async -> [UInt8] { Array("# TYPE x counter\nx_total 1\n".utf8) }
    func status() async -> SupernodeStatus { Self.sample }
    func requestAnswered(method: String, route: String, status: Int, took: Duration) {
        lock.withLock { requests.append("\(method) \(route) \(status)") }
    }
}

@Suite("Management API: GET /metrics and GET /status")
struct SupernodeReportingTests {
    func withReporter(_ reporter: FakeReporter?, metricsNeedToken: Bool = true,
                      _ body: @escaping @Sendable (TestAPI) async throws -> Void) async throws {
        try await withTemporaryStore { store in
            var configuration = IndexAdminConfiguration(port: 0, token: testToken, store: store)
            configuration.reporter = reporter
            configuration.metricsNeedToken = metricsNeedToken
            try await IndexAdminServer(configuration: configuration).application().test(.router) { client in
                try await body(TestAPI(client: client, store: store))
            }
        }
    }

    @Test("/metrics is Prometheus text behind the token; /status is the reporter's status; requests are reported by route pattern")
    func served() async throws {
        let reporter = FakeReporter()
        try await withReporter(reporter) { api in
            #expect(try await api.call(.get, "/metrics", token: nil).status == 401)
            let metrics = try await api.get("/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.headers[.contentType] == PrometheusExposition.contentType)
            #expect(metrics.text.contains("x_total 1"))
            #expect(try await api.call(.get, "/status", token: nil).status == 401)
            let status = try await api.get("/status")
            #expect(status.status == 200)
            #expect(try IndexAPIJSON.decoder.decode(SupernodeStatus.self, from: status.body) == FakeReporter.sample)
            _ = try await api.get("/v1/users/nobody")
        }
        let answered = reporter.answered
        #expect(answered.contains("GET /metrics 401"))
        #expect(answered.contains("GET /metrics 200"))
        #expect(answered.contains("GET /status 200"))
        #expect(answered.contains("GET /v1/users/{name} 404"), "\(answered)")
    }

    @Test("--metrics-without-token: /metrics answers without the token, /status still needs it")
    func openMetrics() async throws {
        try await withReporter(FakeReporter(), metricsNeedToken: false) { api in
            let metrics = try await api.call(.get, "/metrics", token: nil)
            let status = try await api.call(.get, "/status", token: nil)
            #expect(metrics.status == 200 && status.status == 401)
        }
    }

    @Test("without a supernode to report on, both answer 503 unavailable")
    func noReporter() async throws {
        try await withReporter(nil) { api in
            for path in ["/metrics", "/status"] {
                let reply = try await api.get(path)
                #expect(reply.status == 503)
                #expect(reply.errorCode == "unavailable")
            }
        }
    }

    @Test("the status for people names every service, the network and its troubles")
    func text() {
        let text = FakeReporter.sample.text
        #expect(text.contains("up 1h 2m"))
        #expect(text.contains("2 registered, 3 sessions, 5 on other supernodes"))
        #expect(text.contains("7 messages (6 delivered, 1 offline, 0 timed out)"))
        #expect(text.contains("1 traversals: 1 direct, 0 relayed, 0 failed (lan 1)"))
        #expect(text.contains("2.5 MB forwarded, 1.2 KB/s"))
        #expect(text.contains("STUN        not running"))
        #expect(text.contains("INDEX       /data/index.sqlite"))
        #expect(text.contains("membership database UNAVAILABLE: connection refused"))
        #expect(text.contains("peerway://b@10.0.0.2:7400  LINK DOWN  5 peers"))
        #expect(text.contains("peerway://a@10.0.0.1:7400  this one"))
    }

    @Test("peerway status finds the API and token in the data directory; typed errors say what is missing")
    func query() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peerway-status-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let query = SupernodeStatusQuery(dataDirectory: directory)
        #expect(throws: SupernodeStatusError.noToken(path: directory + "/admin-token")) { try query.client(environment: [:]) }
        #expect(try query.client(environment: [AdminToken.environmentVariable: "from-the-environment"]).baseURL.absoluteString
            == "http://127.0.0.1:7480")
        let token = try AdminToken.loadOrCreate(directory: directory)
        try "http://127.0.0.1:9999\n".write(toFile: directory + "/admin-url", atomically: true, encoding: .utf8)
        #expect(try query.client(environment: [:]).baseURL.absoluteString == "http://127.0.0.1:9999")
        #expect(try query.client(environment: [:]).token == token.value)
        let given = SupernodeStatusQuery(adminURL: "http://[::1]:7480", adminToken: "given-token-0123456789", dataDirectory: directory)
        #expect(try given.client(environment: [:]).baseURL.absoluteString == "http://[::1]:7480")
        #expect(throws: SupernodeStatusError.request(.invalidURL("ftp://x"))) {
            try SupernodeStatusQuery(adminURL: "ftp://x", adminToken: "t", dataDirectory: directory).client(environment: [:])
        }
    }
}
