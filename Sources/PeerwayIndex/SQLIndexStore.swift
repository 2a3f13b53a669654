import Foundation
import NIOPosix
import PeerwayCheckpoint

/// `IndexStore` over a SQL database: the behaviour both `SQLiteIndexStore` and
/// `PostgresIndexStore` share (they differ only in their driver and schema). Not created directly.
public class SQLIndexStore: IndexStore, @unchecked Sendable {
    // Immutable after init, hence the unchecked Sendable (subclasses add only `let`s too).
    let driver: any SQLDriver
    let engine: IndexEngine
    /// How new passwords are hashed (verification reads each record's own parameters).
    public let hasher: PasswordHasher
    /// Set by `close()`: later calls throw `.closed` without touching the database.
    private let closed = ClosedFlag()

    init(driver: any SQLDriver, hasher: PasswordHasher, now: @escaping @Sendable () -> Date) {
        self.driver = driver
        self.hasher = hasher
        self.engine = IndexEngine(now: now)
    }

    // MARK: Running

    func write<T: Sendable>(_ body: @escaping @Sendable (IndexEngine, any SQLConnection) throws -> T) async throws(IndexError) -> T {
        guard !closed.isSet else { throw .closed }
        let engine = self.engine
        do {
            return try await driver.write { db in try body(engine, db) }
        } catch {
            throw Self.indexError(error)
        }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (IndexEngine, any SQLConnection) throws -> T) async throws(IndexError) -> T {
        guard !closed.isSet else { throw .closed }
        let engine = self.engine
        do {
            return try await driver.read { db in try body(engine, db) }
        } catch {
            throw Self.indexError(error)
        }
    }

    static func indexError(_ error: any Error) -> IndexError {
        if let error = error as? IndexError { return error }
        if case SQLFailure.uniqueViolation(let what) = error { return .storage("uniqueness violated: \(what)") }
        return .storage(String(describing: error))
    }

    /// Runs CPU-heavy work (scrypt) off the caller's executor.
    func derive<T: Sendable>(_ work: @escaping @Sendable () throws(IndexError) -> T) async throws(IndexError) -> T {
        let result: Result<T, IndexError>
        do {
            result = try await PasswordThreads.pool.runIfActive { () -> Result<T, IndexError> in
                do throws(IndexError) { return .success(try work()) } catch { return .failure(error) }
            }
        } catch {
            throw .storage("the password hashing threads are not running: \(error)")
        }
        return try result.get()
    }

    private static func after(_ cursor: IndexCursor?) throws(IndexError) -> Int64 {
        guard let cursor else { return 0 }
        guard cursor.parts.count == 1 else { throw .invalidCursor(cursor.description) }
        return cursor.parts[0]
    }

    // MARK: Users

    public func createUser(name: String, password: String, metadata: [String: String]) async throws(IndexError) -> IndexUser {
        try IndexLimits.validate(username: name)
        try IndexLimits.validate(password: password)
        let checked = try IndexLimits.validate(metadata: metadata)
        let hasher = self.hasher
        let record = try await derive { () throws(IndexError) in try hasher.record(for: password) }
        return try await write { engine, db in try engine.createUser(db, name: name, record: record, metadata: checked) }
    }

    /// Management bulk import: signs up every user of `batch` in one transaction (all or nothing;
    /// a taken name refuses the batch), each with an already derived password record. Returns how
    /// many were created. Bounded by `IndexLimits.maximumListPage` users a call.
    public func importUsers(_ batch: [(name: String, password: PasswordRecord, metadata: [String: String])]) async throws(IndexError) -> Int {
        guard batch.count <= IndexLimits.maximumListPage else { throw .invalidPageSize(batch.count, maximum: IndexLimits.maximumListPage) }
        var checked: [(String, PasswordRecord, PeerMetadata)] = []
        for entry in batch {
            try IndexLimits.validate(username: entry.name)
            checked.append((entry.name, entry.password, try IndexLimits.validate(metadata: entry.metadata)))
        }
        let rows = checked
        return try await write { engine, db in
            try engine.importUsers(db, rows)
            return rows.count
        }
    }

    public func user(named name: String) async throws(IndexError) -> IndexUser? {
        try await read { engine, db in try engine.user(db, named: name) }
    }

    public func user(id: UserID) async throws(IndexError) -> IndexUser? {
        try await read { engine, db in try engine.user(db, id: id) }
    }

    public func verifyPassword(name: String, password: String) async throws(IndexError) -> IndexUser {
        let found = try await read { engine, db in try engine.passwordRecord(db, name: name) }
        let hasher = self.hasher
        guard let (id, record) = found, IndexLimits.passwordBytes.contains(password.utf8.count) else {
            _ = try? await derive { hasher.burn(password) }
            throw .badCredentials
        }
        let matches = try await derive { () throws(IndexError) in try PasswordHasher.verify(password, against: record) }
        guard matches, let user = try await user(id: UserID(id)) else { throw .badCredentials }
        return user
    }

    public func changePassword(of user: UserID, to newPassword: String, by actor: IndexActor) async throws(IndexError) {
        try IndexPolicy.mayActAs(actor, user: user)
        try IndexLimits.validate(password: newPassword)
        let hasher = self.hasher
        let record = try await derive { () throws(IndexError) in try hasher.record(for: newPassword) }
        try await write { engine, db in try engine.changePassword(db, user: user, record: record) }
    }

    public func updateUserMetadata(of user: UserID, changes: [String: String?], by actor: IndexActor) async throws(IndexError) -> IndexUser {
        try IndexPolicy.mayActAs(actor, user: user)
        return try await write { engine, db in try engine.updateUserMetadata(db, user: user, changes: changes) }
    }

    public func deleteUser(_ user: UserID, by actor: IndexActor) async throws(IndexError) {
        try IndexPolicy.mayActAs(actor, user: user)
        try await write { engine, db in try engine.deleteUser(db, user: user) }
    }

    // MARK: Sessions

    public func login(user: UserID, peer: PeerID) async throws(IndexError) -> IndexSession {
        try await write { engine, db in try engine.login(db, user: user, peer: peer) }
    }

    @discardableResult
    public func logout(peer: PeerID) async throws(IndexError) -> Bool {
        try await write { _, db in try db.execute("DELETE FROM sessions WHERE peer_id = ?", [.blob(peer.bytes)]) > 0 }
    }

    public func session(of peer: PeerID) async throws(IndexError) -> IndexSession? {
        try await read { engine, db in try engine.session(db, peer: peer) }
    }

    public func sessions(of user: UserID) async throws(IndexError) -> [IndexSession] {
        try await read { engine, db in try engine.sessions(db, user: user) }
    }

    public func sessions(ofPeers peers: [PeerID]) async throws(IndexError) -> [IndexSession] {
        guard peers.count <= IndexLimits.maximumSessionLookup else {
            throw .invalidPageSize(peers.count, maximum: IndexLimits.maximumSessionLookup)
        }
        let unique = Array(Set(peers))
        return try await read { engine, db in try engine.sessions(db, peers: unique) }
    }

    // MARK: Networks

    public func createNetwork(name: String, owner: UserID, access: NetworkAccess, metadata: [String: String], by actor: IndexActor) async throws(IndexError) -> IndexNetwork {
        try IndexPolicy.mayActAs(actor, user: owner)
        try IndexLimits.validate(networkName: name)
        let checked = try IndexLimits.validate(metadata: metadata)
        return try await write { engine, db in try engine.createNetwork(db, name: name, owner: owner, access: access, metadata: checked) }
    }

    public func network(named name: String) async throws(IndexError) -> IndexNetwork? {
        try await read { engine, db in try engine.network(db, named: name) }
    }

    public func network(id: NetworkID) async throws(IndexError) -> IndexNetwork? {
        try await read { engine, db in try engine.network(db, id: id) }
    }

    public func updateNetwork(_ network: NetworkID, _ update: NetworkUpdate, by actor: IndexActor) async throws(IndexError) -> IndexNetwork {
        try await write { engine, db in try engine.updateNetwork(db, network: network, update: update, actor: actor) }
    }

    public func deleteNetwork(_ network: NetworkID, by actor: IndexActor) async throws(IndexError) {
        try await write { engine, db in try engine.deleteNetwork(db, network: network, actor: actor) }
    }

    // MARK: Membership

    public func join(_ network: NetworkID, user: UserID, by actor: IndexActor) async throws(IndexError) -> IndexMembership {
        try IndexPolicy.mayActAs(actor, user: user)
        return try await write { engine, db in try engine.join(db, network: network, user: user, requireInvitation: false) }
    }

    public func invite(_ user: UserID, to network: NetworkID, by actor: IndexActor) async throws(IndexError) -> IndexInvitation {
        try await write { engine, db in try engine.invite(db, user: user, network: network, actor: actor) }
    }

    public func accept(_ network: NetworkID, user: UserID, by actor: IndexActor) async throws(IndexError) -> IndexMembership {
        try IndexPolicy.mayActAs(actor, user: user)
        return try await write { engine, db in try engine.join(db, network: network, user: user, requireInvitation: true) }
    }

    public func withdrawInvitation(_ network: NetworkID, user: UserID, by actor: IndexActor) async throws(IndexError) {
        try await write { engine, db in try engine.withdrawInvitation(db, network: network, user: user, actor: actor) }
    }

    public func remove(_ user: UserID, from network: NetworkID, by actor: IndexActor) async throws(IndexError) {
        try await write { engine, db in try engine.remove(db, user: user, network: network, actor: actor) }
    }

    public func leave(_ network: NetworkID, user: UserID, by actor: IndexActor) async throws(IndexError) {
        try IndexPolicy.mayActAs(actor, user: user)
        try await write { engine, db in try engine.leave(db, network: network, user: user) }
    }

    public func setRole(_ role: NetworkRole, of user: UserID, in network: NetworkID, by actor: IndexActor) async throws(IndexError) -> IndexMembership {
        try await write { engine, db in try engine.setRole(db, role: role, user: user, network: network, actor: actor) }
    }

    public func transferOwnership(of network: NetworkID, to user: UserID, by actor: IndexActor) async throws(IndexError) -> IndexNetwork {
        try await write { engine, db in try engine.transferOwnership(db, network: network, to: user, actor: actor) }
    }

    public func membership(of user: UserID, in network: NetworkID) async throws(IndexError) -> IndexMembership? {
        try await read { engine, db in try engine.membership(db, user: user, network: network) }
    }

    public func members(of network: NetworkID, after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexMembership> {
        let start = try Self.after(after)
        let size = try IndexLimits.pageSize(limit, maximum: IndexLimits.maximumListPage)
        return try await read { engine, db in try engine.members(db, network: network, after: start, limit: size) }
    }

    public func networks(of user: UserID, after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexMembership> {
        let start = try Self.after(after)
        let size = try IndexLimits.pageSize(limit, maximum: IndexLimits.maximumListPage)
        return try await read { engine, db in try engine.networks(db, user: user, after: start, limit: size) }
    }

    public func invitations(of user: UserID) async throws(IndexError) -> [IndexInvitation] {
        try await read { engine, db in try engine.invitations(db, user: user) }
    }

    public func invitations(to network: NetworkID) async throws(IndexError) -> [IndexInvitation] {
        try await read { engine, db in try engine.invitations(db, network: network) }
    }

    // MARK: Search and listings

    public func searchUsers(_ query: IndexQuery, after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexUser> {
        try await userPage(query, after: after, limit: try IndexLimits.pageSize(limit, maximum: IndexLimits.maximumSearchPage))
    }

    public func searchNetworks(_ query: IndexQuery, after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexNetwork> {
        try await networkPage(query, after: after, limit: try IndexLimits.pageSize(limit, maximum: IndexLimits.maximumSearchPage))
    }

    public func listUsers(after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexUser> {
        try await userPage(nil, after: after, limit: try IndexLimits.pageSize(limit, default: 100, maximum: IndexLimits.maximumListPage))
    }

    public func listNetworks(after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexNetwork> {
        try await networkPage(nil, after: after, limit: try IndexLimits.pageSize(limit, default: 100, maximum: IndexLimits.maximumListPage))
    }

    public func listMemberships(after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexMembership> {
        var start: (Int64, Int64) = (0, 0)
        if let after {
            guard after.parts.count == 2 else { throw .invalidCursor(after.description) }
            start = (after.parts[0], after.parts[1])
        }
        let size = try IndexLimits.pageSize(limit, default: 100, maximum: IndexLimits.maximumListPage)
        let from = start
        return try await read { engine, db in try engine.memberships(db, after: from, limit: size) }
    }

    private func userPage(_ query: IndexQuery?, after: IndexCursor?, limit: Int) async throws(IndexError) -> IndexPage<IndexUser> {
        let start = try Self.after(after)
        return try await read { engine, db in try engine.userPage(db, query: query, after: start, limit: limit) }
    }

    private func networkPage(_ query: IndexQuery?, after: IndexCursor?, limit: Int) async throws(IndexError) -> IndexPage<IndexNetwork> {
        let start = try Self.after(after)
        return try await read { engine, db in try engine.networkPage(db, query: query, after: start, limit: limit) }
    }

    /// Refreshes the database's planner statistics (ANALYZE), as after a bulk import; PostgreSQL's
    /// autovacuum does it by itself in time, SQLite keeps none until asked. PostgreSQL's store
    /// also vacuums (see `PostgresIndexStore.analyze`).
    public func analyze() async throws(IndexError) {
        _ = try await write { _, db in try db.execute("ANALYZE", []) }
    }

    public func close() async {
        closed.set()
        await driver.close()
    }

    /// Rows of a raw SQL query as text (tests read stored records with it).
    func rawRows(_ sql: String) async throws(IndexError) -> [[String]] {
        try await read { _, db in
            try db.rows(sql, []).map { $0.map { value in
                switch value {
                case .null: return "NULL"
                case .integer(let v): return String(v)
                case .real(let v): return String(v)
                case .text(let v): return v
                case .blob(let v): return v.map { String(format: "%02x", $0) }.joined()
                }
            } }
        }
    }
}

/// A flag set once, read from any thread.
final class ClosedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    func set() {
        lock.lock()
        value = true
        lock.unlock()
    }
}

/// Where password hashes are computed: a memory-hard KDF takes tens of milliseconds of one core
/// (and `PasswordHasher`'s memory) per call, so it runs on threads of its own, never on the
/// concurrency pool, where a burst of sign-ups would stall every other task (INDEX answers,
/// presence, the management API). At most `count` hashes run at once; more wait their turn.
enum PasswordThreads {
    /// Cores less one (at least one): the others stay free for the services.
    static let count = max(1, ProcessInfo.processInfo.activeProcessorCount - 1)

    /// Started on first use, for the life of the process.
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: count)
        pool.start()
        return pool
    }()
}
