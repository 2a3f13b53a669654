/// Why a search query was refused: what went wrong and the byte offset (into the query's UTF-8)
/// where it was noticed.
///
/// The description reads like `query: expected a value after '=' at offset 7`, suitable for
/// sending back to the peer that asked.
public struct QueryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What was wrong.
    public enum Kind: Equatable, Sendable {
        /// Something else was found where `what` was expected (`"a value after '='"`).
        case expected(String)
        /// A key that metadata could never hold (see `PeerMetadata.validate(key:value:)`).
        case badKey(String)
        /// A numeric comparison (`op` is `>`, `>=`, `<` or `<=`) whose operand is not a finite number.
        case notANumber(op: String, found: String)
        /// A quoted string without its closing `"`; the offset is the opening quote.
        case unterminatedString
        /// A backslash in a quoted string followed by anything but `"` or `\`; the offset is the backslash.
        case badEscape
        /// A value longer than `PeerMetadata.maximumValueBytes`, which no peer can hold.
        case valueTooLong(bytes: Int)
        /// The query is longer than `CheckpointQuery.maximumBytes`.
        case tooLong(bytes: Int)
        /// Parentheses and `NOT`s nest deeper than `CheckpointQuery.maximumDepth`.
        case tooDeep
        /// More than `CheckpointQuery.maximumTerms` comparisons (and `*`s).
        case tooManyTerms
        /// The query (or one `OR` branch of it) has no positive term to find candidates with:
        /// `NOT` must be combined with a positive term by `AND`.
        case noPositiveTerm
    }

    /// Byte offset into the query's UTF-8 where the problem was noticed.
    public let offset: Int
    /// What was wrong.
    public let kind: Kind

    public init(_ kind: Kind, at offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    public var description: String {
        let what: String
        switch kind {
        case .expected(let thing):
            what = "expected \(thing)"
        case .badKey(let key):
            what = "key '\(key)' is invalid (use 1-\(PeerMetadata.maximumKeyBytes) characters of a-z 0-9 _ . -)"
        case .notANumber(let op, let found):
            what = "expected a finite number after '\(op)', found '\(found)'"
        case .unterminatedString:
            what = "expected a closing '\"' for the string opened"
        case .badEscape:
            what = "expected '\\\"' or '\\\\' (the only escapes)"
        case .valueTooLong(let bytes):
            what = "value is \(bytes) bytes, longer than any metadata value (\(PeerMetadata.maximumValueBytes))"
        case .tooLong(let bytes):
            what = "expected at most \(CheckpointQuery.maximumBytes) bytes, found \(bytes)"
        case .tooDeep:
            what = "parentheses and NOT nest deeper than \(CheckpointQuery.maximumDepth)"
        case .tooManyTerms:
            what = "more than \(CheckpointQuery.maximumTerms) terms"
        case .noPositiveTerm:
            what = "expected a positive term (key=value, key?, ...) combined by AND, which NOT only narrows"
        }
        return "query: \(what) at offset \(offset)"
    }
}
