import Foundation
import NIOCore
import PeerwayCheckpoint

/*
 The failover phase of `peerway bench cluster`:

   1. --failover-peers real client peers (FailoverPopulation: the client library's state
      machine) start on supernode 0, spread over one of their keepalive periods
   2. supernode 0 is killed (SIGKILL)
   3. the real peers notice by themselves and re-register elsewhere: kill -> re-registered
   4. the load's peers of supernode 0 (a third of --peers) move too, unless --no-failover-load:
      they cannot notice by themselves, so each of their sockets starts re-registering its
      peers, on a survivor, when a real peer with their keepalive would have noticed: at a
      point spread over one keepalive period, plus the client's keepalive timeout
      (`CheckpointClientLimits.keepaliveTimeout`); a socket registers one peer at a time, so
      its peers follow each other (341 sockets, one registration in flight each, at 1,000,000)
   5. the phase ends when all of them are registered again or after two keepalive periods
      (the longer of the two populations') + `failoverSlackSeconds` (+ `loadMoveSlackSeconds`
      with the load); the survivors are then asked about some of the victim's load peers
      (online again when they moved, offline when they did not)
*/

/// Seconds beyond two keepalive periods the failover phase waits.
private let failoverSlackSeconds = 30.0
/// Seconds more when the victim's load peers move too (a third of the network re-registering).
private let loadMoveSlackSeconds = 120.0
/// Seconds the failover peers get to register beyond their stagger.
private let failoverRegisterSlackSeconds = 60.0

/// The victim's load peers re-registering on the survivors.
struct ClusterBenchLoadFailoverFigures: Codable {
    var peers = 0
    var keepaliveSeconds = 0
    /// When each socket starts (after the kill): the client's keepalive timeout plus up to one keepalive period.
    var firstStartSeconds = 0.0, lastStartSeconds = 0.0
    var reregistered = 0
    /// Kill -> re-registered, milliseconds.
    var p50Millis = 0.0, p99Millis = 0.0, maxMillis = 0.0
    /// Share re-registered within two keepalive periods of the kill.
    var withinTwoKeepalives = 0.0
    /// Registrations per second the survivors took, from the first start to the last registration.
    var perSecond = 0.0
}

extension CheckpointLoad {
    /// Real client peers on supernode 0, kill -9 of supernode 0, their failover (and the load's) timed.
    mutating func runFailover(_ plan: ClusterBenchPlan, meter: ClusterBenchMeter, into r: inout ClusterBenchResult) {
        let victim = 0
        let keepalive = Double(plan.failoverKeepalive)
        let population: FailoverPopulation
        do {
            population = try FailoverPopulation(count: plan.failoverPeers, keepaliveSeconds: plan.failoverKeepalive,
                                                supernodes: targets.map(\.address), staggerSeconds: keepalive,
                                                giveAll: plan.failoverGiveAll)
        } catch {
            var f = FailoverFigures()
            f.note = "no failover phase: \(error)"
            r.failover = f
            return
        }
        meter.note("failover: \(population.count) real client peers (CheckpointClientMachine) start on supernode \(victim) over \(plan.failoverKeepalive) s, keepalive \(plan.failoverKeepalive) s, given \(plan.failoverGiveAll ? "every supernode's address" : "supernode \(victim)'s address only")")
        population.start()
        let started = monotonicNow()
        let spread = started + UInt64((keepalive + 2) * 1e9)
        let ready = pump("failover peers", seconds: keepalive + failoverRegisterSlackSeconds, meter: meter, deadline: plan.deadline) { _, now in
            population.registered >= population.count && now >= spread
        }
        let onVictim = population.registered
        guard onVictim > 0, monotonicNow() < plan.deadline else {
            population.finish()
            var f = population.figures(kill: .max)
            f.note = "no failover peer registered on supernode \(victim) in time"
            r.failover = f
            return
        }

        let mark = meter.mark()
        let acksBefore = keepaliveAcks
        let unansweredBefore = result.keepalivesUnanswered
        meter.note("failover: kill -9 of supernode \(victim) (PID \(meter.nodes.nodes[victim].pid)) with \(onVictim) real peers and the load's peers on it")
        let kill = NIODeadline.now().uptimeNanoseconds
        let killedAt = monotonicNow()
        meter.nodes.nodes[victim].kill9()
        population.killed(at: kill)
        let (gone, releases) = abandon(victim, at: killedAt, move: plan.failoverLoad)
        if plan.failoverLoad, let first = releases.first, let last = releases.last {
            meter.note(String(format: "failover: the victim's %d load peers re-register on the survivors, their sockets starting %.1f-%.1f s after the kill",
                              gone.count, Double(first.at &- killedAt) / 1e9, Double(last.at &- killedAt) / 1e9))
        }
        recordKeepaliveLatency = true
        keepaliveLatencies = []
        var nextRelease = 0
        let bound = 2 * max(keepalive, plan.failoverLoad ? Double(c.keepaliveSeconds) : 0) + failoverSlackSeconds
            + (plan.failoverLoad ? loadMoveSlackSeconds : 0)
        _ = pump("failover", seconds: bound, meter: meter, deadline: plan.deadline) { l, now in
            while nextRelease < releases.count, releases[nextRelease].at <= now {
                let s = releases[nextRelease].socket
                if !l.isIdle[s] {
                    l.isIdle[s] = true
                    l.idleSockets.append(Int32(s))
                }
                nextRelease += 1
            }
            let loadBack = !plan.failoverLoad || (nextRelease == releases.count && (l.registrationTimes?.count ?? 0) >= gone.count)
            return population.failedOver >= onVictim && loadBack
        }
        let seconds = Double(monotonicNow() &- killedAt) / 1e9
        population.finish()
        var figures = population.figures(kill: kill)
        if !ready { figures.note = "only \(onVictim) of \(population.count) failover peers had registered when supernode \(victim) was killed" }
        r.failover = figures
        r.phases.append(meter.cost("failover", since: mark, operations: figures.failedOver + (registrationTimes?.count ?? 0)))
        if plan.failoverLoad { r.loadFailover = loadFailoverFigures(gone: gone.count, releases: releases, killedAt: killedAt) }
        registrationTimes = nil
        recordKeepaliveLatency = false
        keepaliveLatencies.sort()
        var s = ClusterBenchSurvivorFigures()
        s.seconds = seconds
        s.keepaliveAcks = keepaliveAcks - acksBefore
        s.keepaliveP50Micros = percentile(keepaliveLatencies, 0.5)
        s.keepaliveP99Micros = percentile(keepaliveLatencies, 0.99)
        s.keepaliveMaxMicros = Double(keepaliveLatencies.last ?? 0)
        s.keepalivesUnanswered = result.keepalivesUnanswered - unansweredBefore
        keepaliveLatencies = []

        // The survivors must list the victim's load peers as they are: online where they moved, else offline.
        let survivors = (0..<targets.count).filter { $0 != victim }
        let askers = survivors.map { peers(of: $0, count: 256) }
        let asked = min(plan.victimLookups, gone.count)
        if asked > 0, askers.allSatisfy({ !$0.isEmpty }), monotonicNow() < plan.deadline {
            meter.note("failover: \(asked) of the victim's load peers looked up on each survivor (\(plan.failoverLoad ? "online: they moved" : "offline: they did not move"))")
            startQueries(planned: Array(repeating: asked, count: survivors.count), askers: askers, window: 64, now: monotonicNow()) { _, i in
                .lookup(peer: gone[(i &* 7919) % gone.count])
            }
            _ = pump("victim lookups", seconds: 60, meter: meter, deadline: plan.deadline) { l, _ in l.queries.isDone }
            let stats = takeQueryStats(now: monotonicNow())
            s.victimPeersLookedUp = stats.reduce(0) { $0 + $1.sent }
            s.victimPeersOnline = stats.reduce(0) { $0 + $1.matched }
            s.victimPeersMoved = plan.failoverLoad
        }
        r.survivors = s
    }

    /// The load's peers of `victim` stop (its supernode is dead); with `move`, its sockets are
    /// pointed at the survivors in turns and each gets a time to start re-registering its peers
    /// (the flow at the top of this file). Returns the peers and the sockets' start times, sorted.
    private mutating func abandon(_ victim: Int, at killedAt: UInt64, move: Bool) -> (gone: [Int], releases: [(at: UInt64, socket: Int)]) {
        let survivors = (0..<targets.count).filter { $0 != victim }
        let period = Double(c.keepaliveSeconds)
        let timeout = Double(CheckpointClientLimits.keepaliveTimeout(
            keepaliveSeconds: UInt16(c.keepaliveSeconds), requestTimeout: CheckpointClientLimits.defaultRequestTimeout).nanoseconds) / 1e9
        var gone: [Int] = []
        var releases: [(at: UInt64, socket: Int)] = []
        let sockets = (0..<socketCount).filter { socketTarget[$0] == victim && hsStage[$0] == 0 }
        for (k, s) in sockets.enumerated() {
            for p in (s * block)..<min(n, (s + 1) * block) where peerPhase[p] == 2 {
                registered -= 1
                gone.append(p)
                if move {
                    peerPhase[p] = 0
                    peerOfSession[sessionIDs[p]] = nil
                    keepaliveSentAt[p] = 0
                } else {
                    peerPhase[p] = 3
                }
            }
            guard move else { continue }
            socketTarget[s] = survivors[k % survivors.count]
            blockCursor[s] = s * block
            // Sockets start in a shuffled order spread evenly over one keepalive period.
            let position = Double((k &* 7919) % sockets.count) / Double(max(1, sockets.count))
            releases.append((killedAt + UInt64((timeout + position * period) * 1e9), s))
        }
        if move { registrationTimes = [] }
        releases.sort { $0.at < $1.at }
        return (gone, releases)
    }

    private func loadFailoverFigures(gone: Int, releases: [(at: UInt64, socket: Int)], killedAt: UInt64) -> ClusterBenchLoadFailoverFigures {
        var f = ClusterBenchLoadFailoverFigures()
        f.peers = gone
        f.keepaliveSeconds = c.keepaliveSeconds
        f.firstStartSeconds = Double((releases.first?.at ?? killedAt) &- killedAt) / 1e9
        f.lastStartSeconds = Double((releases.last?.at ?? killedAt) &- killedAt) / 1e9
        let times = (registrationTimes ?? []).map { Double($0 &- killedAt) / 1e6 }.sorted()
        f.reregistered = times.count
        f.p50Millis = times.isEmpty ? 0 : times[min(times.count - 1, times.count / 2)]
        f.p99Millis = times.isEmpty ? 0 : times[min(times.count - 1, Int(Double(times.count) * 0.99))]
        f.maxMillis = times.last ?? 0
        let bound = 2_000 * Double(c.keepaliveSeconds)
        f.withinTwoKeepalives = gone > 0 ? Double(times.filter { $0 <= bound }.count) / Double(gone) : 0
        if let last = times.last, last / 1000 > f.firstStartSeconds {
            f.perSecond = Double(times.count) / (last / 1000 - f.firstStartSeconds)
        }
        return f
    }
}
