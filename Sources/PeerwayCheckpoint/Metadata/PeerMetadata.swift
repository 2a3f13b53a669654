/// A peer's live key/value metadata, as published to its checkpoint and searched by others.
///
/// Keys are short identifiers (`[a-z0-9_.-]`, 1-32 bytes, lowercase so that searches need no case
/// rules); values are UTF-8 text up to 128 bytes. A value that parses as a number also takes part
/// in numeric comparisons (`age>30`). Limits keep a registration inside one datagram.
public struct PeerMetadata: Hashable, Sendable, Sequence {
    /// Most entries a peer may publish.
    public static let maximumEntries = 16
    /// Longest key, in bytes.
    public static let maximumKeyBytes = 32
    /// Longest value, in bytes of UTF-8.
    public static let maximumValueBytes = 128
    /// Most bytes all keys and values may take together.
    public static let maximumTotalBytes = 512

    /// Entries sorted by key (a canonical order, so equal metadata encodes to equal bytes).
    public private(set) var entries: [(key: String, value: String)]

    public init() { entries = [] }

    /// Validates every entry against the limits; the error names the first offender.
    public init(_ dictionary: [String: String]) throws(MetadataError) {
        entries = []
        for (k, v) in dictionary.sorted(by: { $0.key < $1.key }) {
            try Self.validate(key: k, value: v)
            entries.append((k, v))
        }
        try checkTotals()
    }

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    public subscript(key: String) -> String? {
        entries.first(where: { $0.key == key })?.value
    }

    public var dictionary: [String: String] {
        Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0.value) })
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: String)]> { entries.makeIterator() }

    /// Sets (`value != nil`) or removes (`nil`) keys; all-or-nothing: on error nothing changes.
    public mutating func apply(_ changes: [String: String?]) throws(MetadataError) {
        var copy = dictionary
        for (k, v) in changes {
            if let v {
                try Self.validate(key: k, value: v)
                copy[k] = v
            } else {
                try Self.validate(key: k, value: "")
                copy[k] = nil
            }
        }
        self = try PeerMetadata(copy)
    }

    /// Bytes of keys and values together.
    public var totalBytes: Int { entries.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count } }

    public static func validate(key: String, value: String) throws(MetadataError) {
        let k = key.utf8
        guard !k.isEmpty, k.count <= maximumKeyBytes,
              k.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F || $0 == 0x2E || $0 == 0x2D })
        else { throw .badKey(key) }
        guard value.utf8.count <= maximumValueBytes else { throw .valueTooLong(key: key, bytes: value.utf8.count) }
    }

    private func checkTotals() throws(MetadataError) {
        guard entries.count <= Self.maximumEntries else { throw .tooManyEntries(entries.count) }
        let total = totalBytes
        guard total <= Self.maximumTotalBytes else { throw .tooLarge(bytes: total) }
    }

    public static func == (a: PeerMetadata, b: PeerMetadata) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for e in entries { hasher.combine(e.key); hasher.combine(e.value) }
    }
}

/// Why metadata was refused. Nothing is changed when this is thrown.
public enum MetadataError: Error, Equatable, Sendable, CustomStringConvertible {
    case badKey(String)
    case valueTooLong(key: String, bytes: Int)
    case tooManyEntries(Int)
    case tooLarge(bytes: Int)

    public var description: String {
        switch self {
        case .badKey(let k):
            return "metadata key '\(k)' is invalid: use 1-\(PeerMetadata.maximumKeyBytes) characters of a-z 0-9 _ . -"
        case .valueTooLong(let k, let n):
            return "metadata value of '\(k)' is \(n) bytes; the limit is \(PeerMetadata.maximumValueBytes)"
        case .tooManyEntries(let n):
            return "metadata has \(n) entries; the limit is \(PeerMetadata.maximumEntries)"
        case .tooLarge(let n):
            return "metadata is \(n) bytes in all; the limit is \(PeerMetadata.maximumTotalBytes)"
        }
    }
}
