import Crypto

/// The transport a relay token is good for.
public enum RelayTransport: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case udp = 1
    case tcp = 2

    public var description: String { self == .udp ? "udp" : "tcp" }
}

/// A relay token (docs/traversal-protocol.md, RELAY): 32 bytes that let one side of one allocation
/// bind, minted statelessly by HANDSHAKE with the key it shares with the relay.
///
///     allocation(8) expires(4: unix seconds) side(1: 0|1) transport(1) reserved(2) mac(16)
///
/// `mac` = HMAC-SHA256(relay key, the 16 bytes before it)[0..<16]. Build one with
/// `RelayTokenMinter.mint`, check one with `RelayTokenMinter.verify`.
public struct RelayToken: Hashable, Sendable, CustomStringConvertible {
    /// The allocation both sides' tokens name (chosen by the minter, 64 random bits).
    public var allocation: UInt64
    /// Unix seconds after which the token no longer binds and the allocation ends.
    public var expires: UInt32
    /// 0 for the initiator's side, 1 for the acceptor's.
    public var side: UInt8
    public var transport: RelayTransport
    /// The 16-byte MAC, big-endian halves.
    public var macHigh: UInt64
    public var macLow: UInt64

    public init(allocation: UInt64, expires: UInt32, side: UInt8, transport: RelayTransport, macHigh: UInt64, macLow: UInt64) {
        self.allocation = allocation
        self.expires = expires
        self.side = side
        self.transport = transport
        self.macHigh = macHigh
        self.macLow = macLow
    }

    /// The 32 wire bytes.
    public var bytes: [UInt8] {
        var out = signedPart
        out.reserveCapacity(RelayLimits.tokenBytes)
        Self.append(macHigh, to: &out)
        Self.append(macLow, to: &out)
        return out
    }

    /// The 16 bytes the MAC covers.
    var signedPart: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(RelayLimits.tokenBytes)
        Self.append(allocation, to: &out)
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: expires >> UInt32(shift))) }
        out.append(side)
        out.append(transport.rawValue)
        out.append(0)
        out.append(0)
        return out
    }

    /// Parses 32 bytes without checking the MAC (`RelayTokenMinter.verify` does); nil when the
    /// length, side, transport or reserved bytes are wrong.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == RelayLimits.tokenBytes else { return nil }
        let b = Array(bytes)
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(b[at + $1]) } }
        guard b[12] <= 1, let transport = RelayTransport(rawValue: b[13]), b[14] == 0, b[15] == 0 else { return nil }
        allocation = u64(0)
        expires = (8..<12).reduce(0) { $0 << 8 | UInt32(b[$1]) }
        side = b[12]
        self.transport = transport
        macHigh = u64(16)
        macLow = u64(24)
    }

    private static func append(_ v: UInt64, to out: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }

    public var description: String {
        "relay token \(String(allocation, radix: 16))/\(side) \(transport) until \(expires)"
    }
}

/// Why a bind was refused or an allocation could not be made.
public enum RelayError: String, Error, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Not 32 bytes, or a side, transport or reserved byte out of range.
    case malformed
    /// The MAC does not verify: not minted with this relay's key.
    case forged
    /// Past its `expires`.
    case expired
    /// A UDP token bound over TCP or the reverse.
    case wrongTransport
    /// The token's side is already bound to another address (or connection).
    case taken
    /// The relay holds its maximum of allocations.
    case full
    /// The allocation existed and ended (idle, bytes, lifetime): a token does not revive it.
    case ended

    public var description: String {
        switch self {
        case .malformed: return "malformed relay token"
        case .forged: return "relay token not minted with this relay's key"
        case .expired: return "relay token expired: ask HANDSHAKE for a new one"
        case .wrongTransport: return "relay token minted for the other transport"
        case .taken: return "relay token already bound from another address"
        case .full: return "the relay holds its maximum of allocations; pick another relay"
        case .ended: return "the relay allocation has ended; ask HANDSHAKE for a new one"
        }
    }
}

/// Mints and verifies relay tokens with the key HANDSHAKE and the relay share. Stateless and
/// thread-safe: minting needs no table, verifying needs only the key and the time.
public struct RelayTokenMinter: Sendable {
    /// Bytes of a relay key.
    public static let keyBytes = 32
    private let key: SymmetricKey

    public init(key: SymmetricKey) {
        self.key = key
    }

    /// The token for one side of an allocation.
    public func mint(allocation: UInt64, expires: UInt32, side: UInt8, transport: RelayTransport) -> RelayToken {
        precondition(side <= 1, "a relay allocation has sides 0 and 1")
        var token = RelayToken(allocation: allocation, expires: expires, side: side, transport: transport, macHigh: 0, macLow: 0)
        (token.macHigh, token.macLow) = mac(token.signedPart)
        return token
    }

    /// Both sides' tokens of a new allocation (side 0 first).
    public func mintPair(allocation: UInt64, expires: UInt32, transport: RelayTransport) -> (RelayToken, RelayToken) {
        (mint(allocation: allocation, expires: expires, side: 0, transport: transport),
         mint(allocation: allocation, expires: expires, side: 1, transport: transport))
    }

    /// Both sides' tokens of a new allocation with a random id, valid for `lifetimeSeconds` (at
    /// least 1, at most `RelayLimits.maximumLifetimeSeconds`) from `now`.
    public func grant(transport: RelayTransport, lifetimeSeconds: UInt64, now: RelayTime) -> (RelayToken, RelayToken) {
        let seconds = max(1, min(lifetimeSeconds, RelayLimits.maximumLifetimeSeconds))
        let expires = UInt32(clamping: UInt64(now.unixSeconds) + seconds)
        var rng = SystemRandomNumberGenerator()
        return mintPair(allocation: rng.next(), expires: expires, transport: transport)
    }

    /// The token in `bytes` when it was minted with this key and has not expired at `now` (unix
    /// seconds). The MAC comparison takes the same time wherever the bytes differ.
    public func verify(_ bytes: some Collection<UInt8>, now: UInt32) throws(RelayError) -> RelayToken {
        guard let token = RelayToken(bytes: bytes) else { throw .malformed }
        let (high, low) = mac(token.signedPart)
        guard (high ^ token.macHigh) | (low ^ token.macLow) == 0 else { throw .forged }
        guard now < token.expires else { throw .expired }
        return token
    }

    private func mac(_ signed: [UInt8]) -> (UInt64, UInt64) {
        let full = Array(HMAC<SHA256>.authenticationCode(for: signed, using: key))
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(full[at + $1]) } }
        return (u64(0), u64(8))
    }
}
