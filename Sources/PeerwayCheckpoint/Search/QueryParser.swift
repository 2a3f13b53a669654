/// Recursive-descent parser of the grammar documented on `CheckpointQuery`, over the query's
/// UTF-8 bytes so that error offsets are byte offsets. Recursion is bounded by
/// `CheckpointQuery.maximumDepth`; `AND` and `OR` chains are loops.
struct QueryParser {
    private let bytes: [UInt8]
    private var position = 0
    private var terms = 0

    init(_ text: String) {
        bytes = Array(text.utf8)
    }

    /// A parsed subtree and, when it has no positive term to find candidates with, the offset
    /// of the culprit (a `NOT`, or the first branch of an `OR` lacking one).
    private typealias Parsed = (node: QueryNode, unanchoredAt: Int?)

    mutating func parse() throws(QueryError) -> QueryNode {
        guard bytes.count <= CheckpointQuery.maximumBytes else {
            throw QueryError(.tooLong(bytes: bytes.count), at: CheckpointQuery.maximumBytes)
        }
        let parsed = try parseOr(depth: 0)
        skipSpace()
        guard position == bytes.count else {
            throw QueryError(.expected("AND, OR or the end of the query"), at: position)
        }
        if let culprit = parsed.unanchoredAt {
            throw QueryError(.noPositiveTerm, at: culprit)
        }
        return parsed.node
    }

    // MARK: - Expressions

    private mutating func parseOr(depth: Int) throws(QueryError) -> Parsed {
        var operands = [try parseAnd(depth: depth)]
        while consumeConnective(symbol: UInt8(ascii: "|"), keyword: "or") {
            operands.append(try parseAnd(depth: depth))
        }
        if operands.count == 1 { return operands[0] }
        var flat: [QueryNode] = []
        for operand in operands {
            if case .or(let inner) = operand.node { flat += inner } else { flat.append(operand.node) }
        }
        return (.or(flat), operands.lazy.compactMap(\.unanchoredAt).first)
    }

    private mutating func parseAnd(depth: Int) throws(QueryError) -> Parsed {
        var operands = [try parseUnary(depth: depth)]
        while consumeConnective(symbol: UInt8(ascii: "&"), keyword: "and") {
            operands.append(try parseUnary(depth: depth))
        }
        if operands.count == 1 { return operands[0] }
        var flat: [QueryNode] = []
        for operand in operands {
            if case .and(let inner) = operand.node { flat += inner } else { flat.append(operand.node) }
        }
        let anchored = operands.contains { $0.unanchoredAt == nil }
        return (.and(flat), anchored ? nil : operands[0].unanchoredAt)
    }

    private mutating func parseUnary(depth: Int) throws(QueryError) -> Parsed {
        skipSpace()
        let start = position
        if keyword(at: position) == "not" {
            guard depth < CheckpointQuery.maximumDepth else { throw QueryError(.tooDeep, at: start) }
            position += 3
            let operand = try parseUnary(depth: depth + 1)
            return (.not(operand.node), start)
        }
        return try parsePrimary(depth: depth)
    }

    private mutating func parsePrimary(depth: Int) throws(QueryError) -> Parsed {
        skipSpace()
        let start = position
        guard start < bytes.count else {
            throw QueryError(.expected("a term (key and comparison, '*', '(' or NOT)"), at: start)
        }
        switch bytes[start] {
        case UInt8(ascii: "("):
            guard depth < CheckpointQuery.maximumDepth else { throw QueryError(.tooDeep, at: start) }
            position += 1
            let inner = try parseOr(depth: depth + 1)
            skipSpace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ")") else {
                throw QueryError(.expected("AND, OR or ')' (to close the '(' at offset \(start))"), at: position)
            }
            position += 1
            return inner
        case UInt8(ascii: "*"):
            try countTerm(at: start)
            position += 1
            return (.all, nil)
        default:
            return (try parseTerm(), nil)
        }
    }

    private mutating func parseTerm() throws(QueryError) -> QueryNode {
        let start = position
        let keyEnd = wordEnd(from: start)
        guard keyEnd > start, keyword(at: start) == nil else {
            throw QueryError(.expected("a term (key and comparison, '*', '(' or NOT)"), at: start)
        }
        let key = String(decoding: bytes[start..<keyEnd], as: UTF8.self)
        do {
            try PeerMetadata.validate(key: key, value: "")
        } catch {
            throw QueryError(.badKey(key), at: start)
        }
        try countTerm(at: start)
        position = keyEnd
        skipSpace()
        let opStart = position
        let op = comparisonOperator(at: opStart)
        guard let op else {
            throw QueryError(.expected("a comparison (= != ^= < <= > >= ?) after '\(key)'"), at: opStart)
        }
        position += op.utf8.count
        if op == "?" { return .term(key: key, test: .present) }
        skipSpace()
        let valueStart = position
        let value = try parseValue(after: op)
        let test: QueryTest
        switch op {
        case "=": test = .equal(value)
        case "!=": test = .notEqual(value)
        case "^=": test = .prefix(value)
        default:
            guard let number = SearchValue.number(value) else {
                throw QueryError(.notANumber(op: op, found: value), at: valueStart)
            }
            switch op {
            case ">": test = .greater(number)
            case ">=": test = .greaterOrEqual(number)
            case "<": test = .less(number)
            default: test = .lessOrEqual(number)
            }
        }
        return .term(key: key, test: test)
    }

    /// A bare word or a quoted string, unescaped.
    private mutating func parseValue(after op: String) throws(QueryError) -> String {
        let start = position
        var value: [UInt8] = []
        if start < bytes.count, bytes[start] == UInt8(ascii: "\"") {
            position += 1
            while true {
                guard position < bytes.count else { throw QueryError(.unterminatedString, at: start) }
                let byte = bytes[position]
                if byte == UInt8(ascii: "\"") { position += 1; break }
                if byte == UInt8(ascii: "\\") {
                    guard position + 1 < bytes.count,
                          bytes[position + 1] == UInt8(ascii: "\"") || bytes[position + 1] == UInt8(ascii: "\\")
                    else { throw QueryError(.badEscape, at: position) }
                    value.append(bytes[position + 1])
                    position += 2
                } else {
                    value.append(byte)
                    position += 1
                }
            }
        } else {
            let end = wordEnd(from: start)
            guard end > start else { throw QueryError(.expected("a value after '\(op)'"), at: start) }
            value = Array(bytes[start..<end])
            position = end
        }
        guard value.count <= PeerMetadata.maximumValueBytes else {
            throw QueryError(.valueTooLong(bytes: value.count), at: start)
        }
        return String(decoding: value, as: UTF8.self)
    }

    // MARK: - Tokens

    private mutating func countTerm(at offset: Int) throws(QueryError) {
        terms += 1
        guard terms <= CheckpointQuery.maximumTerms else { throw QueryError(.tooManyTerms, at: offset) }
    }

    /// Consumes `&&`/`||` or the keyword `and`/`or` (any case) after optional whitespace.
    private mutating func consumeConnective(symbol: UInt8, keyword expected: String) -> Bool {
        skipSpace()
        if position + 1 < bytes.count, bytes[position] == symbol, bytes[position + 1] == symbol {
            position += 2
            return true
        }
        if keyword(at: position) == expected {
            position += expected.utf8.count
            return true
        }
        return false
    }

    /// `"and"`, `"or"` or `"not"` when the word at `offset` spells one (any case) and no
    /// comparison operator follows it (which would make it a key).
    private func keyword(at offset: Int) -> String? {
        let end = wordEnd(from: offset)
        guard end - offset == 2 || end - offset == 3 else { return nil }
        let word = String(decoding: bytes[offset..<end].map { $0 | 0x20 }, as: UTF8.self)
        guard word == "and" || word == "or" || word == "not" else { return nil }
        var next = end
        while next < bytes.count, Self.isSpace(bytes[next]) { next += 1 }
        return comparisonOperator(at: next) == nil ? word : nil
    }

    private func comparisonOperator(at offset: Int) -> String? {
        guard offset < bytes.count else { return nil }
        let second: UInt8? = offset + 1 < bytes.count ? bytes[offset + 1] : nil
        let equals = second == UInt8(ascii: "=")
        switch bytes[offset] {
        case UInt8(ascii: "="): return "="
        case UInt8(ascii: "?"): return "?"
        case UInt8(ascii: "!"): return equals ? "!=" : nil
        case UInt8(ascii: "^"): return equals ? "^=" : nil
        case UInt8(ascii: ">"): return equals ? ">=" : ">"
        case UInt8(ascii: "<"): return equals ? "<=" : "<"
        default: return nil
        }
    }

    private func wordEnd(from offset: Int) -> Int {
        var end = offset
        while end < bytes.count, Self.isWordByte(bytes[end]) { end += 1 }
        return end
    }

    private mutating func skipSpace() {
        while position < bytes.count, Self.isSpace(bytes[position]) { position += 1 }
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    /// Letters, digits and `_ . - : / @ +`: the bytes of keys and bare values.
    private static func isWordByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: ":"),
             UInt8(ascii: "/"), UInt8(ascii: "@"), UInt8(ascii: "+"):
            return true
        default:
            return false
        }
    }
}
