import Logging
import PostgresNIO

/// The cluster's tables and their migrations. They share a database with the INDEX without
/// touching its names: the INDEX records its versions in `schema_migrations` under advisory lock
/// 0x5045_4552_5741_5931 ("PEERWAY1"); the cluster records its own in
/// `peerway_cluster_migrations` under lock `migrationLock` ("PWCLUSTR"), and every table of the
/// cluster is named `peerway_cluster_*`.
enum ClusterMembershipSchema {
    /// One migration: a version, a name, and its statements (one per query: the extended
    /// protocol takes one statement at a time). Released migrations never change; each
    /// statement is idempotent too, so a half-recorded migration can be replayed.
    struct Migration: Sendable {
        let version: Int64
        let name: String
        let statements: [String]
    }

    static let migrations: [Migration] = [
        Migration(version: 1, name: "cluster members and shared secrets", statements: [
            """
            CREATE TABLE IF NOT EXISTS peerway_cluster_members (
                key bytea PRIMARY KEY,
                address text NOT NULL,
                link text NOT NULL,
                relay_udp text,
                relay_tcp text,
                stun text,
                peers int NOT NULL DEFAULT 0,
                relay_allocations int NOT NULL DEFAULT 0,
                started_at timestamptz NOT NULL DEFAULT now(),
                heartbeat_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS peerway_cluster_secrets (
                name text PRIMARY KEY,
                value bytea NOT NULL
            )
            """,
        ]),
    ]

    /// An arbitrary constant naming the cluster's migration lock among the database's advisory
    /// locks (the INDEX's is "PEERWAY1").
    static let migrationLock: Int64 = 0x5057_434C_5553_5452  // "PWCLUSTR"

    /// Brings the database to the newest schema, in one transaction holding the migration lock,
    /// so supernodes starting together migrate one after the other.
    static func migrate(_ client: PostgresClient, logger: Logger) async throws {
        let newestKnown = migrations.last!.version
        try await client.withTransaction(logger: logger) { connection in
            _ = try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger).collect()
            _ = try await connection.query("""
                CREATE TABLE IF NOT EXISTS peerway_cluster_migrations (
                    version bigint PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())
                """, logger: logger).collect()
            var applied = Set<Int64>()
            for try await version in try await connection.query("SELECT version FROM peerway_cluster_migrations", logger: logger).decode(Int64.self) {
                applied.insert(version)
            }
            if let newest = applied.max(), newest > newestKnown {
                throw ClusterMembershipError.storage(
                    "the cluster tables have schema version \(newest), newer than this peerway knows (\(newestKnown)): upgrade peerway")
            }
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.statements {
                    _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger).collect()
                }
                _ = try await connection.query(
                    "INSERT INTO peerway_cluster_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger).collect()
                logger.info("cluster schema migrated", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            }
        }
    }
}
