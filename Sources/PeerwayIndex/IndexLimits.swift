import PeerwayCheckpoint

/// Every bound the INDEX enforces, named. Stores check them inside the transaction that would
/// exceed them, so concurrent requests cannot overshoot.
public enum IndexLimits {
    /// Usernames: 3-32 bytes of `a-z 0-9 _ . -`, starting with a letter or digit. Lowercase only,
    /// so that uniqueness needs no case rules (like metadata keys).
    public static let usernameBytes = 3...32
    /// Network names: the username rule, up to 64 bytes.
    public static let networkNameBytes = 3...64
    /// Passwords: 8-1024 bytes of UTF-8 (the upper bound keeps the KDF's input bounded).
    public static let passwordBytes = 8...1024
    /// Metadata of users and networks: `PeerMetadata`'s rules (16 entries, keys of 1-32 bytes of
    /// `a-z 0-9 _ . -`, values up to 128 bytes, 512 bytes in all), so that a record travels in one
    /// control datagram and the CHECKPOINT's query language applies as is; values may not hold NUL.
    public static let metadataEntries = PeerMetadata.maximumEntries
    public static let metadataValueBytes = PeerMetadata.maximumValueBytes
    public static let metadataTotalBytes = PeerMetadata.maximumTotalBytes
    /// Networks a user may belong to (owned ones included).
    public static let maximumNetworksPerUser = 256
    /// Members of one network (its owner included).
    public static let maximumMembersPerNetwork = 10_000
    /// Pending invitations of one network.
    public static let maximumInvitationsPerNetwork = 1_000
    /// Peers a user may be logged in from at once; logging in from one more ends the oldest session.
    public static let maximumSessionsPerUser = 16
    /// Most peers one `sessions(ofPeers:)` looks up (well under SQLite's bound parameters).
    public static let maximumSessionLookup = 500
    /// Results of one search page (and the default page of member and network listings).
    public static let maximumSearchPage = 100
    /// Items of one management listing page.
    public static let maximumListPage = 1_000

    /// Throws `.invalidUsername` unless `name` follows the username rule.
    public static func validate(username name: String) throws(IndexError) {
        guard isName(name, bytes: usernameBytes) else { throw .invalidUsername(name) }
    }

    /// Throws `.invalidNetworkName` unless `name` follows the network name rule.
    public static func validate(networkName name: String) throws(IndexError) {
        guard isName(name, bytes: networkNameBytes) else { throw .invalidNetworkName(name) }
    }

    /// Throws `.invalidPassword` unless the password's length is within `passwordBytes`.
    public static func validate(password: String) throws(IndexError) {
        guard passwordBytes.contains(password.utf8.count) else { throw .invalidPassword(bytes: password.utf8.count) }
    }

    /// `PeerMetadata`'s validation plus the INDEX's own rule (no NUL, which PostgreSQL's text cannot hold).
    public static func validate(metadata: [String: String]) throws(IndexError) -> PeerMetadata {
        let checked: PeerMetadata
        do { checked = try PeerMetadata(metadata) } catch { throw .invalidMetadata(error.description) }
        try checkNoNUL(checked)
        return checked
    }

    /// Applies set/remove `changes` to `metadata`, all or nothing.
    public static func apply(_ changes: [String: String?], to metadata: PeerMetadata) throws(IndexError) -> PeerMetadata {
        var result = metadata
        do { try result.apply(changes) } catch { throw .invalidMetadata(error.description) }
        try checkNoNUL(result)
        return result
    }

    /// A page size asked for, within 1...maximum (nil: `default`).
    static func pageSize(_ asked: Int?, default fallback: Int = 20, maximum: Int) throws(IndexError) -> Int {
        let size = asked ?? min(fallback, maximum)
        guard (1...maximum).contains(size) else { throw .invalidPageSize(size, maximum: maximum) }
        return size
    }

    private static func checkNoNUL(_ metadata: PeerMetadata) throws(IndexError) {
        for entry in metadata where entry.value.utf8.contains(0) {
            throw .invalidMetadata("metadata value of '\(entry.key)' holds a NUL byte")
        }
    }

    private static func isName(_ name: String, bytes: ClosedRange<Int>) -> Bool {
        let utf8 = name.utf8
        guard bytes.contains(utf8.count), let first = utf8.first, isLowerAlnum(first) else { return false }
        return utf8.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    private static func isLowerAlnum(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
    }
}
