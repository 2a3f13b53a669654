import Foundation

/// Listings: pages of users and networks (searched or not), members, a user's networks, all
/// memberships, invitations. Pages are in id order and resume after a cursor of the last ids.
extension IndexEngine {
    // MARK: Users and networks

    /// A page of users after the id `after`, matching `query` (every user when nil), with whether
    /// more follow: the ids (see `searchSource`) and the records in one statement.
    func userPage(_ db: any SQLConnection, query: IndexQuery?, after: Int64, limit: Int) throws -> IndexPage<IndexUser> {
        guard let (source, args) = try searchSource(db, entity: .users, query: query, after: after, need: limit + 1) else {
            return IndexPage(items: [], next: nil)
        }
        return Self.page(try users(db, in: source, args), limit: limit)
    }

    /// A page of networks (as `userPage`).
    func networkPage(_ db: any SQLConnection, query: IndexQuery?, after: Int64, limit: Int) throws -> IndexPage<IndexNetwork> {
        guard let (source, args) = try searchSource(db, entity: .networks, query: query, after: after, need: limit + 1) else {
            return IndexPage(items: [], next: nil)
        }
        return Self.page(try networks(db, in: source, args), limit: limit)
    }

    /// The first `limit` records by id of up to `limit + 1` found, and the cursor after them when
    /// there were more.
    static func page<Item>(_ found: [Int64: Item], limit: Int) -> IndexPage<Item> {
        let ids = found.keys.sorted()
        let kept = ids.prefix(limit)
        return IndexPage(items: kept.map { found[$0]! }, next: ids.count > limit ? kept.last.map { IndexCursor([$0]) } : nil)
    }

    // MARK: Memberships and invitations

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
}
