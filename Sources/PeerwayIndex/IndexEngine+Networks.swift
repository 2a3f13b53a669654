import Foundation
import PeerwayCheckpoint

/// Networks and membership: creation, settings, joining, invitations, roles, ownership.
extension IndexEngine {
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
}
