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
        let list = placeholders(ids.count)
        let args = ids.map(SQLValue.integer)
        var metadata: [Int64: [String: String]] = [:]
        for row in try db.rows("SELECT user_id, key, value FROM user_meta WHERE user_id IN (\(list))", args) {
            guard let id = row[0].int64, let key = row[1].string, let value = row[2].string else { continue }
            metadata[id, default: [:]][key] = value
        }
        var byID: [Int64: IndexUser] = [:]
        for row in try db.rows("SELECT id, name, created_ms, updated_ms FROM users WHERE id IN (\(list))", args) {
            guard let id = row[0].int64, let name = row[1].string, let created = row[2].int64, let updated = row[3].int64 else {
                throw IndexError.storage("malformed user row")
            }
            byID[id] = IndexUser(id: UserID(id), name: name, metadata: try stored(metadata[id] ?? [:]),
                                 created: Date(milliseconds: created), updated: Date(milliseconds: updated))
        }
        return ids.compactMap { byID[$0] }
    }

    func networks(_ db: any SQLConnection, ids: [Int64]) throws -> [IndexNetwork] {
        guard !ids.isEmpty else { return [] }
        let list = placeholders(ids.count)
        let args = ids.map(SQLValue.integer)
        var metadata: [Int64: [String: String]] = [:]
        for row in try db.rows("SELECT network_id, key, value FROM network_meta WHERE network_id IN (\(list))", args) {
            guard let id = row[0].int64, let key = row[1].string, let value = row[2].string else { continue }
            metadata[id, default: [:]][key] = value
        }
        var byID: [Int64: IndexNetwork] = [:]
        for row in try db.rows("SELECT id, name, owner_id, invite_only, created_ms, updated_ms FROM networks WHERE id IN (\(list))", args) {
            guard let id = row[0].int64, let name = row[1].string, let owner = row[2].int64, let inviteOnly = row[3].int64,
                  let created = row[4].int64, let updated = row[5].int64 else {
                throw IndexError.storage("malformed network row")
            }
            byID[id] = IndexNetwork(id: NetworkID(id), name: name, owner: UserID(owner), access: inviteOnly != 0 ? .inviteOnly : .open,
                                    metadata: try stored(metadata[id] ?? [:]),
                                    created: Date(milliseconds: created), updated: Date(milliseconds: updated))
        }
        return ids.compactMap { byID[$0] }
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

    func sessions(_ db: any SQLConnection, user: UserID) throws -> [IndexSession] {
        try db.rows("SELECT peer_id, user_id, created_ms FROM sessions WHERE user_id = ? ORDER BY created_ms, peer_id",
                    [.integer(user.rawValue)]).map(sessionRow)
    }

    // MARK: Networks

    func networkCount(_ db: any SQLConnection, of user: UserID) throws -> Int64 {
        try db.int("SELECT count(*) FROM memberships WHERE user_id = ?", [.integer(user.rawValue)])
    }

    func createNetwork(_ db: any SQLConnection, name: String, owner: UserID, access: NetworkAccess, metadata: PeerMetadata) throws -> IndexNetwork {
        try lockUser(db, owner)
        if try db.row("SELECT id FROM networks WHERE name = ?", [.text(name)]) != nil { throw IndexError.networkNameTaken(name) }
        if try networkCount(db, of: owner) >= IndexLimits.maximumNetworksPerUser {
            throw IndexError.tooManyNetworks(user: owner, limit: IndexLimits.maximumNetworksPerUser)
        }
        let ms = now().milliseconds
        let id: Int64
        do {
            guard let inserted = try db.row(
                "INSERT INTO networks (name, owner_id, invite_only, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?) RETURNING id",
                [.text(name), .integer(owner.rawValue), .integer(access == .inviteOnly ? 1 : 0), .integer(ms), .integer(ms)])?[0].int64
            else { throw IndexError.storage("insert returned no id") }
            id = inserted
        } catch SQLFailure.uniqueViolation {
            throw IndexError.networkNameTaken(name)
        }
        try replaceMetadata(db, entity: .networks, id: id, metadata)
        try db.execute("INSERT INTO memberships (network_id, user_id, role, joined_ms) VALUES (?, ?, ?, ?)",
                       [.integer(id), .integer(owner.rawValue), .integer(Int64(NetworkRole.owner.rawValue)), .integer(ms)])
        guard let network = try network(db, id: NetworkID(id)) else { throw IndexError.storage("network vanished") }
        return network
    }

    func updateNetwork(_ db: any SQLConnection, network: NetworkID, update: NetworkUpdate, actor: IndexActor) throws -> IndexNetwork {
        _ = try lockNetwork(db, network)
        try IndexPolicy.mayOwn(actor, role: try role(db, of: actor, in: network), network: network)
        guard let current = try self.network(db, id: network) else { throw IndexError.noSuchNetwork(network.description) }
        let metadata = try IndexLimits.apply(update.metadata, to: current.metadata)
        let access = update.access ?? current.access
        try replaceMetadata(db, entity: .networks, id: network.rawValue, metadata)
        try db.execute("UPDATE networks SET invite_only = ?, updated_ms = ? WHERE id = ?",
                       [.integer(access == .inviteOnly ? 1 : 0), .integer(now().milliseconds), .integer(network.rawValue)])
        guard let updated = try self.network(db, id: network) else { throw IndexError.storage("network vanished") }
        return updated
    }

    func deleteNetwork(_ db: any SQLConnection, network: NetworkID, actor: IndexActor) throws {
        _ = try lockNetwork(db, network)
        try IndexPolicy.mayOwn(actor, role: try role(db, of: actor, in: network), network: network)
        for table in ["network_meta", "memberships", "invitations"] {
            try db.execute("DELETE FROM \(table) WHERE network_id = ?", [.integer(network.rawValue)])
        }
        try db.execute("DELETE FROM networks WHERE id = ?", [.integer(network.rawValue)])
    }

    // MARK: Membership

    private func invited(_ db: any SQLConnection, user: UserID, network: NetworkID) throws -> Bool {
        try db.row("SELECT user_id FROM invitations WHERE network_id = ? AND user_id = ?",
                   [.integer(network.rawValue), .integer(user.rawValue)]) != nil
    }

    /// Joins (`requireInvitation` false) or accepts an invitation (true).
    func join(_ db: any SQLConnection, network: NetworkID, user: UserID, requireInvitation: Bool) throws -> IndexMembership {
        try lockUser(db, user)
        let access = try lockNetwork(db, network)
        if try role(db, of: user, in: network) != nil { throw IndexError.alreadyMember(user: user, network: network) }
        let invitation = try invited(db, user: user, network: network)
        if requireInvitation && !invitation { throw IndexError.notInvited(user: user, network: network) }
        try IndexPolicy.mayJoin(access: access, invited: invitation, network: network)
        if try networkCount(db, of: user) >= IndexLimits.maximumNetworksPerUser {
            throw IndexError.tooManyNetworks(user: user, limit: IndexLimits.maximumNetworksPerUser)
        }
        let members = try db.int("SELECT count(*) FROM memberships WHERE network_id = ?", [.integer(network.rawValue)])
        if members >= IndexLimits.maximumMembersPerNetwork {
            throw IndexError.tooManyMembers(network: network, limit: IndexLimits.maximumMembersPerNetwork)
        }
        let ms = now().milliseconds
        try db.execute("DELETE FROM invitations WHERE network_id = ? AND user_id = ?", [.integer(network.rawValue), .integer(user.rawValue)])
        try db.execute("INSERT INTO memberships (network_id, user_id, role, joined_ms) VALUES (?, ?, ?, ?)",
                       [.integer(network.rawValue), .integer(user.rawValue), .integer(Int64(NetworkRole.member.rawValue)), .integer(ms)])
        return IndexMembership(network: network, user: user, role: .member, joined: Date(milliseconds: ms))
    }

    func invite(_ db: any SQLConnection, user: UserID, network: NetworkID, actor: IndexActor) throws -> IndexInvitation {
        try lockUser(db, user)
        _ = try lockNetwork(db, network)
        try IndexPolicy.mayManageMembers(actor, role: try role(db, of: actor, in: network), network: network)
        if try role(db, of: user, in: network) != nil { throw IndexError.alreadyMember(user: user, network: network) }
        if try invited(db, user: user, network: network) { throw IndexError.alreadyInvited(user: user, network: network) }
        let pending = try db.int("SELECT count(*) FROM invitations WHERE network_id = ?", [.integer(network.rawValue)])
        if pending >= IndexLimits.maximumInvitationsPerNetwork {
            throw IndexError.tooManyInvitations(network: network, limit: IndexLimits.maximumInvitationsPerNetwork)
        }
        let ms = now().milliseconds
        var inviter: UserID?
        if case .user(let id) = actor { inviter = id }
        try db.execute("INSERT INTO invitations (network_id, user_id, invited_by, created_ms) VALUES (?, ?, ?, ?)",
                       [.integer(network.rawValue), .integer(user.rawValue), inviter.map { .integer($0.rawValue) } ?? .null, .integer(ms)])
        return IndexInvitation(network: network, user: user, invitedBy: inviter, created: Date(milliseconds: ms))
    }

    func withdrawInvitation(_ db: any SQLConnection, network: NetworkID, user: UserID, actor: IndexActor) throws {
        _ = try lockNetwork(db, network)
        if actor != .user(user) {
            try IndexPolicy.mayManageMembers(actor, role: try role(db, of: actor, in: network), network: network)
        }
        let removed = try db.execute("DELETE FROM invitations WHERE network_id = ? AND user_id = ?",
                                     [.integer(network.rawValue), .integer(user.rawValue)])
        if removed == 0 { throw IndexError.notInvited(user: user, network: network) }
    }

    func remove(_ db: any SQLConnection, user: UserID, network: NetworkID, actor: IndexActor) throws {
        _ = try lockNetwork(db, network)
        guard let target = try role(db, of: user, in: network) else { throw IndexError.notMember(user: user, network: network) }
        try IndexPolicy.mayRemove(actor, role: try role(db, of: actor, in: network), user: user, role: target, network: network)
        try db.execute("DELETE FROM memberships WHERE network_id = ? AND user_id = ?", [.integer(network.rawValue), .integer(user.rawValue)])
    }

    func leave(_ db: any SQLConnection, network: NetworkID, user: UserID) throws {
        _ = try lockNetwork(db, network)
        guard let role = try role(db, of: user, in: network) else { throw IndexError.notMember(user: user, network: network) }
        try IndexPolicy.mayLeave(role: role, network: network)
        try db.execute("DELETE FROM memberships WHERE network_id = ? AND user_id = ?", [.integer(network.rawValue), .integer(user.rawValue)])
    }

    func setRole(_ db: any SQLConnection, role newRole: NetworkRole, user: UserID, network: NetworkID, actor: IndexActor) throws -> IndexMembership {
        _ = try lockNetwork(db, network)
        guard let target = try role(db, of: user, in: network) else { throw IndexError.notMember(user: user, network: network) }
        try IndexPolicy.maySetRole(actor, role: try role(db, of: actor, in: network), target: target, to: newRole, network: network)
        try db.execute("UPDATE memberships SET role = ? WHERE network_id = ? AND user_id = ?",
                       [.integer(Int64(newRole.rawValue)), .integer(network.rawValue), .integer(user.rawValue)])
        guard let membership = try membership(db, user: user, network: network) else { throw IndexError.storage("membership vanished") }
        return membership
    }

    func transferOwnership(_ db: any SQLConnection, network: NetworkID, to user: UserID, actor: IndexActor) throws -> IndexNetwork {
        _ = try lockNetwork(db, network)
        try IndexPolicy.mayOwn(actor, role: try role(db, of: actor, in: network), network: network)
        guard let target = try role(db, of: user, in: network) else { throw IndexError.notMember(user: user, network: network) }
        if target != .owner {
            let id = SQLValue.integer(network.rawValue)
            try db.execute("UPDATE memberships SET role = ? WHERE network_id = ? AND role = ?",
                           [.integer(Int64(NetworkRole.admin.rawValue)), id, .integer(Int64(NetworkRole.owner.rawValue))])
            try db.execute("UPDATE memberships SET role = ? WHERE network_id = ? AND user_id = ?",
                           [.integer(Int64(NetworkRole.owner.rawValue)), id, .integer(user.rawValue)])
            try db.execute("UPDATE networks SET owner_id = ?, updated_ms = ? WHERE id = ?",
                           [.integer(user.rawValue), .integer(now().milliseconds), id])
        }
        guard let updated = try self.network(db, id: network) else { throw IndexError.storage("network vanished") }
        return updated
    }

    // MARK: Pages

    func members(_ db: any SQLConnection, network: NetworkID, after: Int64, limit: Int) throws -> IndexPage<IndexMembership> {
        if try db.row("SELECT id FROM networks WHERE id = ?", [.integer(network.rawValue)]) == nil {
            throw IndexError.noSuchNetwork(network.description)
        }
        let rows = try db.rows("SELECT network_id, user_id, role, joined_ms FROM memberships WHERE network_id = ? AND user_id > ? ORDER BY user_id LIMIT ?",
                               [.integer(network.rawValue), .integer(after), .integer(Int64(limit + 1))])
        let items = try rows.prefix(limit).map(membershipRow)
        return IndexPage(items: items, next: rows.count > limit ? IndexCursor([items.last!.user.rawValue]) : nil)
    }

    func networks(_ db: any SQLConnection, user: UserID, after: Int64, limit: Int) throws -> IndexPage<IndexMembership> {
        let rows = try db.rows("SELECT network_id, user_id, role, joined_ms FROM memberships WHERE user_id = ? AND network_id > ? ORDER BY network_id LIMIT ?",
                               [.integer(user.rawValue), .integer(after), .integer(Int64(limit + 1))])
        let items = try rows.prefix(limit).map(membershipRow)
        return IndexPage(items: items, next: rows.count > limit ? IndexCursor([items.last!.network.rawValue]) : nil)
    }

    func memberships(_ db: any SQLConnection, after: (Int64, Int64), limit: Int) throws -> IndexPage<IndexMembership> {
        let rows = try db.rows("""
            SELECT network_id, user_id, role, joined_ms FROM memberships
            WHERE network_id > ? OR (network_id = ? AND user_id > ?) ORDER BY network_id, user_id LIMIT ?
            """, [.integer(after.0), .integer(after.0), .integer(after.1), .integer(Int64(limit + 1))])
        let items = try rows.prefix(limit).map(membershipRow)
        let next = rows.count > limit ? IndexCursor([items.last!.network.rawValue, items.last!.user.rawValue]) : nil
        return IndexPage(items: items, next: next)
    }

    func invitations(_ db: any SQLConnection, user: UserID) throws -> [IndexInvitation] {
        try db.rows("SELECT network_id, user_id, invited_by, created_ms FROM invitations WHERE user_id = ? ORDER BY network_id",
                    [.integer(user.rawValue)]).map(invitationRow)
    }

    func invitations(_ db: any SQLConnection, network: NetworkID) throws -> [IndexInvitation] {
        try db.rows("SELECT network_id, user_id, invited_by, created_ms FROM invitations WHERE network_id = ? ORDER BY user_id",
                    [.integer(network.rawValue)]).map(invitationRow)
    }

    /// Ids of `entity` after `after` matching `query` (every one when nil), at most `limit`, and
    /// whether more follow. The plan (see `plan`) picks how candidates are found; the whole query
    /// is then checked on each candidate by primary-key lookups of its metadata rows.
    func ids(_ db: any SQLConnection, entity: IndexEntity, query: IndexQuery?, after: Int64, limit: Int) throws -> ([Int64], Bool) {
        var args: [SQLValue] = []
        var sql: String
        if let query {
            switch try plan(db, entity: entity, query: query, need: limit + 1) {
            case .none:
                return ([], false)
            case .collect(let driver, let driverArgs) where db.dialect == .postgres:
                // Straight from the collected ids (distinct: one metadata row per entity and key,
                // UNION for ORs): PostgreSQL would otherwise hash-join them with the entity table.
                let owner = "c.\(entity.ownerColumn)"
                let predicate = query.predicate(for: entity, id: owner, dialect: db.dialect)
                sql = "SELECT \(owner) FROM (\(driver)) AS c WHERE \(owner) > ? AND \(predicate.sql) ORDER BY \(owner) LIMIT ?"
                args = driverArgs + [.integer(after)] + predicate.args
            case .collect(let driver, let driverArgs):
                // SQLite builds the IN list as an index ordered by id, and walks it in order.
                let predicate = query.predicate(for: entity, id: "e.id", dialect: db.dialect)
                sql = "SELECT e.id FROM \(entity.table) e WHERE e.id > ? AND e.id IN (\(driver)) AND \(predicate.sql) ORDER BY e.id LIMIT ?"
                args = [.integer(after)] + driverArgs + predicate.args
            case .walk(let key, let value):
                let predicate = query.predicate(for: entity, id: "w.\(entity.ownerColumn)", dialect: db.dialect)
                sql = """
                    SELECT w.\(entity.ownerColumn) FROM \(entity.metaTable) w
                    WHERE w.key = ? AND w.value = ? AND w.\(entity.ownerColumn) > ? AND \(predicate.sql)
                    ORDER BY w.\(entity.ownerColumn) LIMIT ?
                    """
                args = [.text(key), .text(value), .integer(after)] + predicate.args
            case .scan:
                let predicate = query.predicate(for: entity, id: "e.id", dialect: db.dialect)
                sql = "SELECT e.id FROM \(entity.table) e WHERE e.id > ? AND \(predicate.sql) ORDER BY e.id LIMIT ?"
                args = [.integer(after)] + predicate.args
            }
        } else {
            sql = "SELECT e.id FROM \(entity.table) e WHERE e.id > ? ORDER BY e.id LIMIT ?"
            args = [.integer(after)]
        }
        args.append(.integer(Int64(limit + 1)))
        let ids = try db.rows(sql, args).compactMap { $0[0].int64 }
        return (Array(ids.prefix(limit)), ids.count > limit)
    }

    /// How a search finds its candidates.
    enum SearchPlan {
        /// A required term has no match at all.
        case none
        /// Few candidates (under `IndexQuery.collectLimit`): collect them by index, then sort.
        case collect(String, [SQLValue])
        /// Many: walk the (key, value) index of a required equality term, in id order.
        case walk(key: String, value: String)
        /// Many, and no equality to walk: walk the entities in id order.
        case scan
    }

    /// Counts each required term's candidates (up to `IndexQuery.collectLimit`) through its index:
    /// the fewest decide, as in the CHECKPOINT's index. An OR of selective branches is collected
    /// as the union of each branch's best term.
    func plan(_ db: any SQLConnection, entity: IndexEntity, query: IndexQuery, need: Int) throws -> SearchPlan {
        let cap = IndexQuery.collectLimit
        func best(_ node: IndexQuery.Node) throws -> (anchor: IndexQuery.Anchor, count: Int)? {
            var found: (IndexQuery.Anchor, Int)?
            for anchor in IndexQuery.anchors(node) {
                var args: [SQLValue] = [.text(anchor.key)]
                let condition = IndexQuery.condition(anchor.test, args: &args)
                args.append(.integer(Int64(cap)))
                let count = Int(try db.int("SELECT count(*) FROM (SELECT 1 FROM \(entity.metaTable) WHERE key = ?\(condition) LIMIT ?) AS c", args))
                if found == nil || count < found!.1 { found = (anchor, count) }
                if count == 0 { break }
            }
            return found
        }
        func driver(_ anchor: IndexQuery.Anchor) -> (String, [SQLValue]) {
            var args: [SQLValue] = [.text(anchor.key)]
            let condition = IndexQuery.condition(anchor.test, args: &args)
            return ("SELECT \(entity.ownerColumn) FROM \(entity.metaTable) WHERE key = ?\(condition)", args)
        }

        if let (anchor, count) = try best(query.root) {
            if count == 0 { return .none }
            if count < cap { let (sql, args) = driver(anchor); return .collect(sql, args) }
        } else if case .or(let branches) = query.root {
            var parts: [String] = []
            var args: [SQLValue] = []
            var total = 0
            var anchored = true
            for branch in branches {
                guard let (anchor, count) = try best(branch) else { anchored = false; break }
                total += count
                if count == 0 { continue }
                let (sql, branchArgs) = driver(anchor)
                parts.append(sql)
                args += branchArgs
            }
            // Collecting costs about `total`; walking in id order about need × entities / matches
            // (matches at most `total`): collect while total² ≤ need × entities.
            if anchored {
                let entities = try db.row("SELECT max(id) FROM \(entity.table)", [])?.first?.int64 ?? 0
                if total < cap || Double(total) * Double(total) <= Double(need) * Double(entities) {
                    return parts.isEmpty ? .none : .collect(parts.joined(separator: " UNION "), args)
                }
            }
        }
        // Many candidates: walk an equality term's index in id order when there is one.
        for anchor in IndexQuery.anchors(query.root) {
            if case .equal(let value) = anchor.test { return .walk(key: anchor.key, value: value) }
        }
        return .scan
    }
}
