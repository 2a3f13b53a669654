import NIOCore
import PeerwaySTUN

/// Where the HANDSHAKE gets relay allocations: a RELAY in this supernode or the least-loaded one
/// of the network. Minting is stateless (the relay checks the tokens with a key it shares).
public protocol RelayGranting: Sendable {
    /// One allocation's two sides (the initiator's and the acceptor's grant), or nil when no relay
    /// can take one. `transport` is how the peers will reach the relay.
    func grant(transport: TunnelTransport, lifetimeSeconds: UInt32) -> (initiator: RelayGrant, acceptor: RelayGrant)?
}

/// The HANDSHAKE's timers and counters.
public enum HandshakeLimits {
    /// Milliseconds the HANDSHAKE waits for the second offer after the first; then the side
    /// that offered is pushed a failed plan.
    public static let offerTimeoutMillis: UInt64 = 20_000
    /// Milliseconds a planned traversal is remembered (retransmitted offers are answered `ok`).
    public static let plannedMemoryMillis: UInt64 = 30_000
    /// Seconds a relay allocation granted for a tunnel may live.
    public static let relayLifetimeSeconds: UInt32 = 3_600
}

/// What the HANDSHAKE has done, for operators.
public struct HandshakeCounters: Equatable, Sendable {
    public var offers = 0, planned = 0, offerTimeouts = 0, noRelay = 0
    /// Results reported by peers, by path and by method.
    public var resultsByPath: [TunnelPath: Int] = [:]
    public var resultsByMethod: [TraversalMethod: Int] = [:]
    /// Offers taken, by the NAT kind of the offering side's profile (each side of a traversal
    /// once; retransmissions are not counted again).
    public var offersByNAT: [NATKind: Int] = [:]

    public init() {}
}

/// One traversal between offers and plans.
struct PendingTraversal {
    var initiatorOffer: TraversalOffer?
    var acceptorOffer: TraversalOffer?
    var initiatorObserved: PeerEndpoint?
    var acceptorObserved: PeerEndpoint?
    var planned = false
    var deadlineMillis: UInt64
}

/// HANDSHAKE on the checkpoint: pairs the two offers of an accepted connection, plans, pushes.
extension CheckpointMachine {
    /// `observed`: where the offer's sender is seen, when it came from another supernode.
    mutating func traversalOffer(_ offer: TraversalOffer, from peer: PeerID, id: UInt32, session sid: UInt64, ms: UInt64,
                                 observed forwardedObserved: PeerEndpoint? = nil, into out: inout [CheckpointAction]) {
        guard peer == (offer.role == .initiator ? offer.initiator : offer.acceptor) else {
            respond(.error(ControlFailure(.badRequest, "an offer's role must be the sender's: \(peer) is not the \(offer.role == .initiator ? "initiator" : "acceptor")")),
                    id: id, session: sid, into: &out)
            return
        }
        let key = NegotiationKey(requester: offer.initiator, callee: offer.acceptor, requestID: offer.requestID)
        // The traversal is coordinated where the negotiation is: on the initiator's supernode.
        if negotiations[key] == nil, forwardToHome(of: offer.initiator, .traversalOffer(offer), from: peer, session: sid, into: &out) {
            respond(.ok, id: id, session: sid, into: &out)
            return
        }
        guard let negotiation = negotiations[key], negotiation.accepted else {
            respond(.error(ControlFailure(.unknownRequest, "no accepted connection request \(offer.requestID) from \(offer.initiator) to \(offer.acceptor) (offers are taken within \(CheckpointConfiguration.connectMemoryMillis / 1000) s of the accept)")),
                    id: id, session: sid, into: &out)
            return
        }
        handshakeCounters.offers += 1
        var pending = traversals[key] ?? PendingTraversal(deadlineMillis: ms + HandshakeLimits.offerTimeoutMillis)
        if pending.planned {
            respond(.ok, id: id, session: sid, into: &out)
            return
        }
        let observed = forwardedObserved ?? sessions[sid]?.endpoint
        if (offer.role == .initiator ? pending.initiatorOffer : pending.acceptorOffer) == nil {
            handshakeCounters.offersByNAT[NATKind(offer.profile), default: 0] += 1
        }
        if offer.role == .initiator {
            pending.initiatorOffer = offer
            pending.initiatorObserved = observed
        } else {
            pending.acceptorOffer = offer
            pending.acceptorObserved = observed
        }
        if let a = pending.initiatorOffer, let b = pending.acceptorOffer, let oa = pending.initiatorObserved,
           let ob = pending.acceptorObserved {
            let blocked = a.profile.udpBlocked || b.profile.udpBlocked
            let relayTransport: TunnelTransport = a.transport == .tcp || blocked ? .tcp : .udp
            let grants = configuration.relays?.grant(transport: relayTransport, lifetimeSeconds: HandshakeLimits.relayLifetimeSeconds)
            if grants == nil { handshakeCounters.noRelay += 1 }
            var plans = TraversalPlanner.plan(initiator: a, acceptor: b, observed: (oa, ob), relay: grants)
            if relayTransport == .tcp {
                plans.initiator.relay?.udp = nil
                plans.acceptor.relay?.udp = nil
            }
            pending.planned = true
            pending.deadlineMillis = ms + HandshakeLimits.plannedMemoryMillis
            handshakeCounters.planned += 1
            push(.traversalPlan(plans.initiator), to: a.initiator, ms: ms, into: &out)
            push(.traversalPlan(plans.acceptor), to: a.acceptor, ms: ms, into: &out)
        }
        traversals[key] = pending
        respond(.ok, id: id, session: sid, into: &out)
    }

    mutating func traversalResult(_ result: TraversalResult, from peer: PeerID, id: UInt32, session sid: UInt64,
                                  into out: inout [CheckpointAction]) {
        let key = NegotiationKey(requester: result.initiator, callee: result.acceptor, requestID: result.requestID)
        if traversals[key] == nil, forwardToHome(of: result.initiator, .traversalResult(result), from: peer, session: sid, into: &out) {
            respond(.ok, id: id, session: sid, into: &out)
            return
        }
        if peer == (result.role == .initiator ? result.initiator : result.acceptor), traversals[key]?.planned == true {
            handshakeCounters.resultsByPath[result.path, default: 0] += 1
            if result.path != .failed { handshakeCounters.resultsByMethod[result.method, default: 0] += 1 }
            if result.role == .initiator { configuration.traversalReported?(result) }
        }
        respond(.ok, id: id, session: sid, into: &out)
    }

    /// Fails traversals whose second offer never came; forgets planned ones.
    mutating func timeOutTraversals(ms: UInt64, into out: inout [CheckpointAction]) {
        guard !traversals.isEmpty else { return }
        for (key, t) in traversals where t.deadlineMillis <= ms {
            traversals[key] = nil
            guard !t.planned, let offer = t.initiatorOffer ?? t.acceptorOffer else { continue }
            handshakeCounters.offerTimeouts += 1
            let failed = TraversalPlan(initiator: key.requester, acceptor: key.callee, requestID: key.requestID,
                                       transport: offer.transport, method: .relay, directWindowMillis: 0, remoteKeyShare: [],
                                       targets: [], failure: "the other peer sent no traversal offer within \(HandshakeLimits.offerTimeoutMillis / 1000) s")
            push(.traversalPlan(failed), to: offer.role == .initiator ? key.requester : key.callee, ms: ms, into: &out)
        }
    }
}
