import PeerwayCheckpoint

/// What the INDEX wants pushed after an operation or a presence change: a member of a network
/// `to` watches came online or went offline.
public struct IndexNotification: Equatable, Sendable {
    public var to: PeerID
    public var status: NetworkMemberStatus

    public init(to: PeerID, status: NetworkMemberStatus) {
        self.to = to
        self.status = status
    }
}

/// An INDEX operation's answer and the pushes it causes.
public struct IndexControlOutcome: Equatable, Sendable {
    public var result: Result<IndexReply, ControlFailure>
    public var notifications: [IndexNotification]
    /// What the other supernodes of the network must hear, for their own watchers
    /// (`apply(_:)` there; ClusterIndexEvent.swift).
    public var cluster: [ClusterIndexEvent]

    public init(result: Result<IndexReply, ControlFailure>, notifications: [IndexNotification] = [],
                cluster: [ClusterIndexEvent] = []) {
        self.result = result
        self.notifications = notifications
        self.cluster = cluster
    }
}

/// A network as a notice names it.
struct NetworkName: Hashable, Sendable {
    let id: NetworkID
    let name: String

    init(id: NetworkID, name: String) {
        self.id = id
        self.name = name
    }

    init(_ network: IndexNetwork) { self.init(id: network.id, name: network.name) }

    init(_ network: ClusterIndexName) { self.init(id: NetworkID(network.id), name: network.name) }
}

/// Limits of the INDEX over the control channel.
public enum IndexControlLimits {
    /// Items a page holds when the request asks for none (fewer when they do not fit a frame).
    public static let defaultPage = 20
    /// Networks one peer may watch at once (as many as a user may belong to).
    public static let maximumWatchedNetworksPerPeer = IndexLimits.maximumNetworksPerUser
    /// Sign-ups one source address may make at once; each costs a memory-hard password hash.
    public static let signupBurstPerSource = 10
    /// Time to earn back one sign-up per source (10 a minute once the burst is spent).
    public static let signupRefillPerSource: Duration = .seconds(6)
    /// Usernames remembered by id (names never change and ids are never reused, so entries never
    /// go stale; the cache is emptied when full).
    public static let maximumCachedNames = 100_000
    /// Online peers whose login could not be read (the store did not answer) kept for `resync`;
    /// past it, `resync` reads every online peer's login instead.
    public static let maximumUnresolvedPeers = 100_000
    /// Peers whose online or offline change the watchers could not be told (the store did not
    /// answer) kept for `resync`; past it, further changes go untold.
    public static let maximumUnannouncedPeers = 100_000
}

/// The INDEX as peers reach it through their control channel: operations on behalf of the user a
/// peer is logged in as (`IndexSession`, bound to the peer's key), with the live online state of
/// network members and notifications to the peers that watch a network.
///
/// No socket and no checkpoint inside: the supernode hands it each `IndexCallContext` and each
/// presence change, and sends back the answer and the `IndexNotification`s it returns. It keeps in
/// memory only what is live (which logged-in peers are online, who watches which network); every
/// permanent fact is the store's. Presence is fed in order, by one caller at a time.
public actor IndexControlService {
    let store: any IndexStore
    let clock: @Sendable () -> ContinuousClock.Instant
    var limiter = LoginLimiter<String>()
    /// Sign-ups per source address (every attempt takes a token; the per-name rule never binds).
    var signups = LoginLimiter<String>(perUser: .init(burst: Int.max / 2, refill: .seconds(1)),
                                       perSource: .init(burst: IndexControlLimits.signupBurstPerSource,
                                                        refill: IndexControlLimits.signupRefillPerSource))

    /// Online peers that are logged in, by user, and back.
    var onlineByUser: [UserID: Set<PeerID>] = [:]
    var userOfOnlinePeer: [PeerID: UserID] = [:]
    /// Registered peers (logged in or not), as the checkpoint records them: the owner sets a peer
    /// online or offline here at once, then tells this service (`peerOnline` / `peerOffline`).
    public nonisolated let presence: IndexPresenceTable
    var watchers: [NetworkID: Set<PeerID>] = [:]
    var watching: [PeerID: Set<NetworkID>] = [:]
    /// The names of the networks in `watchers`.
    var watchedNames: [NetworkID: String] = [:]
    var names: [UserID: String] = [:]
    /// Online peers whose login is unknown (the store did not answer when they came online).
    var unresolved: Set<PeerID> = []
    /// Every online peer's login must be read again (`resync`).
    var fullResyncDue = false
    /// Changes the watchers could not be told (the store did not say which networks, or the
    /// user's name): the latest one per peer, announced by `resync` if still true then.
    var unannounced: [PeerID: (user: UserID, online: Bool)] = [:]
    /// While `resync` reads logins: the peers bound or unbound meanwhile (what it read of them is stale).
    var changedDuringResync: Set<PeerID>?

    /// Told each operation `handle` ran, how long it took and whether it succeeded (operators'
    /// metrics); called on the pool, it must return at once.
    public nonisolated let observer: (@Sendable (_ operation: IndexCall.Operation, _ took: Duration, _ succeeded: Bool) -> Void)?

    /// `clock` is injected so tests control the login limiter's time.
    public init(store: any IndexStore, presence: IndexPresenceTable = IndexPresenceTable(),
                clock: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now },
                observer: (@Sendable (_ operation: IndexCall.Operation, _ took: Duration, _ succeeded: Bool) -> Void)? = nil) {
        self.store = store
        self.presence = presence
        self.clock = clock
        self.observer = observer
    }

    // MARK: - Presence

    /// A peer registered with the checkpoint (already set online in `presence`). When it is
    /// logged in, the members of its user's networks who watch them are told.
    public func peerOnline(_ peer: PeerID) async -> [IndexNotification] {
        await presenceChanged([(peer, true)])
    }

    /// A peer's registration ended (already set offline in `presence`): its watches end, and
    /// watchers of its user's networks are told.
    public func peerOffline(_ peer: PeerID) async -> [IndexNotification] {
        await presenceChanged([(peer, false)])
    }

    /// Presence changes in the order the checkpoint saw them (one peer's are never reordered):
    /// the sessions of the peers that came online are read in one lookup per
    /// `IndexLimits.maximumSessionLookup` peers, then each change is applied in turn. When the
    /// store does not answer, the peers not read are kept for `resync` (`needsResync`).
    public func presenceChanged(_ changes: [(peer: PeerID, online: Bool)]) async -> [IndexNotification] {
        var arrived: [PeerID] = []
        var seen: Set<PeerID> = []
        for c in changes where c.online && seen.insert(c.peer).inserted { arrived.append(c.peer) }
        let (userOf, unread) = await logins(of: arrived)
        var out: [IndexNotification] = []
        for c in changes {
            if c.online {
                if let user = userOf[c.peer] { out += await attach(c.peer, to: user) }
                if unread.contains(c.peer) { keepUnresolved(c.peer) }
            } else {
                unresolved.remove(c.peer)
                dropWatches(of: c.peer)
                out += await detach(c.peer)
            }
        }
        return out
    }

    /// The logins of `peers`, one lookup per `IndexLimits.maximumSessionLookup` peers; after the
    /// first lookup the store's database does not answer, the rest are not asked for and come
    /// back `unread` (another failure leaves the lookup's peers without a login, as if none).
    func logins(of peers: [PeerID]) async -> (users: [PeerID: UserID], unread: Set<PeerID>) {
        var userOf: [PeerID: UserID] = [:]
        var start = 0
        while start < peers.count {
            let chunk = Array(peers[start..<min(start + IndexLimits.maximumSessionLookup, peers.count)])
            do {
                for s in try await store.sessions(ofPeers: chunk) { userOf[s.peer] = s.user }
            } catch {
                if error.isUnreachable { return (userOf, Set(peers[start...])) }
            }
            start += chunk.count
        }
        return (userOf, [])
    }

    /// Peers of `user` online now.
    public func onlinePeers(of user: UserID) -> Set<PeerID> { onlineByUser[user] ?? [] }

    /// Marks `peer` as logged in as `user` (when online) and notifies the watchers of `networks`
    /// (nil: the user's networks now).
    func attach(_ peer: PeerID, to user: UserID, networks: [NetworkName]? = nil) async -> [IndexNotification] {
        guard presence.isOnline(peer), userOfOnlinePeer[peer] != user else { return [] }
        changedDuringResync?.insert(peer)
        var out = await detach(peer)
        userOfOnlinePeer[peer] = user
        onlineByUser[user, default: []].insert(peer)
        out += await announce(user: user, peer: peer, online: true, networks: networks)
        return out
    }

    /// Forgets `peer`'s user binding (offline or logged out) and notifies watchers.
    /// `networks`: where to announce it (nil: the user's networks now).
    func detach(_ peer: PeerID, networks: [NetworkName]? = nil) async -> [IndexNotification] {
        guard let user = userOfOnlinePeer.removeValue(forKey: peer) else { return [] }
        changedDuringResync?.insert(peer)
        onlineByUser[user]?.remove(peer)
        if onlineByUser[user]?.isEmpty == true { onlineByUser[user] = nil }
        return await announce(user: user, peer: peer, online: false, networks: networks)
    }

    /// The user's networks that somebody watches; nil when the store's database is unreachable.
    func watchedNetworks(of user: UserID) async -> [NetworkName]? {
        // Nobody watches anything (a supernode just restarted): no need to read the user's networks.
        guard !watchers.isEmpty else { return [] }
        do {
            return watched(try await store.networks(of: user, after: nil, limit: IndexLimits.maximumNetworksPerUser).items.map(\.network))
        } catch {
            return error.isUnreachable ? nil : []
        }
    }

    /// Those of `networks` somebody watches here, with their names (read when the watch began:
    /// names never change).
    func watched(_ networks: [NetworkID]) -> [NetworkName] {
        networks.compactMap { id in
            guard watchers[id]?.isEmpty == false, let name = watchedNames[id] else { return nil }
            return NetworkName(id: id, name: name)
        }
    }

    /// Status pushes for `user`'s `peer` to every watcher of `networks` (nil: all the user's
    /// networks). When the store does not answer, the change is kept for `resync` to announce.
    func announce(user: UserID, peer: PeerID, online: Bool, networks: [NetworkName]?) async -> [IndexNotification] {
        var targets = networks ?? []
        if networks == nil {
            guard let watched = await watchedNetworks(of: user) else {
                keepUnannounced(peer, user: user, online: online)
                return []
            }
            targets = watched
        }
        guard !targets.isEmpty else { return [] }
        let name: String?
        do { name = try await readName(of: user) } catch {
            if error.isUnreachable { keepUnannounced(peer, user: user, online: online) }
            return []
        }
        guard let name else { return [] }
        var out: [IndexNotification] = []
        for network in targets {
            for watcher in watchers[network.id] ?? [] where watcher != peer {
                out.append(IndexNotification(to: watcher, status: NetworkMemberStatus(
                    network: network.name, user: user.rawValue, name: name, peer: peer, online: online)))
            }
        }
        return out
    }

    /// `peer` watches `network` from now on.
    func watch(_ network: IndexNetwork, by peer: PeerID) {
        watching[peer, default: []].insert(network.id)
        watchers[network.id, default: []].insert(peer)
        watchedNames[network.id] = network.name
    }

    func dropWatches(of peer: PeerID) {
        for network in watching.removeValue(forKey: peer) ?? [] {
            watchers[network]?.remove(peer)
            forgetIfUnwatched(network)
        }
    }

    private func forgetIfUnwatched(_ network: NetworkID) {
        guard watchers[network]?.isEmpty ?? true else { return }
        watchers[network] = nil
        watchedNames[network] = nil
    }

    func dropWatchers(of network: NetworkID, only peers: Set<PeerID>? = nil) {
        for peer in peers ?? watchers[network] ?? [] {
            watchers[network]?.remove(peer)
            watching[peer]?.remove(network)
            if watching[peer]?.isEmpty == true { watching[peer] = nil }
        }
        forgetIfUnwatched(network)
    }

    /// The username of `user` (cached: names never change); nil when there is none, or the
    /// store did not answer.
    func name(of user: UserID) async -> String? {
        (try? await readName(of: user)) ?? nil
    }

    /// The username of `user`, nil when there is none; throws when the store did not answer.
    func readName(of user: UserID) async throws(IndexError) -> String? {
        if let n = names[user] { return n }
        guard let u = try await store.user(id: user) else { return nil }
        remember(u)
        return u.name
    }

    func remember(_ user: IndexUser) { remember(user.id, user.name) }

    func remember(_ user: UserID, _ name: String) {
        if names.count >= IndexControlLimits.maximumCachedNames { names.removeAll(keepingCapacity: true) }
        names[user] = name
    }

    // MARK: - Operations

    /// Runs one operation for the peer in `context` (see `IndexCall` for each one's rules).
    public func handle(_ context: IndexCallContext) async -> IndexControlOutcome {
        var notifications: [IndexNotification] = []
        var cluster: [ClusterIndexEvent] = []
        let started = ContinuousClock.now
        do {
            let reply = try await run(context, notifications: &notifications, cluster: &cluster)
            observer?(context.call.operation, ContinuousClock.now - started, true)
            return IndexControlOutcome(result: .success(reply), notifications: notifications, cluster: cluster)
        } catch {
            observer?(context.call.operation, ContinuousClock.now - started, false)
            return IndexControlOutcome(result: .failure(await failure(for: error)), notifications: notifications, cluster: cluster)
        }
    }
}
