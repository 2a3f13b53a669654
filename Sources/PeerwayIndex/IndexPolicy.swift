/// The INDEX's authorisation rules, as pure decisions: each takes who asks and the roles involved
/// (read by the store inside the transaction that acts) and returns, or throws the refusal.
///
/// - A user changes only their own record (metadata, password, sessions, deletion) and acts only
///   for themselves (join, accept, leave); the administrator (management API) may act for anyone.
/// - A network's owner and admins manage its membership (invite, remove); an admin cannot remove
///   or change another admin, only the owner can; nobody removes the owner.
/// - Only the owner updates, deletes, transfers the network and names admins.
/// - The owner cannot leave: ownership is transferred first, or the network deleted.
/// - Anyone joins an open network; an invite-only one only with an invitation.
public enum IndexPolicy {
    /// `actor` changes or acts as `user`.
    public static func mayActAs(_ actor: IndexActor, user: UserID) throws(IndexError) {
        switch actor {
        case .administrator: return
        case .user(let id) where id == user: return
        case .user: throw .notYourRecord(actor: actor, user: user)
        }
    }

    /// `actor` (of role `actorRole` in the network, nil if not a member) invites to or removes
    /// from `network`.
    public static func mayManageMembers(_ actor: IndexActor, role actorRole: NetworkRole?, network: NetworkID) throws(IndexError) {
        if case .administrator = actor { return }
        guard let actorRole, actorRole >= .admin else { throw .notNetworkManager(actor: actor, network: network) }
    }

    /// `actor` removes `user` (of role `targetRole`) from `network`. Removing oneself is leaving.
    public static func mayRemove(_ actor: IndexActor, role actorRole: NetworkRole?, user: UserID, role targetRole: NetworkRole, network: NetworkID) throws(IndexError) {
        if targetRole == .owner { throw .cannotRemoveOwner(network) }
        if case .user(let id) = actor, id == user { return }
        try mayManageMembers(actor, role: actorRole, network: network)
        if case .user = actor, actorRole == .admin, targetRole == .admin {
            throw .adminCannotManageAdmin(network: network, user: user)
        }
    }

    /// `actor` updates, deletes or transfers `network`, or names its admins.
    public static func mayOwn(_ actor: IndexActor, role actorRole: NetworkRole?, network: NetworkID) throws(IndexError) {
        if case .administrator = actor { return }
        guard actorRole == .owner else { throw .notNetworkOwner(actor: actor, network: network) }
    }

    /// `actor` gives `newRole` to a member currently of `targetRole`.
    public static func maySetRole(_ actor: IndexActor, role actorRole: NetworkRole?, target targetRole: NetworkRole, to newRole: NetworkRole, network: NetworkID) throws(IndexError) {
        try mayOwn(actor, role: actorRole, network: network)
        guard newRole != .owner, targetRole != .owner else { throw .invalidRole(newRole == .owner ? "owner" : "owner's") }
    }

    /// A member of `role` leaves `network`.
    public static func mayLeave(role: NetworkRole, network: NetworkID) throws(IndexError) {
        if role == .owner { throw .ownerCannotLeave(network) }
    }

    /// A user joins `network` of `access`, holding an invitation or not.
    public static func mayJoin(access: NetworkAccess, invited: Bool, network: NetworkID) throws(IndexError) {
        if access == .inviteOnly && !invited { throw .inviteOnly(network) }
    }

    /// A user who owns `ownedNetworks` networks is deleted.
    public static func mayDelete(user: UserID, ownedNetworks: Int) throws(IndexError) {
        if ownedNetworks > 0 { throw .ownsNetworks(user: user, count: ownedNetworks) }
    }
}
