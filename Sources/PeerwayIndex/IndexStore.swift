import PeerwayCheckpoint

/// The INDEX's storage: users, their sessions, virtual networks, memberships, invitations and
/// searchable metadata. Two implementations pass one conformance suite: `SQLiteIndexStore`
/// (embedded, a file under the supernode's data directory) and `PostgresIndexStore`.
///
/// Every operation is atomic and durable once it returns; a refusal (`IndexError`) changes
/// nothing. Operations that change a record take the `IndexActor` asking and apply `IndexPolicy`
/// inside the same transaction; sign-up, login and reads take none (the service decides who may
/// read what). Limits are `IndexLimits`'. Pages are in id order; pass a page's `next` back as
/// `after` for the following one.
public protocol IndexStore: Sendable {
    // MARK: Users

    /// Signs a user up. Throws `.usernameTaken`, `.invalidUsername`, `.invalidPassword`, `.invalidMetadata`.
    func createUser(name: String, password: String, metadata: [String: String]) async throws(IndexError) -> IndexUser
    func user(named name: String) async throws(IndexError) -> IndexUser?
    func user(id: UserID) async throws(IndexError) -> IndexUser?
    /// The user whose password this is; `.badCredentials` for an unknown name or a wrong password
    /// alike (and in about the same time).
    func verifyPassword(name: String, password: String) async throws(IndexError) -> IndexUser
    func changePassword(of user: UserID, to newPassword: String, by actor: IndexActor) async throws(IndexError)
    /// Sets (non-nil) or removes (nil) metadata keys, all or nothing.
    func updateUserMetadata(of user: UserID, changes: [String: String?], by actor: IndexActor) async throws(IndexError) -> IndexUser
    /// Deletes the user, their sessions, memberships and invitations. Refused (`.ownsNetworks`)
    /// while they own a network.
    func deleteUser(_ user: UserID, by actor: IndexActor) async throws(IndexError)

    // MARK: Sessions

    /// Binds `peer` to `user` (replacing the peer's previous session, and the user's oldest one
    /// beyond `IndexLimits.maximumSessionsPerUser`). The service checks the password first.
    func login(user: UserID, peer: PeerID) async throws(IndexError) -> IndexSession
    /// Ends the peer's session; false when it had none.
    @discardableResult
    func logout(peer: PeerID) async throws(IndexError) -> Bool
    func session(of peer: PeerID) async throws(IndexError) -> IndexSession?
    /// The peers the user is logged in from, oldest first.
    func sessions(of user: UserID) async throws(IndexError) -> [IndexSession]
    /// The sessions of those of `peers` that are logged in, in one read (at most
    /// `IndexLimits.maximumSessionLookup` peers; order not significant).
    func sessions(ofPeers peers: [PeerID]) async throws(IndexError) -> [IndexSession]

    // MARK: Networks

    /// Creates a network owned by `owner`, who becomes its first member. `actor` must be the owner
    /// (or the administrator).
    func createNetwork(name: String, owner: UserID, access: NetworkAccess, metadata: [String: String], by actor: IndexActor) async throws(IndexError) -> IndexNetwork
    func network(named name: String) async throws(IndexError) -> IndexNetwork?
    func network(id: NetworkID) async throws(IndexError) -> IndexNetwork?
    /// Owner only.
    func updateNetwork(_ network: NetworkID, _ update: NetworkUpdate, by actor: IndexActor) async throws(IndexError) -> IndexNetwork
    /// Owner only; memberships and invitations go with it.
    func deleteNetwork(_ network: NetworkID, by actor: IndexActor) async throws(IndexError)

    // MARK: Membership

    /// `user` joins an open network (or one they are invited to, which accepts the invitation).
    func join(_ network: NetworkID, user: UserID, by actor: IndexActor) async throws(IndexError) -> IndexMembership
    /// Owner or admins invite `user`.
    func invite(_ user: UserID, to network: NetworkID, by actor: IndexActor) async throws(IndexError) -> IndexInvitation
    /// `user` accepts their invitation and becomes a member.
    func accept(_ network: NetworkID, user: UserID, by actor: IndexActor) async throws(IndexError) -> IndexMembership
    /// `user` declines their invitation, or a manager withdraws it.
    func withdrawInvitation(_ network: NetworkID, user: UserID, by actor: IndexActor) async throws(IndexError)
    /// Owner or admins remove `user` (admins only members); the owner is never removed.
    func remove(_ user: UserID, from network: NetworkID, by actor: IndexActor) async throws(IndexError)
    /// `user` leaves; the owner cannot (transfer or delete first).
    func leave(_ network: NetworkID, user: UserID, by actor: IndexActor) async throws(IndexError)
    /// The owner names a member admin or member.
    func setRole(_ role: NetworkRole, of user: UserID, in network: NetworkID, by actor: IndexActor) async throws(IndexError) -> IndexMembership
    /// The owner hands the network to a member, and becomes an admin.
    func transferOwnership(of network: NetworkID, to user: UserID, by actor: IndexActor) async throws(IndexError) -> IndexNetwork
    func membership(of user: UserID, in network: NetworkID) async throws(IndexError) -> IndexMembership?
    /// Members in user id order.
    func members(of network: NetworkID, after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexMembership>
    /// The user's memberships in network id order.
    func networks(of user: UserID, after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexMembership>
    /// The user's pending invitations.
    func invitations(of user: UserID) async throws(IndexError) -> [IndexInvitation]
    /// The network's pending invitations.
    func invitations(to network: NetworkID) async throws(IndexError) -> [IndexInvitation]

    // MARK: Search and management listings

    /// Users whose metadata matches, in id order, at most `IndexLimits.maximumSearchPage` a page.
    func searchUsers(_ query: IndexQuery, after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexUser>
    func searchNetworks(_ query: IndexQuery, after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexNetwork>
    /// Every user, network or membership, at most `IndexLimits.maximumListPage` a page.
    func listUsers(after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexUser>
    func listNetworks(after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexNetwork>
    func listMemberships(after: IndexCursor?, limit: Int?) async throws(IndexError) -> IndexPage<IndexMembership>

    /// Finishes pending work and releases the database; later calls throw `.closed`.
    func close() async
}
