import Foundation
import PeerwayCheckpoint

/// A metadata search over users or networks, in the CHECKPOINT's query language
/// (`CheckpointQuery`: `key=value`, `!=`, `^=`, `<`, `<=`, `>`, `>=`, `key?`, `*`, AND/OR/NOT,
/// parentheses), with the same semantics, limits and refusals: `CheckpointQuery` parses and
/// validates, and its canonical form (fully parenthesised, values quoted) is read back here into a
/// tree that translates into SQL whose every value is a bound parameter.
public struct IndexQuery: Hashable, Sendable, CustomStringConvertible {
    /// The validated query, whose `matches(_:)` is the reference semantics.
    public let checkpointQuery: CheckpointQuery
    let root: Node

    public init(parsing text: String) throws(IndexError) {
        let parsed: CheckpointQuery
        do { parsed = try CheckpointQuery(parsing: text) } catch { throw .invalidQuery(error.description) }
        var reader = CanonicalReader(Array(parsed.description.utf8))
        guard let root = reader.readQuery() else {
            throw .invalidQuery("query: cannot translate '\(parsed.description)'")
        }
        self.checkpointQuery = parsed
        self.root = root
    }

    public var description: String { checkpointQuery.description }

    public static func == (a: IndexQuery, b: IndexQuery) -> Bool { a.checkpointQuery == b.checkpointQuery }
    public func hash(into hasher: inout Hasher) { hasher.combine(checkpointQuery.description) }

    indirect enum Node: Hashable, Sendable {
        case all
        case term(key: String, test: Test)
        case and([Node])
        case or([Node])
        case not(Node)
    }

    enum Test: Hashable, Sendable {
        case equal(String)
        case notEqual(String)
        case prefix(String)
        case greater(Double)
        case greaterOrEqual(Double)
        case less(Double)
        case lessOrEqual(Double)
        case present
    }

    /// The number a metadata value takes part in numeric comparisons as (the CHECKPOINT's rule:
    /// Swift's `Double(_:)` parses all of it to a finite number), stored beside the text.
    static func number(_ value: String) -> Double? {
        guard let number = Double(value), number.isFinite else { return nil }
        return number
    }

    /// Upper end of a prefix range: no metadata value (at most 128 bytes) that starts with the
    /// prefix compares above the prefix followed by 32 of the largest code point (U+10FFFF,
    /// the largest UTF-8 sequence), in byte order.
    static let prefixCeiling = String(repeating: "\u{10FFFF}", count: IndexLimits.metadataValueBytes / 4)
}

/// Which metadata a search reads: tables fixed here, never taken from input.
enum IndexEntity {
    case users
    case networks

    var table: String { self == .users ? "users" : "networks" }
    var metaTable: String { self == .users ? "user_meta" : "network_meta" }
    var ownerColumn: String { self == .users ? "user_id" : "network_id" }
}

extension IndexQuery {
    /// Terms whose candidates number this many or more are walked in id order rather than
    /// collected and sorted: counts stop here.
    static let collectLimit = 2_000

    /// The WHERE predicate on `<idExpression>`: every term an indexed lookup of the entity's own
    /// metadata row (the primary key (owner, key)), arguments in order of their `?`s.
    ///
    /// On PostgreSQL each lookup is a scalar subquery with LIMIT 1 rather than EXISTS, which its
    /// planner would turn into a semi-join (hashing whole tables, with statistics) and lose the
    /// early end of an ordered walk with LIMIT.
    func predicate(for entity: IndexEntity, id idExpression: String, dialect: SQLDialect = .sqlite) -> (sql: String, args: [SQLValue]) {
        Self.predicate(root, for: entity, id: idExpression, dialect: dialect)
    }

    /// The predicate of one subtree (see `predicate(for:id:dialect:)`).
    static func predicate(_ node: Node, for entity: IndexEntity, id idExpression: String, dialect: SQLDialect) -> (sql: String, args: [SQLValue]) {
        var args: [SQLValue] = []
        let sql = exists(node, entity: entity, id: idExpression, dialect: dialect, args: &args)
        return (sql, args)
    }

    /// The condition on a metadata row's `value`/`num` for a test, and its arguments. `fenced`
    /// wraps the column in a no-op expression (`num + 0`, `value || ''`: same values, same
    /// comparison and collation) that no index matches, so that the database walks the index the
    /// engine chose (see `IndexEngine.BranchPlan.ownerWalk`) instead of trusting its estimate.
    static func condition(_ test: Test, column: String = "", fenced: Bool = false, args: inout [SQLValue]) -> String {
        let value = fenced ? "\(column)value || ''" : "\(column)value"
        let num = fenced ? "\(column)num + 0" : "\(column)num"
        switch test {
        case .present:
            return ""
        case .equal(let v):
            args.append(.text(v)); return " AND \(column)value = ?"
        case .notEqual(let v):
            args.append(.text(v)); return " AND \(column)value <> ?"
        case .prefix(let p):
            args.append(.text(p)); args.append(.text(p + prefixCeiling))
            return " AND \(value) >= ? AND \(value) <= ?"
        case .greater(let n):
            args.append(.real(n)); return " AND \(num) > ?"
        case .greaterOrEqual(let n):
            args.append(.real(n)); return " AND \(num) >= ?"
        case .less(let n):
            args.append(.real(n)); return " AND \(num) < ?"
        case .lessOrEqual(let n):
            args.append(.real(n)); return " AND \(num) <= ?"
        }
    }

    private static func exists(_ node: Node, entity: IndexEntity, id: String, dialect: SQLDialect, args: inout [SQLValue]) -> String {
        switch node {
        case .all:
            return "1 = 1"
        case .term(let key, let test):
            args.append(.text(key))
            let condition = condition(test, column: "m.", args: &args)
            let lookup = "SELECT 1 FROM \(entity.metaTable) m WHERE m.\(entity.ownerColumn) = \(id) AND m.key = ?\(condition)"
            return dialect == .postgres ? "(\(lookup) LIMIT 1) IS NOT NULL" : "EXISTS (\(lookup))"
        case .and(let operands):
            return "(" + operands.map { exists($0, entity: entity, id: id, dialect: dialect, args: &args) }.joined(separator: " AND ") + ")"
        case .or(let operands):
            return "(" + operands.map { exists($0, entity: entity, id: id, dialect: dialect, args: &args) }.joined(separator: " OR ") + ")"
        case .not(let operand):
            return "NOT (" + exists(operand, entity: entity, id: id, dialect: dialect, args: &args) + ")"
        }
    }

    /// The branches of a search: each operand of a top-level OR, else the whole query. The matches
    /// are the union of the branches' matches, so each branch can be searched on its own.
    var branches: [Node] {
        if case .or(let operands) = root { return operands }
        return [root]
    }

    /// One or more tests on one key that every match of a branch satisfies (its metadata row for
    /// the key passes them all), found through the (key, value) or (key, num) index.
    struct Anchor: Equatable {
        let key: String
        let tests: [Test]
        /// Which operands of the branch's AND (0 for a lone term) the anchor stands for: a
        /// candidate found through the anchor satisfies them, so they need no further check.
        let covers: [Int]

        /// An equality: its (key, value, owner) index lists candidates in owner order.
        var isEquality: Bool {
            if tests.count == 1, case .equal = tests[0] { return true }
            return false
        }

        /// The conditions on a metadata row (`column` its table's alias with a dot, or "").
        func condition(column: String = "", fenced: Bool = false, args: inout [SQLValue]) -> String {
            tests.map { IndexQuery.condition($0, column: column, fenced: fenced, args: &args) }.joined()
        }
    }

    /// The anchors of a branch: each term it requires (an AND's term operands, or a lone term),
    /// except that numeric bounds on one key merge into one range (`age>=20 AND age<30`).
    static func anchors(_ branch: Node) -> [Anchor] {
        let operands: [Node]
        switch branch {
        case .term: operands = [branch]
        case .and(let list): operands = list
        default: return []
        }
        var anchors: [Anchor] = []
        var ranges: [String: Int] = [:]  // key -> its range anchor's index
        for (i, operand) in operands.enumerated() {
            guard case .term(let key, let test) = operand else { continue }
            switch test {
            case .greater, .greaterOrEqual, .less, .lessOrEqual:
                if let at = ranges[key] {
                    anchors[at] = Anchor(key: key, tests: anchors[at].tests + [test], covers: anchors[at].covers + [i])
                    continue
                }
                ranges[key] = anchors.count
            default:
                break
            }
            anchors.append(Anchor(key: key, tests: [test], covers: [i]))
        }
        return anchors
    }

    /// What is left of a branch to check on a candidate found through `anchor`: nil when nothing.
    static func residual(_ branch: Node, after anchor: Anchor) -> Node? {
        guard case .and(let operands) = branch else { return nil }
        let rest = operands.enumerated().filter { !anchor.covers.contains($0.offset) }.map(\.element)
        switch rest.count {
        case 0: return nil
        case 1: return rest[0]
        default: return .and(rest)
        }
    }
}

/// Reads `CheckpointQuery.description`'s canonical form:
/// `*` | key op "quoted" | key op number | key "?" | "(" node (" AND " node)+ ")" |
/// "(" node (" OR " node)+ ")" | "NOT " node.
private struct CanonicalReader {
    let bytes: [UInt8]
    var at = 0
    var depth = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func readQuery() -> IndexQuery.Node? {
        guard let node = readNode(), at == bytes.count else { return nil }
        return node
    }

    private func peek(_ text: String) -> Bool {
        let t = Array(text.utf8)
        return bytes.count - at >= t.count && Array(bytes[at..<at + t.count]) == t
    }

    private mutating func eat(_ text: String) -> Bool {
        guard peek(text) else { return false }
        at += text.utf8.count
        return true
    }

    private mutating func readNode() -> IndexQuery.Node? {
        depth += 1
        defer { depth -= 1 }
        guard depth <= 64 else { return nil }
        if eat("*") { return .all }
        if eat("NOT ") { return readNode().map { .not($0) } }
        if eat("(") {
            guard let first = readNode() else { return nil }
            var operands = [first]
            let isAnd = peek(" AND ")
            let separator = isAnd ? " AND " : " OR "
            while eat(separator) {
                guard let next = readNode() else { return nil }
                operands.append(next)
            }
            guard eat(")"), operands.count >= 2 else { return nil }
            return isAnd ? .and(operands) : .or(operands)
        }
        return readTerm()
    }

    private mutating func readTerm() -> IndexQuery.Node? {
        let start = at
        while at < bytes.count, Self.isKeyByte(bytes[at]) { at += 1 }
        guard at > start, let key = String(bytes: bytes[start..<at], encoding: .utf8) else { return nil }
        if eat("?") { return .term(key: key, test: .present) }
        if eat("!=") { return readQuoted().map { .term(key: key, test: .notEqual($0)) } }
        if eat("^=") { return readQuoted().map { .term(key: key, test: .prefix($0)) } }
        if eat("=") { return readQuoted().map { .term(key: key, test: .equal($0)) } }
        if eat(">=") { return readNumber().map { .term(key: key, test: .greaterOrEqual($0)) } }
        if eat("<=") { return readNumber().map { .term(key: key, test: .lessOrEqual($0)) } }
        if eat(">") { return readNumber().map { .term(key: key, test: .greater($0)) } }
        if eat("<") { return readNumber().map { .term(key: key, test: .less($0)) } }
        return nil
    }

    private mutating func readQuoted() -> String? {
        guard eat("\"") else { return nil }
        var out: [UInt8] = []
        while at < bytes.count {
            let byte = bytes[at]
            at += 1
            if byte == UInt8(ascii: "\"") { return String(bytes: out, encoding: .utf8) }
            if byte == UInt8(ascii: "\\") {
                guard at < bytes.count else { return nil }
                out.append(bytes[at])
                at += 1
            } else {
                out.append(byte)
            }
        }
        return nil
    }

    private mutating func readNumber() -> Double? {
        let start = at
        while at < bytes.count, !(bytes[at] == UInt8(ascii: " ") || bytes[at] == UInt8(ascii: ")")) { at += 1 }
        guard let text = String(bytes: bytes[start..<at], encoding: .utf8), let n = Double(text), n.isFinite else { return nil }
        return n
    }

    private static func isKeyByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2E || b == 0x2D
    }
}
