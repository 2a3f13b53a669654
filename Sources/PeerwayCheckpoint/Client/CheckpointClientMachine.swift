import NIOCore

/// The client side of CHECKPOINT (its flow is in the comment at the top of
/// CheckpointClientLimits.swift). Feed it from one thread or event loop at a time.
public struct CheckpointClientMachine: Sendable {
    private enum State: Sendable {
        case idle
        case handshaking(ClientHandshake)
        case registering(ClientSession)
        case registered(ClientSession)
        /// `unregister` sent; waiting for its answer.
        case stopping(ClientSession)
        case stopped
    }

    private var state: State = .idle
    let configuration: CheckpointClientConfiguration
    /// Index of the supernode in use (or being tried), in `supernodes`.
    var supernode = 0
    /// Every supernode known, by index: the configured ones, then those learned from
    /// registrations (indices never change; at most `maximumKnownSupernodes`).
    public internal(set) var supernodes: [SupernodeAddress]
    /// Indices of `supernodes` in the order they are tried when one fails.
    public internal(set) var failoverOrder: [Int]
    /// Failed handshake attempts at `supernode` in a row.
    private var failedAttempts = 0
    private var everRegistered = false
    /// The metadata as registered and since published.
    var metadata: PeerMetadata
    /// The keepalive interval asked for in registrations: the configured one, halved each time a
    /// keepalive finds that the NAT forgot the mapping (see `keepaliveAnswered`).
    public internal(set) var keepaliveSeconds: UInt16
    /// Peers whose watch the checkpoint confirmed (re-watched in each new session).
    public internal(set) var watchedPeers: Set<PeerID> = []
    /// INDEX networks whose members' status this peer watches (renewed after a session restart).
    public internal(set) var watchedNetworks: Set<String> = []
    var requests: [UInt32: ClientRequest] = [:]
    /// The round trip to the supernode, for the requests' retransmission timeout.
    var roundTrip = ClientRoundTrip()
    var messages = ClientMessages()
    var connectWaits: [ClientConnectKey: ClientConnectWait] = [:]
    var nextToken: UInt64 = 1
    var nextTransaction: UInt32 = 1
    var nextMessageID: UInt64 = 1
    var nextConnectRequestID: UInt64 = 1
    /// The wake-up last asked for (not asked again while unchanged).
    private var scheduled: NIODeadline?
    /// Actions of the input being handled.
    var output: [CheckpointClientAction] = []
    /// What was dropped or repeated so far.
    public internal(set) var statistics = CheckpointClientStatistics()

    /// - Precondition: `configuration.supernodes` is not empty.
    public init(configuration: CheckpointClientConfiguration) {
        precondition(!configuration.supernodes.isEmpty, "a checkpoint client needs at least one supernode address")
        var configuration = configuration
        configuration.keepaliveSeconds = Self.clampKeepalive(configuration.keepaliveSeconds)
        configuration.candidates = Array(configuration.candidates.prefix(ControlLimits.maximumCandidates))
        self.configuration = configuration
        self.metadata = configuration.metadata
        self.keepaliveSeconds = configuration.keepaliveSeconds
        self.supernodes = configuration.supernodes
        self.failoverOrder = Array(configuration.supernodes.indices)
    }

    // MARK: state queries

    /// The registration in force, if the session is registered.
    public var registration: CheckpointRegistration? {
        if case .registered(let s) = state { return s.registration }
        return nil
    }

    /// Index of the supernode in use or being tried.
    public var currentSupernode: Int { supernode }

    /// The id of the current session, once a handshake completed.
    public var sessionID: UInt64? { session?.id }

    /// True once `stopped` was reported; later inputs do nothing.
    public var isStopped: Bool {
        if case .stopped = state { return true }
        return false
    }

    var isStoppingOrStopped: Bool {
        switch state {
        case .stopping, .stopped: true
        default: false
        }
    }

    /// Where the machine stands, without the state's payload (for the other files of the machine).
    var phase: ClientPhase {
        switch state {
        case .idle: .idle
        case .handshaking: .handshaking
        case .registering: .registering
        case .registered: .registered
        case .stopping: .stopping
        case .stopped: .stopped
        }
    }

    private var session: ClientSession? {
        get {
            switch state {
            case .registering(let s), .registered(let s), .stopping(let s): s
            default: nil
            }
        }
        set {
            guard let newValue else { return }
            switch state {
            case .registering: state = .registering(newValue)
            case .registered: state = .registered(newValue)
            case .stopping: state = .stopping(newValue)
            default: break
            }
        }
    }

    // MARK: inputs

    /// Begins the first handshake with the first supernode.
    public mutating func start(now: NIODeadline) -> [CheckpointClientAction] {
        guard case .idle = state else { return [] }
        beginHandshake(now: now)
        return flush()
    }

    /// A datagram arrived from the supernode with index `from` in the configuration (the driver
    /// drops datagrams from other sources).
    public mutating func datagramReceived(_ bytes: ByteBuffer, from index: Int, now: NIODeadline) -> [CheckpointClientAction] {
        guard !isStopped else { return [] }
        guard index == supernode else {
            statistics.unexpected += 1
            return flush()
        }
        var datagram = bytes
        guard let packet = try? datagram.readControlPacket() else {
            statistics.malformed += 1
            return flush()
        }
        switch (state, packet) {
        case (.handshaking(var handshake), .cookie(let cookie)):
            let (accepted, first) = handshake.accept(cookie, now: now)
            if first { output.append(.send(handshake.nextHello(now: now), to: handshake.supernode)) }
            if !accepted { statistics.unexpected += 1 }
            state = .handshaking(handshake)
        case (.handshaking(let handshake), .helloReply(let reply)):
            guard let (keys, welcome) = try? handshake.initiator.complete(reply) else {
                statistics.unauthenticated += 1
                break
            }
            state = .registering(ClientSession(supernode: handshake.supernode, id: reply.sessionID, keys: keys, welcome: welcome))
            sendRegister(now: now)
        case (.registering, .sealed(let sealed)), (.registered, .sealed(let sealed)), (.stopping, .sealed(let sealed)):
            received(sealed, now: now)
        case (.registering(let s), .sessionUnknown(let id)) where id == s.id:
            attemptFailed(now: now)
        case (.registered(let s), .sessionUnknown(let id)) where id == s.id:
            sessionLost(.sessionUnknown, now: now)
        case (.stopping(let s), .sessionUnknown(let id)) where id == s.id:
            finish(.requested)
        default:
            statistics.unexpected += 1
        }
        return flush()
    }

    /// The time asked for by `.scheduleWakeUp` has come (early or late calls are harmless).
    public mutating func wakeUp(now: NIODeadline) -> [CheckpointClientAction] {
        scheduled = nil
        switch state {
        case .idle, .stopped:
            return flush()
        case .handshaking(var handshake):
            if now >= handshake.gaveUpAt {
                attemptFailed(now: now)
            } else if now >= handshake.nextSendAt {
                statistics.retransmissions += 1
                output.append(.send(handshake.nextHello(now: now), to: handshake.supernode))
                state = .handshaking(handshake)
            }
        case .registering, .registered, .stopping:
            break
        }
        fireRequests(now: now)
        if case .registered(var s) = state, let due = s.nextKeepaliveAt, now >= due, let registration = s.registration {
            s.nextKeepaliveAt = now + .seconds(Int64(registration.keepaliveSeconds))
            state = .registered(s)
            if !requests.values.contains(where: { $0.purpose == .keepalive }) {
                let timeout = CheckpointClientLimits.keepaliveTimeout(keepaliveSeconds: registration.keepaliveSeconds,
                                                                      requestTimeout: configuration.requestTimeout)
                issue(.keepalive, purpose: .keepalive, deadline: now + timeout, now: now)
            }
        }
        expireCalls(now: now)
        return flush()
    }

    /// The host's addresses changed (another network, an interface up or down): the keepalive
    /// goes out now, so the supernode learns the new public endpoint (and the machine re-registers
    /// if it changed) within a round trip rather than at the next keepalive. Harmless otherwise.
    public mutating func networkChanged(now: NIODeadline) -> [CheckpointClientAction] {
        if case .registered(var s) = state, s.registration != nil {
            s.nextKeepaliveAt = now
            state = .registered(s)
        }
        return wakeUp(now: now)
    }

    /// Ends the registration (an `unregister`, best effort) and fails every unfinished call with
    /// `.stopped`. Reports `stopped(.requested)` once the checkpoint answered or after
    /// `unregisterTimeout`.
    public mutating func stop(now: NIODeadline) -> [CheckpointClientAction] {
        switch state {
        case .stopping, .stopped:
            return []
        case .registered(let s):
            failAllCalls()
            state = .stopping(s)
            issue(.unregister, purpose: .unregister, deadline: now + CheckpointClientLimits.unregisterTimeout, now: now)
        case .idle, .handshaking, .registering:
            finish(.requested)
        }
        return flush()
    }

    // MARK: handshake and session

    private mutating func beginHandshake(now: NIODeadline) {
        statistics.handshakes += 1
        var handshake = ClientHandshake(supernode: supernode, checkpointKey: supernodes[supernode].publicKey, now: now)
        roundTrip = ClientRoundTrip()  // another session, maybe another supernode: measured anew
        output.append(.send(handshake.nextHello(now: now), to: supernode))
        state = .handshaking(handshake)
    }

    /// A handshake or registration attempt failed: try again, moving on to the next supernode
    /// after `handshakeAttemptsPerSupernode` failures.
    mutating func attemptFailed(now: NIODeadline, reason: CheckpointDisconnectReason? = nil) {
        if let reason { output.append(.event(.disconnected(reason))) }
        failedAttempts += 1
        if failedAttempts >= CheckpointClientLimits.handshakeAttemptsPerSupernode {
            output.append(.event(.disconnected(.supernodeUnreachable(supernode: supernode))))
            supernode = nextSupernode
            failedAttempts = 0
        }
        holdRequests()
        beginHandshake(now: now)
    }

    /// A registered session is gone: report it and make a new one at the same supernode, or
    /// with `moveOn` (it stopped answering) at the next one in the failover order.
    mutating func sessionLost(_ reason: CheckpointDisconnectReason, now: NIODeadline, moveOn: Bool = false) {
        output.append(.event(.disconnected(reason)))
        failedAttempts = 0
        if moveOn { supernode = nextSupernode }
        holdRequests()
        beginHandshake(now: now)
    }

    mutating func sendRegister(now: NIODeadline) {
        guard let s = session else { return }
        var request = RegisterRequest(
            publicKey: Array(configuration.identity.publicKey.rawRepresentation),
            keepaliveSeconds: keepaliveSeconds, candidates: configuration.candidates,
            metadata: metadata, signature: [])
        do {
            request.signature = try configuration.identity.signature(for: request.signedBytes(transcript: s.keys.transcript))
        } catch {
            finish(.registrationRefused(ControlFailure(.badSignature, "cannot sign the registration: \(error)")))
            return
        }
        issue(.register(request), purpose: .register, deadline: now + configuration.requestTimeout, now: now)
    }

    private mutating func registerAnswered(_ frame: ControlFrame, now: NIODeadline) {
        guard case .registered(let confirmed) = frame else {
            let isRegistered = registration != nil
            guard case .error(let failure) = frame else {
                statistics.unexpected += 1
                if !isRegistered { attemptFailed(now: now) }
                return
            }
            switch failure.code {
            case .badSignature, .badRequest, .tooLarge:
                finish(.registrationRefused(failure))
            default:
                // After an address change the session still works: keep it, retry at the next keepalive.
                if !isRegistered { attemptFailed(now: now, reason: .registrationFailed(failure)) }
            }
            return
        }
        guard var s = session else { return }
        let keepalive = Self.clampKeepalive(confirmed.keepaliveSeconds)
        let registration = CheckpointRegistration(peer: confirmed.peer, observed: confirmed.observed,
                                                  keepaliveSeconds: keepalive, supernode: s.supernode)
        let previous = s.registration
        s.registration = registration
        s.nextKeepaliveAt = now + .seconds(Int64(keepalive))
        learnSupernodes(confirmed.supernodes, observed: confirmed.observed)
        switch state {
        case .registering:
            state = .registered(s)
            failedAttempts = 0
            if everRegistered {
                output.append(.event(.reregistered(registration, cause: .sessionRestarted)))
                rewatch(now: now)
            } else {
                everRegistered = true
                output.append(.event(.registered(registration)))
            }
            sendHeldRequests(now: now)
        case .registered:
            state = .registered(s)
            output.append(.event(.reregistered(registration, cause: .addressChanged(from: previous?.observed ?? confirmed.observed))))
        default:
            break
        }
    }

    mutating func finish(_ reason: CheckpointStopReason) {
        failAllCalls()
        requests.removeAll()
        state = .stopped
        output.append(.event(.stopped(reason)))
    }

    // MARK: sealed frames

    private mutating func received(_ sealed: ControlSealed, now: NIODeadline) {
        guard var s = session else { return }
        let opened = s.open(sealed)
        session = s
        let envelope: ControlEnvelope
        switch opened {
        case .success(let e): envelope = e
        case .failure(.replayed): statistics.replayed += 1; return
        case .failure(.malformed): statistics.malformed += 1; return
        case .failure(.otherSession), .failure(.unauthenticated): statistics.unauthenticated += 1; return
        }
        switch envelope.frame {
        case .registered, .ok, .keepaliveAck, .lookupResult, .searchResult, .messageOutcome, .watchResult, .indexResult, .error:
            response(envelope, now: now)
        case .deliver, .status, .connectRequested, .connectAnswered, .messageStatus, .traversalPlan, .networkStatus:
            push(envelope, now: now)
        default:
            statistics.unexpected += 1
        }
    }

    mutating func sendSealed(_ frame: ControlFrame, id: UInt32) {
        guard var s = session else { return }
        let bytes = s.seal(frame, id: id)
        session = s
        output.append(.send(bytes, to: s.supernode))
    }

    private mutating func push(_ envelope: ControlEnvelope, now: NIODeadline) {
        sendSealed(.ack, id: envelope.id)
        guard var s = session else { return }
        let fresh = s.pushes.insert(envelope.id)
        session = s
        guard fresh else {
            statistics.duplicatePushes += 1
            return
        }
        if case .stopping = state { return }
        switch envelope.frame {
        case .deliver(let message): output.append(.event(.message(message)))
        case .status(let status): output.append(.event(.status(status)))
        case .connectRequested(let request): output.append(.event(.connectRequest(request)))
        case .connectAnswered(let decision): connectAnswered(decision)
        case .messageStatus(let outcome): messageStatus(outcome, now: now)
        case .traversalPlan(let plan): output.append(.event(.traversalPlan(plan)))
        case .networkStatus(let status): output.append(.event(.networkStatus(status)))
        default: break
        }
    }

    private mutating func response(_ envelope: ControlEnvelope, now: NIODeadline) {
        guard let request = requests[envelope.id], request.sends > 0 else {
            statistics.unexpected += 1
            return
        }
        if case .error(let failure) = envelope.frame {
            switch (failure.code, state) {
            case (.superseded, _):
                finish(.superseded(failure))
                return
            case (.notRegistered, .registered):
                sessionLost(.notRegistered, now: now)  // the request is held and sent again
                return
            default:
                break
            }
        }
        requests[envelope.id] = nil
        if request.sends == 1, let sent = request.firstSentAt { roundTrip.add(now - sent) }
        switch request.purpose {
        case .register: registerAnswered(envelope.frame, now: now)
        case .keepalive: keepaliveAnswered(envelope.frame, now: now)
        case .rewatch: break
        case .unregister: finish(.requested)
        case .call(let token): callAnswered(token, request: request.frame, response: envelope.frame, now: now)
        case .message(let to): messageAnswered(to: to, envelope.frame, now: now)
        }
    }

    // MARK: completions

    /// Appends the wake-up for the earliest deadline (when it changed) and hands out the actions.
    mutating func flush() -> [CheckpointClientAction] {
        if let next = nextDeadline, next != scheduled {
            output.append(.scheduleWakeUp(next))
            scheduled = next
        }
        defer { output = [] }
        return output
    }

    private var nextDeadline: NIODeadline? {
        var deadlines: [NIODeadline] = []
        switch state {
        case .idle, .stopped:
            return nil
        case .handshaking(let handshake):
            deadlines += [handshake.nextSendAt, handshake.gaveUpAt]
        case .registered(let s):
            if let keepalive = s.nextKeepaliveAt { deadlines.append(keepalive) }
        case .registering, .stopping:
            break
        }
        for request in requests.values {
            deadlines.append(request.deadline)
            if let due = request.nextSendAt { deadlines.append(due) }
        }
        deadlines += messages.inFlight.values.map(\.deadline)
        deadlines += connectWaits.values.map(\.deadline)
        return deadlines.min()
    }
}
