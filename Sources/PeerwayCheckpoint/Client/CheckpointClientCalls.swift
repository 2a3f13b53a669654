import NIOCore

// The API calls of `CheckpointClientMachine`: each returns a token and the actions to perform;
// the call's `.completed(token, …)` action comes then or later. Calls made before the session is
// registered (or while it reconnects) are held and sent once it is.

extension CheckpointClientMachine {
    /// Changes this peer's metadata: sets keys with a value, removes keys without one; with
    /// `replace`, every key not named is removed too. Completes with `.done`; the new metadata
    /// is registered again in later sessions.
    public mutating func publish(_ changes: [String: String?], replace: Bool = false,
                                 now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        var next = replace ? PeerMetadata() : metadata
        do { try next.apply(changes) } catch { return refuse(.invalidMetadata(error)) }
        let removals = changes.values.filter { $0 == nil }.count
        guard removals <= ControlLimits.maximumMetadataEntries else {
            return refuse(.invalidArgument("\(removals) keys removed at once; at most \(ControlLimits.maximumMetadataEntries)"))
        }
        let update = MetadataUpdate(replace: replace, changes: changes.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        return call(.publish(update), now: now)
    }

    /// Where and how is this peer? Completes with `.lookup`.
    public mutating func lookup(_ peer: PeerID, now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        call(.lookup(peer), now: now)
    }

    /// One page of a metadata search (`limit` clamped to 1...`maximumSearchPage`), after the
    /// PeerID `after` (the previous page's `next`). Completes with `.search`.
    public mutating func search(_ query: String, limit: Int, after: PeerID?,
                                now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        guard query.utf8.count <= ControlLimits.maximumQueryBytes else {
            return refuse(.invalidArgument("search query of \(query.utf8.count) bytes is over the \(ControlLimits.maximumQueryBytes)-byte limit"))
        }
        let pageLimit = UInt16(min(max(limit, 1), ControlLimits.maximumSearchPage))
        return call(.search(SearchRequest(query: query, limit: pageLimit, after: after)), now: now)
    }

    /// Subscribes to these peers' status (at most `maximumWatchBatch` per call). Completes with
    /// `.watched` (their state now); changes then arrive as `.status` events, also after a
    /// reconnection (the machine watches them again).
    public mutating func watch(_ peers: [PeerID], now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        guard !peers.isEmpty else { return answer(.success(.watched([]))) }
        guard peers.count <= ControlLimits.maximumWatchBatch else {
            return refuse(.invalidArgument("\(peers.count) peers in one watch; at most \(ControlLimits.maximumWatchBatch)"))
        }
        return call(.watch(peers), now: now)
    }

    /// Unsubscribes (at most `maximumWatchBatch` per call). Completes with `.done`.
    public mutating func unwatch(_ peers: [PeerID], now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        guard !peers.isEmpty else { return answer(.success(.done)) }
        guard peers.count <= ControlLimits.maximumWatchBatch else {
            return refuse(.invalidArgument("\(peers.count) peers in one unwatch; at most \(ControlLimits.maximumWatchBatch)"))
        }
        return call(.unwatch(peers), now: now)
    }

    /// Asks `peer` for a tunnel. Completes with `.connectAnswer` once the answer is pushed, or
    /// `.timedOut` after `connectAnswerTimeout`.
    public mutating func connect(to peer: PeerID, transport: TunnelTransport, note: String = "",
                                 now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        guard note.utf8.count <= ControlLimits.maximumNoteBytes else {
            return refuse(.invalidArgument("note of \(note.utf8.count) bytes is over the \(ControlLimits.maximumNoteBytes)-byte limit"))
        }
        let id = nextConnectRequestID
        nextConnectRequestID += 1
        return call(.connect(ConnectRequest(to: peer, requestID: id, transport: transport, note: note)), now: now)
    }

    /// Accepts or refuses a connection request received as `.connectRequest`. Completes with `.done`.
    public mutating func answerConnect(from requester: PeerID, requestID: UInt64, accept: Bool, reason: String = "",
                                       now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        guard reason.utf8.count <= ControlLimits.maximumNoteBytes else {
            return refuse(.invalidArgument("reason of \(reason.utf8.count) bytes is over the \(ControlLimits.maximumNoteBytes)-byte limit"))
        }
        return call(.answerConnect(ConnectDecision(peer: requester, requestID: requestID, accepted: accept, reason: reason)), now: now)
    }

    /// HANDSHAKE: sends this side's offer for an accepted connection. Completes with `.done`; the
    /// plan arrives as the event `.traversalPlan`.
    public mutating func offerTraversal(_ offer: TraversalOffer, now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        guard offer.keyShare.count == ControlLimits.keyShareBytes,
              offer.candidates.count <= ControlLimits.maximumTraversalCandidates else {
            return refuse(.invalidArgument("a traversal offer holds a \(ControlLimits.keyShareBytes)-byte key share and at most \(ControlLimits.maximumTraversalCandidates) candidates"))
        }
        return call(.traversalOffer(offer), now: now)
    }

    /// HANDSHAKE: tells it how this side's tunnel came out. Completes with `.done`.
    public mutating func reportTraversal(_ result: TraversalResult, now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        call(.traversalResult(result), now: now)
    }

    /// INDEX: runs one operation (sign up, log in, networks, memberships, search; see
    /// `IndexCall`). Completes with `.index(reply)`, or `.refused` with the INDEX's reason.
    /// Network watches are renewed by themselves after the session restarts.
    public mutating func index(_ call: IndexCall, now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        if let why = call.validationFailure { return refuse(.invalidArgument(why)) }
        return self.call(.indexRequest(call), now: now)
    }

    /// Sends an instant message. Messages to one peer go one at a time, in call order (at most
    /// `maximumQueuedMessagesPerDestination` waiting). Completes with `.messageOutcome`:
    /// `delivered`, `offline`, or `timedOut` when no final outcome came within `messageTimeout`.
    public mutating func sendMessage(_ text: String, to peer: PeerID,
                                     now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        let bytes = text.utf8.count
        guard bytes <= ControlLimits.maximumMessageBytes else { return refuse(.messageTooLarge(bytes: bytes)) }
        if let failure = admissionFailure() { return refuse(failure) }
        let token = makeToken()
        if messages.inFlight[peer] == nil {
            startMessage(token: token, text: text, to: peer, now: now)
        } else if messages.waiting[peer, default: []].count >= CheckpointClientLimits.maximumQueuedMessagesPerDestination {
            complete(token, .failure(.queueFull(limit: CheckpointClientLimits.maximumQueuedMessagesPerDestination)))
        } else {
            messages.waiting[peer, default: []].append(.init(token: token, text: text))
        }
        return (token, flush())
    }

    // MARK: internals

    private func admissionFailure() -> CheckpointClientError? {
        if isStoppingOrStopped { return .stopped }
        if pendingCalls >= CheckpointClientLimits.maximumPendingCalls {
            return .tooManyPendingCalls(limit: CheckpointClientLimits.maximumPendingCalls)
        }
        return nil
    }

    private mutating func call(_ frame: ControlFrame, now: NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        if let failure = admissionFailure() { return refuse(failure) }
        let token = makeToken()
        issue(frame, purpose: .call(token), deadline: now + configuration.requestTimeout, now: now)
        return (token, flush())
    }

    private mutating func answer(_ result: Result<CheckpointClientResponse, CheckpointClientError>) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        let token = makeToken()
        complete(token, result)
        return (token, flush())
    }

    private mutating func refuse(_ error: CheckpointClientError) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]) {
        answer(.failure(error))
    }

    /// The response to an API call's request.
    mutating func callAnswered(_ token: CheckpointRequestToken, request: ControlFrame, response: ControlFrame, now: NIODeadline) {
        switch (request, response) {
        case (_, .error(let failure)):
            complete(token, .failure(.refused(failure)))
        case (.lookup, .lookupResult(let result)):
            complete(token, .success(.lookup(result)))
        case (.search, .searchResult(let result)):
            complete(token, .success(.search(result)))
        case (.watch(let peers), .watchResult(let statuses)):
            watchedPeers.formUnion(peers)
            complete(token, .success(.watched(statuses)))
        case (.unwatch(let peers), .ok):
            watchedPeers.subtract(peers)
            complete(token, .success(.done))
        case (.publish(let update), .ok):
            var next = update.replace ? PeerMetadata() : metadata
            var changes: [String: String?] = [:]
            for change in update.changes { changes[change.key] = .some(change.value) }
            if (try? next.apply(changes)) != nil { metadata = next }
            complete(token, .success(.done))
        case (.indexRequest(let call), .indexResult(let reply)):
            switch call {
            case .watchNetwork(let name): watchedNetworks.insert(name)
            case .unwatchNetwork(let name), .leave(let name), .deleteNetwork(let name): watchedNetworks.remove(name)
            case .logout, .login, .signup: watchedNetworks.removeAll()
            default: break
            }
            complete(token, .success(.index(reply)))
        case (.answerConnect, .ok), (.traversalOffer, .ok), (.traversalResult, .ok):
            complete(token, .success(.done))
        case (.connect(let asked), .ok):
            connectWaits[ClientConnectKey(peer: asked.to, requestID: asked.requestID)] =
                ClientConnectWait(token: token, deadline: now + configuration.connectAnswerTimeout)
        default:
            complete(token, .failure(.unexpectedResponse(response.kind)))
        }
    }

    /// A pushed answer to a connection request: completes the call waiting for it, even if the
    /// push overtook the `ok` to the request.
    mutating func connectAnswered(_ decision: ConnectDecision) {
        let key = ClientConnectKey(peer: decision.peer, requestID: decision.requestID)
        if let wait = connectWaits.removeValue(forKey: key) {
            complete(wait.token, .success(.connectAnswer(decision)))
            return
        }
        for (id, request) in requests {
            guard case .call(let token) = request.purpose, case .connect(let asked) = request.frame,
                  asked.to == decision.peer, asked.requestID == decision.requestID else { continue }
            requests[id] = nil
            complete(token, .success(.connectAnswer(decision)))
            return
        }
        output.append(.event(.connectAnswer(decision)))
    }

    private mutating func startMessage(token: CheckpointRequestToken, text: String, to peer: PeerID, now: NIODeadline) {
        let messageID = nextMessageID
        nextMessageID += 1
        let deadline = now + configuration.messageTimeout
        // Reserve the slot first: `issue` may complete nothing, but the in-flight entry must exist
        // before any answer can be handled.
        messages.inFlight[peer] = .init(token: token, messageID: messageID, transaction: nil, deadline: deadline)
        let id = issue(.sendMessage(OutgoingMessage(to: peer, messageID: messageID, text: text)), purpose: .message(to: peer),
                       deadline: min(now + configuration.requestTimeout, deadline), now: now)
        messages.inFlight[peer]?.transaction = id
    }

    /// The response to the `sendMessage` of the message in flight to `peer`.
    mutating func messageAnswered(to peer: PeerID, _ response: ControlFrame, now: NIODeadline) {
        guard let message = messages.inFlight[peer] else { return }
        messages.inFlight[peer]?.transaction = nil
        switch response {
        case .messageOutcome(let outcome) where outcome.messageID == message.messageID:
            if outcome.outcome == .queued { return }  // the final outcome comes as a push
            finishMessage(to: peer, .success(.messageOutcome(outcome.outcome)), now: now)
        case .error(let failure) where failure.code == .peerOffline:
            finishMessage(to: peer, .success(.messageOutcome(.offline)), now: now)
        case .error(let failure):
            finishMessage(to: peer, .failure(.refused(failure)), now: now)
        default:
            finishMessage(to: peer, .failure(.unexpectedResponse(response.kind)), now: now)
        }
    }

    /// A pushed final outcome of a `queued` message.
    mutating func messageStatus(_ outcome: MessageOutcome, now: NIODeadline) {
        guard outcome.outcome != .queued else { return }
        if let message = messages.inFlight[outcome.to], message.messageID == outcome.messageID {
            finishMessage(to: outcome.to, .success(.messageOutcome(outcome.outcome)), now: now)
        } else {
            output.append(.event(.messageOutcome(outcome)))
        }
    }

    /// Completes the message in flight to `peer` and sends the next one waiting for it.
    mutating func finishMessage(to peer: PeerID, _ result: Result<CheckpointClientResponse, CheckpointClientError>, now: NIODeadline) {
        guard let message = messages.inFlight.removeValue(forKey: peer) else { return }
        if let id = message.transaction { requests[id] = nil }
        complete(message.token, result)
        guard var waiting = messages.waiting[peer], !waiting.isEmpty else { return }
        let next = waiting.removeFirst()
        messages.waiting[peer] = waiting.isEmpty ? nil : waiting
        startMessage(token: next.token, text: next.text, to: peer, now: now)
    }

    // MARK: bookkeeping

    /// Drops the session's own requests and holds the calls until the next registration.
    mutating func holdRequests() {
        for (id, request) in requests {
            switch request.purpose {
            case .register, .keepalive, .rewatch, .unregister:
                requests[id] = nil
            case .call, .message:
                requests[id]?.sends = 0
                requests[id]?.nextSendAt = nil
            }
        }
    }

    mutating func rewatch(now: NIODeadline) {
        let peers = watchedPeers.sorted()
        var start = 0
        while start < peers.count {
            let batch = Array(peers[start..<min(start + ControlLimits.maximumWatchBatch, peers.count)])
            issue(.watch(batch), purpose: .rewatch, deadline: now + configuration.requestTimeout, now: now)
            start += batch.count
        }
        for network in watchedNetworks.sorted() {
            issue(.indexRequest(.watchNetwork(network)), purpose: .rewatch, deadline: now + configuration.requestTimeout, now: now)
        }
    }

    mutating func makeToken() -> CheckpointRequestToken {
        defer { nextToken += 1 }
        return CheckpointRequestToken(rawValue: nextToken)
    }

    mutating func complete(_ token: CheckpointRequestToken, _ result: Result<CheckpointClientResponse, CheckpointClientError>) {
        output.append(.completed(token, result))
    }

    /// Calls unfinished now (requests, messages, connection requests awaiting their answer).
    var pendingCalls: Int {
        requests.values.reduce(0) { n, r in
            if case .call = r.purpose { return n + 1 }
            return n
        } + messages.count + connectWaits.count
    }

    mutating func failAllCalls() {
        var tokens: [CheckpointRequestToken] = []
        for (id, request) in requests {
            switch request.purpose {
            case .call(let token):
                tokens.append(token)
                requests[id] = nil
            case .message:
                requests[id] = nil
            default:
                break
            }
        }
        tokens += messages.inFlight.values.map(\.token) + messages.waiting.values.flatMap { $0.map(\.token) }
        tokens += connectWaits.values.map(\.token)
        messages = ClientMessages()
        connectWaits = [:]
        for token in tokens.sorted(by: { $0.rawValue < $1.rawValue }) { complete(token, .failure(.stopped)) }
    }

    static func clampKeepalive(_ seconds: UInt16) -> UInt16 {
        min(max(seconds, ControlLimits.keepaliveSecondsRange.lowerBound), ControlLimits.keepaliveSecondsRange.upperBound)
    }

    /// Completes the messages and connection requests whose time is up.
    mutating func expireCalls(now: NIODeadline) {
        for (to, message) in messages.inFlight.sorted(by: { $0.value.token.rawValue < $1.value.token.rawValue }) where now >= message.deadline {
            finishMessage(to: to, .success(.messageOutcome(.timedOut)), now: now)
        }
        for (key, wait) in connectWaits.sorted(by: { $0.value.token.rawValue < $1.value.token.rawValue }) where now >= wait.deadline {
            connectWaits[key] = nil
            complete(wait.token, .failure(.timedOut))
        }
    }
}
