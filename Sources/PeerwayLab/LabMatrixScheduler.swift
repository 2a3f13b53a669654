import Foundation

/// A pair placed on concrete hosts: the initiator behind its first preset, the acceptor behind the
/// second.
public struct LabMatrixAssignment: Hashable, Codable, Sendable, CustomStringConvertible {
    public var pair: LabMatrixPair
    public var initiator: LabMatrixEndpoint
    public var acceptor: LabMatrixEndpoint

    public init(pair: LabMatrixPair, initiator: LabMatrixEndpoint, acceptor: LabMatrixEndpoint) {
        self.pair = pair
        self.initiator = initiator
        self.acceptor = acceptor
    }

    /// The sites the assignment occupies (one for a same-NAT pair).
    public var sites: Set<String> { [initiator.site, acceptor.site] }

    public var description: String { "\(pair) (\(initiator) -> \(acceptor))" }
}

/// Decides which pairs run at once: as many as possible, but never two sharing a site. A site's
/// router is the shared resource: another pair's traffic through it would take the next ports of a
/// sequential NAT (spoiling port prediction) and its conntrack churn would disturb the other's
/// timing. A pair across NATs may use either site of each of its presets, whichever is free.
///
/// Pure: `start()` hands out what can start now, `finish(_:)` frees its sites.
public struct LabMatrixScheduler: Sendable {
    /// Pairs not started yet, in the order they are considered.
    public private(set) var pending: [LabMatrixPair]
    /// Assignments started and not finished.
    public private(set) var running: [LabMatrixAssignment] = []
    /// Sites by name.
    let sites: [String: LabSiteSpec]

    /// `pairs` over `sites` (as `LabMatrix.sites(for:)` makes them). A pair that needs both sites
    /// of a preset (the preset against itself) goes first, then the same-NAT pairs, then the rest,
    /// each group in the given order: the pairs hardest to fit start while every site is free.
    public init(pairs: [LabMatrixPair], sites: [LabSiteSpec]) {
        func rank(_ p: LabMatrixPair) -> Int { p.isSelf ? 0 : p.sameNAT ? 1 : 2 }
        self.pending = pairs.enumerated().sorted { (rank($0.element), $0.offset) < (rank($1.element), $1.offset) }.map(\.element)
        self.sites = Dictionary(sites.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Sites in use by running assignments.
    public var busySites: Set<String> { running.reduce(into: Set<String>()) { $0.formUnion($1.sites) } }

    /// True once every pair has been started and has finished.
    public var isFinished: Bool { pending.isEmpty && running.isEmpty }

    /// Where `pair` can run now with `busy` sites taken, or nil. Hosts: 1 on each side, 1 and 2 of
    /// the `-a` site for a same-NAT pair.
    func place(_ pair: LabMatrixPair, busy: Set<String>) -> LabMatrixAssignment? {
        let free = { (name: String) in self.sites[name] != nil && !busy.contains(name) }
        let namesA = LabMatrix.siteNames(pair.a), namesB = LabMatrix.siteNames(pair.b)
        if pair.sameNAT {
            guard let site = sites[namesA[0]], site.hosts >= 2, free(site.name) else { return nil }
            return LabMatrixAssignment(pair: pair, initiator: .init(site: site.name, host: 1), acceptor: .init(site: site.name, host: 2))
        }
        if pair.isSelf {
            guard free(namesA[0]), free(namesA[1]) else { return nil }
            return LabMatrixAssignment(pair: pair, initiator: .init(site: namesA[0], host: 1), acceptor: .init(site: namesA[1], host: 1))
        }
        for siteA in namesA where free(siteA) {
            for siteB in namesB where free(siteB) {
                return LabMatrixAssignment(pair: pair, initiator: .init(site: siteA, host: 1), acceptor: .init(site: siteB, host: 1))
            }
        }
        return nil
    }

    /// Whether `pair` could ever run on these sites (all free).
    public func canPlace(_ pair: LabMatrixPair) -> Bool { place(pair, busy: []) != nil }

    /// Starts every pending pair that fits beside the running ones, in order; returns them.
    public mutating func start() -> [LabMatrixAssignment] {
        var busy = busySites
        var started: [LabMatrixAssignment] = []
        var left: [LabMatrixPair] = []
        for pair in pending {
            if let assignment = place(pair, busy: busy) {
                busy.formUnion(assignment.sites)
                started.append(assignment)
            } else {
                left.append(pair)
            }
        }
        pending = left
        running += started
        return started
    }

    /// Marks `assignment` finished: its sites are free again.
    public mutating func finish(_ assignment: LabMatrixAssignment) {
        if let i = running.firstIndex(of: assignment) { running.remove(at: i) }
    }

    /// Gives up the pairs not started yet (a time limit); returns them.
    public mutating func abandonPending() -> [LabMatrixPair] {
        defer { pending = [] }
        return pending
    }
}

/// Runs a scheduler's assignments on threads: each as soon as its sites are free, `work` doing the
/// pair (blocking, bounded by its own timeouts). After `deadline` no new pair starts; those left
/// are returned as skipped. Returns when every started pair has finished.
public enum LabMatrixExecutor {
    public static func run<Result: Sendable>(
        _ scheduler: LabMatrixScheduler, deadline: Date,
        work: @escaping @Sendable (LabMatrixAssignment) -> Result
    ) -> (results: [(LabMatrixAssignment, Result)], skipped: [LabMatrixPair]) {
        let state = ExecutorState<Result>(scheduler)
        state.condition.lock()
        defer { state.condition.unlock() }
        var skipped: [LabMatrixPair] = []
        while !state.scheduler.isFinished {
            if Date() >= deadline && !state.scheduler.pending.isEmpty {
                skipped += state.scheduler.abandonPending()
            }
            for assignment in state.scheduler.start() {
                let thread = Thread {
                    let result = work(assignment)
                    state.condition.lock()
                    state.results.append((assignment, result))
                    state.scheduler.finish(assignment)
                    state.condition.signal()
                    state.condition.unlock()
                }
                thread.name = "peerway-lab-matrix"
                thread.start()
            }
            if state.scheduler.isFinished { break }
            if state.scheduler.running.isEmpty {
                // Nothing runs and nothing fits: the pending pairs cannot be placed on these sites.
                skipped += state.scheduler.abandonPending()
                break
            }
            // Wake at least once a second, to notice the deadline.
            _ = state.condition.wait(until: Date().addingTimeInterval(1))
        }
        return (state.results, skipped)
    }
}

/// The executor's shared state, guarded by `condition`.
private final class ExecutorState<Result>: @unchecked Sendable {
    let condition = NSCondition()
    var scheduler: LabMatrixScheduler
    var results: [(LabMatrixAssignment, Result)] = []

    init(_ scheduler: LabMatrixScheduler) { self.scheduler = scheduler }
}

extension LabMatrixAssignment {
    /// Where `pair` runs when every site is free (host 1 of the first sites; the `-a` site's two
    /// hosts for a same-NAT pair): the placement reported for a pair that never ran.
    public static func nominal(_ pair: LabMatrixPair) -> LabMatrixAssignment {
        let a = LabMatrix.siteNames(pair.a), b = LabMatrix.siteNames(pair.b)
        if pair.sameNAT { return .init(pair: pair, initiator: .init(site: a[0], host: 1), acceptor: .init(site: a[0], host: 2)) }
        return .init(pair: pair, initiator: .init(site: a[0], host: 1), acceptor: .init(site: pair.isSelf ? a[1] : b[0], host: 1))
    }
}
