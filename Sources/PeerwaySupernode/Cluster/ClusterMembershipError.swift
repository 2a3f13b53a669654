/// The cluster's timing and size bounds, named. Liveness is judged by the DATABASE's clock
/// (`now()` of PostgreSQL), never by a supernode's, so supernodes whose clocks disagree still
/// agree on who is live.
///
/// How long a supernode whose heartbeat stops stays in the network: at most `memberTimeoutMillis`
/// after its last successful heartbeat (plus the time the asker's `members` call takes), by the
/// database's clock. Its row is deleted `forgetDeadAfterSeconds` later by whichever supernode
/// calls `forgetDead`.
public enum ClusterLimits {
    /// How often a supernode refreshes its row (its heartbeat, with its load).
    public static let heartbeatMillis = 2_000
    /// A member whose last heartbeat is older than this is out of the network: four missed
    /// heartbeats, so one slow or lost heartbeat (or a database failover of a few seconds) does
    /// not drop a live supernode.
    public static let memberTimeoutMillis = 8_000
    /// Rows of members dead this long are deleted (`forgetDead`); until then a dead member's row
    /// only tells an operator who was there.
    public static let forgetDeadAfterSeconds = 3_600
    /// Longest one call (`join`, `heartbeat`, `members`, ...) may take, waiting for a connection
    /// included; past it the call fails with `.unreachable`. Also the TCP connect timeout.
    public static let callTimeoutMillis = 3_000
    /// Longest opening a store may take: connecting, then migrating under the advisory lock
    /// (which may wait for another supernode's migration).
    public static let openTimeoutMillis = 10_000
    /// Connections one store keeps to PostgreSQL at most (a heartbeat every two seconds and an
    /// occasional listing need one; the rest absorbs bursts).
    public static let maximumConnections = 4
    /// Longest `address`, `link`, relay and STUN strings a member may record, in bytes.
    public static let maximumAddressBytes = 512
    /// Longest name of a shared secret, in bytes.
    public static let maximumSecretNameBytes = 64
    /// Bytes of a shared secret (a relay token key).
    public static let sharedSecretBytes = 32
    /// Bytes of a supernode's key (its X25519 static public key).
    public static let keyBytes = 32
}

/// Why a cluster membership call failed. Descriptions are written for the operator and say what
/// to check.
public enum ClusterMembershipError: Error, Hashable, Sendable, CustomStringConvertible {
    /// PostgreSQL cannot be reached, did not answer in time, or refused the connection (login,
    /// database, TLS). Calls succeed again once it is back, on the same store.
    case unreachable(String)
    /// PostgreSQL answered with an error (or an answer this store cannot read).
    case storage(String)
    /// The database URL is not a usable `postgres://` URL.
    case invalidURL(String)
    /// An argument breaks a rule of `ClusterLimits` (a key that is not 32 bytes, an overlong address...).
    case invalidArgument(String)
    /// The store was closed.
    case closed
    /// The calling task was cancelled.
    case cancelled

    public var description: String {
        switch self {
        case .unreachable(let why): return "the cluster database is unreachable: \(why)"
        case .storage(let why): return "the cluster database failed: \(why)"
        case .invalidURL(let why): return why
        case .invalidArgument(let why): return why
        case .closed: return "the cluster membership store is closed"
        case .cancelled: return "the cluster membership call was cancelled"
        }
    }
}
