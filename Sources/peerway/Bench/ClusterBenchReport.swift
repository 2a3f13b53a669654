import Foundation

/// What one phase of `peerway bench cluster` cost each process.
struct ClusterBenchPhaseCost: Codable {
    var name = ""
    var seconds = 0.0
    /// Per supernode, percent of one core (-1: the process is gone).
    var nodeCPUPercent: [Double] = []
    var generatorCPUPercent = -1.0
    /// The PostgreSQL server's processes together (-1: unknown, e.g. a --cluster URL without --postgres-data).
    var postgresCPUPercent = -1.0
    var postgresCommitsPerSecond = -1.0
    /// Rows inserted + updated + deleted per second in the database.
    var postgresRowsWrittenPerSecond = -1.0
    var postgresRowsReadPerSecond = -1.0
    var postgresWALBytesPerSecond = -1.0
    /// What the phase did (registrations, keepalive answers, messages delivered, queries answered).
    var operations = 0
    /// CPU of all supernodes together per operation, microseconds.
    var nodeCPUMicrosPerOperation = -1.0
    /// The same, less what the supernodes spent in the keepalive-only phase (the keepalives
    /// go on underneath every phase): the operation's own cost. -1 where it does not apply.
    var nodeCPUMicrosPerOperationAboveKeepalives = -1.0
    /// The whole machine's CPU (every process, all cores: 200% on two), and what of it was
    /// neither a supernode, the generator nor PostgreSQL (other work on the machine).
    var machineCPUPercent = -1.0, otherCPUPercent = -1.0
    /// The 1-minute load average at the end of the phase.
    var loadAverage = -1.0
}

/// One supernode's figures.
struct ClusterBenchNodeFigures: Codable {
    var index = 0
    var address = ""
    var pid: Int32 = 0
    /// Registered here, as its last heartbeat reported to the membership table.
    var registeredAtHeartbeat = -1
    var rssAfterRegistrationMiB = -1.0
    var hwmMiB = -1.0
    var rssAtEndMiB = -1.0
}

/// One group of lookups or searches (asked of one supernode).
struct ClusterBenchQueryFigures: Codable {
    var kind = ""
    var node = 0
    var sent = 0, matched = 0, mismatched = 0, refused = 0, lost = 0
    var perSecond = 0.0
    var p50Micros = 0.0, p99Micros = 0.0

    init(kind: String, node: Int, _ s: CheckpointLoadQueryStats) {
        self.kind = kind
        self.node = node
        sent = s.sent
        matched = s.matched
        mismatched = s.mismatched
        refused = s.refused
        lost = s.lost
        perSecond = s.seconds > 0 ? Double(s.latencies.count) / s.seconds : 0
        p50Micros = percentile(s.latencies, 0.5)
        p99Micros = percentile(s.latencies, 0.99)
    }
}

/// One message phase: same-node or cross-node pairs, paced or not.
struct ClusterBenchMessageFigures: Codable {
    var kind = ""
    /// Messages per second overall; 0: as fast as outcomes come back (one in flight per pair).
    var rate = 0
    var pairs = 0
    var seconds = 0.0
    var sent = 0, delivered = 0, failed = 0, timedOut = 0, refused = 0
    var perSecond = 0.0
    var p50Micros = 0.0, p99Micros = 0.0
    var nodeCPUMicrosPerMessage = -1.0
    /// The same less the keepalive-only phase's CPU (see `ClusterBenchPhaseCost`).
    var nodeCPUMicrosPerMessageAboveKeepalives = -1.0
}

/// Keepalives of the surviving supernodes' peers while one supernode dies and its peers move.
struct ClusterBenchSurvivorFigures: Codable {
    var seconds = 0.0
    var keepaliveAcks = 0
    var keepaliveP50Micros = 0.0, keepaliveP99Micros = 0.0, keepaliveMaxMicros = 0.0
    var keepalivesUnanswered = 0
    /// The victim's load peers looked up on the survivors afterwards, and how many showed online
    /// (all of them when they moved, none when they did not).
    var victimPeersLookedUp = 0, victimPeersOnline = 0
    var victimPeersMoved = false
}

/// Everything `peerway bench cluster` measured.
struct ClusterBenchResult: Codable {
    var supernodes = 0
    var peers = 0
    var sockets = 0
    var keepaliveSeconds = 0
    var database = ""
    var withIndex = false
    var registered = 0
    var registerSeconds = 0.0
    var registrationsPerSecond = 0.0
    var handshakeRetransmits = 0, registerRetransmits = 0
    var keepaliveAcksPerSecond = 0.0, keepalivesExpectedPerSecond = 0.0
    var keepaliveP50Micros = 0.0, keepaliveP99Micros = 0.0
    var phases: [ClusterBenchPhaseCost] = []
    var nodes: [ClusterBenchNodeFigures] = []
    var lookups: [ClusterBenchQueryFigures] = []
    var searches: [ClusterBenchQueryFigures] = []
    var messages: [ClusterBenchMessageFigures] = []
    var failover: FailoverFigures?
    var loadFailover: ClusterBenchLoadFailoverFigures?
    var survivors: ClusterBenchSurvivorFigures?
    var errors: [String: Int] = [:]
    var keepalivesUnanswered = 0
    var sendFailures = 0, authenticationFailures = 0, replays = 0, unknownSessionPackets = 0, sessionUnknown = 0
    /// Why the run ended early, if it did.
    var stoppedEarly: String?
}

extension ClusterBenchResult {
    /// The figures as text, one block per phase.
    var text: String {
        var out: [String] = []
        func f(_ format: String, _ args: CVarArg...) -> String { String(format: format, arguments: args) }
        func cpu(_ v: Double) -> String { v >= 0 ? f("%.0f%%", v) : "n/a" }
        func rate(_ v: Double) -> String { v >= 0 ? f("%.1f", v) : "n/a" }
        out.append("")
        out.append("NETWORK of \(supernodes) supernodes on loopback, membership in \(database)\(withIndex ? " (INDEX in the same database)" : ""); \(peers) peers over \(sockets) sockets, keepalive \(keepaliveSeconds) s")
        out.append(f("registration    %d/%d in %.1f s = %.0f peers/s  (retransmits: %d hello, %d register)",
                     registered, peers, registerSeconds, registrationsPerSecond, handshakeRetransmits, registerRetransmits))
        out.append(f("keepalives      %.0f acks/s (expected %.0f/s)  p50 %.0f us  p99 %.0f us",
                     keepaliveAcksPerSecond, keepalivesExpectedPerSecond, keepaliveP50Micros, keepaliveP99Micros))
        out.append("")
        func cell(_ text: String, _ width: Int) -> String {
            text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
        }
        out.append("phase".padding(toLength: 16, withPad: " ", startingAt: 0) + cell("seconds", 8) + cell("supernode CPU (each)", 24)
                   + cell("generator", 10) + cell("PostgreSQL", 11) + cell("commits/s", 10) + cell("rows written/s", 15)
                   + cell("rows read/s", 12) + cell("WAL KiB/s", 10) + cell("operations", 11) + cell("supernode CPU/op", 17)
                   + cell("less keepalives", 16) + cell("other CPU", 10) + cell("load", 6))
        for p in phases {
            let nodes = p.nodeCPUPercent.map(cpu).joined(separator: " ")
            out.append(p.name.padding(toLength: 16, withPad: " ", startingAt: 0) + cell(f("%.1f", p.seconds), 8) + cell(nodes, 24)
                       + cell(cpu(p.generatorCPUPercent), 10) + cell(cpu(p.postgresCPUPercent), 11)
                       + cell(rate(p.postgresCommitsPerSecond), 10) + cell(rate(p.postgresRowsWrittenPerSecond), 15)
                       + cell(rate(p.postgresRowsReadPerSecond), 12)
                       + cell(p.postgresWALBytesPerSecond >= 0 ? f("%.1f", p.postgresWALBytesPerSecond / 1024) : "n/a", 10)
                       + cell("\(p.operations)", 11)
                       + cell(p.nodeCPUMicrosPerOperation >= 0 ? f("%.1f us", p.nodeCPUMicrosPerOperation) : "n/a", 17)
                       + cell(p.nodeCPUMicrosPerOperationAboveKeepalives >= 0 ? f("%.1f us", p.nodeCPUMicrosPerOperationAboveKeepalives) : "", 16)
                       + cell(cpu(p.otherCPUPercent), 10) + cell(p.loadAverage >= 0 ? f("%.1f", p.loadAverage) : "n/a", 6))
        }
        out.append("")
        for n in nodes {
            out.append(f("supernode %d     %@ (PID %d): %d registered at its last heartbeat; RSS %.0f MiB after registration, %.0f MiB at the end; VmHWM %.0f MiB",
                         n.index, n.address as NSString, n.pid, n.registeredAtHeartbeat, n.rssAfterRegistrationMiB, n.rssAtEndMiB, n.hwmMiB))
        }
        for q in lookups + searches {
            out.append(f("%-15@ asked of supernode %d: %d sent, %d as expected, %d not, %d refused, %d lost; %.0f/s  p50 %.0f us  p99 %.0f us",
                         q.kind as NSString, q.node, q.sent, q.matched, q.mismatched, q.refused, q.lost, q.perSecond, q.p50Micros, q.p99Micros))
        }
        for m in messages {
            out.append(f("messages %-10@ %@, %d pairs: %.0f delivered/s over %.0f s  p50 %.0f us  p99 %.0f us  (sent %d delivered %d failed %d timed out %d refused %d)  supernode CPU %@/message (%@ above keepalives)",
                         m.kind as NSString, (m.rate > 0 ? "\(m.rate)/s paced" : "unpaced") as NSString, m.pairs, m.perSecond, m.seconds,
                         m.p50Micros, m.p99Micros, m.sent, m.delivered, m.failed, m.timedOut, m.refused,
                         (m.nodeCPUMicrosPerMessage >= 0 ? f("%.1f us", m.nodeCPUMicrosPerMessage) : "n/a") as NSString,
                         (m.nodeCPUMicrosPerMessageAboveKeepalives >= 0 ? f("%.1f us", m.nodeCPUMicrosPerMessageAboveKeepalives) : "n/a") as NSString))
        }
        if let fo = failover {
            out.append("")
            out.append(f("failover        kill -9 of supernode 0 with %d real client peers on it (CheckpointClientMachine, keepalive %d s):",
                         fo.onVictim, fo.keepaliveSeconds))
            out.append(f("                %d/%d re-registered elsewhere; kill -> re-registered p50 %.2f s  p99 %.2f s  max %.2f s; within two keepalives (%d s): %.1f%%",
                         fo.failedOver, fo.onVictim, fo.failoverP50Millis / 1000, fo.failoverP99Millis / 1000, fo.failoverMaxMillis / 1000,
                         2 * fo.keepaliveSeconds, 100 * fo.withinTwoKeepalives))
            out.append(f("                kill -> client noticed (disconnected) p50 %.2f s  p99 %.2f s; new homes %@; handshakes %d, disconnects %d",
                         fo.detectP50Millis / 1000, fo.detectP99Millis / 1000,
                         fo.newHomes.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") as NSString,
                         fo.handshakes, fo.disconnects))
            if !fo.note.isEmpty { out.append("                " + fo.note) }
        }
        if let l = loadFailover {
            out.append(f("                the victim's %d load peers (keepalive %d s; each socket starting %.1f-%.1f s after the kill, as their clients would notice): %d re-registered on the survivors at %.0f/s; kill -> re-registered p50 %.1f s  p99 %.1f s  max %.1f s; within two keepalives (%d s): %.1f%%",
                         l.peers, l.keepaliveSeconds, l.firstStartSeconds, l.lastStartSeconds, l.reregistered, l.perSecond,
                         l.p50Millis / 1000, l.p99Millis / 1000, l.maxMillis / 1000, 2 * l.keepaliveSeconds, 100 * l.withinTwoKeepalives))
        }
        if let s = survivors {
            out.append(f("survivors       during the failover (%.0f s): %d keepalive answers, p50 %.0f us  p99 %.0f us  max %.0f us, %d unanswered; afterwards %d of %d of the victim's load peers looked up were online (%@)",
                         s.seconds, s.keepaliveAcks, s.keepaliveP50Micros, s.keepaliveP99Micros, s.keepaliveMaxMicros, s.keepalivesUnanswered,
                         s.victimPeersOnline, s.victimPeersLookedUp, (s.victimPeersMoved ? "they moved: all should be" : "they did not move: none should be") as NSString))
        }
        let anomalies = errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            + [("keepalives unanswered", keepalivesUnanswered), ("send failures", sendFailures), ("auth failures", authenticationFailures),
               ("replays", replays), ("unknown-session packets", unknownSessionPackets), ("session unknown", sessionUnknown)]
            .filter { $0.1 > 0 }.map { "\($0.0) \($0.1)" }
        if !anomalies.isEmpty { out.append("anomalies       " + anomalies.joined(separator: ", ")) }
        if let stoppedEarly { out.append("STOPPED EARLY: \(stoppedEarly)") }
        return out.joined(separator: "\n")
    }
}
