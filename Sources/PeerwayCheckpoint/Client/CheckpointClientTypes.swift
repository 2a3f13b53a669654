import NIOCore

/// What a `CheckpointClientMachine` needs to know: who it is, where to register, what to say.
public struct CheckpointClientConfiguration: Sendable {
    /// The peer's key pair; it signs the registration.
    public var identity: PeerIdentity
    /// Supernodes in order of preference (at least one). The machine names them by index in
    /// `CheckpointClientAction.send` and takes datagrams with the index of their source.
    public var supernodes: [SupernodeAddress]
    /// Keepalive interval asked for, clamped to `ControlLimits.keepaliveSecondsRange`; the
    /// checkpoint's answer (`Registered.keepaliveSeconds`) is what the machine then uses.
    public var keepaliveSeconds: UInt16
    /// The peer's own interface addresses (host candidates); the first
    /// `ControlLimits.maximumCandidates` are registered.
    public var candidates: [PeerEndpoint]
    /// Metadata registered at first; later changed by `publish`.
    public var metadata: PeerMetadata
    /// A request without a response fails after this long.
    public var requestTimeout: TimeAmount
    /// A message without a final outcome completes as `timedOut` after this long.
    public var messageTimeout: TimeAmount
    /// A connection request without an answer fails after this long.
    public var connectAnswerTimeout: TimeAmount

    /// A configuration with the protocol's default intervals and timeouts.
    public init(
        identity: PeerIdentity,
        supernodes: [SupernodeAddress],
        keepaliveSeconds: UInt16 = ControlLimits.defaultKeepaliveSeconds,
        candidates: [PeerEndpoint] = [],
        metadata: PeerMetadata = PeerMetadata(),
        requestTimeout: TimeAmount = CheckpointClientLimits.defaultRequestTimeout,
        messageTimeout: TimeAmount = CheckpointClientLimits.defaultMessageTimeout,
        connectAnswerTimeout: TimeAmount = CheckpointClientLimits.defaultConnectAnswerTimeout
    ) {
        self.identity = identity
        self.supernodes = supernodes
        self.keepaliveSeconds = keepaliveSeconds
        self.candidates = candidates
        self.metadata = metadata
        self.requestTimeout = requestTimeout
        self.messageTimeout = messageTimeout
        self.connectAnswerTimeout = connectAnswerTimeout
    }
}

/// Names one API call of a `CheckpointClientMachine`; its `.completed` action carries it.
public struct CheckpointRequestToken: Hashable, Sendable, CustomStringConvertible {
    /// Unique per machine, increasing.
    public let rawValue: UInt64

    /// A token with this number (tests; the machine makes its own).
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// `call #n`.
    public var description: String { "call #\(rawValue)" }
}

/// The successful result of an API call.
public enum CheckpointClientResponse: Equatable, Sendable {
    /// `publish`, `unwatch`, `answerConnect`: done.
    case done
    /// Where and how the peer is.
    case lookup(LookupResult)
    /// One page of results; `next` continues it.
    case search(SearchResult)
    /// The watched peers' current state.
    case watched([PeerStatus])
    /// A message's final outcome: `delivered`, `offline` or `timedOut` (never `queued`).
    case messageOutcome(MessageOutcome.Outcome)
    /// The pushed answer to a connection request.
    case connectAnswer(ConnectDecision)
    /// INDEX: the answer to `index(_:now:)`.
    case index(IndexReply)
}

/// Why an API call failed.
public enum CheckpointClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The checkpoint refused it with this failure (nothing changed there).
    case refused(ControlFailure)
    /// No response in time (the supernode may be unreachable; the machine reconnects by itself).
    case timedOut
    /// The message text is over `ControlLimits.maximumMessageBytes`.
    case messageTooLarge(bytes: Int)
    /// The metadata change breaks a metadata limit.
    case invalidMetadata(MetadataError)
    /// An argument is over a protocol limit (the text says which).
    case invalidArgument(String)
    /// Too many messages wait for this destination already.
    case queueFull(limit: Int)
    /// Too many calls are unfinished already.
    case tooManyPendingCalls(limit: Int)
    /// The checkpoint answered with a frame that does not fit the request.
    case unexpectedResponse(ControlFrame.Kind)
    /// The machine stopped (`stop()`, or the identity registered elsewhere) before it completed.
    case stopped

    /// A readable sentence saying what happened.

    public var description: String {
        switch self {
        case .refused(let f): return "the checkpoint refused the request (\(f.code)): \(f.text)"
        case .timedOut: return "no answer from the checkpoint in time; it retries the connection by itself, try again later"
        case .messageTooLarge(let n): return "message of \(n) bytes is over the \(ControlLimits.maximumMessageBytes)-byte limit; split it"
        case .invalidMetadata(let e): return "metadata refused: \(e)"
        case .invalidArgument(let why): return "invalid argument: \(why)"
        case .queueFull(let limit): return "\(limit) messages already wait for this peer; wait for their outcomes"
        case .tooManyPendingCalls(let limit): return "\(limit) calls are already unfinished; wait for some to complete"
        case .unexpectedResponse(let kind): return "the checkpoint answered with an unexpected \(kind) frame"
        case .stopped: return "the peer stopped before the call completed"
        }
    }
}

/// A registration as the checkpoint confirmed it.
public struct CheckpointRegistration: Equatable, Sendable {
    /// This peer's id, as the checkpoint derived it from the registered key.
    public var peer: PeerID
    /// The public endpoint the checkpoint sees this peer at.
    public var observed: PeerEndpoint
    /// The keepalive interval the checkpoint holds the peer to.
    public var keepaliveSeconds: UInt16
    /// Index of the supernode registered with.
    public var supernode: Int

    /// A registration with these values.
    public init(peer: PeerID, observed: PeerEndpoint, keepaliveSeconds: UInt16, supernode: Int) {
        self.peer = peer
        self.observed = observed
        self.keepaliveSeconds = keepaliveSeconds
        self.supernode = supernode
    }
}

/// Why the peer registered again.
public enum CheckpointReregistrationCause: Equatable, Sendable {
    /// The keepalive answer showed a new public endpoint (NAT rebinding, network change).
    case addressChanged(from: PeerEndpoint)
    /// The session was lost (see the `disconnected` before it) and a new one was made.
    case sessionRestarted
}

/// Why the machine lost or could not make its session; it keeps trying by itself.
public enum CheckpointDisconnectReason: Equatable, Sendable, CustomStringConvertible {
    /// No handshake with this supernode completed; the machine tries the next one.
    case supernodeUnreachable(supernode: Int)
    /// The supernode does not know the session (it restarted).
    case sessionUnknown
    /// Keepalives went unanswered.
    case keepaliveTimedOut
    /// The supernode says the session is not registered (it expired there).
    case notRegistered
    /// The supernode refused the registration for a reason worth retrying (e.g. rate limited).
    case registrationFailed(ControlFailure)

    /// A readable sentence saying what happened.

    public var description: String {
        switch self {
        case .supernodeUnreachable(let i): return "supernode #\(i) did not complete a handshake"
        case .sessionUnknown: return "the supernode no longer knows the session (it restarted)"
        case .keepaliveTimedOut: return "keepalives went unanswered"
        case .notRegistered: return "the supernode says the session is not registered"
        case .registrationFailed(let f): return "registration failed (\(f.code)): \(f.text)"
        }
    }
}

/// Why the machine stopped for good.
public enum CheckpointStopReason: Equatable, Sendable, CustomStringConvertible {
    /// `stop()` was called.
    case requested
    /// The same identity registered from another process; this one gives way.
    case superseded(ControlFailure)
    /// The checkpoint refused the registration itself (bad signature, malformed): retrying
    /// would not help.
    case registrationRefused(ControlFailure)

    /// A readable sentence saying what happened.

    public var description: String {
        switch self {
        case .requested: return "stopped"
        case .superseded: return "this identity registered from another process, which replaced this one"
        case .registrationRefused(let f): return "the checkpoint refused the registration (\(f.code)): \(f.text)"
        }
    }
}

/// Things that happen without being asked for.
public enum CheckpointClientEvent: Equatable, Sendable {
    /// The first registration is done.
    case registered(CheckpointRegistration)
    /// A later registration is done (the watch list and pending calls have been sent again).
    case reregistered(CheckpointRegistration, cause: CheckpointReregistrationCause)
    /// The session is lost or could not be made; the machine is reconnecting.
    case disconnected(CheckpointDisconnectReason)
    /// An instant message arrived (each push once, even if the checkpoint retransmitted it).
    case message(IncomingMessage)
    /// A watched peer's status changed.
    case status(StatusEvent)
    /// Someone asks for a tunnel; answer with `answerConnect`.
    case connectRequest(IncomingConnectRequest)
    /// An answer to a connection request that no call waits for any more (it timed out).
    case connectAnswer(ConnectDecision)
    /// A final message outcome for a message whose call already completed (timed out locally).
    case messageOutcome(MessageOutcome)
    /// HANDSHAKE: this side's plan for a traversal it offered.
    case traversalPlan(TraversalPlan)
    /// INDEX: a member of a watched network came online or went offline.
    case networkStatus(NetworkMemberStatus)
    /// A registration named supernodes of the network the machine did not know: they now have
    /// the next indices of `CheckpointClientMachine.supernodes` (in this order), and `send`
    /// actions may name them from now on.
    case supernodesLearned([SupernodeAddress])
    /// The machine stopped; nothing follows. Close the socket.
    case stopped(CheckpointStopReason)
}

/// What the driver must do, in order.
public enum CheckpointClientAction: Equatable, Sendable {
    /// Send this datagram to the supernode with this index in `CheckpointClientMachine.supernodes`
    /// (the configured ones, then those learned).
    case send(ByteBuffer, to: Int)
    /// Call `wakeUp(now:)` at this time; replaces any earlier request.
    case scheduleWakeUp(NIODeadline)
    /// The API call named by the token finished.
    case completed(CheckpointRequestToken, Result<CheckpointClientResponse, CheckpointClientError>)
    /// Something happened.
    case event(CheckpointClientEvent)
}

/// Counters of what the machine dropped or repeated (diagnostics and tests).
public struct CheckpointClientStatistics: Equatable, Sendable {
    /// Datagrams that are not control packets, or frames that do not decode.
    public var malformed = 0
    /// Sealed packets that failed authentication, or for another session.
    public var unauthenticated = 0
    /// Sealed packets whose counter was seen before or is too old.
    public var replayed = 0
    /// Packets that make no sense now (a stale cookie, a response nobody waits for, a
    /// datagram from a supernode not in use).
    public var unexpected = 0
    /// Pushes received again (acknowledged again, delivered once).
    public var duplicatePushes = 0
    /// Hellos and requests sent again after no answer.
    public var retransmissions = 0
    /// Handshakes begun.
    public var handshakes = 0
    /// Times the keepalive interval was halved because the NAT forgot the mapping between two.
    public var keepaliveShortened = 0

    /// All counters zero.
    public init() {}
}
