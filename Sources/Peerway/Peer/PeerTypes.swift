import NIOCore
import NIOPosix
import PeerwayCheckpoint
import PeerwaySTUN

/// How a `Peer` runs. The defaults suit an application on an ordinary host.
public struct PeerOptions: Sendable {
    /// Seconds between keepalives (clamped to `ControlLimits.keepaliveSecondsRange`); well inside
    /// the NAT's UDP timeout keeps the mapping, and the registration, alive.
    public var keepaliveSeconds: UInt16
    /// The host candidates registered; `nil` means this host's interface addresses (loopback
    /// only when there is nothing else), of the families the socket can use, with its port.
    public var localCandidates: [PeerEndpoint]?
    /// The local IP to bind (`"0.0.0.0"`, `"::"`, or one address); `nil` means the wildcard of
    /// the first supernode's address family.
    public var bindHost: String?
    /// The local UDP port; 0 lets the system choose.
    public var bindPort: UInt16
    /// A request without an answer fails with `PeerError.timedOut` after this long.
    public var requestTimeout: TimeAmount
    /// `Peer.send` returns `.timedOut` when no final outcome came this long after sending
    /// (longer than the checkpoint's own delivery attempts, so its verdict normally arrives).
    public var messageTimeout: TimeAmount
    /// `Peer.requestConnection` fails with `PeerError.timedOut` when the other side has not
    /// answered this long after the request was forwarded (it may be asking a human).
    public var connectAnswerTimeout: TimeAmount
    /// `Peer.start` gives up when no registration has completed this long after it began.
    public var startTimeout: TimeAmount
    /// Events kept for a consumer that falls behind; beyond this the oldest are dropped.
    public var eventBufferSize: Int
    /// The event loop group the peer's socket runs on.
    public var eventLoopGroup: any EventLoopGroup
    /// When a handshake with a supernode has had no answer over UDP this long, the peer also
    /// dials the supernode's TCP port (its address's `?tcp=`) and uses whichever answers first;
    /// `nil`: UDP only.
    public var tcpFallbackDelay: TimeAmount? = PeerOptions.defaultTCPFallbackDelay
    /// The STUN server for server-reflexive candidates and the NAT measurement; `nil` means the
    /// first supernode's host at `stunPort`.
    public var stunServer: STUNAddress? = nil
    /// The STUN port on the supernode's host (`peerway supernode` runs its STUN pair there).
    public var stunPort: UInt16 = STUN.defaultPort
    /// Whether to measure this host's NAT (RFC 5780, in the background after start) so that
    /// traversals can pick the right technique; without it they try every technique that may work.
    public var measuresNAT = true
    /// The HTTP proxy the control channel over TCP and the relay's TCP splice go through (with
    /// `CONNECT`): by default the environment's (`HTTPS_PROXY`, `https_proxy`, `ALL_PROXY`,
    /// `all_proxy`, except for hosts in `NO_PROXY`); `peerway peer --proxy URL` sets one.
    public var proxy: ProxySetting = .environment
    /// Test hook: makes some of the peer's control sends fail (`SendFaults`); nil in real use.
    var sendFaults: SendFaults? = nil

    /// Options with the defaults described on each property.
    public init(
        keepaliveSeconds: UInt16 = ControlLimits.defaultKeepaliveSeconds,
        localCandidates: [PeerEndpoint]? = nil,
        bindHost: String? = nil,
        bindPort: UInt16 = 0,
        requestTimeout: TimeAmount = CheckpointClientLimits.defaultRequestTimeout,
        messageTimeout: TimeAmount = CheckpointClientLimits.defaultMessageTimeout,
        connectAnswerTimeout: TimeAmount = CheckpointClientLimits.defaultConnectAnswerTimeout,
        startTimeout: TimeAmount = PeerOptions.defaultStartTimeout,
        eventBufferSize: Int = PeerOptions.defaultEventBufferSize,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.keepaliveSeconds = keepaliveSeconds
        self.localCandidates = localCandidates
        self.bindHost = bindHost
        self.bindPort = bindPort
        self.requestTimeout = requestTimeout
        self.messageTimeout = messageTimeout
        self.connectAnswerTimeout = connectAnswerTimeout
        self.startTimeout = startTimeout
        self.eventBufferSize = eventBufferSize
        self.eventLoopGroup = eventLoopGroup
    }

    /// Default `startTimeout`: time for handshake attempts at several supernodes in turn.
    public static let defaultStartTimeout: TimeAmount = .seconds(30)
    /// Default `eventBufferSize`.
    public static let defaultEventBufferSize = 4096
}

/// Why a `Peer` call failed, and what to do about it.
public enum PeerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `Peer.start` was given no supernode address.
    case noSupernodes
    /// No supernode could be resolved (each with the reason), so there is nothing to dial.
    case cannotResolve([SupernodeAddress: String])
    /// No supernode completed a handshake and registration within `startTimeout`; `sends` says
    /// how the peer's own sends fared when some failed on this host (nil when none did).
    case supernodeUnreachable([SupernodeAddress], sends: PeerSendReport? = nil)
    /// The UDP socket could not be bound.
    case bindFailed(host: String, port: UInt16, reason: String)
    /// The checkpoint refused the request (the failure's code says why; nothing changed there).
    case refused(ControlFailure)
    /// No answer in time to this operation; the peer reconnects by itself, try again later.
    case timedOut(String)
    /// Metadata over a limit or with a bad key.
    case invalidMetadata(MetadataError)
    /// An argument over a protocol limit (the text says which).
    case invalidArgument(String)
    /// A message over `ControlLimits.maximumMessageBytes`.
    case messageTooLarge(bytes: Int)
    /// Too many unfinished calls (the text says which limit); wait for some to finish.
    case busy(String)
    /// The checkpoint refused the registration itself (e.g. a bad signature): retrying will not help.
    case registrationRefused(ControlFailure)
    /// Another process registered this identity; this peer stopped.
    case superseded
    /// The checkpoint answered something that does not fit the request.
    case protocolViolation(String)
    /// The peer is stopped (`stop()`, superseded, or its socket closed).
    case stopped
    /// The other peer refused the connection, with its reason.
    case connectionRefused(String)
    /// No tunnel could be made (no direct path and no relay answered, or the plan failed).
    case traversalFailed(String)
    /// The other side's tunnel key share did not verify (it is not who it claims, or was tampered with).
    case tunnelAuthenticationFailed(String)
    /// The HTTP proxy (`PeerOptions.proxy`) refused or failed a `CONNECT` (the text says what it did).
    case proxyFailed(String)

    /// What failed and what to do about it, in a sentence.
    public var description: String {
        switch self {
        case .noSupernodes:
            return "no supernode address given; pass at least one peerway://<key>@host:port"
        case .cannotResolve(let failures):
            let list = failures.map { "\($0.key.host): \($0.value)" }.sorted().joined(separator: "; ")
            return "cannot resolve any supernode (\(list)); check the host names and DNS"
        case .supernodeUnreachable(let addresses, let sends):
            let list = addresses.map(\.description).joined(separator: ", ")
            if let sends {
                return "no supernode answered (\(list)) within the start timeout; \(sends)"
            }
            return "no supernode answered (\(list)); check that one runs and that UDP reaches it, and that the key in its address is right"
        case .bindFailed(let host, let port, let reason):
            return "cannot bind the peer's UDP socket to \(host):\(port): \(reason)"
        case .refused(let failure):
            return "the checkpoint refused the request (\(failure.code)): \(failure.text)"
        case .timedOut(let what):
            return "\(what) got no answer in time; the peer keeps reconnecting, try again later"
        case .invalidMetadata(let error):
            return "\(error)"
        case .invalidArgument(let why):
            return "invalid argument: \(why)"
        case .messageTooLarge(let bytes):
            return "message of \(bytes) bytes is over the \(ControlLimits.maximumMessageBytes)-byte limit; split it"
        case .busy(let why):
            return "too many unfinished calls: \(why)"
        case .registrationRefused(let failure):
            return "the checkpoint refused the registration (\(failure.code)): \(failure.text)"
        case .superseded:
            return "this identity registered from another process, which replaced this peer; it stopped"
        case .protocolViolation(let what):
            return "protocol violation by the checkpoint: \(what)"
        case .stopped:
            return "the peer is stopped"
        case .connectionRefused(let reason):
            return "the other peer refused the connection: \(reason.isEmpty ? "no reason given" : reason)"
        case .traversalFailed(let why):
            return "no tunnel could be made: \(why); check that the supernode runs a relay (peerway supernode --relay-listen)"
        case .tunnelAuthenticationFailed(let why):
            return "the other side of the tunnel failed authentication (\(why)); it may be an impostor, the tunnel was not opened"
        case .proxyFailed(let why):
            return "through the HTTP proxy: \(why)"
        }
    }
}

/// What the checkpoint knows about a peer.
public struct PeerInfo: Equatable, Sendable {
    /// The peer asked about.
    public var id: PeerID
    /// Whether it is registered now (when not, the other fields are empty).
    public var online: Bool
    /// Its public endpoint as its checkpoint sees it.
    public var observed: PeerEndpoint?
    /// Its own interface addresses.
    public var candidates: [PeerEndpoint]
    /// Its published metadata.
    public var metadata: PeerMetadata

    /// Info with these values.
    public init(id: PeerID, online: Bool, observed: PeerEndpoint?, candidates: [PeerEndpoint], metadata: PeerMetadata) {
        self.id = id
        self.online = online
        self.observed = observed
        self.candidates = candidates
        self.metadata = metadata
    }
}

/// The answer to `Peer.requestConnection`.
public enum ConnectionAnswer: Equatable, Sendable {
    /// The peer accepted the negotiation named `requestID`.
    case accepted(requestID: UInt64)
    /// The peer refused, with its reason (may be empty).
    case refused(reason: String)
}

/// Things that happen to a `Peer` without being asked for.
public enum PeerEvent: Equatable, Sendable {
    /// Registered for the first time: the public endpoint the supernode sees.
    case registered(observed: PeerEndpoint, supernode: SupernodeAddress)
    /// Registered again after a reconnection or an address change (watches were renewed).
    case reregistered(observed: PeerEndpoint, supernode: SupernodeAddress)
    /// Lost the supernode or could not reach one; the peer keeps trying by itself.
    case disconnected(reason: String)
    /// An instant message.
    case message(from: PeerID, text: String)
    /// A watched peer came online, went offline, expired, or changed its metadata.
    case status(peer: PeerID, online: Bool, change: StatusEvent.Change, metadata: PeerMetadata)
    /// The final outcome of a message whose `Peer.send` had already returned `.timedOut` (the
    /// recipient acknowledged it after all, or the checkpoint gave up).
    case lateMessageOutcome(MessageOutcome)
    /// The answer to a connection request whose `Peer.requestConnection` had already timed out.
    case lateConnectAnswer(ConnectDecision)
    /// Someone asks for a tunnel: answer with `Peer.answer(_:accept:reason:)`.
    case connectRequest(IncomingConnectRequest)
    /// INDEX: a member of a network this peer watches (`Peer.watchNetwork`) came online or went
    /// offline from one of their peers.
    case networkStatus(NetworkMemberStatus)
    /// The peer stopped; no event follows.
    case stopped(CheckpointStopReason)
}

extension PeerError {
    /// The error for a failed machine call; `what` names the operation.
    init(_ error: CheckpointClientError, what: String) {
        switch error {
        case .refused(let failure): self = .refused(failure)
        case .timedOut: self = .timedOut(what)
        case .messageTooLarge(let bytes): self = .messageTooLarge(bytes: bytes)
        case .invalidMetadata(let e): self = .invalidMetadata(e)
        case .invalidArgument(let why): self = .invalidArgument(why)
        case .queueFull(let limit): self = .busy("\(limit) messages already wait for this peer")
        case .tooManyPendingCalls(let limit): self = .busy("\(limit) calls are unfinished")
        case .unexpectedResponse(let kind): self = .protocolViolation("\(what) was answered with \(kind)")
        case .stopped: self = .stopped
        }
    }
}
