import Foundation
import PeerwayCheckpoint

/// The operations of `IndexStore`, written once over `SQLConnection` and run by both stores'
/// drivers inside one transaction each, so that the two stores cannot differ in semantics.
/// Password derivation happens outside transactions (it takes a tenth of a second).
struct IndexEngine: Sendable {
    let now: @Sendable () -> Date

    // MARK: Reading records

    func users(_ db: any SQLConnection, ids: [Int64]) throws -> [IndexUser] {
        guard !ids.isEmpty else { return [] }
        let found = try users(db, in: placeholders(ids.count), ids.map(SQLValue.integer))
        return ids.compactMap { found[$0] }
    }

    /// The users whose ids `source` lists (a `?` list, or a subquery of one column), by id: one
    /// statement, rows and metadata together (one round trip, one snapshot).
    func users(_ db: any SQLConnection, in source: String, _ args: [SQLValue]) throws -> [Int64: IndexUser] {
        var found: [Int64: (row: [SQLValue], metadata: [String: String])] = [:]
        for row in try db.rows("""
            SELECT u.id, u.name, u.created_ms, u.updated_ms, m.key, m.value
            FROM users u LEFT JOIN user_meta m ON m.user_id = u.id WHERE u.id IN (\(source))
            """, args) {
            guard let id = row[0].int64 else { throw IndexError.storage("malformed user row") }
            // A user without metadata has one row of NULLs: assigning nil adds no entry.
            found[id, default: (row, [:])].metadata[row[4].string ?? ""] = row[5].string
        }
        return try found.mapValues { user in
            let row = user.row
            guard let id = row[0].int64, let name = row[1].string, let created = row[2].int64, let updated = row[3].int64 else {
                throw IndexError.storage("malformed user row")
            }
            return IndexUser(id: UserID(id), name: name, metadata: try stored(user.metadata),
                             created: Date(milliseconds: created), updated: Date(milliseconds: updated))
        }
    }

    func networks(_ db: any SQLConnection, ids: [Int64]) throws -> [IndexNetwork] {
        guard !ids.isEmpty else { return [] }
        let found = try networks(db, in: placeholders(ids.count), ids.map(SQLValue.integer))
        return ids.compactMap { found[$0] }
    }

    /// The networks whose ids `source` lists, by id (as `users(_:in:_:)`).
    func networks(_ db: any SQLConnection, in source: String, _ args: [SQLValue]) throws -> [Int64: IndexNetwork] {
        var found: [Int64: (row: [SQLValue], metadata: [String: String])] = [:]
        for row in try db.rows("""
            SELECT n.id, n.name, n.owner_id, n.invite_only, n.created_ms, n.updated_ms, m.key, m.value
            FROM networks n LEFT JOIN network_meta m ON m.network_id = n.id WHERE n.id IN (\(source))
            """, args) {
            guard let id = row[0].int64 else { throw IndexError.storage("malformed network row") }
            found[id, default: (row, [:])].metadata[row[6].string ?? ""] = row[7].string
        }
        return try found.mapValues { network in
            let row = network.row
            guard let id = row[0].int64, let name = row[1].string, let owner = row[2].int64, let inviteOnly = row[3].int64,
                  let created = row[4].int64, let updated = row[5].int64 else {
                throw IndexError.storage("malformed network row")
            }
            return IndexNetwork(id: NetworkID(id), name: name, owner: UserID(owner), access: inviteOnly != 0 ? .inviteOnly : .open,
                                metadata: try stored(network.metadata),
                                created: Date(milliseconds: created), updated: Date(milliseconds: updated))
        }
    }

    private func stored(_ metadata: [String: String]) throws -> PeerMetadata {
        do { return try PeerMetadata(metadata) } catch { throw IndexError.storage("stored metadata is invalid: \(error)") }
    }

    func user(_ db: any SQLConnection, id: UserID) throws -> IndexUser? {
        try users(db, ids: [id.rawValue]).first
    }

    func user(_ db: any SQLConnection, named name: String) throws -> IndexUser? {
        guard let id = try db.row("SELECT id FROM users WHERE name = ?", [.text(name)])?[0].int64 else { return nil }
        return try users(db, ids: [id]).first
    }

    func network(_ db: any SQLConnection, id: NetworkID) throws -> IndexNetwork? {
        try networks(db, ids: [id.rawValue]).first
    }

    func network(_ db: any SQLConnection, named name: String) throws -> IndexNetwork? {
        guard let id = try db.row("SELECT id FROM networks WHERE name = ?", [.text(name)])?[0].int64 else { return nil }
        return try networks(db, ids: [id]).first
    }

    /// Locks (PostgreSQL) and checks the user's row.
    func lockUser(_ db: any SQLConnection, _ user: UserID) throws {
        guard try db.row("SELECT id FROM users WHERE id = ?\(db.dialect.forUpdate)", [.integer(user.rawValue)]) != nil else {
            throw IndexError.noSuchUser(user.description)
        }
    }

    /// Locks (PostgreSQL) and reads the network's access.
    func lockNetwork(_ db: any SQLConnection, _ network: NetworkID) throws -> NetworkAccess {
        guard let row = try db.row("SELECT invite_only FROM networks WHERE id = ?\(db.dialect.forUpdate)", [.integer(network.rawValue)]) else {
            throw IndexError.noSuchNetwork(network.description)
        }
        return row[0].int64 == 0 ? .open : .inviteOnly
    }

    func role(_ db: any SQLConnection, of user: UserID, in network: NetworkID) throws -> NetworkRole? {
        guard let raw = try db.row("SELECT role FROM memberships WHERE network_id = ? AND user_id = ?",
                                   [.integer(network.rawValue), .integer(user.rawValue)])?[0].int64 else { return nil }
        return NetworkRole(rawValue: Int(raw))
    }

    func role(_ db: any SQLConnection, of actor: IndexActor, in network: NetworkID) throws -> NetworkRole? {
        guard case .user(let id) = actor else { return nil }
        return try role(db, of: id, in: network)
    }

    func membership(_ db: any SQLConnection, user: UserID, network: NetworkID) throws -> IndexMembership? {
        try db.row("SELECT network_id, user_id, role, joined_ms FROM memberships WHERE network_id = ? AND user_id = ?",
                   [.integer(network.rawValue), .integer(user.rawValue)]).map(membershipRow)
    }

    func membershipRow(_ row: [SQLValue]) throws -> IndexMembership {
        guard let network = row[0].int64, let user = row[1].int64, let raw = row[2].int64, let role = NetworkRole(rawValue: Int(raw)),
              let joined = row[3].int64 else { throw IndexError.storage("malformed membership row") }
        return IndexMembership(network: NetworkID(network), user: UserID(user), role: role, joined: Date(milliseconds: joined))
    }

    func invitationRow(_ row: [SQLValue]) throws -> IndexInvitation {
        guard let network = row[0].int64, let user = row[1].int64, let created = row[3].int64 else {
            throw IndexError.storage("malformed invitation row")
        }
        return IndexInvitation(network: NetworkID(network), user: UserID(user), invitedBy: row[2].int64.map(UserID.init),
                               created: Date(milliseconds: created))
    }

    func sessionRow(_ row: [SQLValue]) throws -> IndexSession {
        guard let bytes = row[0].bytes, let peer = PeerID(bytes: bytes), let user = row[1].int64, let created = row[2].int64 else {
            throw IndexError.storage("malformed session row")
        }
        return IndexSession(user: UserID(user), peer: peer, created: Date(milliseconds: created))
    }

    // MARK: Writing metadata

    func replaceMetadata(_ db: any SQLConnection, entity: IndexEntity, id: Int64, _ metadata: PeerMetadata) throws {
        try db.execute("DELETE FROM \(entity.metaTable) WHERE \(entity.ownerColumn) = ?", [.integer(id)])
        for entry in metadata {
            let number = IndexQuery.number(entry.value).map(SQLValue.real) ?? .null
            try db.execute("INSERT INTO \(entity.metaTable) (\(entity.ownerColumn), key, value, num) VALUES (?, ?, ?, ?)",
                           [.integer(id), .text(entry.key), .text(entry.value), number])
        }
    }
}
