import Crypto
import Foundation

/// A peer's identity on the network: the first 16 bytes of SHA-256 over its Ed25519 public key.
///
/// Self-certifying: whoever presents the public key that hashes to this id and signs with its
/// private key *is* this peer; no registry vouches for it. Printed as 26 lowercase base32
/// characters (`PeerID("…")` parses either case). 128 bits make a second preimage (taking over
/// somebody else's id) infeasible. Stored as two integers, so it is cheap to hash and compare.
public struct PeerID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Bytes of a PeerID on the wire.
    public static let byteCount = 16
    /// Characters of its printed form.
    public static let textLength = 26

    /// Bytes 0-7, big-endian.
    public let high: UInt64
    /// Bytes 8-15, big-endian.
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The id of the peer holding this signing key.
    public init(publicKey: Curve25519.Signing.PublicKey) {
        self.init(digestOf: publicKey.rawRepresentation)
    }

    /// The id derived from a raw 32-byte Ed25519 public key.
    public init(digestOf rawPublicKey: some DataProtocol) {
        let digest = SHA256.hash(data: rawPublicKey)
        self.init(bytes: Array(digest.prefix(Self.byteCount)))!
    }

    /// From exactly 16 bytes; `nil` otherwise.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Self.byteCount else { return nil }
        var hi: UInt64 = 0, lo: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { hi = hi << 8 | UInt64(b) } else { lo = lo << 8 | UInt64(b) }
        }
        self.init(high: hi, low: lo)
    }

    /// Parses the printed form (26 base32 characters, either case); `nil` when malformed.
    public init?(_ text: some StringProtocol) {
        guard text.utf8.count == Self.textLength, let bytes = Base32.decode(text) else { return nil }
        self.init(bytes: bytes)
    }

    /// The 16 bytes, big-endian.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    public var description: String { Base32.encode(bytes) }

    public static func < (a: PeerID, b: PeerID) -> Bool {
        a.high != b.high ? a.high < b.high : a.low < b.low
    }
}

extension PeerID: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = PeerID(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: "not a PeerID (26 base32 characters): \(text)"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
