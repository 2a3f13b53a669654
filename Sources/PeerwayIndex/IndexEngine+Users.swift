import Foundation
import PeerwayCheckpoint

/// Users (sign-up, bulk import, passwords, metadata, deletion) and their sessions.
extension IndexEngine {
    // MARK: Users

    func createUser(_ db: any SQLConnection, name: String, record: PasswordRecord, metadata: PeerMetadata) throws -> IndexUser {
        if try db.row("SELECT id FROM users WHERE name = ?", [.text(name)]) != nil { throw IndexError.usernameTaken(name) }
        let ms = now().milliseconds
        let id: Int64
        do {
            guard let inserted = try db.row("INSERT INTO users (name, password, created_ms, updated_ms) VALUES (?, ?, ?, ?) RETURNING id",
                                            [.text(name), .text(record.description), .integer(ms), .integer(ms)])?[0].int64 else {
                throw IndexError.storage("insert returned no id")
            }
            id = inserted
        } catch SQLFailure.uniqueViolation {
            throw IndexError.usernameTaken(name)
        }
        try replaceMetadata(db, entity: .users, id: id, metadata)
        guard let user = try user(db, id: UserID(id)) else { throw IndexError.storage("user vanished") }
        return user
    }

    /// Inserts users without reading them back (bulk import), in a few multi-row statements;
    /// throws `.usernameTaken` for the first name already there (or repeated in the batch).
    func importUsers(_ db: any SQLConnection, _ batch: [(String, PasswordRecord, PeerMetadata)]) throws {
        guard !batch.isEmpty else { return }
        var seen = Set<String>()
        for (name, _, _) in batch where !seen.insert(name).inserted { throw IndexError.usernameTaken(name) }
        let names = batch.map { SQLValue.text($0.0) }
        if let taken = try db.row("SELECT name FROM users WHERE name IN (\(placeholders(names.count))) LIMIT 1", names)?[0].string {
            throw IndexError.usernameTaken(taken)
        }
        let ms = SQLValue.integer(now().milliseconds)
        var args: [SQLValue] = []
        args.reserveCapacity(batch.count * 4)
        for (name, record, _) in batch { args += [.text(name), .text(record.description), ms, ms] }
        let values = Array(repeating: "(?, ?, ?, ?)", count: batch.count).joined(separator: ", ")
        var ids: [String: Int64] = [:]
        do {
            for row in try db.rows("INSERT INTO users (name, password, created_ms, updated_ms) VALUES \(values) RETURNING id, name", args) {
                if let id = row[0].int64, let name = row[1].string { ids[name] = id }
            }
        } catch SQLFailure.uniqueViolation(let what) {
            throw IndexError.usernameTaken(what)
        }
        var metaArgs: [SQLValue] = []
        var rows = 0
        func flush() throws {
            guard rows > 0 else { return }
            let values = Array(repeating: "(?, ?, ?, ?)", count: rows).joined(separator: ", ")
            try db.execute("INSERT INTO user_meta (user_id, key, value, num) VALUES \(values)", metaArgs)
            metaArgs.removeAll(keepingCapacity: true)
            rows = 0
        }
        for (name, _, metadata) in batch {
            guard let id = ids[name] else { throw IndexError.storage("import lost '\(name)'") }
            for entry in metadata {
                metaArgs += [.integer(id), .text(entry.key), .text(entry.value), IndexQuery.number(entry.value).map(SQLValue.real) ?? .null]
                rows += 1
                if rows == 2_000 { try flush() }
            }
        }
        try flush()
    }

    /// The user's id and stored password record.
    func passwordRecord(_ db: any SQLConnection, name: String) throws -> (Int64, PasswordRecord)? {
        guard let row = try db.row("SELECT id, password FROM users WHERE name = ?", [.text(name)]) else { return nil }
        guard let id = row[0].int64, let text = row[1].string, let record = PasswordRecord(parsing: text) else {
            throw IndexError.storage("stored password record of '\(name)' is malformed")
        }
        return (id, record)
    }

    func changePassword(_ db: any SQLConnection, user: UserID, record: PasswordRecord) throws {
        let changed = try db.execute("UPDATE users SET password = ?, updated_ms = ? WHERE id = ?",
                                     [.text(record.description), .integer(now().milliseconds), .integer(user.rawValue)])
        if changed == 0 { throw IndexError.noSuchUser(user.description) }
    }

    func updateUserMetadata(_ db: any SQLConnection, user: UserID, changes: [String: String?]) throws -> IndexUser {
        try lockUser(db, user)
        guard let current = try self.user(db, id: user) else { throw IndexError.noSuchUser(user.description) }
        let metadata = try IndexLimits.apply(changes, to: current.metadata)
        try replaceMetadata(db, entity: .users, id: user.rawValue, metadata)
        try db.execute("UPDATE users SET updated_ms = ? WHERE id = ?", [.integer(now().milliseconds), .integer(user.rawValue)])
        guard let updated = try self.user(db, id: user) else { throw IndexError.storage("user vanished") }
        return updated
    }

    func deleteUser(_ db: any SQLConnection, user: UserID) throws {
        try lockUser(db, user)
        let owned = try db.int("SELECT count(*) FROM networks WHERE owner_id = ?", [.integer(user.rawValue)])
        try IndexPolicy.mayDelete(user: user, ownedNetworks: Int(owned))
        // Children first: the same on both databases whatever their cascade settings.
        for table in ["user_meta", "sessions", "memberships", "invitations"] {
            try db.execute("DELETE FROM \(table) WHERE user_id = ?", [.integer(user.rawValue)])
        }
        try db.execute("UPDATE invitations SET invited_by = NULL WHERE invited_by = ?", [.integer(user.rawValue)])
        try db.execute("DELETE FROM users WHERE id = ?", [.integer(user.rawValue)])
    }

    // MARK: Sessions

    func login(_ db: any SQLConnection, user: UserID, peer: PeerID) throws -> IndexSession {
        try lockUser(db, user)
        let ms = now().milliseconds
        try db.execute("DELETE FROM sessions WHERE peer_id = ?", [.blob(peer.bytes)])
        try db.execute("INSERT INTO sessions (peer_id, user_id, created_ms) VALUES (?, ?, ?)",
                       [.blob(peer.bytes), .integer(user.rawValue), .integer(ms)])
        let count = try db.int("SELECT count(*) FROM sessions WHERE user_id = ?", [.integer(user.rawValue)])
        let excess = count - Int64(IndexLimits.maximumSessionsPerUser)
        if excess > 0 {
            let oldest = try db.rows("SELECT peer_id FROM sessions WHERE user_id = ? AND peer_id <> ? ORDER BY created_ms, peer_id LIMIT ?",
                                     [.integer(user.rawValue), .blob(peer.bytes), .integer(excess)])
            for row in oldest { try db.execute("DELETE FROM sessions WHERE peer_id = ?", [row[0]]) }
        }
        return IndexSession(user: user, peer: peer, created: Date(milliseconds: ms))
    }

    func session(_ db: any SQLConnection, peer: PeerID) throws -> IndexSession? {
        try db.row("SELECT peer_id, user_id, created_ms FROM sessions WHERE peer_id = ?", [.blob(peer.bytes)]).map(sessionRow)
    }

    func sessions(_ db: any SQLConnection, peers: [PeerID]) throws -> [IndexSession] {
        guard !peers.isEmpty else { return [] }
        let marks = Array(repeating: "?", count: peers.count).joined(separator: ", ")
        return try db.rows("SELECT peer_id, user_id, created_ms FROM sessions WHERE peer_id IN (\(marks))",
                           peers.map { .blob($0.bytes) }).map(sessionRow)
    }

    func sessions(_ db: any SQLConnection, user: UserID) throws -> [IndexSession] {
        try db.rows("SELECT peer_id, user_id, created_ms FROM sessions WHERE user_id = ? ORDER BY created_ms, peer_id",
                    [.integer(user.rawValue)]).map(sessionRow)
    }
}
