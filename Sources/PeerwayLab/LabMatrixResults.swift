import Foundation

/// Every try of one pair over one transport, and what it adds up to.
public struct LabMatrixRow: Hashable, Sendable {
    public var assignment: LabMatrixAssignment
    public var transport: LabMatrixTransport
    /// Peerway's tries, in order (empty in a dry run or when the pair was skipped).
    public var tunnels: [LabTunnelOutcome]
    /// aioice's tries (nil: not run: TCP rows, `--no-aioice`).
    public var aioice: [LabAioiceOutcome]?
    /// Why the pair did not run (time limit), if it did not.
    public var skipped: String?

    public init(assignment: LabMatrixAssignment, transport: LabMatrixTransport, tunnels: [LabTunnelOutcome],
                aioice: [LabAioiceOutcome]? = nil, skipped: String? = nil) {
        self.assignment = assignment
        self.transport = transport
        self.tunnels = tunnels
        self.aioice = aioice
        self.skipped = skipped
    }

    public var pair: LabMatrixPair { assignment.pair }
    public var tries: Int { tunnels.count }
    public var successes: Int { tunnels.filter(\.succeeded).count }
    public var directCount: Int { tunnels.filter(\.direct).count }
    public var directExpected: Bool { LabMatrix.directExpected(pair, transport) }
    public var manyPortExpected: Bool { LabMatrix.manyPortExpected(pair, transport) }

    /// Methods of the tries whose tunnel came up (echoed or not), each once, in the order first seen.
    public var methods: [String] {
        var seen: [String] = []
        for t in tunnels where t.connected { if let m = t.method, !seen.contains(m) { seen.append(m) } }
        return seen
    }

    /// Paths of the tries whose tunnel came up: `direct`, `relayed`, `mixed` (some of each), or
    /// `-` (none came up).
    public var path: String {
        let paths = Set(tunnels.filter(\.connected).compactMap(\.path))
        switch paths.count {
        case 0: return "-"
        case 1: return paths.first!
        default: return "mixed"
        }
    }

    /// Median time to tunnel of the tries that connected (nearest rank: the lower middle of an
    /// even count).
    public var p50Milliseconds: Double? { LabMatrixRow.percentile(tunnels.filter(\.connected).compactMap(\.ms), 50) }
    /// Median time from the connect to the move onto a direct path, over the tries that moved.
    public var p50DirectMilliseconds: Double? { LabMatrixRow.percentile(tunnels.filter(\.connected).compactMap(\.directMs), 50) }

    public var aioiceTries: Int { aioice?.count ?? 0 }
    public var aioiceDirect: Int { aioice?.filter(\.connected).count ?? 0 }
    /// Selected candidate-type pairs of aioice's connected tries, each once.
    public var aioiceTypes: [String] {
        var seen: [String] = []
        for t in aioice ?? [] { if let s = t.types, !seen.contains(s) { seen.append(s) } }
        return seen
    }

    /// The required checks this row fails (empty: it passes). `dryRun` skips Peerway's tries.
    public func failures(dryRun: Bool = false) -> [String] {
        if let skipped { return ["not run: \(skipped)"] }
        if dryRun {
            return (aioice ?? []).enumerated().compactMap { i, t in t.ran ? nil : "aioice try \(i + 1) did not run: \(t.error ?? "no result")" }
        }
        var out: [String] = []
        if tries == 0 { out.append("no try ran") }
        for (i, t) in tunnels.enumerated() where !t.succeeded {
            out.append("try \(i + 1): \(t.error ?? "failed")")
        }
        if directExpected {
            let relayed = tunnels.filter { $0.succeeded && !$0.direct }.count
            if relayed > 0 { out.append("direct expected: \(relayed) of \(tries) tries relayed") }
        }
        return out
    }

    /// `nearest-rank` percentile of `values` (nil when empty).
    public static func percentile(_ values: [Double], _ p: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}

/// The whole run in a few numbers, and the verdict.
public struct LabMatrixSummary: Codable, Hashable, Sendable {
    public var kind = "summary"
    public var rows: Int
    public var tries: Int
    public var successes: Int
    /// Successful tries over all tries (nil when none ran).
    public var connectedRate: Double?
    /// Over UDP rows where direct is expected: tries that went direct, over their tries.
    public var directExpectedTries: Int
    public var directTries: Int
    public var directRate: Double?
    public var aioiceTries: Int
    public var aioiceDirect: Int
    public var aioiceDirectRate: Double?
    /// aioice tries whose agents did not both report a result (a broken setup, not a failed ICE).
    public var aioiceBroken: Int
    /// Rows failing a required check.
    public var failedRows: Int
    /// Peers that registered, of those started.
    public var registered: Int?
    public var peers: Int?
    public var dryRun: Bool
    /// Every required check held.
    public var pass: Bool
    /// Why not, one line each (setup problems first, then failing rows).
    public var failures: [String]

    enum CodingKeys: String, CodingKey {
        case kind, rows, tries, successes, connectedRate = "connected_rate", directExpectedTries = "direct_expected_tries",
             directTries = "direct_tries", directRate = "direct_rate", aioiceTries = "aioice_tries", aioiceDirect = "aioice_direct",
             aioiceDirectRate = "aioice_direct_rate", aioiceBroken = "aioice_broken", failedRows = "failed_rows", registered, peers, dryRun = "dry_run", pass, failures
    }

    /// Adds up `rows`. `setupFailures` (peers that did not register, agents that did not run) fail
    /// the run on their own. Required: every try connects and echoes, every UDP try where direct
    /// is expected is direct, no pair skipped; in a dry run only the setup counts.
    public init(rows: [LabMatrixRow], dryRun: Bool = false, registered: Int? = nil, peers: Int? = nil, setupFailures: [String] = []) {
        func rate(_ n: Int, _ d: Int) -> Double? { d == 0 ? nil : Double(n) / Double(d) }
        self.rows = rows.count
        tries = rows.reduce(0) { $0 + $1.tries }
        successes = rows.reduce(0) { $0 + $1.successes }
        connectedRate = rate(successes, tries)
        let expected = rows.filter(\.directExpected)
        directExpectedTries = expected.reduce(0) { $0 + $1.tries }
        directTries = expected.reduce(0) { $0 + $1.directCount }
        directRate = rate(directTries, directExpectedTries)
        aioiceTries = rows.reduce(0) { $0 + $1.aioiceTries }
        aioiceDirect = rows.reduce(0) { $0 + $1.aioiceDirect }
        aioiceDirectRate = rate(aioiceDirect, aioiceTries)
        aioiceBroken = rows.reduce(0) { $0 + ($1.aioice ?? []).filter { !$0.ran }.count }
        self.registered = registered
        self.peers = peers
        self.dryRun = dryRun
        let failing = rows.filter { !$0.failures(dryRun: dryRun).isEmpty }
        failedRows = failing.count
        failures = setupFailures + failing.map { "\($0.pair) \($0.transport.rawValue): " + $0.failures(dryRun: dryRun).joined(separator: "; ") }
        pass = failures.isEmpty && (dryRun || tries > 0)
        if !dryRun && tries == 0 && failures.isEmpty { failures = ["no tunnel was tried"] }
    }
}
