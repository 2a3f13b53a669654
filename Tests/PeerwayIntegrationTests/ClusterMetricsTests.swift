import Foundation
import Peerway
import PeerwayCheckpoint
import PeerwayIndexAPI
import PeerwaySTUN
import PeerwaySupernode
import Testing

/// A network of two supernodes on loopback (one throwaway PostgreSQL): each one's view of the
/// other in `GET /metrics` (read by prometheus_client) and `GET /status`, and what changes when
/// the other one stops.
@Suite("Operators' view of a network of supernodes: members, links, their load", .serialized, .timeLimit(.minutes(3)))
struct ClusterMetricsTests {
    static let token = try! AdminToken("cluster-metrics-token-0123456789")

    /// Supernode n on 127.0.0.(1+16n): every service, the cluster and the INDEX in PostgreSQL, its management API.
    static func node(_ n: Int, _ url: String) async throws -> Supernode {
        let host = STUNAddress(ip: .v4(0x7F00_0001 + UInt32(n) * 16), port: 0)
        let stun = STUNPairConfiguration(layout: try STUNPairLayout(primary: host, alternate: STUNAddress(ip: .v4(0x7F00_0002 + UInt32(n) * 16), port: 0)),
                                         ratePerSecond: 0, workers: 1)
        var c = SupernodeConfiguration(listen: host, stun: stun, relay: .init(udp: host, tcp: host), index: .postgres(url: url),
                                       admin: .init(token: token))
        c.cluster = ClusterConfiguration(url: url, linkListen: host)
        return try await Supernode.start(c)
    }

    /// The supernode's metrics, parsed; nil when prometheus_client is missing outside CI.
    static func metrics(_ node: Supernode) async throws -> PrometheusTextParser.Parsed? {
        let client = try IndexAdminClient(url: try #require(node.adminURL), token: token.value)
        return try PrometheusTextParser.parse(String(decoding: try await client.send("GET", ["metrics"]), as: UTF8.self))
    }

    /// Polls `node`'s metrics until `done` holds (at most `seconds`); the last ones read.
    static func waitMetrics(_ node: Supernode, seconds: Int = 30,
                            until done: (PrometheusTextParser.Parsed) -> Bool) async throws -> PrometheusTextParser.Parsed? {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var last: PrometheusTextParser.Parsed?
        repeat {
            guard let m = try await metrics(node) else { return nil }
            last = m
            if done(m) { return m }
            try await Task.sleep(for: .milliseconds(200))
        } while ContinuousClock.now < deadline
        return last
    }

    @Test("each supernode sees the other: member, link up, its peers; the other stops: link down, then gone")
    func eachNodesView() async throws {
        guard let url = try await IndexCLITests.postgres() else { return }
        let first = try await Self.node(0, url)
        let second = try await Self.node(1, url)
        let secondKey = second.address.publicKeyBytes
        let other = ["member": ClusterNode(key: secondKey).description]
        let peer = try await Peer.start(identity: PeerIdentity(), supernodes: [second.address], options: ClusterLoopbackTests.options(second))

        // The peer on the second supernode shows in the first one's view at the second's next heartbeat.
        let seen = try await Self.waitMetrics(first) {
            $0.value("peerway_cluster_member_peers", other) == 1 && $0.value("peerway_cluster_member_link_up", other) == 1
                && $0.value("peerway_checkpoint_remote_peers") == 1
        }
        if let m = seen {
            #expect(m.value("peerway_cluster_members") == 2)
            #expect(m.value("peerway_cluster_links_up") == 1)
            #expect(m.value("peerway_cluster_database_up") == 1)
            #expect(m.value("peerway_cluster_member_link_up", other) == 1)
            #expect(m.value("peerway_cluster_member_peers", other) == 1)
            #expect(m.value("peerway_cluster_member_relay_allocations", other) == 0)
            #expect((m.value("peerway_cluster_member_heartbeat_age_seconds", other) ?? -1) >= 0)
            #expect(m.value("peerway_checkpoint_remote_peers") == 1)
            #expect(m.value("peerway_checkpoint_peers_registered") == 0)
            // Only the other supernode is a member label: this one's figures are its own families.
            let members = Set(m.families.flatMap(\.samples).compactMap { $0.labels["member"] })
            #expect(members == [other["member"]!])
        }
        let client = try IndexAdminClient(url: try #require(first.adminURL), token: Self.token.value)
        let status = try await client.call(SupernodeStatus.self, "GET", ["status"])
        let cluster = try #require(status.cluster)
        #expect(cluster.members.count == 2 && cluster.linked == 1 && cluster.databaseUnavailable == nil)
        #expect(cluster.members.first { $0.isSelf }?.address == first.address.description)
        let seenOther = cluster.members.first { !$0.isSelf }
        #expect(seenOther?.address == second.address.description && seenOther?.linkUp == true)
        #expect(status.text.contains("NETWORK     2 supernodes, links up to 1 of 1 others"), "\(status.text)")

        // The second supernode stops: its series leave the first one's metrics once it has left the network.
        await peer.stop()
        await second.stop()
        let after = try await Self.waitMetrics(first) { $0.value("peerway_cluster_members") == 1 }
        if let m = after {
            #expect(m.value("peerway_cluster_members") == 1)
            #expect(m.value("peerway_cluster_links_up") == 0)
            #expect(m.value("peerway_cluster_member_link_up", other) == nil)
            #expect(m.value("peerway_cluster_member_peers", other) == nil)
        }
        await first.stop()
    }
}
