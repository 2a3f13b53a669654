import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwayCheckpoint

/// A relay pool for the HANDSHAKE that always has (or never has) room, and remembers what it
/// was asked. Used from one test only, on one thread.
final class FakeRelays: RelayGranting, @unchecked Sendable {
    static let udp = PeerEndpoint(ip: .v4(0xC633_64C8), port: 7401)  // 198.51.100.200
    static let tcp = PeerEndpoint(ip: .v4(0xC633_64C8), port: 7400)
    let grants = (initiator: RelayGrant(udp: FakeRelays.udp, tcp: FakeRelays.tcp, token: Array(repeating: 0xA1, count: 32)),
                  acceptor: RelayGrant(udp: FakeRelays.udp, tcp: FakeRelays.tcp, token: Array(repeating: 0xB2, count: 32)))
    var available = true
    private(set) var transports: [TunnelTransport] = []
    private(set) var lifetimes: [UInt32] = []

    func grant(transport: TunnelTransport, lifetimeSeconds: UInt32) -> (initiator: RelayGrant, acceptor: RelayGrant)? {
        transports.append(transport)
        lifetimes.append(lifetimeSeconds)
        return available ? grants : nil
    }
}

/// Sends `frame` as a request of `peer`: the response (or nil) and every datagram the checkpoint
/// sent meanwhile. Unlike `WirePeer.request`, a `traversalPlan` push that happens to carry the
/// request's id is never taken for the response.
@discardableResult
func exchange(_ peer: WirePeer, _ frame: ControlFrame, _ h: inout CheckpointHarness) -> (response: ControlFrame?, sent: [(ByteBuffer, PeerEndpoint)]) {
    let id = peer.nextTransaction
    peer.nextTransaction += 1
    let sent = h.deliver(peer.seal(frame, id: id), from: peer.endpoint)
    guard let i = peer.inbox.firstIndex(where: { $0.id == id && !$0.frame.isPush && $0.frame.kind != .traversalPlan }) else {
        return (nil, sent)
    }
    return (peer.inbox.remove(at: i).frame, sent)
}

extension WirePeer {
    /// Removes the traversal plans from the inbox and acknowledges them.
    func plans(_ h: inout CheckpointHarness) -> [TraversalPlan] {
        let envelopes = inbox.filter { $0.frame.kind == .traversalPlan }
        inbox.removeAll { $0.frame.kind == .traversalPlan }
        return envelopes.compactMap { env in
            ack(env, &h)
            if case .traversalPlan(let plan) = env.frame { return plan }
            return nil
        }
    }

    /// Acknowledges and drops every other push.
    func ackPushes(_ h: inout CheckpointHarness) {
        for p in pushes() { ack(p, &h) }
    }

    /// This peer's offer: a LAN candidate 10.0.n.n and its NAT's mapping 203.0.113.n.
    func offer(_ role: TraversalRole, initiator: WirePeer, acceptor: WirePeer, requestID: UInt64,
               profile: NATProfile = NATProfile(mapping: .endpointIndependent, filtering: .addressAndPortDependent),
               transport: TunnelTransport = .udp) -> TraversalOffer {
        guard case .v4(let address) = endpoint.ip else { preconditionFailure("a WirePeer is on IPv4") }
        let n = address & 0xFF
        let candidates = [
            TraversalCandidate(kind: .host, transport: transport, endpoint: PeerEndpoint(ip: .v4(0x0A00_0000 | n << 8 | n), port: 5000)),
            TraversalCandidate(kind: .serverReflexive, transport: transport, endpoint: PeerEndpoint(ip: .v4(0xCB00_7100 | n), port: 40_000 + UInt16(n))),
        ]
        return TraversalOffer(initiator: initiator.id, acceptor: acceptor.id, requestID: requestID, transport: transport, role: role,
                              candidates: candidates, profile: profile, keyShare: (0..<128).map { UInt8(truncatingIfNeeded: Int(n) &* 31 &+ $0) })
    }
}

/// The HANDSHAKE on the checkpoint machine (HandshakeCoordinator.swift), driven over the wire.
@Suite("Handshake on the checkpoint")
struct HandshakeMachineTests {
    static let easy = NATProfile(mapping: .endpointIndependent, filtering: .addressAndPortDependent)
    static let random = NATProfile(mapping: .addressAndPortDependent, filtering: .addressAndPortDependent)

    /// A asks B for a connection and B answers; every push acknowledged.
    static func negotiate(_ h: inout CheckpointHarness, _ a: WirePeer, _ b: WirePeer, requestID: UInt64, accept: Bool = true,
                          sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(exchange(a, .connect(ConnectRequest(to: b.id, requestID: requestID, transport: .udp, note: "")), &h).response == .ok,
                sourceLocation: sourceLocation)
        b.ackPushes(&h)
        #expect(exchange(b, .answerConnect(ConnectDecision(peer: a.id, requestID: requestID, accepted: accept, reason: accept ? "" : "busy")), &h).response == .ok,
                sourceLocation: sourceLocation)
        a.ackPushes(&h)
    }

    static func harness(relays: FakeRelays?) -> CheckpointHarness {
        CheckpointHarness { if let relays { $0.relays = relays } }
    }

    /// Peers 1 and 2, registered.
    static func join(_ h: inout CheckpointHarness) -> (WirePeer, WirePeer) {
        let a = WirePeer(1), b = WirePeer(2)
        #expect(a.join(&h) != nil)
        #expect(b.join(&h) != nil)
        return (a, b)
    }

    static func errorCode(_ frame: ControlFrame?) -> ControlFailure.Code? {
        if case .error(let failure)? = frame { return failure.code }
        return nil
    }

    @Test("both offers: both peers are pushed their plan in the same instant, with each other's key share and the relay grants")
    func bothOffersPlanned() {
        let relays = FakeRelays()
        var h = Self.harness(relays: relays)
        let (a, b) = Self.join(&h)
        Self.negotiate(&h, a, b, requestID: 1)
        let offerA = a.offer(.initiator, initiator: a, acceptor: b, requestID: 1)
        let offerB = b.offer(.acceptor, initiator: a, acceptor: b, requestID: 1, profile: Self.random)

        #expect(exchange(a, .traversalOffer(offerA), &h).response == .ok)
        #expect(a.plans(&h).isEmpty && b.plans(&h).isEmpty, "nothing is planned on one offer")
        #expect(relays.transports.isEmpty)
        let second = exchange(b, .traversalOffer(offerB), &h)
        #expect(second.response == .ok)
        // One delivery sent both plans (and B's ok).
        #expect(second.sent.filter { $0.1 == a.endpoint }.count == 1)
        #expect(second.sent.filter { $0.1 == b.endpoint }.count == 2)

        let plansA = a.plans(&h), plansB = b.plans(&h)
        #expect(plansA.count == 1 && plansB.count == 1)
        guard let planA = plansA.first, let planB = plansB.first else { return }
        #expect(planA.remoteKeyShare == offerB.keyShare)
        #expect(planB.remoteKeyShare == offerA.keyShare)
        #expect(planA.relay == relays.grants.initiator)
        #expect(planB.relay == relays.grants.acceptor)
        #expect(relays.transports == [.udp])
        #expect(relays.lifetimes == [HandshakeLimits.relayLifetimeSeconds])
        // Exactly the planner's plans, from the addresses the checkpoint sees the peers at.
        let expected = TraversalPlanner.plan(initiator: offerA, acceptor: offerB, observed: (a.endpoint, b.endpoint), relay: relays.grants)
        #expect(planA == expected.initiator)
        #expect(planB == expected.acceptor)
        #expect(planA.method == .manyPort && planB.localSockets == TraversalPlanner.manyPortSockets)
        #expect(planA.directWindowMillis == planB.directWindowMillis)
        #expect(h.machine.handshakeCounters.planned == 1)
        #expect(h.machine.handshakeCounters.offers == 2)
        #expect(h.machine.handshakeCounters.noRelay == 0)
    }

    @Test("a retransmitted offer after planning is answered ok and pushes nothing again")
    func retransmittedOffer() {
        let relays = FakeRelays()
        var h = Self.harness(relays: relays)
        let (a, b) = Self.join(&h)
        Self.negotiate(&h, a, b, requestID: 1)
        let offerA = a.offer(.initiator, initiator: a, acceptor: b, requestID: 1)
        let offerB = b.offer(.acceptor, initiator: a, acceptor: b, requestID: 1)
        exchange(a, .traversalOffer(offerA), &h)
        exchange(b, .traversalOffer(offerB), &h)
        #expect(a.plans(&h).count == 1 && b.plans(&h).count == 1)

        for _ in 0..<3 {
            let again = exchange(a, .traversalOffer(offerA), &h)
            #expect(again.response == .ok)
            #expect(again.sent.count == 1, "only the ok")
            #expect(exchange(b, .traversalOffer(offerB), &h).response == .ok)
        }
        _ = h.advance(seconds: 3)
        #expect(a.plans(&h).isEmpty && b.plans(&h).isEmpty)
        #expect(h.machine.handshakeCounters.planned == 1)
        #expect(relays.transports.count == 1, "the relay is asked once")
    }

    @Test("an unacknowledged plan is retransmitted like any push")
    func planRetransmitted() {
        var h = Self.harness(relays: FakeRelays())
        let (a, b) = Self.join(&h)
        Self.negotiate(&h, a, b, requestID: 1)
        exchange(a, .traversalOffer(a.offer(.initiator, initiator: a, acceptor: b, requestID: 1)), &h)
        exchange(b, .traversalOffer(b.offer(.acceptor, initiator: a, acceptor: b, requestID: 1)), &h)
        let first = a.inbox.filter { $0.frame.kind == .traversalPlan }
        #expect(first.count == 1)
        _ = h.advance(seconds: 1)
        let again = a.inbox.filter { $0.frame.kind == .traversalPlan }
        #expect(again.count >= 2 && Set(again.map(\.id)).count == 1, "the same push, again")
        #expect(!b.plans(&h).isEmpty)
    }

    @Test("an offer for a refused, unanswered or unknown request is refused with unknownRequest and changes nothing")
    func offerWithoutAcceptedRequest() {
        let relays = FakeRelays()
        var h = Self.harness(relays: relays)
        let (a, b) = Self.join(&h)
        Self.negotiate(&h, a, b, requestID: 2, accept: false)
        // Unanswered.
        #expect(exchange(a, .connect(ConnectRequest(to: b.id, requestID: 3, transport: .udp, note: "")), &h).response == .ok)
        b.ackPushes(&h)
        let attempts: [(WirePeer, TraversalOffer)] = [
            (a, a.offer(.initiator, initiator: a, acceptor: b, requestID: 2)),
            (b, b.offer(.acceptor, initiator: a, acceptor: b, requestID: 2)),
            (a, a.offer(.initiator, initiator: a, acceptor: b, requestID: 3)),
            (b, b.offer(.acceptor, initiator: a, acceptor: b, requestID: 3)),
            (a, a.offer(.initiator, initiator: a, acceptor: b, requestID: 77)),
            // The right number, the wrong direction (B never asked A).
            (b, b.offer(.initiator, initiator: b, acceptor: a, requestID: 2)),
        ]
        for (peer, offer) in attempts {
            let answer = exchange(peer, .traversalOffer(offer), &h)
            #expect(Self.errorCode(answer.response) == .unknownRequest, "request \(offer.requestID)")
            #expect(answer.sent.count == 1, "only the error")
        }
        #expect(h.machine.handshakeCounters == HandshakeCounters())
        #expect(relays.transports.isEmpty)
        _ = h.advance(seconds: Double(HandshakeLimits.offerTimeoutMillis) / 1000 + 1)
        #expect(a.plans(&h).isEmpty && b.plans(&h).isEmpty, "no failed plan either: nothing was pending")
        #expect(h.machine.handshakeCounters == HandshakeCounters())
    }

    @Test("an offer whose role is not the sender's is refused with badRequest and changes nothing")
    func offerWithWrongRole() {
        let relays = FakeRelays()
        var h = Self.harness(relays: relays)
        let (a, b) = Self.join(&h)
        let c = WirePeer(3)
        #expect(c.join(&h) != nil)
        Self.negotiate(&h, a, b, requestID: 1)
        let attempts: [(WirePeer, TraversalOffer)] = [
            (a, a.offer(.acceptor, initiator: a, acceptor: b, requestID: 1)),
            (b, b.offer(.initiator, initiator: a, acceptor: b, requestID: 1)),
            (c, c.offer(.initiator, initiator: a, acceptor: b, requestID: 1)),
            (c, c.offer(.acceptor, initiator: a, acceptor: b, requestID: 1)),
        ]
        for (peer, offer) in attempts {
            let answer = exchange(peer, .traversalOffer(offer), &h)
            #expect(Self.errorCode(answer.response) == .badRequest)
            #expect(answer.sent.count == 1, "only the error")
        }
        #expect(h.machine.handshakeCounters == HandshakeCounters())
        #expect(relays.transports.isEmpty)
        // What C sent in A's name was not kept: A's own offer waits for B's.
        #expect(exchange(a, .traversalOffer(a.offer(.initiator, initiator: a, acceptor: b, requestID: 1)), &h).response == .ok)
        #expect(a.plans(&h).isEmpty && b.plans(&h).isEmpty && c.plans(&h).isEmpty)
        #expect(exchange(b, .traversalOffer(b.offer(.acceptor, initiator: a, acceptor: b, requestID: 1)), &h).response == .ok)
        #expect(a.plans(&h).count == 1 && b.plans(&h).count == 1 && c.plans(&h).isEmpty)
    }

    @Test("a lone offer gets a failed plan after offerTimeoutMillis of virtual time", arguments: [TraversalRole.initiator, .acceptor])
    func loneOfferTimesOut(role: TraversalRole) {
        let relays = FakeRelays()
        var h = Self.harness(relays: relays)
        let (a, b) = Self.join(&h)
        Self.negotiate(&h, a, b, requestID: 4)
        let (lone, other) = role == .initiator ? (a, b) : (b, a)
        let offer = lone.offer(role, initiator: a, acceptor: b, requestID: 4, transport: .tcp)
        #expect(exchange(lone, .traversalOffer(offer), &h).response == .ok)
        let ticks = Int(HandshakeLimits.offerTimeoutMillis / 100)
        for _ in 0..<(ticks - 1) { _ = h.advance(seconds: 0.1) }
        #expect(lone.plans(&h).isEmpty, "not before the timeout")
        _ = h.advance(seconds: 0.1)
        let plans = lone.plans(&h)
        #expect(plans.count == 1)
        guard let failed = plans.first else { return }
        #expect(failed.initiator == a.id && failed.acceptor == b.id && failed.requestID == 4 && failed.transport == .tcp)
        #expect(failed.method == .relay && failed.directWindowMillis == 0 && failed.localSockets == 1)
        #expect(failed.remoteKeyShare.isEmpty && failed.targets.isEmpty && failed.spray == nil && failed.relay == nil)
        #expect(failed.failure.contains("no traversal offer"))
        #expect(other.plans(&h).isEmpty)
        #expect(h.machine.handshakeCounters.offerTimeouts == 1)
        #expect(h.machine.handshakeCounters.planned == 0)
        #expect(relays.transports.isEmpty)
        _ = h.advance(seconds: 15)
        #expect(lone.plans(&h).isEmpty, "failed once")
    }

    @Test("traversalResult is answered ok and counted by path and method when it comes from its side of a planned traversal")
    func resultsCounted() {
        var h = Self.harness(relays: FakeRelays())
        let (a, b) = Self.join(&h)
        Self.negotiate(&h, a, b, requestID: 1)
        exchange(a, .traversalOffer(a.offer(.initiator, initiator: a, acceptor: b, requestID: 1)), &h)
        exchange(b, .traversalOffer(b.offer(.acceptor, initiator: a, acceptor: b, requestID: 1)), &h)
        _ = (a.plans(&h), b.plans(&h))

        func result(_ role: TraversalRole, _ path: TunnelPath, _ method: TraversalMethod, requestID: UInt64 = 1) -> ControlFrame {
            .traversalResult(TraversalResult(initiator: a.id, acceptor: b.id, requestID: requestID, role: role, path: path, method: method, millis: 812))
        }
        #expect(exchange(a, result(.initiator, .direct, .punch), &h).response == .ok)
        #expect(exchange(b, result(.acceptor, .direct, .punch), &h).response == .ok)
        var expected = HandshakeCounters()
        expected.offers = 2
        expected.planned = 1
        expected.resultsByPath = [.direct: 2]
        expected.resultsByMethod = [.punch: 2]
        expected.offersByNAT = [.portRestrictedCone: 2]
        #expect(h.machine.handshakeCounters == expected)
        #expect(exchange(b, result(.acceptor, .relayed, .relay), &h).response == .ok)
        #expect(exchange(a, result(.initiator, .failed, .relay), &h).response == .ok)
        expected.resultsByPath = [.direct: 2, .relayed: 1, .failed: 1]
        expected.resultsByMethod = [.punch: 2, .relay: 1]
        #expect(h.machine.handshakeCounters == expected)
        // Not its side, or no such traversal: answered, not counted.
        #expect(exchange(a, result(.acceptor, .direct, .lan), &h).response == .ok)
        #expect(exchange(b, result(.initiator, .direct, .lan), &h).response == .ok)
        #expect(exchange(a, result(.initiator, .direct, .lan, requestID: 99), &h).response == .ok)
        #expect(h.machine.handshakeCounters == expected)
    }

    @Test("a UDP-blocked side gets relay only, over TCP: the grants lose their UDP address")
    func udpBlockedRelayOverTCP() {
        let relays = FakeRelays()
        var h = Self.harness(relays: relays)
        let (a, b) = Self.join(&h)
        Self.negotiate(&h, a, b, requestID: 1)
        var blocked = Self.easy
        blocked.udpBlocked = true
        exchange(a, .traversalOffer(a.offer(.initiator, initiator: a, acceptor: b, requestID: 1)), &h)
        exchange(b, .traversalOffer(b.offer(.acceptor, initiator: a, acceptor: b, requestID: 1, profile: blocked)), &h)
        let planA = a.plans(&h).first, planB = b.plans(&h).first
        #expect(relays.transports == [.tcp])
        #expect(planA?.relay == RelayGrant(udp: nil, tcp: FakeRelays.tcp, token: relays.grants.initiator.token))
        #expect(planB?.relay == RelayGrant(udp: nil, tcp: FakeRelays.tcp, token: relays.grants.acceptor.token))
        #expect(planA?.targets.isEmpty == true && planB?.targets.isEmpty == true)
        #expect(planA?.directWindowMillis == 0 && planA?.method == .relay)
    }

    @Test("a TCP traversal asks for a TCP relay")
    func tcpRelay() {
        let relays = FakeRelays()
        var h = Self.harness(relays: relays)
        let (a, b) = Self.join(&h)
        Self.negotiate(&h, a, b, requestID: 6)
        exchange(a, .traversalOffer(a.offer(.initiator, initiator: a, acceptor: b, requestID: 6, transport: .tcp)), &h)
        exchange(b, .traversalOffer(b.offer(.acceptor, initiator: a, acceptor: b, requestID: 6, transport: .tcp)), &h)
        #expect(relays.transports == [.tcp])
        let planA = a.plans(&h).first
        #expect(planA?.relay?.udp == nil && planA?.relay?.tcp == FakeRelays.tcp)
        #expect(planA?.method == .tcpSimultaneousOpen)
        #expect(!b.plans(&h).isEmpty)
    }

    @Test("without a relay: counted, and a pair that cannot go direct gets a failed plan on both sides", arguments: [false, true])
    func noRelay(configured: Bool) {
        let relays = FakeRelays()
        relays.available = false
        var h = Self.harness(relays: configured ? relays : nil)
        let (a, b) = Self.join(&h)
        Self.negotiate(&h, a, b, requestID: 1)
        exchange(a, .traversalOffer(a.offer(.initiator, initiator: a, acceptor: b, requestID: 1, profile: Self.random)), &h)
        exchange(b, .traversalOffer(b.offer(.acceptor, initiator: a, acceptor: b, requestID: 1, profile: Self.random)), &h)
        let planA = a.plans(&h).first, planB = b.plans(&h).first
        #expect(planA?.relay == nil && planB?.relay == nil)
        #expect(planA?.failure.isEmpty == false && planA?.failure == planB?.failure)
        #expect(h.machine.handshakeCounters.noRelay == 1)
        #expect(relays.transports.count == (configured ? 1 : 0))
    }
}

/// The client side: `offerTraversal`, `reportTraversal` and the pushed plan.
@Suite("Handshake on the client machine")
struct HandshakeClientTests {
    static func offer(keyShare: [UInt8] = Array(repeating: 0x42, count: ControlLimits.keyShareBytes)) -> TraversalOffer {
        TraversalOffer(initiator: ClientHarness.peer(1), acceptor: ClientHarness.peer(2), requestID: 5, transport: .udp, role: .initiator,
                       candidates: [TraversalCandidate(kind: .serverReflexive, transport: .udp, endpoint: PeerEndpoint(ip: .v4(0xCB00_7105), port: 40_005))],
                       profile: NATProfile(mapping: .endpointIndependent), keyShare: keyShare)
    }

    @Test("offerTraversal sends the offer and completes .done on ok; reportTraversal too")
    func offerAndReport() throws {
        var h = ClientHarness()
        h.register()
        let call = h.machine.offerTraversal(Self.offer(), now: h.now)
        h.perform(call.actions)
        let request = try #require(h.openSent().first)
        #expect(request.frame == .traversalOffer(Self.offer()))
        #expect(h.completions[call.token] == nil)
        h.push(.ok, id: request.id)
        #expect(h.completions[call.token] == .success(.done))

        let result = TraversalResult(initiator: ClientHarness.peer(1), acceptor: ClientHarness.peer(2), requestID: 5, role: .initiator,
                                     path: .direct, method: .punch, millis: 300)
        let report = h.machine.reportTraversal(result, now: h.now)
        h.perform(report.actions)
        let sent = try #require(h.openSent().first)
        #expect(sent.frame == .traversalResult(result))
        h.push(.ok, id: sent.id)
        #expect(h.completions[report.token] == .success(.done))
    }

    @Test("an offer without a 128-byte key share or with too many candidates is refused locally")
    func invalidOffer() {
        var h = ClientHarness()
        h.register()
        for share in [[], Array(repeating: UInt8(1), count: 127)] {
            let call = h.machine.offerTraversal(Self.offer(keyShare: share), now: h.now)
            h.perform(call.actions)
            guard case .failure(.invalidArgument)? = h.completions[call.token] else {
                Issue.record("accepted a key share of \(share.count) bytes: \(String(describing: h.completions[call.token]))")
                continue
            }
        }
        var many = Self.offer()
        many.candidates = Array(repeating: many.candidates[0], count: ControlLimits.maximumTraversalCandidates + 1)
        let call = h.machine.offerTraversal(many, now: h.now)
        h.perform(call.actions)
        guard case .failure(.invalidArgument)? = h.completions[call.token] else {
            Issue.record("accepted too many candidates")
            return
        }
        #expect(h.takeSent().isEmpty)
    }

    @Test("a pushed traversalPlan is acknowledged and becomes the event .traversalPlan, once")
    func pushedPlan() {
        var h = ClientHarness()
        h.register()
        let plan = TraversalPlan(initiator: ClientHarness.peer(1), acceptor: ClientHarness.peer(2), requestID: 5, transport: .udp,
                                 method: .punch, directWindowMillis: 4000, remoteKeyShare: Array(repeating: 0x24, count: 128),
                                 targets: [TraversalTarget(method: .punch, endpoint: PeerEndpoint(ip: .v4(0xCB00_7106), port: 40_006))],
                                 relay: RelayGrant(udp: FakeRelays.udp, tcp: nil, token: Array(repeating: 0xA1, count: 32)))
        h.push(.traversalPlan(plan), id: 950)
        h.push(.traversalPlan(plan), id: 950)  // retransmitted
        #expect(h.openSent() == [ControlEnvelope(id: 950, frame: .ack), ControlEnvelope(id: 950, frame: .ack)])
        #expect(h.events == [.traversalPlan(plan)])
        #expect(h.machine.statistics.duplicatePushes == 1 && h.machine.statistics.unexpected == 0)
    }
}
