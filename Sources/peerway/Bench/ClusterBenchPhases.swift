import Foundation

/*
 The message phases of `peerway bench cluster` (the others: ClusterBenchRun.swift and
 ClusterBenchFailoverPhase.swift).

   messages   pairs of load peers on the same supernode and on two different ones (sender on
              supernode t, recipient on t+1), as many of each: paced at --message-rate (latency
              with the supernodes far from saturation), then unpaced, one message in flight per
              pair (throughput); in-flight messages drain between phases
*/

extension CheckpointLoad {
    /// Same-node and cross-node messages, paced then unpaced.
    mutating func runMessages(_ plan: ClusterBenchPlan, meter: ClusterBenchMeter, into r: inout ClusterBenchResult) {
        let nodes = targets.count
        let perNode = max(1, plan.messagePairs / nodes)
        let lists = (0..<nodes).map { peers(of: $0, count: 2 * perNode) }
        let usable = lists.map { $0.count / 2 }.min() ?? 0
        guard usable > 0 else { return }
        var same: (senders: [Int], recipients: [Int]) = ([], [])
        var cross: (senders: [Int], recipients: [Int]) = ([], [])
        for t in 0..<nodes {
            for j in 0..<usable {
                same.senders.append(lists[t][2 * j])
                same.recipients.append(lists[t][2 * j + 1])
                cross.senders.append(lists[t][2 * j])
                cross.recipients.append(lists[(t + 1) % nodes][2 * j + 1])
            }
        }
        let runs: [(kind: String, rate: Int)] = [("same-node", plan.messageRate), ("cross-node", plan.messageRate),
                                                 ("same-node", 0), ("cross-node", 0)]
        for run in runs where monotonicNow() < plan.deadline {
            let pairs = run.kind == "same-node" ? same : cross
            if nodes < 2 && run.kind == "cross-node" { continue }
            usePairs(senders: pairs.senders, recipients: pairs.recipients)
            c.messageRate = run.rate
            let label = "\(run.kind) \(run.rate > 0 ? "\(run.rate)/s" : "unpaced")"
            meter.note("messages: \(pairs.senders.count) \(label) pairs for \(plan.messageDuration) s")
            let mark = meter.mark()
            let start = monotonicNow()
            phase = .messaging
            _ = pump("messages \(label)", seconds: plan.messageDuration, meter: meter, deadline: plan.deadline, pacedSince: start) { _, _ in false }
            phase = .steady
            var f = ClusterBenchMessageFigures()
            f.kind = run.kind
            f.rate = run.rate
            f.pairs = pairs.senders.count
            f.seconds = Double(monotonicNow() &- start) / 1e9
            f.sent = messagesSent
            f.delivered = messagesDelivered
            f.failed = messagesFailed
            f.timedOut = messagesTimedOut
            f.refused = messagesRefused
            f.perSecond = Double(messagesDelivered) / f.seconds
            messageLatencies.sort()
            f.p50Micros = percentile(messageLatencies, 0.5)
            f.p99Micros = percentile(messageLatencies, 0.99)
            let cost = meter.cost("msg \(run.kind.prefix(5))\(run.rate > 0 ? " paced" : "")", since: mark, operations: messagesDelivered)
            f.nodeCPUMicrosPerMessage = cost.nodeCPUMicrosPerOperation
            r.messages.append(f)
            r.phases.append(cost)
            // What is still in flight ends before the next phase's counters start.
            _ = pump("draining", seconds: c.messageTimeout + 1, meter: meter, deadline: plan.deadline) { l, _ in
                !l.messageSentAt.contains { $0 != 0 }
            }
        }
        c.messageRate = 0
    }
}
