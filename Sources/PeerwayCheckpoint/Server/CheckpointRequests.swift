import Crypto
import NIOCore

/// The checkpoint's answers to requests (presence, lookup, metadata, search, watch).
extension CheckpointMachine {
    mutating func handleRequest(_ frame: ControlFrame, id: UInt32, session sid: UInt64, ms: UInt64,
                                into out: inout [CheckpointAction]) {
        if case .register(let request) = frame {
            register(request, id: id, session: sid, ms: ms, into: &out)
            return
        }
        guard let peer = sessions[sid]?.peer else {
            respond(.error(ControlFailure(.notRegistered, "register first")), id: id, session: sid, into: &out)
            return
        }
        switch frame {
        case .keepalive:
            counters.keepalives += 1
            respond(keepaliveAck(session: sid), id: id, session: sid, into: &out)
        case .unregister:
            respond(.ok, id: id, session: sid, into: &out)
            endSession(sid, change: .offline, ms: ms, into: &out)
        case .lookup(let target):
            respond(.lookupResult(lookupResult(target)), id: id, session: sid, into: &out)
        case .publish(let update):
            publish(update, peer: peer, id: id, session: sid, ms: ms, into: &out)
        case .search(let request):
            respond(search(request), id: id, session: sid, into: &out)
        case .watch(let targets):
            watch(targets, by: peer, id: id, session: sid, into: &out)
        case .unwatch(let targets):
            for t in targets {
                watching[peer]?.remove(t)
                watchersOf[t]?.remove(peer)
                if watchersOf[t]?.isEmpty == true { watchersOf[t] = nil }
            }
            if watching[peer]?.isEmpty == true { watching[peer] = nil }
            respond(.ok, id: id, session: sid, into: &out)
        case .sendMessage(let message):
            sendMessage(message, from: peer, id: id, session: sid, ms: ms, into: &out)
        case .connect(let request):
            connect(request, from: peer, id: id, session: sid, ms: ms, into: &out)
        case .answerConnect(let decision):
            answerConnect(decision, by: peer, id: id, session: sid, ms: ms, into: &out)
        case .traversalOffer(let offer):
            traversalOffer(offer, from: peer, id: id, session: sid, ms: ms, into: &out)
        case .traversalResult(let result):
            traversalResult(result, from: peer, id: id, session: sid, into: &out)
        case .indexRequest(let call):
            indexRequest(call, from: peer, id: id, session: sid, ms: ms, into: &out)
        default:
            respond(.error(ControlFailure(.badRequest, "frame \(frame) is not a request")), id: id, session: sid, into: &out)
        }
    }

    private mutating func register(_ request: RegisterRequest, id: UInt32, session sid: UInt64, ms: UInt64,
                                   into out: inout [CheckpointAction]) {
        guard var session = sessions[sid] else { return }
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: request.publicKey),
              key.isValidSignature(request.signature, for: request.signedBytes(transcript: session.transcript.bytes))
        else {
            respond(.error(ControlFailure(.badSignature, "the registration's signature does not verify with its public key for this session")),
                    id: id, session: sid, into: &out)
            return
        }
        let peer = PeerID(publicKey: key)
        if let registered = session.peer, registered != peer {
            respond(.error(ControlFailure(.badRequest, "this session is registered as \(registered); open a new session for another identity")),
                    id: id, session: sid, into: &out)
            return
        }
        var keepalive = request.keepaliveSeconds == 0 ? configuration.keepaliveSeconds : request.keepaliveSeconds
        keepalive = min(max(keepalive, ControlLimits.keepaliveSecondsRange.lowerBound), ControlLimits.keepaliveSecondsRange.upperBound)
        // A newer session for the same PeerID (the peer restarted or moved) supersedes the old
        // one; what was still being pushed to the old one (messages, status, requests) moves to
        // the new one, in the order it was first sent.
        var stranded: [PendingPush] = []
        if let old = sessionByPeer[peer], old != sid { stranded = supersede(old) }
        session.peer = peer
        session.keepaliveSeconds = keepalive
        session.supernodesGeneration = networkSupernodesGeneration
        session.lastHeardMillis = ms
        file(&session)
        sessions[sid] = session
        sessionByPeer[peer] = sid
        let before = directory.entry(for: peer)
        if let from = before?.home { remotePeers[from]?.remove(peer) }  // it moved here from another supernode
        let entry = DirectoryEntry(peer: peer, observed: session.endpoint, candidates: request.candidates,
                                   metadata: request.metadata, version: registrationVersion(after: before))
        directory.upsert(entry)
        publishToCluster(entry, into: &out)
        counters.registrations += 1
        respond(.registered(Registered(peer: peer, observed: session.endpoint, keepaliveSeconds: keepalive,
                                       expiryMisses: configuration.expiryMisses,
                                       supernodes: failoverSupernodes(for: peer, observed: session.endpoint))),
                id: id, session: sid, into: &out)
        repush(stranded, to: peer, ms: ms, into: &out)
        if before == nil {
            out.append(.presence(peer, online: true))
            notifyWatchers(of: peer, StatusEvent(peer: peer, change: .online, metadata: request.metadata), ms: ms, into: &out)
        } else if before?.metadata != request.metadata {
            notifyWatchers(of: peer, StatusEvent(peer: peer, change: .metadataChanged, metadata: request.metadata), ms: ms, into: &out)
        }
    }

    private func lookupResult(_ target: PeerID) -> LookupResult {
        guard let e = directory.entry(for: target) else {
            return LookupResult(peer: target, online: false, observed: nil, candidates: [], metadata: PeerMetadata())
        }
        return LookupResult(peer: target, online: true, observed: e.observed, candidates: e.candidates, metadata: e.metadata)
    }

    private mutating func publish(_ update: MetadataUpdate, peer: PeerID, id: UInt32, session sid: UInt64, ms: UInt64,
                                  into out: inout [CheckpointAction]) {
        guard var entry = directory.entry(for: peer) else { return }
        var metadata = update.replace ? PeerMetadata() : entry.metadata
        var changes: [String: String?] = [:]
        for c in update.changes { changes[c.key] = .some(c.value) }
        do { try metadata.apply(changes) } catch {
            respond(.error(ControlFailure(.tooLarge, error.description)), id: id, session: sid, into: &out)
            return
        }
        let changed = metadata != entry.metadata
        entry.metadata = metadata
        directory.upsert(entry)
        if changed { publishToCluster(entry, into: &out) }
        respond(.ok, id: id, session: sid, into: &out)
        if changed {
            notifyWatchers(of: peer, StatusEvent(peer: peer, change: .metadataChanged, metadata: metadata), ms: ms, into: &out)
        }
    }

    /// Bytes a search result frame takes before its hits: kind, id, count, next (present + 16).
    static var searchFrameOverhead: Int { 1 + 4 + 1 + 1 + PeerID.byteCount }

    /// Bytes one hit takes: the PeerID and the metadata (count, then length-prefixed pairs).
    static func hitBytes(_ metadata: PeerMetadata) -> Int {
        PeerID.byteCount + 1 + metadata.entries.reduce(0) { $0 + 2 + $1.key.utf8.count + $1.value.utf8.count }
    }

    private func search(_ request: SearchRequest) -> ControlFrame {
        let query: CheckpointQuery
        do { query = try CheckpointQuery(parsing: request.query) } catch {
            return .error(ControlFailure(.badQuery, "\(error)"))
        }
        let limit = min(Int(request.limit), ControlLimits.maximumSearchPage)
        guard limit > 0 else { return .searchResult(SearchResult(hits: [], next: nil)) }
        let found = directory.search(query, after: request.after, limit: limit)
        var hits: [SearchHit] = []
        var budget = ControlLimits.maximumFrameBytes - Self.searchFrameOverhead
        var cut = false
        for e in found.entries {
            let size = Self.hitBytes(e.metadata)
            if size > budget { cut = true; break }
            budget -= size
            hits.append(SearchHit(peer: e.peer, metadata: e.metadata))
        }
        let next = (cut || found.more) ? hits.last?.peer : nil
        return .searchResult(SearchResult(hits: hits, next: next))
    }

    private mutating func watch(_ targets: [PeerID], by peer: PeerID, id: UInt32, session sid: UInt64,
                                into out: inout [CheckpointAction]) {
        let already = watching[peer] ?? []
        let adding = Set(targets).subtracting(already)
        guard already.count + adding.count <= ControlLimits.maximumWatchedPeers else {
            respond(.error(ControlFailure(.limitReached, "a peer may watch at most \(ControlLimits.maximumWatchedPeers) peers")),
                    id: id, session: sid, into: &out)
            return
        }
        for t in adding {
            watching[peer, default: []].insert(t)
            watchersOf[t, default: []].insert(peer)
        }
        let statuses = targets.map { PeerStatus(peer: $0, online: directory.entry(for: $0) != nil) }
        respond(.watchResult(statuses), id: id, session: sid, into: &out)
    }
}

extension CheckpointMachine {
    /// Peers that watch at least one peer (operators' figures; O(1)).
    public var watcherCount: Int { watching.count }
    /// Peers that at least one peer watches.
    public var watchedCount: Int { watchersOf.count }

    /// Forgets what `peer` watches (it left, or watches from another session now).
    mutating func dropWatches(of peer: PeerID) {
        for target in watching.removeValue(forKey: peer) ?? [] {
            watchersOf[target]?.remove(peer)
            if watchersOf[target]?.isEmpty == true { watchersOf[target] = nil }
        }
    }

    /// Pushes a status change to every online watcher of `peer`.
    mutating func notifyWatchers(of peer: PeerID, _ event: StatusEvent, ms: UInt64, into out: inout [CheckpointAction]) {
        guard let watchers = watchersOf[peer] else { return }
        for w in watchers { push(.status(event), to: w, ms: ms, into: &out) }
    }
}
