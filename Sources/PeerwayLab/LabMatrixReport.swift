import Foundation

/// The matrix's output: a table for people, JSON lines for scripts.
public enum LabMatrixReport {
    /// The table columns and their widths.
    static let columns: [(String, Int)] = [
        ("pair", 38), ("transport", 10), ("path", 9), ("method", 24), ("1st ms", 8), ("direct ms", 10), ("success", 9), ("aioice direct", 15), ("result", 6),
    ]

    static func percent(_ rate: Double?) -> String { rate.map { String(format: "%.1f%%", $0 * 100) } ?? "n/a" }

    static func milliseconds(_ ms: Double?) -> String { ms.map { String(Int($0.rounded())) } ?? "-" }

    /// One line per pair and transport, the failing rows' reasons, then the summary.
    public static func table(_ rows: [LabMatrixRow], summary: LabMatrixSummary) -> String {
        func line(_ cells: [String]) -> String {
            var text = zip(cells, columns).map { cell, column in
                cell.count >= column.1 ? cell + " " : cell + String(repeating: " ", count: column.1 - cell.count)
            }.joined()
            while text.last == " " { text.removeLast() }
            return text
        }
        var lines = [line(columns.map(\.0))]
        for row in rows {
            let aioice: String
            switch (row.transport, row.aioice) {
            case (.tcp, _): aioice = "-"
            case (.udp, nil): aioice = "n/a"
            case (.udp, _?): aioice = "\(row.aioiceDirect)/\(row.aioiceTries)"
            }
            let methods = row.methods.isEmpty ? "-" : row.methods.joined(separator: "+")
            // "!": direct was required and some try was not.
            let path = row.path + (row.tries > 0 && row.directExpected && row.directCount < row.tries ? "!" : "")
            let success = row.skipped != nil ? "skipped" : summary.dryRun ? "-" : "\(row.successes)/\(row.tries)"
            let result = row.failures(dryRun: summary.dryRun).isEmpty ? "pass" : "FAIL"
            lines.append(line([row.pair.description, row.transport.rawValue, path, methods, milliseconds(row.p50Milliseconds),
                               milliseconds(row.p50DirectMilliseconds), success, aioice, result]))
        }
        lines.append("")
        for failure in summary.failures { lines.append("  " + failure) }
        if summary.dryRun {
            lines.append("dry run: \(summary.registered ?? 0)/\(summary.peers ?? 0) peers registered; "
                         + "aioice direct \(summary.aioiceDirect)/\(summary.aioiceTries) (\(percent(summary.aioiceDirectRate))), "
                         + "\(summary.aioiceBroken) broken; Peerway's tunnels not tried")
        } else {
            lines.append("connected \(summary.successes)/\(summary.tries) tries (\(percent(summary.connectedRate))); "
                         + "direct \(summary.directTries)/\(summary.directExpectedTries) where expected (\(percent(summary.directRate))); "
                         + "aioice direct \(summary.aioiceDirect)/\(summary.aioiceTries) (\(percent(summary.aioiceDirectRate)))")
        }
        lines.append(summary.pass ? "PASS: every required check holds" : "FAIL: \(summary.failures.count) required check(s) fail")
        return lines.joined(separator: "\n") + "\n"
    }

    /// One row as `--json` prints it.
    public struct RowJSON: Codable, Hashable, Sendable {
        public var kind = "row"
        public var pair: String
        public var a: String
        public var b: String
        public var sameNAT: Bool
        public var initiator: String
        public var acceptor: String
        public var transport: String
        public var tries: Int
        public var successes: Int
        public var direct: Int
        public var directExpected: Bool
        public var manyPortExpected: Bool
        public var path: String
        public var methods: [String]
        public var p50Ms: Double?
        /// Median time to the move onto a direct path (relay first), over the tries that moved.
        public var p50DirectMs: Double?
        public var aioiceTries: Int?
        public var aioiceDirect: Int?
        public var aioiceTypes: [String]?
        public var skipped: String?
        public var pass: Bool
        public var failures: [String]
        public var attempts: [LabTunnelOutcome]
        public var aioiceAttempts: [LabAioiceOutcome]?

        enum CodingKeys: String, CodingKey {
            case kind, pair, a, b, sameNAT = "same_nat", initiator, acceptor, transport, tries, successes, direct,
                 directExpected = "direct_expected", manyPortExpected = "many_port_expected", path, methods, p50Ms = "p50_ms", p50DirectMs = "p50_direct_ms",
                 aioiceTries = "aioice_tries", aioiceDirect = "aioice_direct", aioiceTypes = "aioice_types", skipped, pass, failures,
                 attempts, aioiceAttempts = "aioice_attempts"
        }

        public init(_ row: LabMatrixRow, dryRun: Bool) {
            pair = row.pair.description
            a = row.pair.a.rawValue
            b = row.pair.b.rawValue
            sameNAT = row.pair.sameNAT
            initiator = row.assignment.initiator.description
            acceptor = row.assignment.acceptor.description
            transport = row.transport.rawValue
            tries = row.tries
            successes = row.successes
            direct = row.directCount
            directExpected = row.directExpected
            manyPortExpected = row.manyPortExpected
            path = row.path
            methods = row.methods
            p50Ms = row.p50Milliseconds
            p50DirectMs = row.p50DirectMilliseconds
            aioiceTries = row.aioice.map { _ in row.aioiceTries }
            aioiceDirect = row.aioice.map { _ in row.aioiceDirect }
            aioiceTypes = row.aioice.map { _ in row.aioiceTypes }
            skipped = row.skipped
            failures = row.failures(dryRun: dryRun)
            pass = failures.isEmpty
            attempts = row.tunnels
            aioiceAttempts = row.aioice
        }
    }

    /// `--json`: one object per pair and transport, then the summary object; one per line.
    public static func json(_ rows: [LabMatrixRow], summary: LabMatrixSummary) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var lines = rows.map { row in
            (try? encoder.encode(RowJSON(row, dryRun: summary.dryRun))).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        }
        lines.append((try? encoder.encode(summary)).map { String(decoding: $0, as: UTF8.self) } ?? "{}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Rows in the order of the pair list (pairs first, then UDP before TCP), whatever order they finished in.
    public static func ordered(_ rows: [LabMatrixRow], pairs: [LabMatrixPair]) -> [LabMatrixRow] {
        let index = Dictionary(pairs.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        return rows.sorted { (index[$0.pair] ?? .max, $0.transport) < (index[$1.pair] ?? .max, $1.transport) }
    }
}
