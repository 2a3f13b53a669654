import NIOCore
import PeerwaySTUN

/// The RFC 8489 §6.2.1 retransmission schedule of one transaction: the first request, then
/// retransmissions of the same bytes after gaps of RTO, 2·RTO, 4·RTO... (capped), `requestCount`
/// requests in all, then `finalWaitMultiplier` × RTO of waiting before declaring "no response".
public struct NetcheckRetransmission: Hashable, Sendable {
    /// The retransmission timeout this transaction started with.
    public var rto: TimeAmount
    /// Rc: requests sent in all, the first included.
    public var requestCount: Int
    /// The largest gap between two requests (the RTO itself if that is larger).
    public var maximumInterval: TimeAmount
    /// Rm: the wait after the last request, in RTOs.
    public var finalWaitMultiplier: Int64

    public init(
        rto: TimeAmount,
        requestCount: Int = NetcheckLimits.requestCount,
        maximumInterval: TimeAmount = NetcheckLimits.maximumRetransmissionInterval,
        finalWaitMultiplier: Int64 = NetcheckLimits.finalWaitMultiplier
    ) {
        self.rto = rto
        self.requestCount = max(1, requestCount)
        self.maximumInterval = maximumInterval
        self.finalWaitMultiplier = finalWaitMultiplier
    }

    /// The RTO to use once an RTT has been measured: clamp(`rttMultiplier` × RTT) to
    /// `minimumRTO ... maximumRTO`; `initialRTO` while nothing is known.
    public static func rto(measuredRTT: TimeAmount?) -> TimeAmount {
        guard let rtt = measuredRTT else { return NetcheckLimits.initialRTO }
        return min(max(rtt * NetcheckLimits.rttMultiplier, NetcheckLimits.minimumRTO), NetcheckLimits.maximumRTO)
    }

    /// The gap after the `sent`-th request (1-based) before the next one; `nil` after the last.
    public func interval(afterRequest sent: Int) -> TimeAmount? {
        guard sent >= 1, sent < requestCount else { return nil }
        let cap = max(rto, maximumInterval)
        var gap = rto
        for _ in 1..<sent {
            gap = gap * 2
            if gap >= cap { return cap }
        }
        return min(gap, cap)
    }

    /// How long to wait after the last request before giving up.
    public var finalWait: TimeAmount { rto * finalWaitMultiplier }

    /// When, counted from the first request, each request is sent.
    public var requestOffsets: [TimeAmount] {
        var offsets: [TimeAmount] = [.zero]
        var t = TimeAmount.zero
        while let gap = interval(afterRequest: offsets.count) {
            t = t + gap
            offsets.append(t)
        }
        return offsets
    }

    /// When, counted from the first request, the transaction gives up without an answer.
    public var giveUpOffset: TimeAmount { (requestOffsets.last ?? .zero) + finalWait }
}

/// Why a request was sent: which RFC 5780 test it belongs to.
enum NetcheckPurpose: Hashable, Sendable {
    /// Test I from the main socket to `servers[index]`.
    case binding(server: Int)
    /// Mapping test II: main socket to the other IP, primary port (B:p).
    case mappingTestII
    /// Mapping test III: main socket to the other IP and port (B:p2).
    case mappingTestIII
    /// Plain Binding from the filtering socket to A:p (shows the socket itself works).
    case filteringControl
    /// Filtering test II: CHANGE-REQUEST(change IP and port) to A:p, answered from B:p2.
    case filteringTestII
    /// Filtering test III: CHANGE-REQUEST(change port) to A:p, answered from A:p2.
    case filteringTestIII
    /// Test I from the `index`-th allocation probe socket to A:p.
    case allocationProbe(Int)
    /// A Binding request from the main socket to its own mapped address.
    case hairpin

    var isFilteringChangeTest: Bool { self == .filteringTestII || self == .filteringTestIII }
}

/// What a server said in a success answer.
struct NetcheckAnswer: Hashable, Sendable {
    var mapped: STUNAddress
    var otherAddress: STUNAddress?
    var responseOrigin: STUNAddress?
    /// The address the answer actually came from.
    var source: STUNAddress
    /// Set only when the answer came before any retransmission (Karn's rule).
    var rtt: TimeAmount?
}

/// Where a transaction stands.
enum NetcheckOutcome: Hashable, Sendable {
    case pending
    case answered(NetcheckAnswer)
    /// An error response (e.g. 420 for CHANGE-REQUEST on a server without an alternate address).
    case refused(STUNErrorCode)
    /// A CHANGE-REQUEST was answered from `STUNAddress`, another of the server's addresses than asked.
    case wrongOrigin(STUNAddress)
    /// The hairpin request came back to one of our sockets.
    case hairpinned
    case timedOut
    /// No longer needed (filtering test III after test II was answered).
    case cancelled
    /// The run's time limit came first.
    case abandoned

    var isPending: Bool { self == .pending }

    var answer: NetcheckAnswer? {
        if case .answered(let a) = self { return a }
        return nil
    }
}

/// One request and its retransmissions.
struct NetcheckTransaction: Sendable {
    let id: STUNTransactionID
    let purpose: NetcheckPurpose
    let socket: NetcheckSocketID
    let destination: STUNAddress
    /// The only source an answer is accepted from.
    let expectedSource: STUNAddress
    let bytes: ByteBuffer
    let schedule: NetcheckRetransmission
    let firstSentAt: NIODeadline
    /// Order of the first send among all transactions (port-allocation samples are ordered by it).
    let sequence: Int
    var requestsSent: Int
    /// When the next retransmission is due, or (after the last request) when to give up.
    var deadline: NIODeadline
    var outcome: NetcheckOutcome

    /// Sends the next request or gives up, whichever is due at `deadline`.
    /// Returns the bytes to send again, or `nil` when it gave up.
    mutating func fire(now: NIODeadline) -> ByteBuffer? {
        guard schedule.interval(afterRequest: requestsSent) != nil else {
            outcome = .timedOut
            return nil
        }
        requestsSent += 1
        deadline = now + (schedule.interval(afterRequest: requestsSent) ?? schedule.finalWait)
        return bytes
    }
}
