/// The raw RELAY: constants and the flow they govern (docs/traversal-protocol.md, RELAY).
///
/// ```
///  HANDSHAKE (holds the relay key)        RELAY (same key)                       peer A / peer B
///     |  mint(allocation, expires, side 0|1, transport): no call to the relay, no state
///     |  token 0 to A, token 1 to B over their control channels
///                                           |<-- bind(token 0) 37 B ------------ A   (retransmitted until answered)
///                                           |    verify MAC and expiry; the first valid bind creates the allocation
///                                           |--- answer(token 0) 37 B ---------> A   (never larger than the bind)
///                                           |<-- bind(token 1) ----------------- B
///                                           |--- answer(token 1) --------------> B
///                                           |<== raw datagram from A's bound address ==> forwarded as is to B
///                                           |<== raw datagram from B's bound address ==> forwarded as is to A
/// ```
///
/// A token is `allocation(8) expires(4) side(1) transport(1) reserved(2) mac(16)` with
/// `mac = HMAC-SHA256(relay key, the 16 bytes before it)[0..<16]` (`RelayTokenMinter`). A bind is
/// `"PWRB" version(1) token(32)`, its answer `"PWRA" version(1) token(32)`: both 37 bytes, so the
/// relay never answers with more bytes than it received. Once a side is bound, every datagram from
/// its address is payload: nothing is added or removed, so the application's socket stays an
/// ordinary socket. A bind repeated from the bound address is answered again (the first answer may
/// have been lost). A bind for a side bound to another address moves the side there once its old
/// address has been silent for `moveIdleMillis` (UDP only: a peer that roamed, or whose NAT mapped
/// it anew); a side in use is not taken over. Whoever saw the token on the way could see and
/// drop the traffic anyway, and the payload is end-to-end encrypted. Over TCP the bind is a connection's first 37 bytes, and once
/// both sides are bound the two connections are spliced.
///
/// Allocations end when idle, at their byte limit, at their lifetime (the token's `expires`, at
/// most `maximumLifetimeSeconds` after the first bind), when the partner never binds, or (TCP) when
/// a connection closes. An ended allocation is remembered until its tokens expire, so they cannot
/// revive it.
public enum RelayLimits {
    /// Protocol version in binds and their answers.
    public static let version: UInt8 = 1
    /// Bytes of a token.
    public static let tokenBytes = 32
    /// Bytes of a bind and of its answer.
    public static let bindBytes = 4 + 1 + tokenBytes
    /// Magic of a bind ("PWRB").
    public static let bindMagic: [UInt8] = Array("PWRB".utf8)
    /// Magic of a bind's answer ("PWRA").
    public static let boundMagic: [UInt8] = Array("PWRA".utf8)
    /// Default UDP (and TCP, when separate) port of the relay.
    public static let defaultPort: UInt16 = 7401
    /// Seconds an allocation waits, after its first bind, for the other side to bind.
    public static let bindTimeoutSeconds: UInt64 = 30
    /// Seconds without a forwarded byte after which an allocation ends.
    public static let idleTimeoutSeconds: UInt64 = 120
    /// Default life of an allocation granted by HANDSHAKE, in seconds (the token's `expires` - now).
    public static let defaultLifetimeSeconds: UInt64 = 3_600
    /// Longest life of an allocation, whatever its token says.
    public static let maximumLifetimeSeconds: UInt64 = 86_400
    /// Default bytes an allocation may forward (both directions together).
    public static let defaultByteLimit: UInt64 = 1 << 30
    /// Milliseconds a UDP side must have been silent before a bind from another address moves it.
    public static let moveIdleMillis: UInt64 = 500
    /// Most allocations one relay holds.
    public static let maximumAllocations = 100_000
}
