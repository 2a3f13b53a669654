import NIOCore

/// The checkpoint in a network of supernodes (flow in ClusterFrame.swift): what it tells the
/// others about its own peers, and what it does with what they tell it. The owner feeds frames
/// from the mesh to `clusterReceive`, link changes to `clusterNodeUp` / `clusterNodeDown`, and
/// frames it could not send to `clusterUnsent`; the machine answers with `.cluster` actions.
extension CheckpointMachine {
    /// The session id of a request forwarded by another supernode: no local session has it
    /// (ids are never 0), so answers to it go nowhere.
    static var forwardedSession: UInt64 { 0 }

    /// Tells the other supernodes about a local peer's new or changed row.
    mutating func publishToCluster(_ entry: DirectoryEntry, into out: inout [CheckpointAction]) {
        guard configuration.clustered, entry.home == nil else { return }
        out.append(.cluster(.peersUp([ClusterPeerRow(peer: entry.peer, observed: entry.observed, candidates: entry.candidates,
                                                     metadata: entry.metadata, version: entry.version)]), to: nil))
    }

    /// The version of a registration made here now: the wall clock, above every version known
    /// for the peer.
    func registrationVersion(after before: DirectoryEntry?) -> UInt64 {
        max(wallClockMillis, (before?.version ?? 0) &+ 1)
    }

    /// Hands a request of a local peer to the supernode where `owner` is registered, when that is
    /// another one (the state the request is about lives there). False when it stays here.
    mutating func forwardToHome(of owner: PeerID, _ frame: ControlFrame, from peer: PeerID, session sid: UInt64,
                                into out: inout [CheckpointAction]) -> Bool {
        guard configuration.clustered, sid != Self.forwardedSession, let home = directory.entry(for: owner)?.home,
              let observed = sessions[sid]?.endpoint else { return false }
        out.append(.cluster(.forward(from: peer, observed: observed, frame: frame), to: home))
        return true
    }

    /// Sends a push to a peer registered on `home`; a message's sender hears the outcome.
    mutating func pushRemote(_ frame: ControlFrame, to peer: PeerID, at home: ClusterNode, flight: MessageFlight?, ms: UInt64,
                             into out: inout [CheckpointAction]) {
        let id = nextRemotePushID
        nextRemotePushID &+= 1
        remotePushes[id] = RemotePush(node: home, flight: flight, giveUpMillis: ms + CheckpointConfiguration.remotePushLifetimeMillis)
        if let flight {
            remoteFlightsBySender[SenderMessageKey(session: flight.senderSession, messageID: flight.messageID)] = id
        }
        out.append(.cluster(.push(id: id, to: peer, frame: frame), to: home))
    }

    // MARK: - From the mesh

    /// Handles one frame from supernode `node`.
    public mutating func clusterReceive(_ frame: ClusterFrame, from node: ClusterNode, now: NIODeadline,
                                        into out: inout [CheckpointAction]) {
        guard configuration.clustered else { return }
        let ms = Self.millis(now)
        switch frame {
        case .peersUp(let rows):
            for row in rows { applyRemoteRow(row, from: node, ms: ms, into: &out) }
        case .peerDown(let peer, let change):
            guard directory.entry(for: peer)?.home == node else { return }
            removeRemote(peer, of: node, change: change, ms: ms, into: &out)
        case .snapshot(start: true):
            snapshots[node] = []
        case .snapshot(start: false):
            guard let seen = snapshots.removeValue(forKey: node) else { return }
            for peer in remotePeers[node, default: []].subtracting(seen) {
                removeRemote(peer, of: node, change: .expired, ms: ms, into: &out)
            }
        case .push(let id, let to, let pushed):
            if !push(pushed, to: to, origin: ClusterOrigin(node: node, id: id), ms: ms, into: &out) {
                out.append(.cluster(.pushOutcome(id: id, outcome: .offline), to: node))
            }
        case .pushOutcome(let id, let outcome):
            guard remotePushes[id]?.node == node, let sent = remotePushes.removeValue(forKey: id) else { return }
            if let flight = sent.flight { finish(flight, outcome: outcome, ms: ms, into: &out) }
        case .forward(let from, let observed, let forwarded):
            // Only from the supernode the sender is registered on.
            guard directory.entry(for: from)?.home == node else { return }
            let sid = Self.forwardedSession
            switch forwarded {
            case .answerConnect(let decision):
                answerConnect(decision, by: from, id: 0, session: sid, ms: ms, into: &out)
            case .traversalOffer(let offer):
                traversalOffer(offer, from: from, id: 0, session: sid, ms: ms, observed: observed, into: &out)
            case .traversalResult(let result):
                traversalResult(result, from: from, id: 0, session: sid, into: &out)
            default:
                counters.malformed += 1
            }
        case .index:
            // The INDEX's (ClusterIndexEvent.swift): the owner hands it there, not here.
            break
        }
    }

    /// A link to `node` is up: it gets the full list of this supernode's peers.
    public mutating func clusterNodeUp(_ node: ClusterNode, now: NIODeadline, into out: inout [CheckpointAction]) {
        guard configuration.clustered else { return }
        // Back before all its peers were taken offline: the rest are its replicas again, and its
        // snapshot (which follows) removes those it no longer has.
        if let rest = departing.removeValue(forKey: node) {
            remotePeers[node, default: []].formUnion(rest.filter { directory.entry(for: $0)?.home == node })
        }
        out.append(.cluster(.snapshot(start: true), to: node))
        var rows: [ClusterPeerRow] = []
        rows.reserveCapacity(ClusterFrameLimits.maximumRowsPerFrame)
        for peer in sessionByPeer.keys {
            guard let e = directory.entry(for: peer), e.home == nil else { continue }
            rows.append(ClusterPeerRow(peer: peer, observed: e.observed, candidates: e.candidates, metadata: e.metadata, version: e.version))
            if rows.count == ClusterFrameLimits.maximumRowsPerFrame {
                out.append(.cluster(.peersUp(rows), to: node))
                rows.removeAll(keepingCapacity: true)
            }
        }
        if !rows.isEmpty { out.append(.cluster(.peersUp(rows), to: node)) }
        out.append(.cluster(.snapshot(start: false), to: node))
    }

    /// `node` is out of the network (its link stayed down, or its heartbeat stopped): its peers
    /// are offline (`expired`) until they register elsewhere, and pushes handed to it end
    /// `timedOut` (whether they reached their peer is unknown). A large supernode's peers are
    /// taken offline `departuresPerTick` at a time, here and at each `tick`, so the checkpoint
    /// keeps answering meanwhile (a third of a million at once froze a survivor for 1.5-3 s,
    /// long enough to drop keepalives); one that registers here meanwhile is not touched.
    public mutating func clusterNodeDown(_ node: ClusterNode, now: NIODeadline, into out: inout [CheckpointAction]) {
        guard configuration.clustered else { return }
        let ms = Self.millis(now)
        snapshots[node] = nil
        if let peers = remotePeers.removeValue(forKey: node), !peers.isEmpty {
            departing[node, default: []] += peers
        }
        continueDepartures(ms: ms, into: &out)
        let lost = remotePushes.filter { $0.value.node == node }.map(\.key).sorted()
        for id in lost {
            if let flight = remotePushes.removeValue(forKey: id)?.flight { finish(flight, outcome: .timedOut, ms: ms, into: &out) }
        }
    }

    /// A `.cluster` frame could not be sent to `node` (no link): a push ends `timedOut`, a
    /// forwarded request is dropped (its peer retransmits or times out).
    public mutating func clusterUnsent(_ frame: ClusterFrame, to node: ClusterNode, now: NIODeadline,
                                       into out: inout [CheckpointAction]) {
        guard case .push(let id, _, _) = frame, remotePushes[id]?.node == node,
              let sent = remotePushes.removeValue(forKey: id) else { return }
        if let flight = sent.flight { finish(flight, outcome: .timedOut, ms: Self.millis(now), into: &out) }
    }

    /// Takes up to `departuresPerTick` peers of supernodes declared out offline.
    mutating func continueDepartures(ms: UInt64, into out: inout [CheckpointAction]) {
        var budget = CheckpointConfiguration.departuresPerTick
        while budget > 0, let node = departing.keys.first {
            var peers = departing[node]!
            let take = min(budget, peers.count)
            for peer in peers.suffix(take) where directory.entry(for: peer)?.home == node {
                removeRemote(peer, of: node, change: .expired, ms: ms, into: &out)
            }
            peers.removeLast(take)
            budget -= take
            departing[node] = peers.isEmpty ? nil : peers
        }
    }

    /// Ends `timedOut` the pushes whose outcome never came back (lost with a link that went down
    /// and came back: no supernode was declared out, so nothing else ends them).
    mutating func timeOutRemotePushes(ms: UInt64, into out: inout [CheckpointAction]) {
        guard !remotePushes.isEmpty else { return }
        let due = remotePushes.filter { $0.value.giveUpMillis <= ms }.map(\.key).sorted()
        for id in due {
            if let flight = remotePushes.removeValue(forKey: id)?.flight { finish(flight, outcome: .timedOut, ms: ms, into: &out) }
        }
    }

    /// Peers in the directory registered on other supernodes.
    public var remotePeerCount: Int { remotePeers.values.reduce(0) { $0 + $1.count } }

    // MARK: - Replica

    private mutating func applyRemoteRow(_ row: ClusterPeerRow, from node: ClusterNode, ms: UInt64, into out: inout [CheckpointAction]) {
        snapshots[node]?.insert(row.peer)
        let before = directory.entry(for: row.peer)
        var stranded: [PendingPush] = []
        if let before, before.home != node {
            // Claimed by two supernodes: the newer registration wins everywhere alike.
            let holder = before.home?.key ?? publicKeyBytes
            let newer = row.version > before.version
                || (row.version == before.version && holder.lexicographicallyPrecedes(node.key))
            guard newer else { return }
            if let old = before.home {
                remotePeers[old]?.remove(row.peer)
            } else {
                stranded = supersedeLocal(row.peer, ms: ms)
            }
        }
        directory.upsert(DirectoryEntry(peer: row.peer, observed: row.observed, candidates: row.candidates,
                                        metadata: row.metadata, home: node, version: row.version))
        remotePeers[node, default: []].insert(row.peer)
        // What was on its way to the old session follows the peer to its new supernode (another
        // supernode's pushes end `offline`: that supernode routes to the peer's new home itself).
        repush(stranded, to: row.peer, ms: ms, into: &out)
        if before == nil {
            out.append(.presence(row.peer, online: true))
            notifyWatchers(of: row.peer, StatusEvent(peer: row.peer, change: .online, metadata: row.metadata), ms: ms, into: &out)
        } else if before?.metadata != row.metadata {
            notifyWatchers(of: row.peer, StatusEvent(peer: row.peer, change: .metadataChanged, metadata: row.metadata), ms: ms, into: &out)
        }
    }

    /// The peer registered on another supernode after registering here: this session is closed
    /// (`superseded`, as for a second session on one supernode), its watches dropped (the peer
    /// renews them where it is now); returns the pushes that were waiting on it.
    private mutating func supersedeLocal(_ peer: PeerID, ms: UInt64) -> [PendingPush] {
        guard let sid = sessionByPeer.removeValue(forKey: peer) else { return [] }
        dropWatches(of: peer)
        indexCalls.removeSession(sid)
        return supersede(sid)
    }

    private mutating func removeRemote(_ peer: PeerID, of node: ClusterNode, change: StatusEvent.Change, ms: UInt64,
                                       into out: inout [CheckpointAction]) {
        remotePeers[node]?.remove(peer)
        guard directory.entry(for: peer)?.home == node else { return }
        directory.remove(peer)
        out.append(.presence(peer, online: false))
        notifyWatchers(of: peer, StatusEvent(peer: peer, change: change), ms: ms, into: &out)
        refuseNegotiations(involving: peer, ms: ms, into: &out)
    }
}
