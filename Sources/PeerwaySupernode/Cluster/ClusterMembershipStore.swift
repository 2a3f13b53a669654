import Foundation
import Logging
import NIOCore
import PeerwayIndex
import PostgresNIO

/// One supernode of the network as the membership table holds it.
public struct ClusterMember: Sendable, Equatable {
    /// The supernode's X25519 static public key (32 bytes); the table's primary key.
    public var key: [UInt8]
    /// Its CHECKPOINT address as peers dial it: "peerway://KEY@host:port[?tcp=P]".
    public var address: String
    /// host:port of its cluster mesh listener (other supernodes dial it).
    public var link: String
    /// host:port of its RELAY, UDP.
    public var relayUDP: String?
    /// host:port of its RELAY, TCP.
    public var relayTCP: String?
    /// Its STUN pair's primary host:port.
    public var stun: String?
    /// Peers registered on it (load).
    public var peers: Int
    /// Active relay allocations (load).
    public var relayAllocations: Int
    /// How long ago its last heartbeat was, by the DATABASE's clock (no skew between
    /// supernodes). Ignored by `join`.
    public var heartbeatAgeMillis: Int
    /// When it started (stored to the microsecond).
    public var startedAt: Date

    public init(key: [UInt8], address: String, link: String, relayUDP: String? = nil, relayTCP: String? = nil,
                stun: String? = nil, peers: Int = 0, relayAllocations: Int = 0, heartbeatAgeMillis: Int = 0,
                startedAt: Date = Date()) {
        self.key = key
        self.address = address
        self.link = link
        self.relayUDP = relayUDP
        self.relayTCP = relayTCP
        self.stun = stun
        self.peers = peers
        self.relayAllocations = relayAllocations
        self.heartbeatAgeMillis = heartbeatAgeMillis
        self.startedAt = startedAt
    }
}

/// The network's membership table in the shared PostgreSQL database: each supernode records
/// itself (`join`), refreshes its row with its load every `ClusterLimits.heartbeatMillis`
/// (`heartbeat`), and reads the live ones (`members`). Liveness is computed in SQL by the
/// database's clock, so supernodes' clocks never matter. PostgreSQL is the only shared engine:
/// every call is one parameterised statement in its own transaction.
///
/// While PostgreSQL is down each call fails with `.unreachable` within
/// `ClusterLimits.callTimeoutMillis`; once it is back calls succeed again on the same store.
public final class ClusterMembershipStore: Sendable {
    private let database: ClusterMembershipDatabase
    /// Where the database is: host:port/database (no password).
    public var location: String { database.location }

    /// Connects to `url` (`postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`,
    /// as for the INDEX; the same database may hold the INDEX) and migrates the cluster's tables
    /// under an advisory lock. Fails with `.unreachable` after `ClusterLimits.openTimeoutMillis`
    /// at the most.
    public init(url: String, logger: Logger) async throws(ClusterMembershipError) {
        let configuration: PostgresClient.Configuration
        do {
            configuration = try PostgresIndexStore.configuration(url)
        } catch {
            // The INDEX's message quotes the URL, password included: say what to use instead.
            let sslmode = url.contains("sslmode=") ? " (sslmode: one of disable, prefer, require)" : ""
            throw .invalidURL("the cluster database URL is invalid: use postgres://user:password@host:port/database\(sslmode)")
        }
        database = ClusterMembershipDatabase(configuration: configuration, logger: logger)
        do {
            try await database.run(timeoutMillis: ClusterLimits.openTimeoutMillis) { client in
                try await ClusterMembershipSchema.migrate(client, logger: logger)
            }
        } catch {
            // The pool's shutdown waits for its connection attempts to give up (20 s and more
            // on a loaded machine): the caller hears of the failure at the deadline, not then.
            let database = self.database
            Task { await database.close() }
            throw error
        }
    }

    /// Records `member` (or replaces its row: a restarted supernode joins again), its heartbeat
    /// now. `heartbeatAgeMillis` is ignored.
    public func join(_ member: ClusterMember) async throws(ClusterMembershipError) {
        try Self.validate(key: member.key)
        try Self.validate(address: member.address, "address", optional: false)
        try Self.validate(address: member.link, "link", optional: false)
        try Self.validate(address: member.relayUDP, "relayUDP")
        try Self.validate(address: member.relayTCP, "relayTCP")
        try Self.validate(address: member.stun, "stun")
        let key = ByteBuffer(bytes: member.key)
        let peers = Self.load(member.peers)
        let allocations = Self.load(member.relayAllocations)
        try await database.run { client in
            _ = try await client.query("""
                INSERT INTO peerway_cluster_members
                    (key, address, link, relay_udp, relay_tcp, stun, peers, relay_allocations, started_at, heartbeat_at)
                VALUES (\(key), \(member.address), \(member.link), \(member.relayUDP), \(member.relayTCP), \(member.stun),
                        \(peers), \(allocations), \(member.startedAt), now())
                ON CONFLICT (key) DO UPDATE SET
                    address = EXCLUDED.address, link = EXCLUDED.link, relay_udp = EXCLUDED.relay_udp,
                    relay_tcp = EXCLUDED.relay_tcp, stun = EXCLUDED.stun, peers = EXCLUDED.peers,
                    relay_allocations = EXCLUDED.relay_allocations, started_at = EXCLUDED.started_at,
                    heartbeat_at = now()
                """).collect()
        }
    }

    /// Refreshes the row of `key` with its load, its heartbeat now: one UPDATE. Returns false
    /// when there is no such row (it was forgotten or left): the caller joins again.
    public func heartbeat(key: [UInt8], peers: Int, relayAllocations: Int) async throws(ClusterMembershipError) -> Bool {
        try Self.validate(key: key)
        let bytes = ByteBuffer(bytes: key)
        let peers = Self.load(peers)
        let allocations = Self.load(relayAllocations)
        return try await database.run { client in
            try await !client.query("""
                UPDATE peerway_cluster_members SET peers = \(peers), relay_allocations = \(allocations), heartbeat_at = now()
                WHERE key = \(bytes) RETURNING 1
                """).collect().isEmpty
        }
    }

    /// The live members (last heartbeat at most `timeoutMillis` ago by the database's clock),
    /// ordered by key. Normally `ClusterLimits.memberTimeoutMillis`.
    public func members(timeoutMillis: Int = ClusterLimits.memberTimeoutMillis) async throws(ClusterMembershipError) -> [ClusterMember] {
        guard timeoutMillis >= 0 else { throw .invalidArgument("a member timeout of \(timeoutMillis) ms is negative") }
        let timeout = Double(timeoutMillis)
        return try await database.run { client in
            var members: [ClusterMember] = []
            let rows = try await client.query("""
                SELECT key, address, link, relay_udp, relay_tcp, stun, peers, relay_allocations,
                       greatest(0, floor(extract(epoch FROM now() - heartbeat_at) * 1000))::bigint, started_at
                FROM peerway_cluster_members
                WHERE heartbeat_at >= now() - \(timeout) * interval '1 millisecond'
                ORDER BY key
                """)
            for try await (key, address, link, relayUDP, relayTCP, stun, peers, allocations, age, startedAt) in rows.decode(
                (ByteBuffer, String, String, String?, String?, String?, Int, Int, Int, Date).self) {
                members.append(ClusterMember(key: Array(key.readableBytesView), address: address, link: link,
                                             relayUDP: relayUDP, relayTCP: relayTCP, stun: stun, peers: peers,
                                             relayAllocations: allocations, heartbeatAgeMillis: age, startedAt: startedAt))
            }
            return members
        }
    }

    /// Removes the row of `key` (a supernode shutting down cleanly): it is out of the network at
    /// once. Removing a missing row is no error.
    public func leave(key: [UInt8]) async throws(ClusterMembershipError) {
        try Self.validate(key: key)
        let bytes = ByteBuffer(bytes: key)
        try await database.run { client in
            _ = try await client.query("DELETE FROM peerway_cluster_members WHERE key = \(bytes)").collect()
        }
    }

    /// Deletes the rows of members whose last heartbeat is more than `olderThanSeconds` old
    /// (normally `ClusterLimits.forgetDeadAfterSeconds`); returns how many.
    public func forgetDead(olderThanSeconds: Int = ClusterLimits.forgetDeadAfterSeconds) async throws(ClusterMembershipError) -> Int {
        guard olderThanSeconds >= 0 else { throw .invalidArgument("forgetting members dead \(olderThanSeconds) s: the age is negative") }
        let seconds = Double(olderThanSeconds)
        return try await database.run { client in
            var count = 0
            for try await deleted in try await client.query("""
                WITH gone AS (
                    DELETE FROM peerway_cluster_members WHERE heartbeat_at < now() - \(seconds) * interval '1 second' RETURNING 1)
                SELECT count(*) FROM gone
                """).decode(Int.self) {
                count = deleted
            }
            return count
        }
    }

    /// The network's shared relay token key (32 random bytes), created once by whichever
    /// supernode asks first: every RELAY of the network mints and checks tokens with it, so any
    /// HANDSHAKE can grant any relay.
    ///
    /// One statement, race-free: an INSERT whose conflict (the secret exists, or a concurrent
    /// caller's insert just committed) turns into a no-op UPDATE that locks the committed row and
    /// returns its value. (INSERT ... ON CONFLICT DO NOTHING followed by a SELECT is equally
    /// correct but two statements; a single DO NOTHING + SELECT statement is not, its SELECT's
    /// snapshot predating a concurrent commit.)
    public func sharedSecret(named name: String) async throws(ClusterMembershipError) -> [UInt8] {
        guard !name.isEmpty, name.utf8.count <= ClusterLimits.maximumSecretNameBytes, !name.utf8.contains(0) else {
            throw .invalidArgument("secret name '\(name)' is invalid: use 1-\(ClusterLimits.maximumSecretNameBytes) bytes, no NUL")
        }
        var generator = SystemRandomNumberGenerator()
        let fresh = ByteBuffer(bytes: (0..<ClusterLimits.sharedSecretBytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        let value = try await database.run { client -> [UInt8]? in
            var value: [UInt8]?
            for try await stored in try await client.query("""
                INSERT INTO peerway_cluster_secrets (name, value) VALUES (\(name), \(fresh))
                ON CONFLICT (name) DO UPDATE SET value = peerway_cluster_secrets.value
                RETURNING value
                """).decode(ByteBuffer.self) {
                value = Array(stored.readableBytesView)
            }
            return value
        }
        guard let value else { throw .storage("the shared secret '\(name)' was neither stored nor found") }
        return value
    }

    /// Closes the connections; later calls throw `.closed`.
    public func close() async {
        await database.close()
    }

    // MARK: Validation

    private static func validate(key: [UInt8]) throws(ClusterMembershipError) {
        guard key.count == ClusterLimits.keyBytes else {
            throw .invalidArgument("a supernode key is \(ClusterLimits.keyBytes) bytes (its X25519 public key), not \(key.count)")
        }
    }

    private static func validate(address: String?, _ field: String, optional: Bool = true) throws(ClusterMembershipError) {
        guard let address else {
            if optional { return }
            throw .invalidArgument("a member's \(field) is missing")
        }
        guard !address.isEmpty, address.utf8.count <= ClusterLimits.maximumAddressBytes, !address.utf8.contains(0) else {
            throw .invalidArgument("a member's \(field) must be 1-\(ClusterLimits.maximumAddressBytes) bytes without NUL (got \(address.utf8.count) bytes)")
        }
    }

    /// A load count as the int column holds it (negative counts are 0; huge ones saturate).
    private static func load(_ count: Int) -> Int32 {
        Int32(clamping: max(0, count))
    }
}
