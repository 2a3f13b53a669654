import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

/// Two peers behind NATs, as their offers would describe them.
enum PlannerNet {
    static let initiator = PeerID(high: 0xA11C_E000_0000_0001, low: 0x0000_0000_0000_00A1)
    static let acceptor = PeerID(high: 0xB0B0_0000_0000_0002, low: 0x0000_0000_0000_00B2)
    static let requestID: UInt64 = 0x7155

    static func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ port: UInt16) -> PeerEndpoint {
        PeerEndpoint(ip: .v4(UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)), port: port)
    }

    /// One side's addresses: its LAN address, its NAT's mapping as the STUN pair saw it, and the
    /// address the checkpoint sees its control channel come from (same public IP, other port).
    struct Site {
        var host: PeerEndpoint
        var reflexive: PeerEndpoint
        var observed: PeerEndpoint
        var hostTCP: PeerEndpoint
        var reflexiveTCP: PeerEndpoint

        var candidates: [TraversalCandidate] {
            [TraversalCandidate(kind: .host, transport: .udp, endpoint: host),
             TraversalCandidate(kind: .serverReflexive, transport: .udp, endpoint: reflexive),
             TraversalCandidate(kind: .host, transport: .tcp, endpoint: hostTCP),
             TraversalCandidate(kind: .serverReflexive, transport: .tcp, endpoint: reflexiveTCP)]
        }
    }

    /// A behind 203.0.113.10, B behind 203.0.113.20.
    static let siteA = Site(host: v4(10, 0, 1, 5, 5000), reflexive: v4(203, 0, 113, 10, 40_000), observed: v4(203, 0, 113, 10, 40_100),
                            hostTCP: v4(10, 0, 1, 5, 5001), reflexiveTCP: v4(203, 0, 113, 10, 40_001))
    static let siteB = Site(host: v4(10, 0, 2, 7, 6000), reflexive: v4(203, 0, 113, 20, 50_000), observed: v4(203, 0, 113, 20, 50_100),
                            hostTCP: v4(10, 0, 2, 7, 6001), reflexiveTCP: v4(203, 0, 113, 20, 50_001))
    /// B behind the same NAT as A (another LAN address, another mapping).
    static let siteBSameNAT = Site(host: v4(10, 0, 1, 6, 6000), reflexive: v4(203, 0, 113, 10, 40_500), observed: v4(203, 0, 113, 10, 40_600),
                                   hostTCP: v4(10, 0, 1, 6, 6001), reflexiveTCP: v4(203, 0, 113, 10, 40_501))
    /// B on a public address, no NAT.
    static let sitePublic = Site(host: v4(198, 51, 100, 50, 7000), reflexive: v4(198, 51, 100, 50, 7000), observed: v4(198, 51, 100, 50, 7100),
                                 hostTCP: v4(198, 51, 100, 50, 7001), reflexiveTCP: v4(198, 51, 100, 50, 7001))

    static let easy = NATProfile(mapping: .endpointIndependent, filtering: .addressAndPortDependent, preservesPort: true)
    static let fullCone = NATProfile(mapping: .endpointIndependent, filtering: .endpointIndependent)
    static let noNAT = NATProfile(mapping: .none, filtering: .endpointIndependent)
    static let random = NATProfile(mapping: .addressAndPortDependent, filtering: .addressAndPortDependent, portDelta: 0)
    static let randomAddress = NATProfile(mapping: .addressDependent, filtering: .addressDependent, portDelta: 0)
    static func sequential(_ delta: Int16) -> NATProfile {
        NATProfile(mapping: .addressAndPortDependent, filtering: .addressAndPortDependent, portDelta: delta)
    }
    static func blocked(_ p: NATProfile) -> NATProfile {
        var p = p
        p.udpBlocked = true
        return p
    }

    static let keyA: [UInt8] = (0..<128).map { UInt8(0xA0 ^ $0) }
    static let keyB: [UInt8] = (0..<128).map { UInt8(0xB0 ^ $0) }

    static let grants = (initiator: RelayGrant(udp: v4(198, 51, 100, 1, 7401), tcp: v4(198, 51, 100, 1, 7400), token: Array(repeating: 0xA1, count: 32)),
                         acceptor: RelayGrant(udp: v4(198, 51, 100, 1, 7401), tcp: v4(198, 51, 100, 1, 7400), token: Array(repeating: 0xB2, count: 32)))

    static func offer(_ role: TraversalRole, _ profile: NATProfile, site: Site, transport: TunnelTransport = .udp,
                      candidates: [TraversalCandidate]? = nil) -> TraversalOffer {
        TraversalOffer(initiator: initiator, acceptor: acceptor, requestID: requestID, transport: transport, role: role,
                       candidates: candidates ?? site.candidates, profile: profile, keyShare: role == .initiator ? keyA : keyB)
    }

    struct Outcome {
        var a: TraversalPlan
        var b: TraversalPlan
        var offers: (TraversalOffer, TraversalOffer)
    }

    /// Plans A (initiator) and B (acceptor), and checks what holds for every plan.
    static func plan(_ pa: NATProfile, _ pb: NATProfile, transport: TunnelTransport = .udp, siteA: Site = siteA, siteB: Site = siteB,
                     candidatesA: [TraversalCandidate]? = nil, candidatesB: [TraversalCandidate]? = nil,
                     relay: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) -> Outcome {
        let a = offer(.initiator, pa, site: siteA, transport: transport, candidates: candidatesA)
        let b = offer(.acceptor, pb, site: siteB, transport: transport, candidates: candidatesB)
        let grants = relay ? Self.grants : nil
        let plans = TraversalPlanner.plan(initiator: a, acceptor: b, observed: (siteA.observed, siteB.observed), relay: grants)
        checkInvariants(plans.initiator, plans.acceptor, a, b, grants, sourceLocation: sourceLocation)
        return Outcome(a: plans.initiator, b: plans.acceptor, offers: (a, b))
    }

    static func checkInvariants(_ pa: TraversalPlan, _ pb: TraversalPlan, _ a: TraversalOffer, _ b: TraversalOffer,
                                _ grants: (initiator: RelayGrant, acceptor: RelayGrant)?, sourceLocation: SourceLocation) {
        let label = "\(a.profile) × \(b.profile) over \(a.transport)"
        for p in [pa, pb] {
            #expect(p.initiator == a.initiator && p.acceptor == a.acceptor && p.requestID == a.requestID && p.transport == a.transport,
                    "\(label)", sourceLocation: sourceLocation)
            #expect(p.targets.count <= ControlLimits.maximumTraversalTargets, "\(label)", sourceLocation: sourceLocation)
            #expect(p.targets.allSatisfy { (1...ControlLimits.maximumTargetPorts).contains($0.count) }, "\(label)", sourceLocation: sourceLocation)
            #expect((1...ControlLimits.maximumPlanSockets).contains(p.localSockets), "\(label)", sourceLocation: sourceLocation)
            #expect((p.spray?.count ?? 0) <= ControlLimits.maximumSprayPorts, "\(label)", sourceLocation: sourceLocation)
            #expect(Set(p.targets).count == p.targets.count, "\(label): duplicate targets \(p.targets)", sourceLocation: sourceLocation)
            // It goes on the wire as it is.
            var buffer = ByteBuffer()
            let n = buffer.writeControlFrame(.traversalPlan(p), id: 0x5000_0001)
            #expect(n <= ControlLimits.maximumFrameBytes, "\(label): \(n) bytes", sourceLocation: sourceLocation)
            #expect((try? buffer.readControlFrame()) == ControlEnvelope(id: 0x5000_0001, frame: .traversalPlan(p)), "\(label)",
                    sourceLocation: sourceLocation)
        }
        #expect(pa.directWindowMillis == pb.directWindowMillis, "\(label): windows differ", sourceLocation: sourceLocation)
        #expect(pa.method == pb.method, "\(label): methods differ", sourceLocation: sourceLocation)
        #expect(pa.remoteKeyShare == b.keyShare && pb.remoteKeyShare == a.keyShare, "\(label)", sourceLocation: sourceLocation)
        #expect(pa.relay == grants?.initiator && pb.relay == grants?.acceptor, "\(label)", sourceLocation: sourceLocation)
        let direct = !(pa.targets.isEmpty && pb.targets.isEmpty)
        #expect((pa.directWindowMillis > 0) == direct, "\(label): window \(pa.directWindowMillis), direct \(direct)", sourceLocation: sourceLocation)
        #expect(direct || pa.method == .relay, "\(label)", sourceLocation: sourceLocation)
        let cannot = grants == nil && !direct
        #expect(pa.failure.isEmpty == !cannot && pb.failure.isEmpty == !cannot, "\(label): failure '\(pa.failure)'", sourceLocation: sourceLocation)
        #expect(pa.failure == pb.failure, sourceLocation: sourceLocation)
    }
}

/// `TraversalPlanner.plan`: the techniques each NAT pair gets (the rule table in its doc comment).
@Suite("Traversal planner")
struct TraversalPlannerTests {
    typealias N = PlannerNet
    typealias P = TraversalPlanner

    static func punch(_ e: PeerEndpoint) -> TraversalTarget { TraversalTarget(method: .punch, endpoint: e) }

    @Test("easy × easy: each punches the other's server-reflexive address", arguments: [
        (N.easy, N.easy), (N.fullCone, N.easy), (N.easy, N.fullCone),
    ])
    func easyEasy(pa: NATProfile, pb: NATProfile) {
        let o = N.plan(pa, pb)
        #expect(o.a.targets == [Self.punch(N.siteB.reflexive)])
        #expect(o.b.targets == [Self.punch(N.siteA.reflexive)])
        for p in [o.a, o.b] {
            #expect(p.method == .punch)
            #expect(p.directWindowMillis == P.directWindowMillis)
            #expect(p.localSockets == 1 && p.spray == nil && p.failure.isEmpty)
        }
        #expect(o.a.remoteKeyShare == N.keyB && o.b.remoteKeyShare == N.keyA)
        #expect(o.a.relay == N.grants.initiator && o.b.relay == N.grants.acceptor)
    }

    @Test("easy × random behind a port-filtering NAT: many-port; the random side opens manyPortSockets towards the easy side, which sprays", arguments: [
        (true, N.easy, N.random), (false, N.easy, N.random), (true, NATProfile.unknown, N.random), (false, NATProfile.unknown, N.randomAddress),
    ])
    func easyRandom(initiatorIsEasy: Bool, easy: NATProfile, random: NATProfile) {
        let easySite = initiatorIsEasy ? N.siteA : N.siteB
        let hardSite = initiatorIsEasy ? N.siteB : N.siteA
        let o = initiatorIsEasy ? N.plan(easy, random, siteA: easySite, siteB: hardSite) : N.plan(random, easy, siteA: hardSite, siteB: easySite)
        let (easyPlan, hardPlan) = initiatorIsEasy ? (o.a, o.b) : (o.b, o.a)
        #expect(hardPlan.localSockets == P.manyPortSockets)
        #expect(hardPlan.spray == nil)
        #expect(hardPlan.targets.contains(TraversalTarget(method: .manyPort, endpoint: easySite.reflexive)))
        #expect(hardPlan.targets.allSatisfy { $0.endpoint == easySite.reflexive })
        #expect(easyPlan.localSockets == 1)
        #expect(easyPlan.spray == TraversalSpray(address: hardSite.reflexive, count: P.sprayPorts))
        #expect(easyPlan.targets.allSatisfy { $0.method == .manyPort && $0.endpoint.ip == hardSite.reflexive.ip })
        for p in [o.a, o.b] {
            #expect(p.method == .manyPort)
            #expect(p.directWindowMillis == P.manyPortWindowMillis)
        }
    }

    @Test("easy × random when the easy side lets in any port of an address it sent to (no NAT, endpoint- or address-dependent filtering): plain punching, one socket, no spray", arguments: [
        (true, N.fullCone, N.randomAddress), (false, N.fullCone, N.random), (true, N.noNAT, N.random), (false, N.noNAT, N.random),
        (true, NATProfile(mapping: .endpointIndependent, filtering: .addressDependent), N.random),
    ])
    func easyRandomLooseFilter(initiatorIsEasy: Bool, easy: NATProfile, random: NATProfile) {
        let easySite = easy == N.noNAT ? N.sitePublic : (initiatorIsEasy ? N.siteA : N.siteB)
        let hardSite = initiatorIsEasy ? N.siteB : N.siteA
        let o = initiatorIsEasy ? N.plan(easy, random, siteA: easySite, siteB: hardSite) : N.plan(random, easy, siteA: hardSite, siteB: easySite)
        let (easyPlan, hardPlan) = initiatorIsEasy ? (o.a, o.b) : (o.b, o.a)
        #expect(hardPlan.localSockets == 1 && hardPlan.spray == nil)
        #expect(easyPlan.localSockets == 1 && easyPlan.spray == nil)
        #expect(hardPlan.targets.contains(TraversalTarget(method: .punch, endpoint: easySite.reflexive)))
        #expect(easyPlan.targets.contains { $0.method == .punch && $0.endpoint.ip == hardSite.reflexive.ip })
        for p in [o.a, o.b] {
            #expect(p.method == .punch)
            #expect(p.directWindowMillis == P.directWindowMillis)
        }
    }

    @Test("easy × sequential: the easy side probes predictionPorts ports from reflexive + delta", arguments: [
        (true, Int16(1)), (false, 1), (true, 2), (false, -1), (true, 7),
    ])
    func easySequential(initiatorIsEasy: Bool, delta: Int16) {
        let o = initiatorIsEasy ? N.plan(N.easy, N.sequential(delta)) : N.plan(N.sequential(delta), N.easy)
        let (easyPlan, seqPlan) = initiatorIsEasy ? (o.a, o.b) : (o.b, o.a)
        let seqReflexive = initiatorIsEasy ? N.siteB.reflexive : N.siteA.reflexive
        let easyReflexive = initiatorIsEasy ? N.siteA.reflexive : N.siteB.reflexive
        let first = seqReflexive.with(port: UInt16(Int(seqReflexive.port) + Int(delta)))
        let prediction = TraversalTarget(method: .predict, endpoint: first, count: P.predictionPorts, step: delta)
        // Only the prediction: the sequential side's reflexive port was made for the STUN server.
        #expect(easyPlan.targets == [prediction])
        #expect(prediction.endpoints.count == Int(P.predictionPorts))
        #expect(prediction.endpoints.first == first)
        #expect(prediction.endpoints.last?.port == UInt16(Int(seqReflexive.port) + Int(delta) * Int(P.predictionPorts)))
        // The sequential side's mapping towards the easy side is new, but the easy side's is fixed.
        #expect(seqPlan.targets == [Self.punch(easyReflexive)])
        for p in [o.a, o.b] {
            #expect(p.directWindowMillis == P.directWindowMillis)
            #expect(p.localSockets == 1 && p.spray == nil)
            // The headline is the most direct of the two sides' methods.
            #expect(p.method == .punch)
        }
    }

    @Test("sequential × sequential: both predict the other's next ports, each with the other's delta")
    func sequentialSequential() {
        let o = N.plan(N.sequential(1), N.sequential(2))
        // Predictions only, in the same order on both sides: a probe to the reflexive port would take
        // one of the prober's own next ports, out of step with the other side's guess.
        #expect(o.a.targets == [TraversalTarget(method: .predict, endpoint: N.siteB.reflexive.with(port: 50_002), count: P.predictionPorts, step: 2)])
        #expect(o.b.targets == [TraversalTarget(method: .predict, endpoint: N.siteA.reflexive.with(port: 40_001), count: P.predictionPorts, step: 1)])
        #expect(o.a.directWindowMillis == P.directWindowMillis)
    }

    @Test("unknown mapping: punch plus a short prediction", arguments: [true, false])
    func unknownMapping(initiatorUnknown: Bool) {
        let o = initiatorUnknown ? N.plan(.unknown, N.easy) : N.plan(N.easy, .unknown)
        let (facingUnknown, unknownSide) = initiatorUnknown ? (o.b, o.a) : (o.a, o.b)
        let unknownReflexive = initiatorUnknown ? N.siteA.reflexive : N.siteB.reflexive
        #expect(facingUnknown.targets == [Self.punch(unknownReflexive),
                                          TraversalTarget(method: .predict, endpoint: unknownReflexive.with(port: unknownReflexive.port + 1),
                                                          count: P.unknownPredictionPorts, step: 1)])
        #expect(unknownSide.targets == [Self.punch(initiatorUnknown ? N.siteB.reflexive : N.siteA.reflexive)])
        #expect(o.a.directWindowMillis == P.directWindowMillis)
    }

    @Test("random × random and random × sequential: no direct target, window 0, the relay grants passed through", arguments: [
        (N.random, N.random), (N.randomAddress, N.random), (N.random, N.sequential(1)), (N.sequential(1), N.random),
        (N.randomAddress, N.sequential(-3)), (N.sequential(2), N.randomAddress),
    ])
    func relayOnly(pa: NATProfile, pb: NATProfile) {
        let o = N.plan(pa, pb)
        for p in [o.a, o.b] {
            #expect(p.targets.isEmpty)
            #expect(p.directWindowMillis == 0)
            #expect(p.method == .relay)
            #expect(p.localSockets == 1 && p.spray == nil)
            #expect(p.failure.isEmpty)
        }
        #expect(o.a.relay == N.grants.initiator && o.b.relay == N.grants.acceptor)
        #expect(o.a.relay != o.b.relay, "each side gets its own token")
    }

    @Test("behind the same public address: LAN host candidates, then hairpin, whatever the NAT", arguments: [
        (N.easy, N.easy), (N.random, N.random), (N.sequential(1), N.random), (NATProfile.unknown, N.fullCone),
    ])
    func sameNAT(pa: NATProfile, pb: NATProfile) {
        let linkLocal = PeerEndpoint(ip: .v6(high: 0xFE80_0000_0000_0000, low: 0x1234), port: 6000)
        let candidatesB = N.siteBSameNAT.candidates + [TraversalCandidate(kind: .host, transport: .udp, endpoint: linkLocal)]
        let o = N.plan(pa, pb, siteB: N.siteBSameNAT, candidatesB: candidatesB)
        #expect(o.a.targets == [TraversalTarget(method: .lan, endpoint: N.siteBSameNAT.host),
                                TraversalTarget(method: .hairpin, endpoint: N.siteBSameNAT.reflexive)])
        #expect(o.b.targets == [TraversalTarget(method: .lan, endpoint: N.siteA.host),
                                TraversalTarget(method: .hairpin, endpoint: N.siteA.reflexive)])
        for p in [o.a, o.b] {
            #expect(p.method == .lan)
            #expect(p.directWindowMillis == P.directWindowMillis)
            #expect(p.localSockets == 1 && p.spray == nil)
        }
    }

    @Test("without server-reflexive candidates, the same observed address still means the same NAT")
    func sameNATByObservedAddress() {
        let hostOnly = { (site: N.Site) in [TraversalCandidate(kind: .host, transport: .udp, endpoint: site.host)] }
        let o = N.plan(.unknown, .unknown, siteB: N.siteBSameNAT, candidatesA: hostOnly(N.siteA), candidatesB: hostOnly(N.siteBSameNAT))
        #expect(o.a.targets == [TraversalTarget(method: .lan, endpoint: N.siteBSameNAT.host)])
        #expect(o.b.targets == [TraversalTarget(method: .lan, endpoint: N.siteA.host)])
        // Different observed addresses and no reflexive candidates: nothing to aim at.
        let apart = N.plan(.unknown, .unknown, candidatesA: hostOnly(N.siteA), candidatesB: hostOnly(N.siteB))
        #expect(apart.a.targets.isEmpty && apart.b.targets.isEmpty && apart.a.method == .relay)
    }

    @Test("a peer without NAT is also reached at its host candidate (one target when it equals the reflexive one)")
    func publicPeer() {
        let o = N.plan(N.easy, N.noNAT, siteB: N.sitePublic)
        #expect(o.a.targets == [Self.punch(N.sitePublic.host)])
        #expect(o.b.targets == [Self.punch(N.siteA.reflexive)])
        #expect(o.a.method == .punch)
    }

    @Test("UDP blocked on either side, over UDP: relay only", arguments: [
        (N.blocked(N.easy), N.easy), (N.easy, N.blocked(N.easy)), (N.blocked(N.fullCone), N.blocked(N.easy)),
        (N.blocked(NATProfile.unknown), N.sequential(1)), (N.random, N.blocked(N.easy)),
    ])
    func udpBlocked(pa: NATProfile, pb: NATProfile) {
        let o = N.plan(pa, pb)
        for p in [o.a, o.b] {
            #expect(p.targets.isEmpty)
            #expect(p.directWindowMillis == 0 && p.method == .relay)
            #expect(p.localSockets == 1 && p.spray == nil)
        }
        #expect(o.a.relay == N.grants.initiator && o.b.relay == N.grants.acceptor)
    }

    @Test("UDP blocked, the other peer on a public address: still relay only (UDP cannot leave the network)", arguments: [true, false])
    func udpBlockedTowardsPublicPeer(blockedIsInitiator: Bool) {
        let o = blockedIsInitiator ? N.plan(N.blocked(N.easy), N.noNAT, siteB: N.sitePublic)
                                   : N.plan(N.easy, N.blocked(N.noNAT), siteB: N.sitePublic)
        #expect(o.a.targets.isEmpty && o.b.targets.isEmpty)
        #expect(o.a.directWindowMillis == 0 && o.a.method == .relay)
    }

    @Test("TCP: simultaneous open to the other's reflexive TCP candidates unless a NAT is random", arguments: [
        (N.easy, N.easy), (N.easy, N.sequential(1)), (N.sequential(2), N.sequential(1)), (NATProfile.unknown, N.fullCone),
    ])
    func tcpSimultaneousOpen(pa: NATProfile, pb: NATProfile) {
        let o = N.plan(pa, pb, transport: .tcp)
        #expect(o.a.targets == [TraversalTarget(method: .tcpSimultaneousOpen, endpoint: N.siteB.reflexiveTCP)])
        #expect(o.b.targets == [TraversalTarget(method: .tcpSimultaneousOpen, endpoint: N.siteA.reflexiveTCP)])
        for p in [o.a, o.b] {
            #expect(p.method == .tcpSimultaneousOpen)
            #expect(p.directWindowMillis == P.directWindowMillis)
            #expect(p.localSockets == 1 && p.spray == nil)
        }
    }

    @Test("TCP with a random NAT on either side, or a side whose network blocks UDP (its firewall lets TCP out to a few ports only): relay", arguments: [
        (N.random, N.easy), (N.easy, N.random), (N.randomAddress, N.sequential(1)), (N.random, N.random),
        (N.blocked(N.easy), N.easy), (N.easy, N.blocked(N.fullCone)),
    ])
    func tcpRandom(pa: NATProfile, pb: NATProfile) {
        let o = N.plan(pa, pb, transport: .tcp)
        #expect(o.a.targets.isEmpty && o.b.targets.isEmpty)
        #expect(o.a.directWindowMillis == 0 && o.a.method == .relay)
        #expect(o.a.localSockets == 1 && o.b.localSockets == 1 && o.a.spray == nil && o.b.spray == nil)
    }

    @Test("TCP: a peer without NAT is connected to with simultaneous open, its one address once")
    func tcpPublicPeer() {
        let o = N.plan(N.easy, N.noNAT, transport: .tcp, siteB: N.sitePublic)
        #expect(o.a.targets == [TraversalTarget(method: .tcpSimultaneousOpen, endpoint: N.sitePublic.hostTCP)])
        #expect(o.b.targets == [TraversalTarget(method: .tcpSimultaneousOpen, endpoint: N.siteA.reflexiveTCP)])
        #expect(o.a.method == .tcpSimultaneousOpen)
        // The same NAT over TCP: LAN and hairpin on TCP candidates only.
        let lan = N.plan(N.easy, N.easy, transport: .tcp, siteB: N.siteBSameNAT)
        #expect(lan.a.targets == [TraversalTarget(method: .lan, endpoint: N.siteBSameNAT.hostTCP),
                                  TraversalTarget(method: .hairpin, endpoint: N.siteBSameNAT.reflexiveTCP)])
    }

    @Test("no relay and no direct path: both plans say why; no relay but a direct path: no failure")
    func noRelay() {
        let stuck = N.plan(N.random, N.random, relay: false)
        #expect(!stuck.a.failure.isEmpty && stuck.a.failure == stuck.b.failure)
        #expect(stuck.a.relay == nil && stuck.b.relay == nil && stuck.a.directWindowMillis == 0)
        let blocked = N.plan(N.blocked(N.easy), N.easy, relay: false)
        #expect(!blocked.a.failure.isEmpty)
        let direct = N.plan(N.easy, N.random, relay: false)
        #expect(direct.a.failure.isEmpty && direct.b.failure.isEmpty)
        #expect(direct.a.relay == nil && direct.a.method == .manyPort)
    }

    // MARK: every combination

    static let profiles: [NATProfile] = [
        .unknown, N.noNAT, N.easy, N.fullCone, N.random, N.randomAddress, N.sequential(1), N.sequential(-2), N.sequential(.max),
        N.blocked(N.easy), N.blocked(N.random), N.blocked(.unknown),
        NATProfile(mapping: .addressDependent, filtering: .unknown, portDelta: 1, preservesPort: true, hairpins: true),
    ]

    /// 16 candidates of every kind, both transports and families, ports near both ends.
    static func fullCandidates(_ base: UInt8) -> [TraversalCandidate] {
        (0..<ControlLimits.maximumTraversalCandidates).map { i in
            let kind = TraversalCandidateKind.allCases[i % 3]
            let port: UInt16 = i % 5 == 0 ? 65_535 - UInt16(i) : 1 + UInt16(i)
            let endpoint = i % 2 == 0
                ? N.v4(kind == .host ? 10 : 203, 0, kind == .host ? base : 113, UInt8(i), port)
                : PeerEndpoint(ip: .v6(high: 0x2001_0DB8_0000_0000 | UInt64(base), low: UInt64(i)), port: port)
            return TraversalCandidate(kind: kind, transport: i % 4 < 2 ? .udp : .tcp, endpoint: endpoint)
        }
    }

    @Test("every pair, transport, layout and relay: same window and method on both sides, within the limits, encodable",
          arguments: [TunnelTransport.udp, .tcp], [0, 1, 2, 3])
    func everyCombination(transport: TunnelTransport, layout: Int) {
        for pa in Self.profiles {
            for pb in Self.profiles {
                for relay in [true, false] {
                    switch layout {
                    case 0: _ = N.plan(pa, pb, transport: transport, relay: relay)
                    case 1: _ = N.plan(pa, pb, transport: transport, siteB: N.siteBSameNAT, relay: relay)
                    case 2: _ = N.plan(pa, pb, transport: transport, candidatesA: Self.fullCandidates(1), candidatesB: Self.fullCandidates(2), relay: relay)
                    default:
                        // Full lists behind one NAT (same reflexive IPs), and empty lists.
                        _ = N.plan(pa, pb, transport: transport, candidatesA: Self.fullCandidates(1), candidatesB: Self.fullCandidates(1), relay: relay)
                        _ = N.plan(pa, pb, transport: transport, candidatesA: [], candidatesB: [], relay: relay)
                    }
                }
            }
        }
    }

    @Test("the plan is a pure function: the same offers give the same plans")
    func deterministic() {
        let first = N.plan(N.easy, N.random)
        let second = N.plan(N.easy, N.random)
        #expect(first.a == second.a && first.b == second.b)
    }
}
