import Foundation
import GRDB

/// The embedded INDEX: one SQLite file (`index.sqlite`) under a directory, through a GRDB
/// `DatabasePool` in WAL mode with `synchronous=FULL`, so that a write that returned is on disk
/// and survives the process being killed (or the machine losing power). Reads run concurrently
/// with the single writer. The schema is migrated by `DatabaseMigrator` on open.
public final class SQLiteIndexStore: SQLIndexStore, @unchecked Sendable {
    /// The database file's name under the directory.
    public static let fileName = "index.sqlite"

    /// The database file.
    public let path: String

    /// Opens (creating when missing, migrating when older) `directory/index.sqlite`.
    public init(directory: String, hasher: PasswordHasher = .interactive, now: @escaping @Sendable () -> Date = { Date() }) throws(IndexError) {
        let path = (directory as NSString).appendingPathComponent(Self.fileName)
        let pool: DatabasePool
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var configuration = Configuration()
            configuration.label = "PeerwayIndex"
            configuration.foreignKeysEnabled = true
            configuration.busyMode = .timeout(10)
            configuration.prepareDatabase { db in
                // FULL: WAL commits are fsynced before they return, so acknowledged writes survive a crash.
                try db.execute(sql: "PRAGMA synchronous = FULL")
            }
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw .storage("cannot open the index at \(path): \(error)")
        }
        self.path = path
        super.init(driver: GRDBDriver(pool: pool), hasher: hasher, now: now)
    }

    /// Versioned schema: a migration once released never changes; later versions add new ones.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: users, sessions, networks, memberships, invitations, metadata") { db in
            try db.execute(sql: """
                CREATE TABLE users (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    name TEXT NOT NULL UNIQUE,
                    password TEXT NOT NULL,
                    created_ms INTEGER NOT NULL,
                    updated_ms INTEGER NOT NULL
                );
                CREATE TABLE user_meta (
                    user_id INTEGER NOT NULL REFERENCES users(id),
                    key TEXT NOT NULL,
                    value TEXT NOT NULL,
                    num REAL,
                    PRIMARY KEY (user_id, key)
                ) WITHOUT ROWID;
                CREATE INDEX user_meta_key_value ON user_meta(key, value, user_id);
                CREATE INDEX user_meta_key_num ON user_meta(key, num, user_id);
                CREATE TABLE sessions (
                    peer_id BLOB PRIMARY KEY,
                    user_id INTEGER NOT NULL REFERENCES users(id),
                    created_ms INTEGER NOT NULL
                );
                CREATE INDEX sessions_user ON sessions(user_id, created_ms);
                CREATE TABLE networks (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    name TEXT NOT NULL UNIQUE,
                    owner_id INTEGER NOT NULL REFERENCES users(id),
                    invite_only INTEGER NOT NULL,
                    created_ms INTEGER NOT NULL,
                    updated_ms INTEGER NOT NULL
                );
                CREATE INDEX networks_owner ON networks(owner_id);
                CREATE TABLE network_meta (
                    network_id INTEGER NOT NULL REFERENCES networks(id),
                    key TEXT NOT NULL,
                    value TEXT NOT NULL,
                    num REAL,
                    PRIMARY KEY (network_id, key)
                ) WITHOUT ROWID;
                CREATE INDEX network_meta_key_value ON network_meta(key, value, network_id);
                CREATE INDEX network_meta_key_num ON network_meta(key, num, network_id);
                CREATE TABLE memberships (
                    network_id INTEGER NOT NULL REFERENCES networks(id),
                    user_id INTEGER NOT NULL REFERENCES users(id),
                    role INTEGER NOT NULL,
                    joined_ms INTEGER NOT NULL,
                    PRIMARY KEY (network_id, user_id)
                ) WITHOUT ROWID;
                CREATE INDEX memberships_user ON memberships(user_id, network_id);
                CREATE TABLE invitations (
                    network_id INTEGER NOT NULL REFERENCES networks(id),
                    user_id INTEGER NOT NULL REFERENCES users(id),
                    invited_by INTEGER,
                    created_ms INTEGER NOT NULL,
                    PRIMARY KEY (network_id, user_id)
                ) WITHOUT ROWID;
                CREATE INDEX invitations_user ON invitations(user_id);
                """)
        }
        return migrator
    }
}

/// Runs the engine's transactions on a GRDB pool (writes serialised, IMMEDIATE transactions).
struct GRDBDriver: SQLDriver {
    let pool: DatabasePool

    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T {
        try await pool.write { db in try body(GRDBConnection(db: db)) }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T {
        try await pool.read { db in try body(GRDBConnection(db: db)) }
    }

    func close() async {
        try? pool.close()
    }
}

struct GRDBConnection: SQLConnection {
    let db: Database
    var dialect: SQLDialect { .sqlite }

    private static func arguments(_ args: [SQLValue]) -> StatementArguments {
        StatementArguments(args.map { value -> DatabaseValue in
            switch value {
            case .null: return .null
            case .integer(let v): return v.databaseValue
            case .real(let v): return v.databaseValue
            case .text(let v): return v.databaseValue
            case .blob(let v): return Data(v).databaseValue
            }
        })
    }

    private func mapped<T>(_ work: () throws -> T) throws -> T {
        do {
            return try work()
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE
                    || error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
            throw SQLFailure.uniqueViolation(error.message ?? "constraint")
        }
    }

    @discardableResult
    /// The engine's fixed statements are prepared once per connection and kept, as are searches of
    /// one anchor and nothing else to check (a few texts per entity); searches with checks (whose
    /// text varies with the query's shape, "EXISTS" in every one) and statements with generated
    /// lists or several branches (more than 8 arguments) are prepared each time, so that the
    /// cache stays bounded.
    private func statement(_ sql: String) throws -> Statement {
        let generated = sql.contains("EXISTS") || sql.utf8.lazy.filter({ $0 == UInt8(ascii: "?") }).count > 8
        return generated ? try db.makeStatement(sql: sql) : try db.cachedStatement(sql: sql)
    }

    func execute(_ sql: String, _ args: [SQLValue]) throws -> Int {
        try mapped {
            try statement(sql).execute(arguments: Self.arguments(args))
            return db.changesCount
        }
    }

    func rows(_ sql: String, _ args: [SQLValue]) throws -> [[SQLValue]] {
        try mapped {
            try Row.fetchAll(statement(sql), arguments: Self.arguments(args)).map { row in
                row.databaseValues.map { value -> SQLValue in
                    switch value.storage {
                    case .null: return .null
                    case .int64(let v): return .integer(v)
                    case .double(let v): return .real(v)
                    case .string(let v): return .text(v)
                    case .blob(let v): return .blob(Array(v))
                    }
                }
            }
        }
    }
}
