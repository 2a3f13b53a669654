/// The raw RELAY's UDP binding: constants and the flow they govern.
///
/// ```
///  HANDSHAKE                         RELAY                                 peer A / peer B
///     |-- allocate() ----------------->|  two 16-byte tokens, one per side
///     |<-------- (id, tokenA, tokenB) -|
///     |  tokenA to A, tokenB to B over their control channels
///                                      |<-- bind(tokenA) 21 B ------------ A   (retransmitted until acked)
///                                      |--- bound(tokenA) 21 B ----------> A   (never larger than the bind)
///                                      |<-- bind(tokenB) ---------------- B
///                                      |--- bound(tokenB) --------------> B
///                                      |<== raw datagram from A's bound address ==> forwarded as is to B
///                                      |<== raw datagram from B's bound address ==> forwarded as is to A
/// ```
///
/// A bind is `"PWRB" version(1) token(16)`, its answer `"PWRA" version(1) token(16)`. Once a side
/// is bound, every datagram from its address is payload: nothing is added or removed, so the
/// application's socket stays an ordinary socket. Each token binds once; a bind for a token
/// already bound to another address is refused (a third party who saw it cannot take the side).
/// Allocations end when idle, at their byte or time limit, or when never bound.
public enum RelayLimits {
    /// Protocol version in binds and their answers.
    public static let version: UInt8 = 1
    /// Bytes of a token.
    public static let tokenBytes = 16
    /// Bytes of a bind and of its answer.
    public static let bindBytes = 4 + 1 + tokenBytes
    /// Magic of a bind ("PWRB").
    public static let bindMagic: [UInt8] = Array("PWRB".utf8)
    /// Magic of a bind's answer ("PWRA").
    public static let boundMagic: [UInt8] = Array("PWRA".utf8)
    /// Seconds an allocation waits for both sides to bind.
    public static let bindTimeoutSeconds: UInt64 = 30
    /// Seconds without a forwarded datagram after which an allocation ends.
    public static let idleTimeoutSeconds: UInt64 = 120
    /// Default longest life of an allocation, in seconds.
    public static let defaultLifetimeSeconds: UInt64 = 3_600
    /// Default bytes an allocation may forward (both directions together).
    public static let defaultByteLimit: UInt64 = 1 << 30
    /// Most allocations one relay holds.
    public static let maximumAllocations = 100_000
}
