import PeerwayCheckpoint

/// The INDEX through the peer's control channel: accounts, virtual networks, memberships and
/// searchable metadata that stay whether a peer is online or not.
///
/// `signup` and `login` bind this peer's key to the user: later calls act as that user until
/// `logout` (the binding survives restarts of either side). Refusals throw
/// `PeerError.refused` with the INDEX's reason (`notLoggedIn`, `badCredentials`, `forbidden`,
/// `notFound`, `conflict`, `rateLimited`, ...).
extension Peer {
    /// Creates an account and logs this peer in as it.
    public func signup(username: String, password: String, metadata: [String: String] = [:]) async throws(PeerError) -> IndexUserEntry {
        let meta: PeerMetadata
        do { meta = try PeerMetadata(metadata) } catch { throw .invalidMetadata(error) }
        return try await user(.signup(username: username, password: password, metadata: meta), "signup")
    }

    /// Logs this peer in (login attempts are rate-limited per user and per source).
    public func login(username: String, password: String) async throws(PeerError) -> IndexUserEntry {
        try await user(.login(username: username, password: password), "login")
    }

    /// Ends this peer's session; its network watches end with it.
    public func logout() async throws(PeerError) {
        _ = try await index(.logout, "logout")
    }

    public func changePassword(from old: String, to new: String) async throws(PeerError) {
        _ = try await index(.changePassword(old: old, new: new), "change password")
    }

    /// Deletes the logged-in user's account, confirmed by its password (refused while the user
    /// owns a network: delete or transfer those first).
    public func deleteAccount(password: String) async throws(PeerError) {
        _ = try await index(.deleteAccount(password: password), "delete account")
    }

    /// The user this peer is logged in as.
    public func currentUser() async throws(PeerError) -> IndexUserEntry {
        try await user(.whoami, "whoami")
    }

    /// Changes the own user's permanent metadata: keys with a value set, `nil` removes; with
    /// `replace`, keys not named are removed too.
    public func updateProfile(_ changes: [String: String?], replace: Bool = false) async throws(PeerError) -> IndexUserEntry {
        try await user(.updateProfile(Self.update(changes, replace: replace)), "update profile")
    }

    /// Creates a network owned by the logged-in user.
    public func createNetwork(_ name: String, access: NetworkAccess = .open, metadata: [String: String] = [:]) async throws(PeerError) -> IndexNetworkEntry {
        let meta: PeerMetadata
        do { meta = try PeerMetadata(metadata) } catch { throw .invalidMetadata(error) }
        return try await network(.createNetwork(name: name, access: access, metadata: meta), "create network")
    }

    /// Owner only: changes access (nil keeps it) and metadata.
    public func updateNetwork(_ name: String, access: NetworkAccess? = nil, metadata: [String: String?] = [:], replace: Bool = false) async throws(PeerError) -> IndexNetworkEntry {
        try await network(.updateNetwork(name: name, access: access, metadata: Self.update(metadata, replace: replace)), "update network")
    }

    /// Owner only.
    public func deleteNetwork(_ name: String) async throws(PeerError) {
        _ = try await index(.deleteNetwork(name: name), "delete network")
    }

    /// Joins an open network, or one this user is invited to.
    public func joinNetwork(_ name: String) async throws(PeerError) -> IndexNetworkEntry {
        try await network(.join(network: name), "join")
    }

    /// Owner or admins: invites `user` to `network`.
    public func invite(_ user: String, to network: String) async throws(PeerError) {
        _ = try await index(.invite(network: network, user: user), "invite")
    }

    /// Owner or admins: removes `user` from `network`.
    public func remove(_ user: String, from network: String) async throws(PeerError) {
        _ = try await index(.remove(network: network, user: user), "remove")
    }

    public func leaveNetwork(_ name: String) async throws(PeerError) {
        _ = try await index(.leave(network: name), "leave")
    }

    /// Owner only: makes a member an admin or a member again.
    public func setRole(_ role: NetworkRole, of user: String, in network: String) async throws(PeerError) {
        _ = try await index(.setRole(network: network, user: user, role: role), "set role")
    }

    /// The network's members with their live online state (members only), up to `limit`.
    public func members(of network: String, limit: Int = 1_000) async throws(PeerError) -> [IndexMemberEntry] {
        try await pages(limit, "members") { page in .members(network: network, page: page) } extract: { reply in
            if case .members(_, let p) = reply { return (p.items, p.next) }
            return nil
        }
    }

    /// Subscribes to the network's members coming online and going offline (`PeerEvent.networkStatus`,
    /// renewed across reconnections); returns the first page of members.
    public func watchNetwork(_ name: String) async throws(PeerError) -> [IndexMemberEntry] {
        let reply = try await index(.watchNetwork(name), "watch network")
        guard case .members(_, let page) = reply else { throw .protocolViolation("watch network answered with another result") }
        return page.items
    }

    public func unwatchNetwork(_ name: String) async throws(PeerError) {
        _ = try await index(.unwatchNetwork(name), "unwatch network")
    }

    /// Users whose metadata matches `query` (the CHECKPOINT query language), up to `limit`.
    public func searchUsers(_ query: String, limit: Int = 20) async throws(PeerError) -> [IndexUserEntry] {
        try await pages(limit, "search users") { page in .searchUsers(query: query, page: page) } extract: { reply in
            if case .users(let p) = reply { return (p.items, p.next) }
            return nil
        }
    }

    /// Networks whose metadata matches `query`, with this user's role in each.
    public func searchNetworks(_ query: String, limit: Int = 20) async throws(PeerError) -> [IndexNetworkEntry] {
        try await pages(limit, "search networks") { page in .searchNetworks(query: query, page: page) } extract: { reply in
            if case .networks(let p) = reply { return (p.items, p.next) }
            return nil
        }
    }

    /// The networks this user belongs to, with their role.
    public func myNetworks(limit: Int = 1_000) async throws(PeerError) -> [IndexNetworkEntry] {
        try await pages(limit, "my networks") { page in .myNetworks(page) } extract: { reply in
            if case .networks(let p) = reply { return (p.items, p.next) }
            return nil
        }
    }

    /// Networks this user is invited to (join one to accept).
    public func invitations() async throws(PeerError) -> [IndexNetworkEntry] {
        let reply = try await index(.invitations, "invitations")
        guard case .networks(let page) = reply else { throw .protocolViolation("invitations answered with another result") }
        return page.items
    }

    /// Runs one INDEX operation as it is on the wire.
    public func index(_ call: IndexCall) async throws(PeerError) -> IndexReply {
        try await index(call, "\(call.operation)")
    }

    // MARK: internals

    func index(_ call: IndexCall, _ what: String) async throws(PeerError) -> IndexReply {
        let response = try await run(what) { $0.index(call, now: $1) }
        guard case .index(let reply) = response else { throw .protocolViolation("\(what) answered with another result") }
        return reply
    }

    private func user(_ call: IndexCall, _ what: String) async throws(PeerError) -> IndexUserEntry {
        guard case .user(let user) = try await index(call, what) else { throw .protocolViolation("\(what) answered with another result") }
        return user
    }

    private func network(_ call: IndexCall, _ what: String) async throws(PeerError) -> IndexNetworkEntry {
        guard case .network(let network) = try await index(call, what) else { throw .protocolViolation("\(what) answered with another result") }
        return network
    }

    /// Pages through a listing until `limit` items or its end.
    private func pages<Item>(_ limit: Int, _ what: String, _ call: (IndexPageRequest) -> IndexCall,
                             extract: (IndexReply) -> ([Item], String?)?) async throws(PeerError) -> [Item] {
        var items: [Item] = []
        var after: String?
        while items.count < limit {
            let want = UInt16(min(limit - items.count, Int(IndexWireLimits.maximumPage)))
            let reply = try await index(call(IndexPageRequest(after: after, limit: want)), what)
            guard let (some, next) = extract(reply) else { throw .protocolViolation("\(what) answered with another result") }
            items += some.prefix(limit - items.count)
            guard let next, !some.isEmpty, next != after else { break }
            after = next
        }
        return items
    }

    static func update(_ changes: [String: String?], replace: Bool) -> MetadataUpdate {
        MetadataUpdate(replace: replace, changes: changes.keys.sorted().map { (key: $0, value: changes[$0]!) })
    }
}
