import PeerwayCheckpoint

/*
 The INDEX's live state on each supernode of a network (ClusterIndexEvent.swift for the flow).

 Every supernode keeps, for every online peer of the whole network (its presence table is fed
 with the other supernodes' peers too), which user it is logged in as, and tells the watchers
 registered on it. It learns a binding from the store when the peer comes online, and from the
 other supernodes' events (`apply`) when it changes there. What `resync` repairs:
   - the store's database did not answer when peers came online (PostgreSQL unreachable): those
     peers are kept (`unresolved`, bounded) and their logins read again until it answers;
   - it did not answer when a change was to be told (which networks is the user in?): the change
     is kept (`unannounced`, the latest per peer, bounded) and told then, if still true;
   - events lost with a link that dropped (`requestFullResync`): every online peer's login is
     read again, and bindings of peers no longer online are dropped.
 Watchers hear of each change once: `attach` and `detach` do nothing when the binding is already so.
*/

extension IndexControlService {
    /// Applies what another supernode's INDEX operation changed (`IndexControlOutcome.cluster`
    /// there): the live state here follows, and this supernode's watchers are told (returned).
    public func apply(_ event: ClusterIndexEvent) async -> [IndexNotification] {
        switch event {
        case .loggedIn(let peer, let user, let networks):
            let id = UserID(user.id)
            remember(id, user.name)
            unresolved.remove(peer)
            if userOfOnlinePeer[peer] != id { dropWatches(of: peer) }
            return await attach(peer, to: id, networks: watched(networks.map(NetworkID.init)))
        case .loggedOut(let peer):
            unresolved.remove(peer)
            dropWatches(of: peer)
            return await detach(peer)
        case .joined(let user, let network):
            let id = UserID(user.id)
            remember(id, user.name)
            var out: [IndexNotification] = []
            for p in onlinePeers(of: id) {
                out += await announce(user: id, peer: p, online: true, networks: [NetworkName(network)])
            }
            return out
        case .left(let user, let network):
            let id = UserID(user.id)
            remember(id, user.name)
            return await leaving(id, NetworkName(network))
        case .accountDeleted(let user, let networks):
            let id = UserID(user.id)
            remember(id, user.name)
            let watched = watched(networks.map(NetworkID.init))
            var out: [IndexNotification] = []
            for p in onlinePeers(of: id) {
                dropWatches(of: p)
                out += await detach(p, networks: watched)
            }
            return out
        case .networkDeleted(let network):
            dropWatchers(of: NetworkID(network.id))
            return []
        }
    }

    /// Whether some online peers' logins are to be read again, or changes told (`resync`).
    public var needsResync: Bool { fullResyncDue || !unresolved.isEmpty || !unannounced.isEmpty }

    /// Every online peer's login is to be read again: events from another supernode may have
    /// been lost (its link dropped and came back).
    public func requestFullResync() {
        fullResyncDue = true
    }

    /// Reads again the logins `needsResync` asks for and repairs the bindings; returns the
    /// notices that repair causes and whether it is done (false: the store did not answer; what
    /// is left stays due, call again later).
    public func resync() async -> (notifications: [IndexNotification], done: Bool) {
        // First the changes not yet told, when still true (a later change was told itself), so
        // an offline before the store failed comes before the online the logins below may bring.
        let untold = unannounced
        unannounced = [:]
        var out: [IndexNotification] = []
        for (peer, change) in untold where (userOfOnlinePeer[peer] == change.user) == change.online {
            out += await announce(user: change.user, peer: peer, online: change.online, networks: nil)
        }
        guard unannounced.isEmpty else { return (out, false) }
        guard fullResyncDue || !unresolved.isEmpty else { return (out, !needsResync) }

        let full = fullResyncDue
        let peers = full ? presence.onlinePeers() : Array(unresolved)
        fullResyncDue = false
        unresolved = []
        if full {
            // Offline changes lost on the way (a queue that overflowed): bound peers gone offline.
            for peer in Array(userOfOnlinePeer.keys) where !presence.isOnline(peer) {
                dropWatches(of: peer)
                out += await detach(peer)
            }
        }
        changedDuringResync = []
        let (userOf, unread) = await logins(of: peers)
        let changed = changedDuringResync ?? []
        changedDuringResync = nil
        for peer in peers where presence.isOnline(peer) && !changed.contains(peer) && !unread.contains(peer) {
            if let user = userOf[peer] {
                out += await attach(peer, to: user)
            } else if userOfOnlinePeer[peer] != nil {
                // Logged out, or its account deleted, where this supernode did not hear of it.
                dropWatches(of: peer)
                out += await detach(peer)
            }
        }
        if full, !unread.isEmpty { fullResyncDue = true } else { for peer in unread { keepUnresolved(peer) } }
        // Not done while anything is left: what the store did not answer, what came meanwhile.
        return (out, !needsResync)
    }

    /// Keeps `peer`'s change for `resync` to announce (the latest change of a peer wins).
    func keepUnannounced(_ peer: PeerID, user: UserID, online: Bool) {
        guard unannounced[peer] != nil || unannounced.count < IndexControlLimits.maximumUnannouncedPeers else { return }
        unannounced[peer] = (user, online)
    }

    /// Keeps `peer` for `resync`; past `IndexControlLimits.maximumUnresolvedPeers` a full
    /// resync is due instead.
    func keepUnresolved(_ peer: PeerID) {
        guard !fullResyncDue else { return }
        guard unresolved.count < IndexControlLimits.maximumUnresolvedPeers else {
            unresolved = []
            fullResyncDue = true
            return
        }
        unresolved.insert(peer)
    }
}
