import PeerwayCheckpoint

/// Each `IndexCall`, run against the store for the peer that asked.
extension IndexControlService {
    /// `notifications`: pushes to this supernode's watchers; `cluster`: what the other
    /// supernodes must hear to tell theirs (`apply(_:)`).
    func run(_ context: IndexCallContext, notifications: inout [IndexNotification],
             cluster: inout [ClusterIndexEvent]) async throws(IndexError) -> IndexReply {
        let peer = context.peer
        switch context.call {
        case .signup(let username, let password, let metadata):
            let source = context.source.ipString
            try signups.check(user: username, source: source, now: clock())
            signups.recordFailure(user: username, source: source, now: clock())
            let user = try await store.createUser(name: username, password: password, metadata: metadata.dictionary)
            remember(user)
            _ = try await store.login(user: user.id, peer: peer)
            dropWatches(of: peer)
            notifications += await attach(peer, to: user.id)
            cluster.append(.loggedIn(peer: peer, user: Self.named(user), networks: []))
            return .user(entry(user))

        case .login(let username, let password):
            let user = try await verify(username, password, source: context.source)
            // The networks now: the other supernodes announce the login there and nowhere else.
            let networks = try await store.networks(of: user.id, after: nil, limit: IndexLimits.maximumNetworksPerUser).items
            _ = try await store.login(user: user.id, peer: peer)
            if userOfOnlinePeer[peer] != user.id { dropWatches(of: peer) }
            notifications += await attach(peer, to: user.id)
            cluster.append(.loggedIn(peer: peer, user: Self.named(user),
                                     networks: networks.prefix(ClusterFrameLimits.maximumNetworksPerIndexEvent).map(\.network.rawValue)))
            return .user(entry(user))

        case .logout:
            try await store.logout(peer: peer)
            dropWatches(of: peer)
            notifications += await detach(peer)
            cluster.append(.loggedOut(peer: peer))
            return .done

        case .changePassword(let old, let new):
            let me = try await currentUser(peer)
            _ = try await verify(me.name, old, source: context.source)
            try await store.changePassword(of: me.id, to: new, by: .user(me.id))
            return .done

        case .whoami:
            return .user(entry(try await currentUser(peer)))

        case .updateProfile(let update):
            let me = try await currentUser(peer)
            let user = try await store.updateUserMetadata(of: me.id, changes: Self.changes(update, current: me.metadata), by: .user(me.id))
            return .user(entry(user))

        case .deleteAccount(let password):
            let me = try await currentUser(peer)
            _ = try await verify(me.name, password, source: context.source)
            let peers = onlinePeers(of: me.id)
            // Read before they go with the account: the other supernodes' watchers may watch any of them.
            let memberships = try await store.networks(of: me.id, after: nil, limit: IndexLimits.maximumNetworksPerUser).items.map(\.network)
            let networks = watched(memberships)
            try await store.deleteUser(me.id, by: .user(me.id))
            // Its peers are logged out with it: their watches end, watchers see them go.
            for p in peers {
                dropWatches(of: p)
                notifications += await detach(p, networks: networks)
            }
            cluster.append(.accountDeleted(user: Self.named(me),
                                           networks: memberships.prefix(ClusterFrameLimits.maximumNetworksPerIndexEvent).map(\.rawValue)))
            return .done

        case .createNetwork(let name, let access, let metadata):
            let me = try await currentUser(peer)
            let network = try await store.createNetwork(name: name, owner: me.id, access: access, metadata: metadata.dictionary, by: .user(me.id))
            return .network(entry(network, owner: me.name, role: .owner))

        case .updateNetwork(let name, let access, let update):
            let me = try await currentUser(peer)
            let network = try await existingNetwork(name)
            let updated = try await store.updateNetwork(network.id, NetworkUpdate(access: access, metadata: Self.changes(update, current: network.metadata)),
                                                        by: .user(me.id))
            return .network(await entry(updated, role: try await store.membership(of: me.id, in: updated.id)?.role))

        case .deleteNetwork(let name):
            let me = try await currentUser(peer)
            let network = try await existingNetwork(name)
            try await store.deleteNetwork(network.id, by: .user(me.id))
            dropWatchers(of: network.id)
            cluster.append(.networkDeleted(network: Self.named(network)))
            return .done

        case .join(let name):
            let me = try await currentUser(peer)
            let network = try await existingNetwork(name)
            let membership = try await store.join(network.id, user: me.id, by: .user(me.id))
            // The network's watchers see the new member's online peers.
            for p in onlinePeers(of: me.id) {
                notifications += await announce(user: me.id, peer: p, online: true, networks: [NetworkName(network)])
            }
            cluster.append(.joined(user: Self.named(me), network: Self.named(network)))
            return .network(await entry(network, role: membership.role))

        case .invite(let networkName, let username):
            let me = try await currentUser(peer)
            let network = try await existingNetwork(networkName)
            let invitee = try await existingUser(username)
            _ = try await store.invite(invitee.id, to: network.id, by: .user(me.id))
            return .done

        case .remove(let networkName, let username):
            let me = try await currentUser(peer)
            let network = try await existingNetwork(networkName)
            let member = try await existingUser(username)
            try await store.remove(member.id, from: network.id, by: .user(me.id))
            notifications += await leaving(member.id, NetworkName(network))
            cluster.append(.left(user: Self.named(member), network: Self.named(network)))
            return .done

        case .leave(let name):
            let me = try await currentUser(peer)
            let network = try await existingNetwork(name)
            try await store.leave(network.id, user: me.id, by: .user(me.id))
            notifications += await leaving(me.id, NetworkName(network))
            cluster.append(.left(user: Self.named(me), network: Self.named(network)))
            return .done

        case .members(let name, let page):
            let me = try await currentUser(peer)
            let network = try await existingNetwork(name)
            return try await membersPage(network, page: page, asker: me.id)

        case .watchNetwork(let name):
            let me = try await currentUser(peer)
            let network = try await existingNetwork(name)
            let first = try await membersPage(network, page: IndexPageRequest(), asker: me.id)
            if watching[peer]?.contains(network.id) != true {
                guard watching[peer, default: []].count < IndexControlLimits.maximumWatchedNetworksPerPeer else {
                    throw .tooManyNetworks(user: me.id, limit: IndexControlLimits.maximumWatchedNetworksPerPeer)
                }
                watch(network, by: peer)
            }
            return first

        case .unwatchNetwork(let name):
            _ = try await currentUser(peer)
            if let network = try await store.network(named: name) { dropWatchers(of: network.id, only: [peer]) }
            return .done

        case .setRole(let networkName, let username, let role):
            let me = try await currentUser(peer)
            let network = try await existingNetwork(networkName)
            let member = try await existingUser(username)
            _ = try await store.setRole(role, of: member.id, in: network.id, by: .user(me.id))
            return .done

        case .searchUsers(let text, let page):
            _ = try await currentUser(peer)
            let query = try IndexQuery(parsing: text)
            let found = try await store.searchUsers(query, after: try Self.cursor(page.after), limit: Self.limit(page))
            for u in found.items { remember(u) }
            return .users(Self.fit(found.items.map(entry), next: found.next, id: { $0.id }, bytes: { $0.wireBytes }))

        case .searchNetworks(let text, let page):
            let me = try await currentUser(peer)
            let query = try IndexQuery(parsing: text)
            let found = try await store.searchNetworks(query, after: try Self.cursor(page.after), limit: Self.limit(page))
            let roles = try await roles(of: me.id)
            var entries: [IndexNetworkEntry] = []
            for n in found.items { entries.append(await entry(n, role: roles[n.id])) }
            return .networks(Self.fit(entries, next: found.next, id: { $0.id }, bytes: { $0.wireBytes }))

        case .myNetworks(let page):
            let me = try await currentUser(peer)
            let mine = try await store.networks(of: me.id, after: try Self.cursor(page.after), limit: Self.limit(page))
            var entries: [IndexNetworkEntry] = []
            for m in mine.items {
                guard let n = try await store.network(id: m.network) else { continue }
                entries.append(await entry(n, role: m.role))
            }
            return .networks(Self.fit(entries, next: mine.next, id: { $0.id }, bytes: { $0.wireBytes }))

        case .invitations:
            let me = try await currentUser(peer)
            var entries: [IndexNetworkEntry] = []
            for invitation in try await store.invitations(of: me.id) {
                guard let n = try await store.network(id: invitation.network) else { continue }
                entries.append(await entry(n, role: nil))
            }
            return .networks(Self.fit(entries, next: nil, id: { $0.id }, bytes: { $0.wireBytes }))
        }
    }

    // MARK: - Helpers

    /// Checks a password under the login limiter (per username and per source address).
    func verify(_ username: String, _ password: String, source: PeerEndpoint) async throws(IndexError) -> IndexUser {
        let now = clock()
        try limiter.check(user: username, source: source.ipString, now: now)
        do {
            let user = try await store.verifyPassword(name: username, password: password)
            limiter.recordSuccess(user: username, source: source.ipString, now: clock())
            remember(user)
            return user
        } catch {
            if error == .badCredentials { limiter.recordFailure(user: username, source: source.ipString, now: clock()) }
            throw error
        }
    }

    func currentUser(_ peer: PeerID) async throws(IndexError) -> IndexUser {
        guard let session = try await store.session(of: peer) else { throw .notLoggedIn(peer) }
        guard let user = try await store.user(id: session.user) else { throw .notLoggedIn(peer) }
        remember(user)
        return user
    }

    func existingNetwork(_ name: String) async throws(IndexError) -> IndexNetwork {
        guard let network = try await store.network(named: name) else { throw .noSuchNetwork(name) }
        return network
    }

    func existingUser(_ name: String) async throws(IndexError) -> IndexUser {
        guard let user = try await store.user(named: name) else { throw .noSuchUser(name) }
        remember(user)
        return user
    }

    /// The asking user's role in each of their networks.
    func roles(of user: UserID) async throws(IndexError) -> [NetworkID: NetworkRole] {
        let page = try await store.networks(of: user, after: nil, limit: IndexLimits.maximumNetworksPerUser)
        return Dictionary(page.items.map { ($0.network, $0.role) }, uniquingKeysWith: { a, _ in a })
    }

    /// A member left or was removed: their peers stop watching, watchers see them go.
    func leaving(_ user: UserID, _ network: NetworkName) async -> [IndexNotification] {
        let peers = onlinePeers(of: user)
        dropWatchers(of: network.id, only: peers)
        var out: [IndexNotification] = []
        for p in peers { out += await announce(user: user, peer: p, online: false, networks: [network]) }
        return out
    }

    /// A page of members with their online peers; members only.
    func membersPage(_ network: IndexNetwork, page: IndexPageRequest, asker: UserID) async throws(IndexError) -> IndexReply {
        guard try await store.membership(of: asker, in: network.id) != nil else { throw .notMember(user: asker, network: network.id) }
        let members = try await store.members(of: network.id, after: try Self.cursor(page.after), limit: Self.limit(page))
        var entries: [IndexMemberEntry] = []
        for m in members.items {
            guard let name = await name(of: m.user) else { continue }
            let peers = onlinePeers(of: m.user).sorted().prefix(IndexWireLimits.maximumPeersPerMember)
            entries.append(IndexMemberEntry(user: m.user.rawValue, name: name, role: m.role, onlinePeers: Array(peers)))
        }
        return .members(network: network.name, Self.fit(entries, next: members.next, id: { $0.user }, bytes: { $0.wireBytes }))
    }

    static func named(_ user: IndexUser) -> ClusterIndexName { ClusterIndexName(id: user.id.rawValue, name: user.name) }

    static func named(_ network: IndexNetwork) -> ClusterIndexName { ClusterIndexName(id: network.id.rawValue, name: network.name) }

    func entry(_ user: IndexUser) -> IndexUserEntry {
        IndexUserEntry(id: user.id.rawValue, name: user.name, metadata: user.metadata)
    }

    func entry(_ network: IndexNetwork, owner: String, role: NetworkRole?) -> IndexNetworkEntry {
        IndexNetworkEntry(id: network.id.rawValue, name: network.name, owner: owner, access: network.access, role: role, metadata: network.metadata)
    }

    /// The network as a user of `role` in it (nil: not a member) sees it, with its owner's name.
    func entry(_ network: IndexNetwork, role: NetworkRole?) async -> IndexNetworkEntry {
        entry(network, owner: await name(of: network.owner) ?? "?", role: role)
    }

    /// A metadata update as store changes: `replace` removes every current key it does not name.
    static func changes(_ update: MetadataUpdate, current: PeerMetadata) -> [String: String?] {
        var changes: [String: String?] = [:]
        if update.replace { for e in current { changes[e.key] = .some(nil) } }
        for c in update.changes { changes[c.key] = .some(c.value) }
        return changes
    }

    static func cursor(_ text: String?) throws(IndexError) -> IndexCursor? {
        guard let text else { return nil }
        guard let cursor = IndexCursor(text) else { throw .invalidCursor(text) }
        return cursor
    }

    static func limit(_ page: IndexPageRequest) -> Int {
        page.limit == 0 ? IndexControlLimits.defaultPage : Int(page.limit)
    }

    /// Bytes an answer page may fill: a frame less the frame header, reply kind, count, the
    /// longest cursor and the longest network name.
    static let pageBudget = ControlLimits.maximumFrameBytes - 5 - 1 - 1 - (1 + IndexWireLimits.maximumCursorBytes) - (1 + IndexWireLimits.maximumNameBytes)

    /// Keeps the items that fit one frame; when some are cut, the next page starts after the
    /// last one kept.
    static func fit<Item>(_ items: [Item], next: IndexCursor?, id: (Item) -> Int64, bytes: (Item) -> Int) -> IndexEntryPage<Item> {
        var used = 0, kept = 0
        for item in items {
            let b = bytes(item)
            guard used + b <= pageBudget else { break }
            used += b
            kept += 1
        }
        guard kept < items.count else { return IndexEntryPage(items: items, next: next?.description) }
        let cut = Array(items.prefix(kept))
        return IndexEntryPage(items: cut, next: cut.last.map { IndexCursor([id($0)]).description } ?? next?.description)
    }
}
