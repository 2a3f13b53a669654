import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Peerway
import PeerwayCheckpoint
import PeerwayIndexAPI
import PeerwaySupernode
import Testing

/// The operator's view of a real supernode on loopback with real peers: `GET /metrics` read by
/// Prometheus' own parser (prometheus_client), `GET /status`, and `peerway status`.
@Suite("Operators' view: GET /metrics (Prometheus parser), GET /status, peerway status", .serialized)
struct SupernodeMetricsTests {
    /// A supernode with every service, its INDEX and management API, keeping its state (key,
    /// admin token, admin-url) in `directory`.
    static func supernode(_ directory: String, metricsNeedToken: Bool = true) async throws -> Supernode {
        try await Supernode.start(SupernodeConfiguration(
            dataDirectory: directory, index: .sqlite(directory: directory, hasher: .testing),
            admin: .init(metricsNeedToken: metricsNeedToken)))
    }

    static func temporaryDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("peerway-metrics-\(UUID().uuidString)").path
    }

    /// The management API's client, with the token the supernode created in `directory`.
    static func client(_ supernode: Supernode, _ directory: String) throws -> IndexAdminClient {
        let token = try #require(try AdminToken.load(path: directory + "/" + AdminToken.fileName))
        return try IndexAdminClient(url: try #require(supernode.adminURL), token: token.value)
    }

    /// A GET without any token: its status code.
    static func statusWithoutToken(_ url: String) async throws -> Int {
        let (_, response) = try await URLSession.shared.data(from: try #require(URL(string: url)))
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }

    @Test("two peers message, watch, sign up and tunnel (direct and relayed); /metrics parses and says so", .timeLimit(.minutes(3)))
    func metricsOfARunningSupernode() async throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let supernode = try await Self.supernode(directory)
        let api = try Self.client(supernode, directory)
        let adminURL = try #require(supernode.adminURL)
        #expect(try await Self.statusWithoutToken(adminURL + "/metrics") == 401, "the token guards /metrics by default")

        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: TunnelPeerTests.peerOptions(supernode))
        let b = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: TunnelPeerTests.peerOptions(supernode))
        let aLog = EventLog(a), bLog = EventLog(b)
        _ = try await a.watch([b.id])
        #expect(try await a.send("hello", to: b.id) == .delivered)
        #expect(try await a.send("anyone?", to: PeerIdentity().peerID) == .offline)
        _ = try await a.signup(username: "alice", password: "correct horse")
        await #expect(throws: PeerError.self) { try await b.signup(username: "alice", password: "battery staple") }

        // A direct tunnel a -> b (lan on one host), and a relayed one b -> a.
        let accepting = TunnelPeerTests.acceptAndEcho(b, bLog)
        let direct = try await a.connect(to: b.id, transport: .udp, options: TunnelPeerTests.loopbackTunnels)
        let directTheirs = await accepting.value
        let relayOnly = TunnelOptions(encrypted: false, bindHost: "127.0.0.1", directPaths: false)
        let acceptingRelayed = TunnelPeerTests.acceptAndEcho(a, aLog, options: relayOnly)
        let relayed = try await b.connect(to: a.id, transport: .udp, options: relayOnly)
        let relayedTheirs = await acceptingRelayed.value
        #expect(direct.path == .direct && relayed.path == .relayed)
        let payload = Array(repeating: UInt8(7), count: 500)
        #expect(TunnelPeerTests.roundTrip(relayed.fileDescriptor, payload) == payload)

        // Traversal results are reported in the background: wait until both are in. (One scrape
        // first, so that the last one sees it counted.)
        _ = try await api.send("GET", ["metrics"])
        var parsed: PrometheusTextParser.Parsed?
        var text = ""
        for _ in 0..<100 {
            text = String(decoding: try await api.send("GET", ["metrics"]), as: UTF8.self)
            guard let p = try PrometheusTextParser.parse(text) else { break }
            parsed = p
            let reported = (p.value("peerway_handshake_traversals_total", ["path": "direct", "method": "lan"]) ?? 0)
                + (p.value("peerway_handshake_traversals_total", ["path": "relayed", "method": "relay"]) ?? 0)
            if reported == 2 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        print("GET /metrics: \(text.utf8.count) bytes, \(text.split(separator: "\n").count) lines")

        if let m = parsed {
            // Every family of the catalog but the network's (this supernode is alone), with its type and HELP.
            for family in SupernodeMetrics.catalog where !family.name.hasPrefix("peerway_cluster_") {
                let parsedName = family.kind == .counter ? String(family.name.dropLast("_total".count)) : family.name
                let found = m.families.first { $0.name == parsedName }
                #expect(found?.type == family.kind.rawValue, "\(family.name): \(String(describing: found?.type))")
                #expect(found?.help == family.help, "\(family.name)")
            }
            #expect(!m.families.contains { $0.name.hasPrefix("peerway_cluster_") })
            // No label names a peer: label names are a small fixed set.
            let labelNames = Set(m.families.flatMap(\.samples).flatMap(\.labels.keys))
            #expect(labelNames.isSubset(of: ["transport", "reason", "outcome", "direction", "path", "method", "kind", "operation",
                                              "route", "code", "le"]), "\(labelNames)")

            #expect(m.value("peerway_checkpoint_peers_registered") == 2)
            #expect(m.value("peerway_checkpoint_sessions") == 2)
            #expect(m.value("peerway_checkpoint_registrations_total") == 2)
            #expect((m.value("peerway_checkpoint_keepalives_total") ?? -1) >= 0)
            #expect(m.value("peerway_checkpoint_messages_total", ["outcome": "delivered"]) == 1)
            #expect(m.value("peerway_checkpoint_messages_total", ["outcome": "offline"]) == 1)
            #expect(m.value("peerway_checkpoint_messages_total", ["outcome": "timed_out"]) == 0)
            #expect(m.value("peerway_checkpoint_watchers") == 1)
            #expect(m.value("peerway_checkpoint_watched_peers") == 1)
            #expect(m.value("peerway_checkpoint_dropped_total", ["reason": "authentication"]) == 0)

            #expect(m.value("peerway_index_operations_total", ["operation": "signup", "outcome": "ok"]) == 1)
            #expect(m.value("peerway_index_operations_total", ["operation": "signup", "outcome": "error"]) == 1)
            #expect(m.value("peerway_index_operation_duration_seconds_count", ["operation": "signup"]) == 2)
            #expect((m.value("peerway_index_operation_duration_seconds_sum", ["operation": "signup"]) ?? 0) > 0)

            #expect(m.value("peerway_handshake_traversals_total", ["path": "direct", "method": "lan"]) == 1)
            #expect(m.value("peerway_handshake_traversals_total", ["path": "relayed", "method": "relay"]) == 1)
            #expect(m.value("peerway_handshake_plans_total") == 2)
            let setup = try #require(m.value("peerway_handshake_tunnel_setup_seconds_sum", ["path": "direct"]))
            #expect(setup > 0 && setup < 20, "time to tunnel \(setup) s")
            #expect(m.value("peerway_handshake_tunnel_setup_seconds_count", ["path": "direct"]) == 1)
            #expect(m.value("peerway_handshake_tunnel_setup_seconds_bucket", ["path": "direct", "le": "+Inf"]) == 1)

            // The relay carries every tunnel's first packets (the direct one moved off it).
            #expect((m.value("peerway_relay_allocations_created_total", ["transport": "udp"]) ?? 0) >= 1)
            #expect((m.value("peerway_relay_allocations", ["transport": "udp"]) ?? 0) >= 1)
            #expect((m.value("peerway_relay_forwarded_bytes_total", ["transport": "udp"]) ?? 0) >= 1000)
            #expect((m.value("peerway_stun_answers_total", ["kind": "success"]) ?? 0) > 0, "both peers measured their NAT")
            #expect(m.value("peerway_stun_dropped_total", ["reason": "rate_limited"]) == 0)
            let started = try #require(m.value("peerway_supernode_start_time_seconds"))
            #expect(abs(started - Date().timeIntervalSince1970) < 300)
            // The scrapes before this one were counted by route and status.
            #expect((m.value("peerway_admin_requests_total", ["method": "GET", "route": "/metrics", "code": "200"]) ?? 0) >= 1)
            #expect(m.value("peerway_admin_requests_total", ["method": "GET", "route": "/metrics", "code": "401"]) == 1)
        }

        // GET /status agrees.
        let status = try await api.call(SupernodeStatus.self, "GET", ["status"])
        #expect(status.address == supernode.address.description)
        #expect(status.checkpoint.peersRegistered == 2)
        #expect(status.checkpoint.messagesDelivered == 1 && status.checkpoint.messagesOffline == 1)
        #expect(status.handshake.traversals == ["direct": 1, "relayed": 1])
        #expect(status.handshake.methods == ["lan": 1, "relay": 1])
        #expect(status.index?.operations == 2 && status.index?.failedOperations == 1)
        #expect((status.relay?.allocations ?? 0) >= 1)
        #expect(status.stun?.primary == supernode.stunLayout?.primary.description)
        #expect(status.cluster == nil)

        direct.close()
        directTheirs?.close()
        relayed.close()
        relayedTheirs?.close()
        await a.stop()
        await b.stop()
        await supernode.stop()
    }

    @Test("peerway status: the local supernode found through its data directory, --json one object; a wrong token exits 1", .timeLimit(.minutes(2)))
    func statusCommand() async throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let supernode = try await Self.supernode(directory)
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: TunnelPeerTests.peerOptions(supernode))
        let b = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: TunnelPeerTests.peerOptions(supernode))

        let json = try Tools.run(Tools.peerway, ["status", "--data-dir", directory, "--json"])
        #expect(json.status == 0, "\(json.output)")
        let lines = json.output.split(separator: "\n")
        #expect(lines.count == 1, "one JSON object on one line: \(json.output)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
        #expect(object["address"] as? String == supernode.address.description)
        let checkpoint = try #require(object["checkpoint"] as? [String: Any])
        #expect(checkpoint["peersRegistered"] as? Int == 2)
        #expect(checkpoint["registrations"] as? Int == 2)
        #expect((object["relay"] as? [String: Any])?["allocations"] as? Int == 0)
        #expect(object["stun"] is [String: Any] && object["index"] is [String: Any] && object["cluster"] == nil)
        #expect(try IndexAPIJSON.decoder.decode(SupernodeStatus.self, from: Data(json.output.utf8)).checkpoint.peersRegistered == 2)

        let adminURL = try #require(supernode.adminURL)
        let token = try #require(try AdminToken.load(path: directory + "/" + AdminToken.fileName))
        let text = try Tools.run(Tools.peerway, ["status", "--admin", adminURL, "--admin-token", token.value,
                                                 "--data-dir", directory + "/nothing-here"])
        #expect(text.status == 0, "\(text.output)")
        #expect(text.output.contains("supernode \(supernode.address)"))
        #expect(text.output.contains("2 registered"), "\(text.output)")
        #expect(text.output.contains("NETWORK     alone"))

        let refused = try Tools.run(Tools.peerway, ["status", "--admin", adminURL, "--admin-token", "not-the-admin-token"])
        #expect(refused.status == 1)
        #expect(refused.output.contains("401 unauthorized"), "\(refused.output)")
        let nobody = try Tools.run(Tools.peerway, ["status", "--data-dir", directory + "/nothing-here"])
        #expect(nobody.status == 1)
        #expect(nobody.output.contains("no admin token"), "\(nobody.output)")

        await a.stop()
        await b.stop()
        await supernode.stop()
    }

    @Test("--metrics-without-token: /metrics for anyone who reaches the listener, /status still behind the token", .timeLimit(.minutes(1)))
    func metricsWithoutToken() async throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let supernode = try await Self.supernode(directory, metricsNeedToken: false)
        let adminURL = try #require(supernode.adminURL)
        #expect(try await Self.statusWithoutToken(adminURL + "/metrics") == 200)
        #expect(try await Self.statusWithoutToken(adminURL + "/status") == 401)
        await supernode.stop()
    }
}
