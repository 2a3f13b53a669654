import PeerwaySTUN

/// The HANDSHAKE's choice of techniques for one traversal: a pure function of both offers.
///
/// Each side gets the addresses to probe (`targets`), how many local sockets to probe from, and
/// perhaps random ports to spray; both also get a relay grant to fall back to after
/// `directWindowMillis`. The rules, by the two NATs' mappings (RFC 4787 terms):
///
/// | A \ B            | easy (none, EIM)  | predictable (sequential) | random (per destination) |
/// |------------------|-------------------|--------------------------|--------------------------|
/// | easy             | punch             | predict (A probes B's next ports) | many-port (B opens `manyPortSockets`, A sprays `sprayPorts` random ports of B); punch when A has no NAT or filters by address only |
/// | predictable      | predict           | predict (both, in the same order) | relay |
/// | random           | many-port         | relay                    | relay                    |
///
/// A `mapped` candidate (a port the peer opened on its router with PCP, NAT-PMP or UPnP-IGD) lets
/// in packets from anyone: the other side punches it, whatever either NAT does, and neither side
/// probes many ports or predicts any (the mapping makes that side reachable from one socket).
/// So random × random pairs go direct when either side has a mapping.
///
/// Behind the same public address: host candidates (`lan`) and the public address (`hairpin`).
/// A UDP-blocked side: relay over TCP at once. An unknown mapping is tried with punching and a
/// short prediction window, since either may work. Relay × random is the only mapping pair
/// where a direct path is out of reach: both NATs pick an unpredictable port per destination, so a
/// packet can only arrive on a mapping made for exactly its source, which neither side can know;
/// many-port probing needs one side whose port does not depend on the destination.
public enum TraversalPlanner {
    /// Sockets the random-mapping side opens for many-port probing.
    public static let manyPortSockets: UInt16 = 256
    /// Random ports the easy side probes: with 256 mappings among 64,512 ports, 2,048 probes
    /// miss them all with probability (1 - 256/64512)^2048 ≈ 0.03%.
    public static let sprayPorts: UInt16 = 2048
    /// Consecutive predicted ports probed on a sequential NAT (absorbs other flows through it).
    public static let predictionPorts: UInt16 = 24
    /// Predicted ports probed when the mapping was not measured.
    public static let unknownPredictionPorts: UInt16 = 8
    /// Milliseconds of direct probing before the relay, for punching and prediction.
    public static let directWindowMillis: UInt32 = 4_000
    /// Milliseconds of direct probing before the relay, for many-port probing (the spray is paced).
    public static let manyPortWindowMillis: UInt32 = 6_000

    /// The plans for the initiator and the acceptor. `observed` are the addresses the checkpoint
    /// sees each peer's control channel come from; `relay` the grants for each side, if a relay
    /// could be allocated.
    public static func plan(initiator a: TraversalOffer, acceptor b: TraversalOffer,
                            observed: (initiator: PeerEndpoint, acceptor: PeerEndpoint),
                            relay: (initiator: RelayGrant, acceptor: RelayGrant)?) -> (initiator: TraversalPlan, acceptor: TraversalPlan) {
        var pa = sidePlan(me: a, other: b, myObserved: observed.initiator, otherObserved: observed.acceptor)
        var pb = sidePlan(me: b, other: a, myObserved: observed.acceptor, otherObserved: observed.initiator)
        // Both sides use the same window and label, so they give up on direct paths together.
        let window = max(pa.window, pb.window)
        let method = best(pa.method, pb.method)
        pa.plan.directWindowMillis = window
        pb.plan.directWindowMillis = window
        pa.plan.method = method
        pb.plan.method = method
        pa.plan.relay = relay?.initiator
        pb.plan.relay = relay?.acceptor
        pa.plan.rawTunnel = a.rawTunnel && b.rawTunnel
        pb.plan.rawTunnel = pa.plan.rawTunnel
        if a.transport != b.transport {
            pa.plan.failure = "the two sides offered different transports (\(a.transport), \(b.transport))"
            pb.plan.failure = pa.plan.failure
        }
        if relay == nil && window == 0 {
            pa.plan.failure = "no direct path is possible and no relay is available"
            pb.plan.failure = pa.plan.failure
        }
        return (pa.plan, pb.plan)
    }

    /// The plan's headline method: the most direct of the two sides'.
    static func best(_ x: TraversalMethod, _ y: TraversalMethod) -> TraversalMethod {
        x.rawValue <= y.rawValue ? x : y
    }

    struct Side {
        var plan: TraversalPlan
        var window: UInt32
        var method: TraversalMethod
    }

    static func publicAddress(_ offer: TraversalOffer, observed: PeerEndpoint) -> PeerEndpoint.IP {
        offer.candidates.first { $0.kind == .serverReflexive }?.endpoint.ip ?? observed.ip
    }

    static func sidePlan(me: TraversalOffer, other: TraversalOffer, myObserved: PeerEndpoint, otherObserved: PeerEndpoint) -> Side {
        let transport = me.transport
        var plan = TraversalPlan(initiator: me.initiator, acceptor: me.acceptor, requestID: me.requestID, transport: transport,
                                 method: .relay, directWindowMillis: 0, remoteKeyShare: other.keyShare, targets: [])
        var window: UInt32 = 0
        var method = TraversalMethod.relay
        var targets: [TraversalTarget] = []
        func add(_ t: TraversalTarget, _ m: TraversalMethod, _ w: UInt32) {
            guard targets.count < ControlLimits.maximumTraversalTargets, !targets.contains(t) else { return }
            targets.append(t)
            window = max(window, w)
            method = best(method, m)
        }
        let theirs = other.candidates.filter { $0.transport == transport }
        let sameNAT = publicAddress(me, observed: myObserved) == publicAddress(other, observed: otherObserved)
        let udpBlocked = me.profile.udpBlocked || other.profile.udpBlocked
        // A peer without NAT is reached directly, unless UDP cannot leave either network.
        let otherPublic = other.profile.mapping == .none && !(transport == .udp && udpBlocked)
        // Host candidates: on a shared LAN, or when the other side has no NAT.
        let direct: TraversalMethod = sameNAT ? .lan : transport == .tcp ? .tcpSimultaneousOpen : .punch
        for c in theirs where c.kind == .host && (sameNAT || otherPublic) && !c.endpoint.isLinkLocal {
            add(TraversalTarget(method: direct, endpoint: c.endpoint), direct, directWindowMillis)
        }
        let reflexive = theirs.filter { $0.kind == .serverReflexive || $0.kind == .mapped }
        if sameNAT {
            for c in reflexive { add(TraversalTarget(method: .hairpin, endpoint: c.endpoint), .hairpin, directWindowMillis) }
            plan.targets = targets
            return Side(plan: plan, window: window, method: method)
        }
        if transport == .udp && udpBlocked {
            plan.targets = targets
            return Side(plan: plan, window: window, method: method)
        }
        let mine = me.profile, theirProfile = other.profile
        if transport == .tcp {
            // TCP simultaneous open to the other side's reflexive address (its local port, when its
            // NAT keeps ports), unless a NAT picks random ports per destination, or a side's
            // network blocks UDP (such firewalls let TCP out to a few ports only, none of these).
            if !mine.isRandom && !theirProfile.isRandom && !udpBlocked {
                for c in reflexive {
                    add(TraversalTarget(method: .tcpSimultaneousOpen, endpoint: c.endpoint), .tcpSimultaneousOpen, directWindowMillis)
                }
            }
            plan.targets = targets
            return Side(plan: plan, window: window, method: method)
        }
        // Port mappings (see the type's comment): punch theirs; with one on either side, nothing else
        // is needed beyond a punch between two easy NATs.
        let theirMapped = theirs.filter { $0.kind == .mapped }
        let myMapped = me.candidates.contains { $0.kind == .mapped && $0.transport == transport }
        for c in theirMapped { add(TraversalTarget(method: .punch, endpoint: c.endpoint), .punch, directWindowMillis) }
        if myMapped || !theirMapped.isEmpty {
            if !mine.isRandom && !theirProfile.isRandom && !mine.isPredictable && !theirProfile.isPredictable {
                for c in reflexive where c.kind == .serverReflexive {
                    add(TraversalTarget(method: .punch, endpoint: c.endpoint), .punch, directWindowMillis)
                }
            }
            plan.targets = targets
            return Side(plan: plan, window: max(window, directWindowMillis), method: best(method, .punch))
        }
        guard let theirReflexive = reflexive.first?.endpoint else {
            plan.targets = targets
            return Side(plan: plan, window: window, method: method)
        }
        let otherEasy = theirProfile.isEasy || theirProfile.mapping == .unknown
        switch (mine.isRandom, theirProfile.isRandom) {
        case (true, true):
            break  // relay (see the type's comment)
        case (true, false):
            if theirProfile.isPredictable {
                break  // random × sequential: relay
            }
            if lets(theirProfile, in: mine) {
                // Their NAT lets in whatever comes from our address once it sent there: one socket
                // punches, they answer the port it arrives from.
                add(TraversalTarget(method: .punch, endpoint: theirReflexive), .punch, directWindowMillis)
            } else {
                // Many-port, hard side: many mappings towards the other's (fixed) reflexive address.
                plan.localSockets = manyPortSockets
                add(TraversalTarget(method: .manyPort, endpoint: theirReflexive), .manyPort, manyPortWindowMillis)
            }
        case (false, true):
            if mine.isPredictable { break }
            if lets(mine, in: theirProfile) {
                // Our NAT lets their packets in once we sent to their address (any port): punching
                // their address opens it, and we answer the port their packets come from.
                add(TraversalTarget(method: .punch, endpoint: theirReflexive), .punch, directWindowMillis)
            } else {
                // Many-port, easy side: spray random ports of the other's public address.
                plan.spray = TraversalSpray(address: theirReflexive, count: sprayPorts)
                add(TraversalTarget(method: .manyPort, endpoint: theirReflexive), .manyPort, manyPortWindowMillis)
            }
        case (false, false):
            if theirProfile.isPredictable {
                // Their reflexive port was made for the STUN server only; their mapping towards us
                // is one of the next ports. (Probing the reflexive port would also take one of
                // *our* next ports when we allocate sequentially too, out of step with their guess.)
                add(nextPorts(theirReflexive, delta: theirProfile.portDelta, count: predictionPorts), .predict, directWindowMillis)
                break
            }
            for c in reflexive { add(TraversalTarget(method: .punch, endpoint: c.endpoint), .punch, directWindowMillis) }
            if theirProfile.mapping == .unknown || (!otherEasy && !theirProfile.isRandom) {
                add(nextPorts(theirReflexive, delta: 1, count: unknownPredictionPorts), .predict, directWindowMillis)
            }
        }
        plan.targets = targets
        return Side(plan: plan, window: window, method: method)
    }

    /// Whether an easy side's NAT (`easy`) lets in packets from any port of an address it sent
    /// to: no NAT, endpoint-independent or address-dependent filtering (RFC 4787 §5). Then a
    /// random-mapping peer needs no many-port probing. Unknown filtering is treated as strict.
    static func lets(_ easy: NATProfile, in other: NATProfile) -> Bool {
        easy.mapping == .none || easy.filtering == .endpointIndependent || easy.filtering == .addressDependent
    }

    /// The ports a sequential NAT gives its next mappings after `last`.
    static func nextPorts(_ last: PeerEndpoint, delta: Int16, count: UInt16) -> TraversalTarget {
        let step = delta == 0 ? 1 : delta
        let first = Int(last.port) + Int(step)
        let port = UInt16(clamping: max(1, min(65535, first)))
        return TraversalTarget(method: .predict, endpoint: PeerEndpoint(ip: last.ip, port: port), count: count, step: step)
    }
}
