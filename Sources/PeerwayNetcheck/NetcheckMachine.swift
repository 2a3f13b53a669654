import NIOCore
import PeerwaySTUN

/*
 NAT behaviour discovery (RFC 5780 §4) as a socket-free, clock-free state machine.

 The driver owns the sockets and the clock; the machine owns the protocol. The driver feeds it
 events (`start`, `socketOpened`, `socketFailed`, `datagramReceived`, `wakeUp`), always passing the
 current time, and performs the returned `NetcheckAction`s in order. The servers are A:p (primary
 address) and, for an RFC 5780 server, B:p2 (its OTHER-ADDRESS); the pair also listens on A:p2 and B:p.

   main socket                               filtering socket          probe sockets 1...K
   ───────────                               ────────────────          ───────────────────
   Test I → every server (in parallel)
     ← M1, OTHER-ADDRESS B:p2, RTT
   primary = first server in list order that answered with a usable OTHER-ADDRESS
             (else the first that answered at all: mapping/filtering stay "unknown")
   ├─ mapping test II → B:p          ──┐     opened fresh; sends only   opened fresh, in sequence;
   │    M2 == M1 → endpoint-indep.     │     to A:p, three requests     each sends Test I → A:p
   │    else test III → B:p2           │     at once:                   (port-allocation samples)
   │      M3 == M2 → address-dep.      │      control (no flags)
   │      else address-and-port-dep.   │      CHANGE-REQUEST(IP+port)
   │                                   │        answer from B:p2 → endpoint-independent filtering
   │                                   │      CHANGE-REQUEST(port)
   │                                   │        answer from A:p2 → address-dependent filtering
   │                                   │      neither, control answered → address-and-port-dep.
   └─ hairpin: once the probes have sent and the mapping tests are settled, a Binding request
      to our own M1; receiving that very request (same transaction id) on any of our sockets
      means the NAT hairpins. Skipped when there is no NAT (M1 is one of our own addresses):
      the report then says hairpinning = nil, "not applicable", rather than a meaningless true.
   finished(report) once every transaction has been answered, refused, timed out or cancelled.

 Why a separate filtering socket: filtering is about packets from addresses the mapping has NOT
 sent to. The main socket has already sent to B:p (mapping test II), so an address-dependent
 filter would let B:p2's answer through and look endpoint-independent. The filtering socket only
 ever talks to A:p, so the answers from B:p2 and A:p2 are true unsolicited-source probes.

 Independent tests run concurrently (distinct transaction ids): the whole run takes about one
 transaction timeout beyond test I, not the sum of them.

 Retransmission (RFC 8489 §6.2.1), per transaction, same transaction id every time:
 - test I starts with RTO = 500 ms (the RFC default: nothing is known about the path yet);
 - once a clean RTT is measured (Karn: only from a transaction answered before any retransmission,
   because the same id makes retransmitted answers ambiguous), later transactions use
   RTO = clamp(3 × RTT, 100 ms ... 1 s) with the largest clean sample so far (RFC 8489 §6.2.1
   allows an RTO from knowledge of the RTT; 3 × leaves room for jitter, the floor for timers);
 - the gap doubles after each send, capped at 500 ms (or the RTO if larger: no gap is longer than
   the RFC's first one unless the path is that slow); at most Rc = 8 requests are sent, and
   the transaction gives up Rm × RTO = 2 × RTO after the last one.
   Test I with no answer: sends at 0, 0.5, 1, ... 3.5 s, gives up at 4.5 s.
   A measured 100 ms RTO: sends at 0, 0.1, 0.3, 0.7, 1.2, 1.7, 2.2, 2.7 s, gives up at 2.9 s,
   which is how long a netcheck whose filtering tests get no answer lasts beyond test I.
 - Loss: an attempt succeeds only if the request and its answer both survive. With 30 % loss in
   each direction that is 0.7 × 0.7 = 0.49, so all 8 attempts fail with probability
   0.51^8 ≈ 0.0046. That bounds the chance that a negative test (filtering, hairpinning) reports
   a stricter behaviour than the NAT really has because of loss alone: under 0.5 % per test.
   Six requests would give 1.8 %, which is why Rc is 8 and not the 6 a fast give-up would prefer.

 Several servers: test I goes to all of them from the main socket. A server that sees another
 mapped address than the primary proves the mapping is not endpoint-independent (reported as the
 stricter address and port-dependent when the tests cannot say which); one at another IP that sees
 the same mapped address shows it is endpoint-independent when the primary lacks RFC 5780.

 Robustness: answers from an unexpected source, with an unknown transaction id, on the wrong
 socket, or that fail to decode are ignored and counted in the report; duplicate answers to
 retransmitted requests are counted separately. A server that answers a CHANGE-REQUEST from the
 wrong one of its own addresses makes filtering "unknown" instead of being misread, and so does
 an alternate address that never answered mapping test II (its silence would prove nothing).
*/

/// Every limit and timeout of a netcheck run, named (see the flow comment above for the reasoning).
public enum NetcheckLimits {
    /// RTO before any RTT is known: the RFC 8489 §6.2.1 default.
    public static let initialRTO: TimeAmount = .milliseconds(500)
    /// Smallest RTO derived from a measured RTT (timer granularity, scheduling jitter).
    public static let minimumRTO: TimeAmount = .milliseconds(100)
    /// Largest RTO derived from a measured RTT (a slow path still finishes in seconds).
    public static let maximumRTO: TimeAmount = .seconds(1)
    /// RTO = `rttMultiplier` × the largest clean RTT sample, clamped to the two bounds above.
    public static let rttMultiplier: Int64 = 3
    /// The doubling gap between retransmissions is capped at this (or at the RTO, if larger).
    public static let maximumRetransmissionInterval: TimeAmount = .milliseconds(500)
    /// Rc: requests sent per transaction, the first included (RFC 8489 default 7; see the loss note).
    public static let requestCount = 8
    /// Rm: after the last request, wait Rm × RTO before declaring "no response" (RFC default 16).
    public static let finalWaitMultiplier: Int64 = 2
    /// K: extra sockets opened to sample the NAT's port allocation.
    public static let allocationProbeSockets = 5
    /// Largest allowed value of `allocationProbeSockets` in a configuration.
    public static let maximumAllocationProbeSockets = 32
    /// At most this many STUN servers are probed in one run.
    public static let maximumServers = 8
    /// Largest |delta| between consecutive new mappings still called "sequential".
    public static let maximumSequentialDelta = 16
    /// New mappings needed to call the allocation sequential or random (two deltas at least).
    public static let minimumAllocationSamples = 3
    /// Deltas that may disagree with the common one and still make the pattern sequential
    /// (another host behind the NAT opening one mapping between two of our probes)...
    public static let allowedAllocationOutliers = 1
    /// ...but only when there are at least this many deltas, so the majority still means something.
    public static let minimumDeltasForOutlier = 4
    /// The whole run stops after this long by default, reporting what it has (`--timeout`).
    public static let defaultOverallTimeout: TimeAmount = .seconds(10)
}

/// Which of the run's sockets an action or event is about.
public struct NetcheckSocketID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// The socket of test I, the mapping tests and the hairpin test.
    public static let main = NetcheckSocketID(rawValue: 0)
    /// The fresh socket of the filtering tests: it only ever sends to the primary address.
    public static let filtering = NetcheckSocketID(rawValue: 1)
    /// The `index`-th (1-based) port-allocation probe socket.
    public static func allocationProbe(_ index: Int) -> NetcheckSocketID { NetcheckSocketID(rawValue: 1 + index) }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        self.rawValue = try decoder.singleValueContainer().decode(Int.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }

    public var description: String {
        switch rawValue {
        case 0: "main"
        case 1: "filtering"
        default: "probe-\(rawValue - 1)"
        }
    }
}

/// What a run probes and how long it may take.
public struct NetcheckConfiguration: Hashable, Sendable {
    /// Resolved STUN servers, most preferred first. Only those of the first one's address family
    /// are probed (one socket family per run).
    public var servers: [STUNAddress]
    /// This host's own IP addresses, the one the OS uses toward the servers first. The mapped
    /// address is compared with them to tell "no NAT"; empty means unknown (assume a NAT).
    public var localIPs: [STUNAddress.IP]
    /// K, the number of port-allocation probe sockets.
    public var allocationProbeSockets: Int
    /// Whether to test hairpinning.
    public var checksHairpinning: Bool
    /// The whole run stops after this long, reporting what it has learnt.
    public var overallTimeout: TimeAmount

    public init(
        servers: [STUNAddress],
        localIPs: [STUNAddress.IP] = [],
        allocationProbeSockets: Int = NetcheckLimits.allocationProbeSockets,
        checksHairpinning: Bool = true,
        overallTimeout: TimeAmount = NetcheckLimits.defaultOverallTimeout
    ) {
        self.servers = servers
        self.localIPs = localIPs
        self.allocationProbeSockets = allocationProbeSockets
        self.checksHairpinning = checksHairpinning
        self.overallTimeout = overallTimeout
    }
}

/// What the driver must do, in order.
public enum NetcheckAction: Equatable, Sendable {
    /// Open a UDP socket of `family` bound to the wildcard address and an ephemeral port, then
    /// report `socketOpened` (with its local address) or `socketFailed`.
    case openSocket(NetcheckSocketID, family: STUNAddress.Family)
    /// Send one datagram.
    case send(socket: NetcheckSocketID, to: STUNAddress, bytes: ByteBuffer)
    /// Call `wakeUp(now:)` at this time. Replaces any earlier request; one timer is enough.
    case wakeUp(at: NIODeadline)
    /// The run is over: close every socket and hand out the report.
    case finished(NetcheckReport)
    /// The run is over without a report: close every socket and throw.
    case failed(NetcheckError)
}

/// RFC 5780 NAT behaviour discovery, driven by events with the time passed in (see the comment at
/// the top of this file). Feed it from one thread or event loop at a time.
public struct NetcheckMachine: Sendable {
    private enum State: Sendable {
        case idle(NetcheckConfiguration, TransactionIDSource)
        case running(NetcheckRun)
        case done
    }

    private var state: State

    /// - Parameters:
    ///   - configuration: the servers and limits.
    ///   - randomSeed: makes transaction ids reproducible (tests); `nil` draws them from the
    ///     system's secure generator, as RFC 8489 §6 asks.
    public init(configuration: NetcheckConfiguration, randomSeed: UInt64? = nil) {
        self.state = .idle(configuration, TransactionIDSource(seed: randomSeed))
    }

    /// True once `finished` or `failed` has been returned; later events return no actions.
    public var isFinished: Bool {
        if case .done = state { return true }
        return false
    }

    /// Starts the run: asks for the main socket.
    public mutating func start(now: NIODeadline) -> [NetcheckAction] {
        guard case .idle(let configuration, let ids) = state else { return [] }
        if let error = NetcheckRun.validate(configuration) {
            state = .done
            return [.failed(error)]
        }
        var run = NetcheckRun(configuration: configuration, ids: ids, now: now)
        let actions = run.start(now: now)
        return settle(run, actions)
    }

    /// The socket asked for by `.openSocket` is bound at `localAddress`.
    public mutating func socketOpened(_ socket: NetcheckSocketID, localAddress: STUNAddress, now: NIODeadline) -> [NetcheckAction] {
        withRun { $0.socketOpened(socket, localAddress: localAddress, now: now) }
    }

    /// The socket asked for by `.openSocket` could not be opened.
    public mutating func socketFailed(_ socket: NetcheckSocketID, reason: String, now: NIODeadline) -> [NetcheckAction] {
        withRun { $0.socketFailed(socket, reason: reason, now: now) }
    }

    /// A datagram arrived on `socket` from `source`.
    public mutating func datagramReceived(on socket: NetcheckSocketID, from source: STUNAddress, bytes: ByteBuffer, now: NIODeadline) -> [NetcheckAction] {
        withRun { $0.datagramReceived(on: socket, from: source, bytes: bytes, now: now) }
    }

    /// The time asked for by `.wakeUp(at:)` has come (calling it early or late is harmless).
    public mutating func wakeUp(now: NIODeadline) -> [NetcheckAction] {
        withRun { $0.wakeUp(now: now) }
    }

    private mutating func withRun(_ body: (inout NetcheckRun) -> [NetcheckAction]) -> [NetcheckAction] {
        guard case .running(var run) = state else { return [] }
        state = .done  // drop the enum's copy so `run` is uniquely referenced while it changes
        let actions = body(&run)
        return settle(run, actions)
    }

    private mutating func settle(_ run: NetcheckRun, _ actions: [NetcheckAction]) -> [NetcheckAction] {
        state = run.isTerminated ? .done : .running(run)
        return actions
    }
}

/// Transaction ids: from the system's secure generator, or from a seed for reproducible tests.
struct TransactionIDSource: Sendable {
    private var seeded: STUNSeededRandom?

    init(seed: UInt64?) {
        self.seeded = seed.map(STUNSeededRandom.init(seed:))
    }

    mutating func next() -> STUNTransactionID {
        guard var generator = seeded else { return .random() }
        let id = STUNTransactionID.random(using: &generator)
        seeded = generator
        return id
    }
}

