#if canImport(Glibc)
import Glibc
#endif
import CPeerwayLinux
import Foundation

/*
 The phases of `peerway bench cluster`, on the load generator's thread (CheckpointBenchLoad.swift:
 one thread, epoll over its sockets; socket s registers its peers with supernode s % S):

   registering   every peer registers with its supernode (progress every few seconds)
   settling      a few seconds for the last rows to reach every supernode and for the
                 heartbeats to report each supernode's count to the membership table
   keepalives    `duration` seconds of keepalives only: CPU of each process, PostgreSQL's cost
   lookups       every supernode is asked about a sample of the peers of the whole network
                 (all of them up to --lookups): each must be online
   searches      every supernode is searched, one query at a time (latency): `name=peer-K` must
                 find peer K wherever it is registered; `name^=peer-K` (a prefix) any peers
   messages      same-node and cross-node pairs, paced (latency), then unpaced (throughput)
                 (ClusterBenchPhases.swift)
   failover      real client peers on supernode 0, kill -9 of supernode 0 (ClusterBenchPhases.swift)

 Keepalives go on through every phase, as they would in a real network. Each phase is bounded in
 time and the run by an overall deadline.
*/

/// What `peerway bench cluster` does, from its options.
struct ClusterBenchPlan {
    var registerTimeout = 900.0
    /// Seconds after registration for replication and heartbeats.
    var settleSeconds = 4.0
    /// Seconds of the keepalive-only phase.
    var duration = 20.0
    /// Lookups asked of each supernode (capped at the peers), and how many at once.
    var lookups = 20_000
    var lookupWindow = 64
    /// Searches asked of each supernode, one at a time per supernode.
    var searches = 2_000
    var messagePairs = 1_000
    /// Messages per second of the paced (latency) phases.
    var messageRate = 1_000
    var messageDuration = 10.0
    var failoverPeers = 1_000
    var failoverKeepalive: UInt16 = 15
    /// Failover peers are given every supernode's address (else only the victim's: they learn the rest).
    var failoverGiveAll = false
    /// The victim's load peers re-register on the survivors too (ClusterBenchFailoverPhase.swift).
    var failoverLoad = true
    /// Victim's load peers looked up on each survivor after the failover.
    var victimLookups = 2_000
    /// Absolute deadline (monotonicNow nanoseconds).
    var deadline: UInt64 = .max
}

/// Peers asking questions of one supernode (lookups and searches).
private let askersPerNode = 256

extension CheckpointLoad {
    /// Runs the load's loop (registrations, keepalives, messages, queries) until `done` says so,
    /// `seconds` pass or the overall deadline comes; true when `done` said so.
    mutating func pump(_ label: String, seconds: Double, meter: ClusterBenchMeter, deadline: UInt64,
                       pacedSince: UInt64 = 0, until done: (inout CheckpointLoad, UInt64) -> Bool) -> Bool {
        let start = monotonicNow()
        let end = min(deadline, start &+ UInt64(max(0, seconds) * 1e9))
        var maintenance = start
        var tags = [UInt32](repeating: 0, count: 256)
        while true {
            let now = monotonicNow()
            if done(&self, now) { return true }
            if now >= end { return false }
            startHandshakes(now: now)
            if phase == .messaging, c.messageRate > 0 { paceMessages(now: now, since: pacedSince, sentBefore: 0) }
            sweepKeepalives(now: now)
            if now >= maintenance {
                retransmitHandshakes(now: now)
                if pairs > 0, phase == .messaging || messageSentAt.contains(where: { $0 != 0 }) { maintainMessages(now: now) }
                pumpQueries(now: now)
                maintenance = now + 100_000_000
                meter.tick(now: now, phase: label, registered: registered, total: n, acks: keepaliveAcks, delivered: messagesDelivered,
                           queries: queries.stats.reduce(0) { $0 + $1.latencies.count })
            }
            flush()
            let ready = tags.withUnsafeMutableBufferPointer { cpeerway_epoll_wait_tags(epfd, $0.baseAddress, Int32($0.count), 1) }
            if ready > 0 {
                let received = monotonicNow()
                for i in 0..<Int(ready) { receive(Int(tags[i]), now: received) }
                flush()
            }
        }
    }

    /// Up to `count` registered peers of supernode `target`, taken from its sockets in turn
    /// (consecutive peers of the list are on different sockets).
    func peers(of target: Int, count: Int) -> [Int] {
        let sockets = (0..<socketCount).filter { socketTarget[$0] == target }
        var out: [Int] = []
        var k = 0
        while out.count < count && k < block {
            for s in sockets {
                let p = s * block + k
                if p < n, peerPhase[p] == 2 { out.append(p) }
                if out.count == count { break }
            }
            k += 1
        }
        return out
    }

    /// Runs every phase and returns the figures (the flow at the top of this file).
    mutating func runCluster(_ plan: ClusterBenchPlan, meter: ClusterBenchMeter) -> ClusterBenchResult {
        var r = ClusterBenchResult()
        r.supernodes = targets.count
        r.peers = n
        r.sockets = socketCount
        r.keepaliveSeconds = c.keepaliveSeconds
        let begin = monotonicNow()
        keepaliveStart = begin
        phase = .registering

        // Registering.
        var mark = meter.mark()
        meter.note("registering \(n) peers over \(targets.count) supernodes (\(socketCount) sockets, at most \(min(c.handshakesInFlight, socketCount)) registrations in flight), keepalive every \(c.keepaliveSeconds) s")
        let allRegistered = pump("registering", seconds: plan.registerTimeout, meter: meter, deadline: plan.deadline) { l, _ in
            l.registered == l.n || (l.activeHandshakes == 0 && l.idleSockets.isEmpty)
        }
        let registeredAt = registered == n ? lastRegistrationAt : monotonicNow()
        r.registered = registered
        r.registerSeconds = Double(registeredAt &- begin) / 1e9
        r.registrationsPerSecond = r.registerSeconds > 0 ? Double(registered) / r.registerSeconds : 0
        r.handshakeRetransmits = result.handshakeRetransmits
        r.registerRetransmits = result.registerRetransmits
        r.phases.append(meter.cost("registration", since: mark, operations: registered))
        let memory = meter.memory()
        meter.note(String(format: "registered %d peers in %.1f s (%.0f/s)", registered, r.registerSeconds, r.registrationsPerSecond))
        if !allRegistered {
            r.stoppedEarly = "\(n - registered) peers did not register within \(plan.registerTimeout) s (see the anomalies)"
        }

        // Settling, then the keepalive-only phase.
        phase = .steady
        _ = pump("settling", seconds: plan.settleSeconds, meter: meter, deadline: plan.deadline) { _, _ in false }
        let heartbeats = meter.database.memberPeers()
        r.nodes = meter.nodes.nodes.map { node in
            var f = ClusterBenchNodeFigures()
            f.index = node.index
            f.address = node.address?.description ?? ""
            f.pid = node.pid
            f.registeredAtHeartbeat = heartbeats[f.address] ?? -1
            f.rssAfterRegistrationMiB = memory[node.index].rss
            return f
        }
        mark = meter.mark()
        let acksBefore = keepaliveAcks
        recordKeepaliveLatency = true
        keepaliveLatencies = []
        meter.note("keepalives only for \(plan.duration) s")
        _ = pump("keepalives", seconds: plan.duration, meter: meter, deadline: plan.deadline) { _, _ in false }
        recordKeepaliveLatency = false
        let steady = meter.cost("keepalives", since: mark, operations: keepaliveAcks - acksBefore)
        r.phases.append(steady)
        r.keepaliveAcksPerSecond = Double(keepaliveAcks - acksBefore) / steady.seconds
        r.keepalivesExpectedPerSecond = Double(registered) / Double(c.keepaliveSeconds)
        keepaliveLatencies.sort()
        r.keepaliveP50Micros = percentile(keepaliveLatencies, 0.5)
        r.keepaliveP99Micros = percentile(keepaliveLatencies, 0.99)
        keepaliveLatencies = []

        if monotonicNow() < plan.deadline, registered > 0 { runQueries(plan, meter: meter, into: &r) }
        if monotonicNow() < plan.deadline, registered > 1 { runMessages(plan, meter: meter, into: &r) }
        if monotonicNow() < plan.deadline, plan.failoverPeers > 0, targets.count > 1 { runFailover(plan, meter: meter, into: &r) }
        if monotonicNow() >= plan.deadline, r.stoppedEarly == nil { r.stoppedEarly = "the overall deadline came before every phase ran" }

        // Each phase's own cost: the supernodes' CPU above the keepalive-only phase's, while all
        // of them are alive (the failover phase's baseline is another).
        if let base = r.phases.first(where: { $0.name == "keepalives" }) {
            let baseline = base.nodeCPUPercent.filter { $0 >= 0 }.reduce(0, +)
            for i in r.phases.indices where !["registration", "keepalives", "failover"].contains(r.phases[i].name) {
                let p = r.phases[i]
                guard p.operations > 0, !p.nodeCPUPercent.contains(where: { $0 < 0 }) else { continue }
                let above = max(0, p.nodeCPUPercent.reduce(0, +) - baseline) / 100 * p.seconds
                r.phases[i].nodeCPUMicrosPerOperationAboveKeepalives = above * 1e6 / Double(p.operations)
            }
            for i in r.messages.indices {
                let name = "msg \(r.messages[i].kind.prefix(5))\(r.messages[i].rate > 0 ? " paced" : "")"
                if let p = r.phases.first(where: { $0.name == name }) {
                    r.messages[i].nodeCPUMicrosPerMessageAboveKeepalives = p.nodeCPUMicrosPerOperationAboveKeepalives
                }
            }
        }

        let end = meter.memory()
        for i in r.nodes.indices {
            r.nodes[i].rssAtEndMiB = end[i].rss
            r.nodes[i].hwmMiB = end[i].hwm
        }
        r.errors = result.errors
        r.keepalivesUnanswered = result.keepalivesUnanswered
        r.sendFailures = result.sendFailures
        r.authenticationFailures = result.authenticationFailures
        r.replays = result.replays
        r.unknownSessionPackets = result.unknownSessionPackets
        r.sessionUnknown = result.sessionUnknown
        return r
    }

    /// Lookups of peers anywhere in the network and searches, asked of every supernode.
    private mutating func runQueries(_ plan: ClusterBenchPlan, meter: ClusterBenchMeter, into r: inout ClusterBenchResult) {
        let nodes = targets.count
        let askers = (0..<nodes).map { peers(of: $0, count: askersPerNode) }
        guard askers.allSatisfy({ !$0.isEmpty }) else { return }
        let total = n
        // A permutation of the peers: i -> (i * stride + offset) mod n, stride coprime with n.
        var stride = 7919
        while gcd(stride, total) != 1 { stride += 2 }
        let lookups = min(plan.lookups, total)
        if lookups > 0 {
            meter.note("lookups: \(lookups) peers of the whole network asked of each supernode, \(plan.lookupWindow) at once per supernode")
            let mark = meter.mark()
            let now = monotonicNow()
            let phases = peerPhase
            startQueries(planned: Array(repeating: lookups, count: nodes), askers: askers, window: plan.lookupWindow, now: now) { g, i in
                var p = (i * stride + g * 104_729) % total
                // Peers that never registered are skipped (the next registered one is asked for).
                var tries = 0
                while phases[p] != 2 && tries < total { p = (p + 1) % total; tries += 1 }
                return .lookup(peer: p)
            }
            _ = pump("lookups", seconds: 600, meter: meter, deadline: plan.deadline) { l, _ in l.queries.isDone }
            let stats = takeQueryStats(now: monotonicNow())
            r.lookups = stats.enumerated().map { ClusterBenchQueryFigures(kind: "lookups", node: $0.offset, $0.element) }
            r.phases.append(meter.cost("lookups", since: mark, operations: stats.reduce(0) { $0 + $1.latencies.count }))
        }
        if plan.searches > 0 {
            // Two groups per supernode, each with one query at a time: exact names, then prefixes.
            meter.note("searches: \(plan.searches) asked of each supernode, one name=peer-K and one name^=PREFIX (a page of 100) at a time per supernode")
            let mark = meter.mark()
            let now = monotonicNow()
            let phases = peerPhase
            let each = (plan.searches + 1) / 2
            startQueries(planned: Array(repeating: each, count: 2 * nodes), askers: (0..<(2 * nodes)).map { askers[$0 / 2] },
                         window: 1, now: now) { g, i in
                var p = (i * stride + g * 15_485_863 + 17) % total
                var tries = 0
                while phases[p] != 2 && tries < total { p = (p + 1) % total; tries += 1 }
                if g % 2 == 0 { return .search(query: "name=peer-\(p)", limit: 10, expect: p) }
                // A prefix of a peer's name: many matches, one page of them.
                let digits = String(p)
                return .search(query: "name^=peer-\(digits.prefix(max(1, digits.count - 2)))", limit: 100, expect: nil)
            }
            _ = pump("searches", seconds: 600, meter: meter, deadline: plan.deadline) { l, _ in l.queries.isDone }
            let stats = takeQueryStats(now: monotonicNow())
            r.searches = stats.enumerated().map {
                ClusterBenchQueryFigures(kind: $0.offset % 2 == 0 ? "search name=" : "search name^=", node: $0.offset / 2, $0.element)
            }
            r.phases.append(meter.cost("searches", since: mark, operations: stats.reduce(0) { $0 + $1.latencies.count }))
        }
    }
}

/// Greatest common divisor.
func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
