import Foundation
import PeerwayCheckpoint
import PeerwayIndexAPI
import PeerwayRelay

/// What one look at a supernode's services sees: each service's published figures, read once
/// (a lock each; nothing waits on a service's thread).
struct SupernodeSnapshot: Sendable {
    var checkpoint: CheckpointStatistics
    var checkpointUDP: String
    var checkpointTCP: String?
    var relay: RelayStatistics?
    var relayUDP: String?
    var relayTCP: String?
    var stun: STUNServerCounters?
    var stunLayout: STUNPairLayout?
    var stunLimiter: (trackedSources: Int, limitedSources: Int, untrackedAdmissions: Int)?
    var cluster: ClusterStatus?
    var tally: SupernodeMetrics.Tally
}

/// The management API's view of a supernode (`SupernodeReporter`): `GET /metrics` and
/// `GET /status` read the services when asked, through one `SupernodeSnapshot`.
final class SupernodeReport: SupernodeReporter {
    let collector: SupernodeMetrics
    let address: SupernodeAddress
    let checkpoint: CheckpointServer
    let relay: RelayServer?
    let stun: STUNPairServer?
    let cluster: SupernodeCluster?
    /// This supernode's key as the membership table holds it (to tell itself from the others).
    let ownKey: [UInt8]
    let indexLocation: String?
    let startedAt = Date()

    init(collector: SupernodeMetrics, address: SupernodeAddress, checkpoint: CheckpointServer, relay: RelayServer?,
         stun: STUNPairServer?, cluster: SupernodeCluster?, ownKey: [UInt8], indexLocation: String?) {
        self.collector = collector
        self.address = address
        self.checkpoint = checkpoint
        self.relay = relay
        self.stun = stun
        self.cluster = cluster
        self.ownKey = ownKey
        self.indexLocation = indexLocation
    }

    func snapshot() async -> SupernodeSnapshot {
        SupernodeSnapshot(
            checkpoint: checkpoint.statistics(), checkpointUDP: checkpoint.boundAddress?.description ?? "-",
            checkpointTCP: checkpoint.boundTCPAddress?.description,
            relay: relay?.statistics(), relayUDP: relay?.udpAddress?.description, relayTCP: relay?.tcpAddress?.description,
            stun: await stun?.counters(), stunLayout: stun?.boundLayout, stunLimiter: stun?.rateLimiterFigures(),
            cluster: cluster?.status, tally: collector.tally)
    }

    // MARK: SupernodeReporter

    func metrics() async -> [UInt8] {
        let s = await snapshot()
        let started = startedAt.timeIntervalSince1970
        return collector.scrape { m in
            m.gauge("peerway_supernode_start_time_seconds", started)
            Self.checkpoint(s.checkpoint, into: &m)
            if let relay = s.relay { Self.relay(relay, into: &m) }
            if let counters = s.stun { Self.stun(counters, limiter: s.stunLimiter, into: &m) }
            if let cluster = s.cluster { Self.cluster(cluster, ownKey: ownKey, into: &m) }
        }
    }

    func status() async -> SupernodeStatus {
        let s = await snapshot()
        let c = s.checkpoint.counters, h = s.checkpoint.handshake
        var status = SupernodeStatus(
            address: address.description, startedAt: startedAt, uptimeSeconds: max(0, Int(Date().timeIntervalSince(startedAt))),
            checkpoint: .init(udp: s.checkpointUDP, tcp: s.checkpointTCP, peersRegistered: s.checkpoint.registered,
                              sessions: s.checkpoint.sessions, remotePeers: s.checkpoint.remotePeers, watchers: s.checkpoint.watchers,
                              watchedPeers: s.checkpoint.watchedPeers, registrations: c.registrations, keepalives: c.keepalives,
                              messagesDelivered: c.messagesDelivered, messagesOffline: c.messagesOffline,
                              messagesTimedOut: max(0, c.messagesFailed - c.messagesOffline),
                              dropped: c.malformed + c.authenticationFailures + c.replays + c.unknownSessions + c.rateLimited + s.checkpoint.oversize),
            handshake: .init(offers: h.offers, plans: h.planned, offerTimeouts: h.offerTimeouts,
                             traversals: s.tally.traversalsByPath, methods: s.tally.traversalsByMethod))
        if let r = s.relay {
            status.relay = .init(udp: s.relayUDP, tcp: s.relayTCP, allocations: r.udpAllocations + r.tcpAllocations,
                                 allocationsTotal: r.udp.allocations + r.tcp.allocations,
                                 forwardedBytes: r.udp.forwardedBytes + r.tcp.forwardedBytes, bytesPerSecond: max(0, r.bytesPerSecond),
                                 dropped: r.udp.waitingForPartner + r.udp.unauthenticated + r.tcp.waitingForPartner + r.tcp.unauthenticated
                                     + r.oversize + r.sendFailures)
        }
        if let counters = s.stun, let layout = s.stunLayout {
            status.stun = .init(primary: layout.primary.description, alternate: layout.alternate?.description, answered: counters.answered,
                                errors: counters.errors, rateLimited: counters.rateLimited, limitedSources: s.stunLimiter?.limitedSources ?? 0)
        }
        if let indexLocation {
            status.index = .init(location: indexLocation, operations: s.tally.indexOperations, failedOperations: s.tally.indexFailures)
        }
        if let cluster = s.cluster {
            status.cluster = .init(
                members: cluster.members.map { m in
                    .init(address: m.address, isSelf: m.key == ownKey, linkUp: m.key != ownKey && cluster.linkedKeys.contains(m.key),
                          peers: m.peers, relayAllocations: m.relayAllocations, heartbeatAgeMillis: max(0, m.heartbeatAgeMillis))
                },
                linked: cluster.linked, databaseUnavailable: cluster.unavailable)
        }
        return status
    }

    func requestAnswered(method: String, route: String, status: Int, took: Duration) {
        collector.recordRequest(method: method, route: route, status: status, took: took)
    }

    /// The HANDSHAKE's offers by NAT kind (`HandshakeCounters.offersByNAT`): the dashboard's histogram.
    func natTypes() async -> [String: Int] {
        Dictionary(uniqueKeysWithValues: checkpoint.statistics().handshake.offersByNAT.map { ($0.key.rawValue, $0.value) })
    }

    // MARK: Families read at scrape time

    static func checkpoint(_ s: CheckpointStatistics, into m: inout SupernodeMetrics.Scrape) {
        let c = s.counters, h = s.handshake
        m.gauge("peerway_checkpoint_peers_registered", Double(s.registered))
        m.gauge("peerway_checkpoint_sessions", Double(s.sessions))
        m.gauge("peerway_checkpoint_remote_peers", Double(s.remotePeers))
        m.gauge("peerway_checkpoint_watchers", Double(s.watchers))
        m.gauge("peerway_checkpoint_watched_peers", Double(s.watchedPeers))
        m.gauge("peerway_checkpoint_pending_pushes", Double(s.pendingPushes))
        m.counter("peerway_checkpoint_registrations_total", c.registrations)
        m.counter("peerway_checkpoint_registrations_ended_total", [("reason", "unregistered")], c.unregistrations)
        m.counter("peerway_checkpoint_registrations_ended_total", [("reason", "expired")], c.expirations)
        m.counter("peerway_checkpoint_keepalives_total", c.keepalives)
        m.counter("peerway_checkpoint_requests_total", c.requests)
        m.counter("peerway_checkpoint_messages_total", [("outcome", "delivered")], c.messagesDelivered)
        m.counter("peerway_checkpoint_messages_total", [("outcome", "offline")], c.messagesOffline)
        m.counter("peerway_checkpoint_messages_total", [("outcome", "timed_out")], max(0, c.messagesFailed - c.messagesOffline))
        m.counter("peerway_checkpoint_pushes_given_up_total", c.pushesGivenUp)
        m.counter("peerway_checkpoint_handshakes_total", c.handshakes)
        m.counter("peerway_checkpoint_datagrams_total", [("direction", "received")], c.received)
        m.counter("peerway_checkpoint_datagrams_total", [("direction", "sent")], c.sent)
        m.counter("peerway_checkpoint_unauthenticated_bytes_total", [("direction", "received")], c.unauthenticatedBytesIn)
        m.counter("peerway_checkpoint_unauthenticated_bytes_total", [("direction", "sent")], c.unauthenticatedBytesOut)
        for (reason, count) in [("malformed", c.malformed), ("authentication", c.authenticationFailures), ("replay", c.replays),
                                ("unknown_session", c.unknownSessions), ("rate_limited", c.rateLimited), ("oversize", s.oversize)] {
            m.counter("peerway_checkpoint_dropped_total", [("reason", reason)], count)
        }
        m.counter("peerway_checkpoint_send_failures_total", s.sendFailures)
        m.gauge("peerway_checkpoint_tcp_connections", Double(s.tcp.open))
        m.counter("peerway_checkpoint_tcp_connections_accepted_total", s.tcp.accepted)
        m.counter("peerway_handshake_offers_total", h.offers)
        m.counter("peerway_handshake_plans_total", h.planned)
        m.counter("peerway_handshake_offer_timeouts_total", h.offerTimeouts)
        m.counter("peerway_handshake_no_relay_total", h.noRelay)
    }

    static func relay(_ s: RelayStatistics, into m: inout SupernodeMetrics.Scrape) {
        for (transport, counters, allocations) in [("udp", s.udp, s.udpAllocations), ("tcp", s.tcp, s.tcpAllocations)] {
            let t = ("transport", transport)
            m.gauge("peerway_relay_allocations", [t], Double(allocations))
            m.counter("peerway_relay_allocations_created_total", [t], counters.allocations)
            for reason in RelayEnd.allCases {
                m.counter("peerway_relay_allocations_ended_total", [t, ("reason", reason.rawValue)], counters.ended[reason, default: 0])
            }
            for reason in RelayError.allCases {
                m.counter("peerway_relay_binds_refused_total", [t, ("reason", SupernodeMetrics.snakeCase(reason.rawValue))],
                          counters.refused[reason, default: 0])
            }
            m.counter("peerway_relay_forwarded_bytes_total", [t], counters.forwardedBytes)
            m.counter("peerway_relay_forwarded_datagrams_total", [t], counters.forwardedDatagrams)
            m.counter("peerway_relay_dropped_total", [t, ("reason", "waiting_for_partner")], counters.waitingForPartner)
            m.counter("peerway_relay_dropped_total", [t, ("reason", "unauthenticated")], counters.unauthenticated)
        }
        m.counter("peerway_relay_dropped_total", [("transport", "udp"), ("reason", "oversize")], s.oversize)
        m.counter("peerway_relay_dropped_total", [("transport", "udp"), ("reason", "send_failure")], s.sendFailures)
        m.gauge("peerway_relay_tcp_connections", Double(s.tcpConnections))
        m.counter("peerway_relay_tcp_connections_refused_total", [("reason", "full")], s.refusedConnections)
        m.counter("peerway_relay_tcp_connections_refused_total", [("reason", "no_bind")], s.failedTCPBinds)
    }

    static func stun(_ c: STUNServerCounters, limiter: (trackedSources: Int, limitedSources: Int, untrackedAdmissions: Int)?,
                     into m: inout SupernodeMetrics.Scrape) {
        m.counter("peerway_stun_datagrams_received_total", c.received)
        m.counter("peerway_stun_answers_total", [("kind", "success")], c.answered)
        m.counter("peerway_stun_answers_total", [("kind", "error")], c.errors)
        for (reason, count) in [("malformed", c.malformed), ("oversize", c.oversize), ("not_a_request", c.notARequest),
                                ("rate_limited", c.rateLimited), ("send_failure", c.sendFailures)] {
            m.counter("peerway_stun_dropped_total", [("reason", reason)], count)
        }
        m.counter("peerway_stun_rate_limited_sources_total", limiter?.limitedSources ?? 0)
        m.gauge("peerway_stun_rate_limit_sources", Double(limiter?.trackedSources ?? 0))
        m.counter("peerway_stun_rate_limit_untracked_total", limiter?.untrackedAdmissions ?? 0)
    }

    static func cluster(_ s: ClusterStatus, ownKey: [UInt8], into m: inout SupernodeMetrics.Scrape) {
        m.gauge("peerway_cluster_members", Double(s.members.count))
        m.gauge("peerway_cluster_links_up", Double(s.linked))
        m.gauge("peerway_cluster_database_up", s.unavailable == nil ? 1 : 0)
        for member in s.members where member.key != ownKey {
            let label = [("member", ClusterNode(key: member.key).description)]
            m.gauge("peerway_cluster_member_link_up", label, s.linkedKeys.contains(member.key) ? 1 : 0, transient: true)
            m.gauge("peerway_cluster_member_peers", label, Double(member.peers), transient: true)
            m.gauge("peerway_cluster_member_relay_allocations", label, Double(member.relayAllocations), transient: true)
            m.gauge("peerway_cluster_member_heartbeat_age_seconds", label, Double(max(0, member.heartbeatAgeMillis)) / 1000, transient: true)
        }
    }
}
