import NIOCore

/// How a checkpoint behaves: its key, its timers and its limits. Every default is a named
/// constant documented where it is declared.
public struct CheckpointConfiguration: Sendable {
    /// The supernode's static key (its public half is in the supernode's address).
    public var key: SupernodeKey
    /// Keepalive interval offered in the welcome and used when a registration asks for none.
    public var keepaliveSeconds: UInt16 = ControlLimits.defaultKeepaliveSeconds
    /// Missed keepalive intervals before a peer is expired.
    public var expiryMisses: UInt8 = ControlLimits.expiryMisses
    /// Hellos per second one source IP may send (each costs a key exchange or a cookie).
    public var helloRatePerSecond = CheckpointConfiguration.defaultHelloRatePerSecond
    /// Hello burst per source IP.
    public var helloBurst = CheckpointConfiguration.defaultHelloBurst
    /// Requests per second one session may send.
    public var requestRatePerSecond = CheckpointConfiguration.defaultRequestRatePerSecond
    /// Request burst per session.
    public var requestBurst = CheckpointConfiguration.defaultRequestBurst
    /// Most sessions (registered or not) held at once; hellos beyond it are dropped.
    public var maximumSessions = CheckpointConfiguration.defaultMaximumSessions
    /// Where the HANDSHAKE gets relay allocations (nil: no relay; traversals that cannot go
    /// direct fail).
    public var relays: (any RelayGranting)?
    /// Whether an INDEX serves `indexRequest`s (the owner answers the `.index` actions); when
    /// false they are refused with `unavailable`.
    public var index = false
    /// Whether this checkpoint is one of a network of supernodes: it then tells the others about
    /// its peers and routes to theirs (`.cluster` actions; ClusterFrame.swift). False: alone.
    public var clustered = false
    /// Told each traversal outcome an initiator reports to this HANDSHAKE (operators' metrics),
    /// on the thread that drives the machine: it must return at once. `nil`: nobody listens.
    public var traversalReported: (@Sendable (TraversalResult) -> Void)?

    /// Default `helloRatePerSecond`: a NAT with many peers behind it re-handshakes them all after
    /// a supernode restart.
    public static let defaultHelloRatePerSecond = 50
    /// Default `helloBurst`.
    public static let defaultHelloBurst = 200
    /// Default `requestRatePerSecond` per session.
    public static let defaultRequestRatePerSecond = 200
    /// Default `requestBurst` per session.
    public static let defaultRequestBurst = 400
    /// Default `maximumSessions`.
    public static let defaultMaximumSessions = 4_000_000

    /// First retransmission of a push after this many milliseconds; the gap doubles each time
    /// up to `pushRetransmitCapMillis`.
    public static let pushRetransmitMillis: UInt64 = 500
    /// Longest gap between two sends of one push: short, so that a push and its ack still get
    /// through 30% loss each way (eight sends within the lifetime: all lost with probability
    /// 0.51^8, under 0.5%).
    public static let pushRetransmitCapMillis: UInt64 = 2_000
    /// A push not acknowledged within this many milliseconds is given up; for a message, that
    /// is its `timedOut` outcome (shorter than the client's message timeout, so the sender hears it).
    public static let pushLifetimeMillis: UInt64 = 12_000
    /// A push handed to another supernode whose outcome has not come back this long after it
    /// was sent ends `timedOut` here (the other supernode gives up at `pushLifetimeMillis`; the
    /// rest covers a frame lost with a link that went down and came back).
    public static let remotePushLifetimeMillis: UInt64 = pushLifetimeMillis + 3_000
    /// Peers of a supernode declared out taken offline per call (at its departure, then each
    /// tick): about 5 µs each, so at most about 100 ms of the checkpoint's thread at a time.
    public static let departuresPerTick = 20_000
    /// Messages one sender may have in flight at once.
    public static let maximumMessagesInFlightPerSender = 256
    /// Milliseconds the outcome of a finished message is remembered to answer the sender's
    /// retransmissions (longer than a client keeps retransmitting one request).
    public static let messageOutcomeMemoryMillis: UInt64 = 20_000
    /// Milliseconds a connection request waits for the callee's answer.
    public static let connectAnswerTimeoutMillis: UInt64 = 60_000
    /// Milliseconds an answered negotiation is remembered to answer retransmitted answers.
    public static let connectMemoryMillis: UInt64 = 30_000
    /// Open connection requests one peer may have.
    public static let maximumOpenConnectRequests = 64
    /// INDEX requests one session may have waiting on the store at once.
    public static let maximumIndexCallsInFlight = 8
    /// Milliseconds the answer to an INDEX request is remembered to answer its retransmissions
    /// (so a retransmitted sign-up gets its own answer, not "username taken").
    public static let indexAnswerMemoryMillis: UInt64 = 20_000
    /// Most INDEX answers remembered at once (each at most one frame, ~1.2 KB): past it the
    /// oldest are forgotten before their time.
    public static let maximumRememberedIndexAnswers = 50_000

    public init(key: SupernodeKey) { self.key = key }
}

/// What a checkpoint has done, for the operator and the benchmark.
public struct CheckpointCounters: Equatable, Sendable {
    /// Datagrams received and sent.
    public var received = 0, sent = 0
    /// Bytes of datagrams that were not authenticated (hellos, garbage) and of their answers:
    /// their ratio is the amplification factor, at most 1 by construction.
    public var unauthenticatedBytesIn = 0, unauthenticatedBytesOut = 0
    public var cookiesSent = 0, handshakes = 0, registrations = 0, unregistrations = 0, expirations = 0
    public var keepalives = 0, requests = 0, messagesDelivered = 0, messagesFailed = 0, pushesGivenUp = 0
    /// Of `messagesFailed`, those whose recipient was not registered (the rest timed out).
    public var messagesOffline = 0
    /// INDEX requests handed to the store, and answers sent back.
    public var indexCalls = 0, indexAnswers = 0
    /// Dropped: malformed, failed authentication, replayed, unknown session, rate limited.
    public var malformed = 0, authenticationFailures = 0, replays = 0, unknownSessions = 0, rateLimited = 0

    public init() {}
}
