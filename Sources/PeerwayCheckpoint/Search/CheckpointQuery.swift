/// A parsed metadata search over the live peers of a checkpoint, answered by `MetadataIndex`.
///
/// ```
/// query    = or-expr
/// or-expr  = and-expr { ( "OR" | "||" ) and-expr }
/// and-expr = unary { ( "AND" | "&&" ) unary }          AND binds tighter than OR
/// unary    = "NOT" unary | primary
/// primary  = "(" or-expr ")" | "*" | term
/// term     = key "=" value        equal: the peer's value is exactly these bytes
///          | key "!=" value       not equal: the peer has the key, with another value
///          | key "^=" value       prefix: the peer's value starts with these bytes
///          | key ">" number | key ">=" number | key "<" number | key "<=" number
///                                 numeric: the peer's value parses as a finite number
///          | key "?"              presence: the peer has the key
/// key      = 1-32 of a-z 0-9 _ . -                       (the rule of PeerMetadata keys)
/// value    = word | quoted                               (at most 128 bytes, like metadata)
/// word     = 1* of A-Z a-z 0-9 _ . - : / @ +
/// quoted   = '"' { any character but '"' and '\' | '\"' | '\\' } '"'
/// number   = value that Swift's `Double(_:)` parses to a finite number (`30`, `-2.5`, `1e3`)
/// ```
///
/// `*` matches every peer. Keywords are case-insensitive; a word spelled like a keyword is read
/// as a key when a comparison operator follows it (`not=1`, `and?`). Whitespace (space, tab,
/// CR, LF) may separate any two tokens. Strings are compared as UTF-8 bytes, without Unicode
/// normalization, and numbers as `Double` (`score=5` is a string test, `score>=5` a numeric one,
/// so `5.0` matches the second only).
///
/// Negation: `NOT` and `!=` only narrow. A query must contain a positive term that every match
/// satisfies (`a=1 AND NOT b=2`, `(a=1 OR c?) AND b!=2`), and so must each `OR` branch, because
/// the index finds candidates with that term and filters them. `key!=v` counts as positive: it is
/// answered as `key?` less `key=v`. A query without such a term (`NOT a=1`, `a=1 OR NOT b=2`) is
/// refused with `QueryError.Kind.noPositiveTerm`; write `* AND NOT a=1` to scan every peer
/// explicitly.
///
/// Limits: `maximumBytes`, `maximumDepth`, `maximumTerms`.
public struct CheckpointQuery: Equatable, Sendable, CustomStringConvertible {
    /// Longest query text, in bytes of UTF-8 (the control protocol's limit).
    public static let maximumBytes = ControlLimits.maximumQueryBytes
    /// Deepest nesting of parentheses and `NOT`s, so that parsing and evaluation recurse boundedly.
    public static let maximumDepth = 16
    /// Most comparisons (each `*` counts as one) in a query, which bounds evaluation work per peer.
    public static let maximumTerms = 32

    /// The syntax tree.
    let root: QueryNode

    /// Parses `text` by the grammar above.
    public init(parsing text: String) throws(QueryError) {
        var parser = QueryParser(text)
        root = try parser.parse()
    }

    init(root: QueryNode) { self.root = root }

    /// Whether a peer publishing `metadata` matches: the reference semantics, which the index
    /// answers without looking at every peer.
    public func matches(_ metadata: PeerMetadata) -> Bool {
        root.matches(metadata)
    }

    /// A canonical, fully parenthesized form that parses back to an equal query.
    public var description: String { root.description }
}

/// A node of the query tree.
indirect enum QueryNode: Equatable, Sendable, CustomStringConvertible {
    /// `*`.
    case all
    /// One comparison on one key.
    case term(key: String, test: QueryTest)
    /// Two or more operands, all of which must match.
    case and([QueryNode])
    /// Two or more operands, one of which must match.
    case or([QueryNode])
    /// The operand must not match.
    case not(QueryNode)

    func matches(_ metadata: PeerMetadata) -> Bool {
        switch self {
        case .all:
            return true
        case .term(let key, let test):
            guard let value = metadata[key] else { return false }
            return test.matches(value)
        case .and(let operands):
            return operands.allSatisfy { $0.matches(metadata) }
        case .or(let operands):
            return operands.contains { $0.matches(metadata) }
        case .not(let operand):
            return !operand.matches(metadata)
        }
    }

    var description: String {
        switch self {
        case .all: return "*"
        case .term(let key, let test): return key + test.description
        case .and(let operands): return "(" + operands.map(\.description).joined(separator: " AND ") + ")"
        case .or(let operands): return "(" + operands.map(\.description).joined(separator: " OR ") + ")"
        case .not(let operand): return "NOT " + operand.description
        }
    }
}

/// The comparison of a term, applied to the peer's value of the term's key.
enum QueryTest: Equatable, Sendable, CustomStringConvertible {
    case equal(String)
    case notEqual(String)
    case prefix(String)
    case greater(Double)
    case greaterOrEqual(Double)
    case less(Double)
    case lessOrEqual(Double)
    case present

    func matches(_ value: String) -> Bool {
        switch self {
        case .equal(let v): return value.utf8.elementsEqual(v.utf8)
        case .notEqual(let v): return !value.utf8.elementsEqual(v.utf8)
        case .prefix(let p): return value.utf8.starts(with: p.utf8)
        case .present: return true
        case .greater(let n): return SearchValue.number(value).map { $0 > n } ?? false
        case .greaterOrEqual(let n): return SearchValue.number(value).map { $0 >= n } ?? false
        case .less(let n): return SearchValue.number(value).map { $0 < n } ?? false
        case .lessOrEqual(let n): return SearchValue.number(value).map { $0 <= n } ?? false
        }
    }

    var description: String {
        func quoted(_ s: String) -> String {
            var out = "\""
            for scalar in s.unicodeScalars {
                if scalar == "\\" || scalar == "\"" { out.unicodeScalars.append("\\") }
                out.unicodeScalars.append(scalar)
            }
            return out + "\""
        }
        switch self {
        case .equal(let v): return "=" + quoted(v)
        case .notEqual(let v): return "!=" + quoted(v)
        case .prefix(let v): return "^=" + quoted(v)
        case .greater(let n): return ">\(n)"
        case .greaterOrEqual(let n): return ">=\(n)"
        case .less(let n): return "<\(n)"
        case .lessOrEqual(let n): return "<=\(n)"
        case .present: return "?"
        }
    }
}
