import NIOCore
import PeerwayCheckpoint

/*
 Lookups and searches sent by the load's registered peers (`peerway bench cluster` asks every
 supernode of a network about peers registered anywhere in it).

 Queries come in groups (one per asking supernode): group g has `planned[g]` queries, made on
 demand by `make(g, i)`, sent by the peers of `askers[g]` in turn, at most `window` in flight per
 group. A query's request id is `tag | slot`; its answer is checked against what it expects (a
 lookup: the peer online; a search: the named peer among the hits, or any hit) and timed. A
 query unanswered after `timeoutNanos` counts as lost (the bench does not retransmit).
*/

/// Message pairs chosen by the caller (`CheckpointLoad.usePairs`) instead of the default layout.
struct CheckpointLoadPairs {
    var senders: [Int]
    var recipients: [Int]
    var pairOfSender: [Int: Int]
}

/// One query a load peer sends.
enum CheckpointLoadQuery {
    /// Look up peer number `peer`; it must be online.
    case lookup(peer: Int)
    /// Search with `query`; the hits must include peer number `expect`, or be non-empty when nil.
    case search(query: String, limit: UInt16, expect: Int?)
}

/// What one group of queries came to.
struct CheckpointLoadQueryStats {
    var sent = 0
    /// Answered as expected.
    var matched = 0
    /// Answered, but not as expected (a peer offline, a search without it).
    var mismatched = 0
    /// Refused with an error frame.
    var refused = 0
    /// Unanswered after the query timeout.
    var lost = 0
    /// Answer times of every answered query, microseconds (sorted once the group is done).
    var latencies: [UInt32] = []
    var seconds = 0.0
}

/// The query state a `CheckpointLoad` keeps (flow above).
struct CheckpointLoadQueries {
    /// Request id bits of a query (the register id is 1, keepalives carry bit 30, messages bit 31).
    static let tag: UInt32 = 0x2000_0000
    /// A query unanswered this long is lost.
    static let timeoutNanos: UInt64 = 5_000_000_000
    /// Most queries in flight per group.
    static let maximumWindow = 4096

    static func isQuery(_ id: UInt32) -> Bool { id >> 29 == 1 }

    struct Slot {
        var group = -1
        var sentAt: UInt64 = 0
        var query = CheckpointLoadQuery.lookup(peer: 0)
    }

    var planned: [Int] = []
    var issued: [Int] = []
    var stats: [CheckpointLoadQueryStats] = []
    var askers: [[Int]] = []
    var window = 1
    var slots: [Slot] = []
    var make: (Int, Int) -> CheckpointLoadQuery = { _, _ in .lookup(peer: 0) }
    var startedAt: UInt64 = 0
    var finishedAt: [UInt64] = []

    var inFlight: Int { slots.reduce(0) { $0 + ($1.sentAt != 0 ? 1 : 0) } }
    var isDone: Bool { issued == planned && slots.allSatisfy { $0.sentAt == 0 } }
}

extension CheckpointLoad {
    /// Starts `planned[g]` queries per group `g`, made by `make(g, i)` and sent by `askers[g]` in
    /// turn, `window` in flight per group.
    mutating func startQueries(planned: [Int], askers: [[Int]], window: Int, now: UInt64,
                               make: @escaping (Int, Int) -> CheckpointLoadQuery) {
        precondition(planned.count == askers.count && askers.allSatisfy { !$0.isEmpty }, "every group needs askers")
        let w = max(1, min(window, CheckpointLoadQueries.maximumWindow))
        queries = CheckpointLoadQueries(planned: planned, issued: Array(repeating: 0, count: planned.count),
                                        stats: Array(repeating: CheckpointLoadQueryStats(), count: planned.count),
                                        askers: askers, window: w,
                                        slots: Array(repeating: .init(), count: planned.count * w), make: make,
                                        startedAt: now, finishedAt: Array(repeating: 0, count: planned.count))
        pumpQueries(now: now)
    }

    /// Times out lost queries and sends the next ones into free slots.
    mutating func pumpQueries(now: UInt64) {
        guard !queries.slots.isEmpty else { return }
        for slot in 0..<queries.slots.count {
            let g = slot / queries.window
            if queries.slots[slot].sentAt != 0, now &- queries.slots[slot].sentAt > CheckpointLoadQueries.timeoutNanos {
                queries.slots[slot].sentAt = 0
                queries.stats[g].lost += 1
            }
            if queries.slots[slot].sentAt == 0 { sendQuery(slot: slot, group: g, now: now) }
        }
    }

    private mutating func sendQuery(slot: Int, group g: Int, now: UInt64) {
        guard queries.issued[g] < queries.planned[g] else {
            if queries.finishedAt[g] == 0, !queries.slots[(g * queries.window)..<((g + 1) * queries.window)].contains(where: { $0.sentAt != 0 }) {
                queries.finishedAt[g] = now
                queries.stats[g].seconds = Double(now &- queries.startedAt) / 1e9
            }
            return
        }
        let i = queries.issued[g]
        queries.issued[g] += 1
        let query = queries.make(g, i)
        let askers = queries.askers[g]
        let asker = askers[i % askers.count]
        guard peerPhase[asker] == 2 else {
            queries.stats[g].refused += 1
            return
        }
        let frame: ControlFrame
        switch query {
        case .lookup(let peer):
            frame = .lookup(PeerID(high: peerHigh[peer], low: peerLow[peer]))
        case .search(let text, let limit, _):
            frame = .search(SearchRequest(query: text, limit: limit, after: nil))
        }
        queries.slots[slot] = .init(group: g, sentAt: now, query: query)
        queries.stats[g].sent += 1
        send(frame, id: CheckpointLoadQueries.tag | UInt32(slot), peer: asker)
    }

    /// An answer to query slot `id`.
    mutating func queryAnswered(id: UInt32, frame: ControlFrame, now: UInt64) {
        let slot = Int(id & 0x1FFF_FFFF)
        guard slot < queries.slots.count, queries.slots[slot].sentAt != 0 else { return }
        let entry = queries.slots[slot]
        queries.slots[slot].sentAt = 0
        var ok = false
        switch (entry.query, frame) {
        case (.lookup(let peer), .lookupResult(let r)):
            ok = r.online && r.peer == PeerID(high: peerHigh[peer], low: peerLow[peer])
        case (.search(_, _, let expect), .searchResult(let r)):
            if let expect {
                let id = PeerID(high: peerHigh[expect], low: peerLow[expect])
                ok = r.hits.contains { $0.peer == id }
            } else {
                ok = !r.hits.isEmpty
            }
        default:
            ok = false
        }
        queries.stats[entry.group].latencies.append(micros(now &- entry.sentAt))
        if ok { queries.stats[entry.group].matched += 1 } else { queries.stats[entry.group].mismatched += 1 }
        sendQuery(slot: slot, group: entry.group, now: now)
    }

    /// Query slot `id` was refused with an error frame.
    mutating func queryRefused(id: UInt32) {
        let slot = Int(id & 0x1FFF_FFFF)
        guard slot < queries.slots.count, queries.slots[slot].sentAt != 0 else { return }
        queries.slots[slot].sentAt = 0
        queries.stats[queries.slots[slot].group].refused += 1
    }

    /// The finished groups' figures (latencies sorted), and the query state cleared.
    mutating func takeQueryStats(now: UInt64) -> [CheckpointLoadQueryStats] {
        var out = queries.stats
        for g in out.indices {
            out[g].latencies.sort()
            if queries.finishedAt[g] == 0 { out[g].seconds = Double(now &- queries.startedAt) / 1e9 }
        }
        queries = CheckpointLoadQueries()
        return out
    }
}
