import PeerwayCheckpoint
import PeerwaySTUN

/*
 One side of a UDP traversal, as a pure state machine (docs/traversal-protocol.md).

   plan arrives ─► probing: every `probeIntervalMillis`, a request on every (socket, target) pair;
                   the spray (many-port probing's easy side) paced at `sprayPerSecond`;
                   a request from an unknown address adds that pair (peer-reflexive) and is answered
     initiator:    first pair whose own request was answered ─► selecting: `select` every
                   `selectIntervalMillis` ─► selectAck ─► established
     acceptor:     a `select` on a pair ─► selectAck ─► established
   window over ─►  the relay pair (bound since the start) joins, verified and selected the same way
   deadline ─►     failed

 Relay first (`relayFirst`, the default for encrypted tunnels): the relay pair takes part from its
 bind on, so the first verified path (normally the relay, after one relay round trip) is selected
 and `established` at once; the machine then goes on probing the direct pairs until the direct
 window ends. A direct pair verified and selected later is `established` again (the tunnel moves
 onto it); a window that ends without one reports `directAbandoned` (the tunnel stays relayed).

 The machine sees probes already authenticated by the driver (which owns the keys and sockets);
 it decides what to send, from which socket, to whom, and when the tunnel is up.
*/

/// Timers and limits of UDP traversal.
public enum UDPTraversalLimits {
    /// Milliseconds between two requests on one pair, once the quick first retries are done.
    public static let probeIntervalMillis: UInt64 = 200
    /// Milliseconds before the first retry on a pair; each next gap doubles up to
    /// `probeIntervalMillis`. Both sides start together, so the first request often reaches the
    /// other NAT just before that side's own request opened it: a quick retry then gets through.
    public static let firstRetryMillis: UInt64 = 25
    /// Milliseconds between two selects (initiator) while waiting for the ack.
    public static let selectIntervalMillis: UInt64 = 100
    /// Milliseconds a select may go unacknowledged before the pair is dropped and probing resumes.
    public static let selectTimeoutMillis: UInt64 = 1_500
    /// Random ports sprayed per second on many-port probing's easy side.
    public static let sprayPerSecond: UInt64 = 4_096
    /// Milliseconds after the start before the first relay bind, when direct pairs are probed first.
    public static let relayBindDelayMillis: UInt64 = 100
    /// Milliseconds between two relay binds until the relay answers.
    public static let relayBindIntervalMillis: UInt64 = 250
    /// Milliseconds the direct window grows by once the other side was heard over a direct pair.
    public static let directGraceMillis: UInt64 = 4_000
    /// Milliseconds after the direct window for the relay path to come up; then the traversal fails.
    public static let relayWindowMillis: UInt64 = 10_000
    /// Most pairs one traversal probes (targets × sockets, plus learnt ones).
    public static let maximumPairs = 2_048
    /// Most outstanding request ids remembered.
    public static let maximumOutstanding = 16_384
    /// Lowest port a spray probes (below are privileged services, never NAT mappings).
    public static let sprayLowestPort: UInt16 = 1_024
}

/// One side of a UDP traversal. Feed it the plan, probes and the time; do what it returns.
public struct UDPTraversalMachine: Sendable {
    /// A local socket (index into the driver's sockets; 0 is the one that was STUNed) and a remote address.
    public struct Pair: Hashable, Sendable {
        public var socket: Int
        public var remote: PeerEndpoint

        public init(socket: Int, remote: PeerEndpoint) {
            self.socket = socket
            self.remote = remote
        }
    }

    /// The probe kinds the machine sends and receives (docs/traversal-protocol.md, Probes).
    public enum ProbeKind: UInt8, Sendable {
        case request = 1, response = 2, select = 3, selectAck = 4
        /// After a network change: the sender's new address, to probe (`TunnelPathMachine`).
        case candidate = 5
    }

    public enum Action: Equatable, Sendable {
        /// Send this probe from `socket` to `to` (`observed`: the request's source, in responses).
        case probe(ProbeKind, txid: UInt64, socket: Int, to: PeerEndpoint, observed: PeerEndpoint?)
        /// Send a relay bind (this side's token) from socket 0 to the relay.
        case bindRelay(to: PeerEndpoint)
        /// The tunnel is up on this pair. Relay first: the first one is usually the relay, and a
        /// direct pair found later is established again (move the tunnel onto it).
        case established(Pair, method: TraversalMethod, path: TunnelPath)
        /// Relay first: the direct window ended without a direct path; the tunnel stays relayed.
        case directAbandoned(String)
        /// No path could be made.
        case failed(String)
    }

    struct PairState {
        var pair: Pair
        var method: TraversalMethod
        var lastRequestMillis: UInt64?
        var requests = 0
        var verified = false
        /// Round trip of the request that verified the pair (selects are resent at twice it).
        var rttMillis: UInt64 = 0
        var isRelay = false
    }

    enum State: Equatable {
        case probing
        case selecting(pair: Int, txid: UInt64, since: UInt64, lastSent: UInt64)
        case established
        case failed
    }

    public let role: TraversalRole
    public let plan: TraversalPlan
    /// The relay pair is selected as soon as it works; direct pairs are probed on after it.
    public let relayFirst: Bool
    private var state: State = .probing
    /// Relay first: the tunnel runs over the relay while direct pairs are still probed.
    public private(set) var onRelay = false
    private var pairs: [PairState] = []
    private var pairIndex: [Pair: Int] = [:]
    private var outstanding: [UInt64: Int] = [:]
    /// Spray requests in flight: the port each went to.
    private var sprayTxids: [UInt64: UInt16] = [:]
    private var sprayPorts: [UInt16] = []
    private var sprayCursor = 0
    private var sprayStartedMillis: UInt64
    private let startMillis: UInt64
    private var relayBound = false
    /// An authenticated probe arrived over a direct pair.
    private var heardDirect = false
    private var lastRelayBindMillis: UInt64?
    private var random: STUNSeededRandom
    /// How many probes went out (for diagnostics).
    public private(set) var probesSent = 0

    /// - Parameter seed: seeds the txids and spray ports (tests pass a fixed one).
    public init(role: TraversalRole, plan: TraversalPlan, nowMillis: UInt64, seed: UInt64, relayFirst: Bool = false) {
        self.role = role
        self.plan = plan
        self.relayFirst = relayFirst
        startMillis = nowMillis
        sprayStartedMillis = nowMillis
        random = STUNSeededRandom(seed: seed)
        let sockets = max(1, Int(plan.localSockets))
        for target in plan.targets {
            for endpoint in target.endpoints {
                for socket in 0..<sockets { addPair(Pair(socket: socket, remote: endpoint), method: target.method) }
            }
        }
        if let spray = plan.spray {
            var seen = Set<UInt16>()
            let span = UInt64(65_536 - Int(UDPTraversalLimits.sprayLowestPort))
            while sprayPorts.count < Int(spray.count) && seen.count < Int(span) {
                let port = UInt16(UInt64(UDPTraversalLimits.sprayLowestPort) + random.next() % span)
                if seen.insert(port).inserted { sprayPorts.append(port) }
            }
        }
        if let relay = plan.relay?.udp {
            addPair(Pair(socket: 0, remote: relay), method: .relay)
            pairs[pairs.count - 1].isRelay = true
        }
    }

    /// Every local socket the plan needs.
    public var socketCount: Int { max(1, Int(plan.localSockets)) }
    /// When the direct window ends.
    /// The direct window, extended by `directGraceMillis` once an authenticated probe came over a
    /// direct pair (the path exists, it is only lossy: worth more time before the relay).
    public var directDeadlineMillis: UInt64 {
        startMillis + UInt64(plan.directWindowMillis) + (heardDirect && plan.directWindowMillis > 0 ? UDPTraversalLimits.directGraceMillis : 0)
    }
    /// When the traversal fails if nothing worked.
    public var deadlineMillis: UInt64 { directDeadlineMillis + (plan.relay == nil ? 0 : UDPTraversalLimits.relayWindowMillis) }
    /// The relay's address, when the plan has one for UDP.
    public var relayEndpoint: PeerEndpoint? { plan.relay?.udp }
    public var isFinished: Bool { state == .established || state == .failed }

    @discardableResult
    private mutating func addPair(_ pair: Pair, method: TraversalMethod) -> Int? {
        if let i = pairIndex[pair] { return i }
        guard pairs.count < UDPTraversalLimits.maximumPairs else { return nil }
        pairs.append(PairState(pair: pair, method: method))
        pairIndex[pair] = pairs.count - 1
        return pairs.count - 1
    }

    private mutating func newTxid() -> UInt64 {
        if outstanding.count >= UDPTraversalLimits.maximumOutstanding { outstanding.removeAll(keepingCapacity: true) }
        return random.next()
    }

    private func relayActive(_ now: UInt64) -> Bool { (relayFirst && !onRelay) || now >= directDeadlineMillis }

    /// The pair (and how it was found) the tunnel was last established on.
    public private(set) var establishedPair: Pair?
    /// The measured round trip of a pair (its verifying request), when known.
    public func roundTripMillis(of pair: Pair) -> UInt64? {
        pairIndex[pair].flatMap { pairs[$0].verified ? pairs[$0].rttMillis : nil }
    }

    /// The direct pairs verified so far (this side's request answered), best first.
    public var verifiedDirectPairs: [Pair] {
        pairs.filter { $0.verified && !$0.isRelay }.sorted { rank($0) < rank($1) }.map(\.pair)
    }

    private mutating func establish(_ i: Int) -> Action {
        let path: TunnelPath = pairs[i].isRelay ? .relayed : .direct
        establishedPair = pairs[i].pair
        if path == .relayed && relayFirst && plan.directWindowMillis > 0 {
            onRelay = true
            state = .probing
        } else {
            state = .established
        }
        return .established(pairs[i].pair, method: pairs[i].method, path: path)
    }

    /// Time passes: probes, spray, relay binds, selection retries, deadlines.
    public mutating func tick(nowMillis now: UInt64) -> [Action] {
        var out: [Action] = []
        switch state {
        case .established, .failed:
            return out
        case .selecting(let i, let txid, let since, let lastSent):
            if now >= since + UDPTraversalLimits.selectTimeoutMillis {
                pairs[i].verified = false
                state = .probing
            } else if now >= lastSent + max(UDPTraversalLimits.selectIntervalMillis, 2 * pairs[i].rttMillis) {
                state = .selecting(pair: i, txid: txid, since: since, lastSent: now)
                out.append(.probe(.select, txid: txid, socket: pairs[i].pair.socket, to: pairs[i].pair.remote, observed: nil))
                probesSent += 1
            }
        case .probing:
            break
        }
        if onRelay, now >= directDeadlineMillis {
            state = .established
            return [.directAbandoned("no direct path answered within \(directDeadlineMillis - startMillis) ms; the tunnel stays on the relay")]
        }
        if now >= deadlineMillis {
            state = .failed
            return [.failed(plan.relay == nil
                ? "no direct path answered within \(plan.directWindowMillis) ms and the plan has no relay"
                : "no path answered: direct for \(plan.directWindowMillis) ms, then the relay for \(UDPTraversalLimits.relayWindowMillis) ms")]
        }
        // The relay bind waits for the first round of probes when there are direct pairs: on a
        // NAT that allocates ports in sequence, it would take the port the other side predicted.
        let bindDue = pairs.allSatisfy(\.isRelay) || now >= startMillis + UDPTraversalLimits.relayBindDelayMillis
        if let relay = relayEndpoint, !relayBound, bindDue,
           lastRelayBindMillis.map({ now >= $0 + UDPTraversalLimits.relayBindIntervalMillis }) ?? true {
            lastRelayBindMillis = now
            out.append(.bindRelay(to: relay))
        }
        // While a pair is being selected no new request goes out: its answer would reach the
        // application of a raw tunnel after the selection.
        if case .selecting = state { return out }
        for i in pairs.indices {
            let p = pairs[i]
            if p.isRelay && (!relayBound || !relayActive(now) || onRelay) { continue }
            let gap = min(UDPTraversalLimits.probeIntervalMillis, UDPTraversalLimits.firstRetryMillis << UInt64(min(max(p.requests - 1, 0), 8)))
            guard p.lastRequestMillis.map({ now >= $0 + gap }) ?? true else { continue }
            pairs[i].lastRequestMillis = now
            pairs[i].requests += 1
            let txid = newTxid()
            outstanding[txid] = i
            out.append(.probe(.request, txid: txid, socket: p.pair.socket, to: p.pair.remote, observed: nil))
            probesSent += 1
        }
        if let spray = plan.spray, sprayCursor < sprayPorts.count {
            let due = Int((now - sprayStartedMillis) * UDPTraversalLimits.sprayPerSecond / 1000) + 1
            while sprayCursor < min(due, sprayPorts.count) {
                let txid = newTxid()
                sprayTxids[txid] = sprayPorts[sprayCursor]
                out.append(.probe(.request, txid: txid, socket: 0, to: PeerEndpoint(ip: spray.address.ip, port: sprayPorts[sprayCursor]), observed: nil))
                probesSent += 1
                sprayCursor += 1
            }
        }
        if role == .initiator, case .probing = state { out += selectIfReady(now) }
        return out
    }

    /// The relay answered this side's bind.
    public mutating func relayAnswered() { relayBound = true }
    /// Whether the relay answered this side's bind.
    public var isRelayBound: Bool { relayBound }

    /// An authenticated probe arrived on `socket` from `from`.
    public mutating func received(_ kind: ProbeKind, txid: UInt64, socket: Int, from: PeerEndpoint,
                                  nowMillis now: UInt64) -> [Action] {
        guard !isFinished else {
            // Late selects (our ack was lost) are answered even once established.
            if kind == .select, role == .acceptor, state == .established {
                return [.probe(.selectAck, txid: txid, socket: socket, to: from, observed: nil)]
            }
            return []
        }
        var out: [Action] = []
        let pair = Pair(socket: socket, remote: from)
        if from != relayEndpoint { heardDirect = true }
        switch kind {
        case .request:
            // The initiator selecting this pair answers no request on it: the select is already on
            // its way, and an answer arriving after it would reach a raw tunnel's application.
            if case .selecting(let i, _, _, _) = state, pairs[i].pair == pair { break }
            out.append(.probe(.response, txid: txid, socket: socket, to: from, observed: from))
            probesSent += 1
            if pairIndex[pair] == nil, let i = addPair(pair, method: inferMethod(from)) {
                // A triggered check: probe the new pair at once.
                pairs[i].lastRequestMillis = now
                let t = newTxid()
                outstanding[t] = i
                out.append(.probe(.request, txid: t, socket: socket, to: from, observed: nil))
                probesSent += 1
            }
        case .response:
            // A response verifies a pair only from the address its request went to (RFC 8445
            // §7.2.5.2.1: a path is checked both ways or not at all); from elsewhere, the address
            // is learnt and checked with a request of its own.
            if let i = outstanding[txid], pairs[i].pair == pair {
                pairs[i].verified = true
                pairs[i].rttMillis = now - min(now, pairs[i].lastRequestMillis ?? now)
            } else if let port = sprayTxids[txid], socket == 0, from.port == port, from.ip == plan.spray?.address.ip,
                      let i = addPair(pair, method: .manyPort) {
                pairs[i].verified = true
            } else if pairIndex[pair] == nil, let i = addPair(pair, method: inferMethod(from)) {
                pairs[i].lastRequestMillis = now
                let t = newTxid()
                outstanding[t] = i
                out.append(.probe(.request, txid: t, socket: socket, to: from, observed: nil))
                probesSent += 1
            }
            if role == .initiator, case .probing = state { out += selectIfReady(now) }
        case .select:
            guard role == .acceptor else { break }
            let i = addPair(pair, method: inferMethod(from)) ?? pairIndex[pair]
            out.append(.probe(.selectAck, txid: txid, socket: socket, to: from, observed: nil))
            probesSent += 1
            if let i, !(onRelay && pairs[i].isRelay) {
                out.append(establish(i))
            }
        case .candidate:
            break  // the path machine's, once the tunnel is up
        case .selectAck:
            guard role == .initiator, case .selecting(let i, let sent, _, _) = state, sent == txid, pairs[i].pair == pair else { break }
            out.append(establish(i))
        }
        return out
    }

    /// Initiator: select the best verified pair (direct first; the relay only after the window).
    private mutating func selectIfReady(_ now: UInt64) -> [Action] {
        let candidates = pairs.indices.filter { pairs[$0].verified && (!pairs[$0].isRelay || (relayActive(now) && !onRelay)) }
        guard let i = candidates.min(by: { rank(pairs[$0]) < rank(pairs[$1]) }) else { return [] }
        let txid = newTxid()
        state = .selecting(pair: i, txid: txid, since: now, lastSent: now)
        probesSent += 1
        return [.probe(.select, txid: txid, socket: pairs[i].pair.socket, to: pairs[i].pair.remote, observed: nil)]
    }

    private func rank(_ p: PairState) -> Int { p.isRelay ? 100 : Int(p.method.rawValue) }

    /// The technique a pair learnt from a probe belongs to: the target naming that address, or
    /// the spray's, or one aimed at the same IP address.
    private func inferMethod(_ remote: PeerEndpoint) -> TraversalMethod {
        if remote == relayEndpoint { return .relay }
        for t in plan.targets where t.endpoints.contains(remote) { return t.method }
        if let spray = plan.spray, spray.address.ip == remote.ip { return .manyPort }
        for t in plan.targets where t.endpoint.ip == remote.ip { return t.method }
        return .punch
    }
}
