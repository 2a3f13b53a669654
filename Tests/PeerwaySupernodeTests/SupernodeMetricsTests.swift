import Foundation
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing
@testable import PeerwaySupernode

@Suite("Supernode metrics: catalog, scrape-time counters, events")
struct SupernodeMetricsTests {
    static func text(_ metrics: SupernodeMetrics) -> String { String(decoding: metrics.exposition(), as: UTF8.self) }

    /// The sample lines of `name` (exactly that name, with or without labels).
    static func samples(_ text: String, _ name: String) -> [String] {
        text.split(separator: "\n").map(String.init).filter { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
    }

    @Test("every family follows Prometheus' naming conventions and is named once")
    func catalogConventions() {
        var names = Set<String>()
        for family in SupernodeMetrics.catalog {
            #expect(names.insert(family.name).inserted, "\(family.name) twice")
            #expect(family.name.hasPrefix("peerway_"), "\(family.name)")
            #expect(family.name.allSatisfy { $0.isLowercase || $0 == "_" }, "\(family.name)")
            #expect(!family.help.isEmpty)
            switch family.kind {
            case .counter: #expect(family.name.hasSuffix("_total"), "\(family.name)")
            case .gauge: #expect(!family.name.hasSuffix("_total"), "\(family.name)")
            case .histogram: #expect(family.name.hasSuffix("_seconds"), "\(family.name)")
            }
            // No peer or address labels: each takes a bounded set of values.
            let bounded: Set = ["transport", "reason", "outcome", "direction", "path", "method", "kind", "operation", "route", "code", "member"]
            #expect(Set(family.labels).isSubset(of: bounded), "\(family.name): \(family.labels)")
        }
        // A counter's family name (without _total) must not be another family's name.
        for family in SupernodeMetrics.catalog where family.kind == .counter {
            #expect(!names.contains(String(family.name.dropLast("_total".count))), "\(family.name) collides")
        }
    }

    @Test("a service's running total advances its counter by the difference; a total that goes back counts anew")
    func scrapeCounters() {
        let metrics = SupernodeMetrics()
        _ = metrics.scrape { $0.counter("peerway_checkpoint_keepalives_total", 5) }
        #expect(Self.samples(Self.text(metrics), "peerway_checkpoint_keepalives_total") == ["peerway_checkpoint_keepalives_total 5"])
        _ = metrics.scrape { $0.counter("peerway_checkpoint_keepalives_total", 8) }
        #expect(Self.samples(Self.text(metrics), "peerway_checkpoint_keepalives_total") == ["peerway_checkpoint_keepalives_total 8"])
        _ = metrics.scrape { $0.counter("peerway_checkpoint_keepalives_total", 8) }
        _ = metrics.scrape { $0.counter("peerway_checkpoint_keepalives_total", 2) }
        #expect(Self.samples(Self.text(metrics), "peerway_checkpoint_keepalives_total") == ["peerway_checkpoint_keepalives_total 10"])
        #expect(Self.text(metrics).contains("# TYPE peerway_checkpoint_keepalives_total counter"))
        #expect(Self.text(metrics).contains("# HELP peerway_checkpoint_keepalives_total Keepalives answered."))
    }

    @Test("a member's series go when the member leaves the network")
    func transientSeries() {
        let metrics = SupernodeMetrics()
        _ = metrics.scrape { m in
            m.gauge("peerway_cluster_member_link_up", [("member", "AAAA")], 1, transient: true)
            m.gauge("peerway_cluster_member_link_up", [("member", "BBBB")], 0, transient: true)
            m.gauge("peerway_cluster_members", 3)
        }
        #expect(Self.samples(Self.text(metrics), "peerway_cluster_member_link_up").count == 2)
        _ = metrics.scrape { m in
            m.gauge("peerway_cluster_member_link_up", [("member", "AAAA")], 1, transient: true)
            m.gauge("peerway_cluster_members", 2)
        }
        #expect(Self.samples(Self.text(metrics), "peerway_cluster_member_link_up") == [#"peerway_cluster_member_link_up{member="AAAA"} 1.0"#])
        #expect(Self.samples(Self.text(metrics), "peerway_cluster_members") == ["peerway_cluster_members 2.0"])
    }

    @Test("traversal reports and INDEX operations are counted and timed, with bounded labels")
    func events() {
        let metrics = SupernodeMetrics()
        let a = PeerID(high: 1, low: 2), b = PeerID(high: 3, low: 4)
        metrics.recordTraversal(TraversalResult(initiator: a, acceptor: b, requestID: 1, role: .initiator, path: .direct,
                                                method: .manyPort, millis: 1_500))
        metrics.recordTraversal(TraversalResult(initiator: a, acceptor: b, requestID: 2, role: .initiator, path: .failed,
                                                method: .punch, millis: 20_000))
        metrics.recordIndexOperation(.changePassword, took: .milliseconds(3), succeeded: false)
        let text = Self.text(metrics)
        #expect(text.contains(#"peerway_handshake_traversals_total{path="direct",method="many-port"} 1"#), "\(text)")
        #expect(text.contains(#"peerway_handshake_tunnel_setup_seconds_bucket{path="direct",le="2.0"} 1"#), "\(text)")
        #expect(text.contains(#"peerway_handshake_tunnel_setup_seconds_bucket{path="direct",le="1.0"} 0"#), "\(text)")
        #expect(text.contains(#"peerway_handshake_tunnel_setup_seconds_sum{path="direct"} 1.5"#), "\(text)")
        #expect(text.contains(#"peerway_index_operations_total{operation="change_password",outcome="error"} 1"#), "\(text)")
        #expect(metrics.tally == .init(traversalsByPath: ["direct": 1, "failed": 1], traversalsByMethod: ["many-port": 1],
                                       indexOperations: 1, indexFailures: 1))
    }

    @Test("the rate limiter counts a source going over its limit once per episode")
    func limitedSources() {
        var limiter = SourceRateLimiter(ratePerSecond: 10, burst: 2)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let ip = STUNAddress.IP.v4(0x0A00_0001)
        var admitted: [Bool] = []
        for _ in 0..<6 { admitted.append(limiter.admit(ip, now: t0)) }
        #expect(admitted == [true, true, false, false, false, false])
        #expect(limiter.limitedSources == 1)
        let again = limiter.admit(ip, now: t0 + .milliseconds(100))
        let over = limiter.admit(ip, now: t0 + .milliseconds(100))
        #expect(again && !over)
        #expect(limiter.limitedSources == 2)
        _ = limiter.admit(.v4(0x0A00_0002), now: t0)
        #expect(limiter.limitedSources == 2)
    }
}
