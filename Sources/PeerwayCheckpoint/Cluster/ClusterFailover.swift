import PeerwaySTUN

/*
 How a peer learns the other supernodes of its network, and where it goes when its own fails.

     membership table (every heartbeat) --> setNetworkSupernodes(others)        (supernode side)
     register --> registered(..., supernodes: the others, in this peer's order) --> the peer adds
                  them to its failover list (CheckpointClientMachine: a keepalive unanswered for
                  `CheckpointClientLimits.keepaliveTimeout(...)`, or a handshake that fails,
                  moves it to the next one in that order)
     keepalive --> keepaliveAck(observed, the list again) once after the list changed (a peer
                  registered before the supernode knew the others, or before one joined)

 The order is rendezvous hashing (highest random weight): each supernode gets the score
 mix(peer, supernode key), highest first. Every peer has its own order, so when one supernode
 dies its peers spread evenly over the rest (not all onto the next one in a shared list), and a
 supernode joining or leaving changes the order of only the peers that rank it first. The
 supernode a peer registered on is not in its list (the peer knows it); supernodes whose address
 is not an IP literal of the peer's family are left out (the peer could not use them from its
 socket), and at most `ControlLimits.maximumAdvertisedSupernodes` are listed.
*/

extension CheckpointMachine {
    /// Sets the other live supernodes of the network (this one excluded), as the membership table
    /// lists them; told to every peer that registers from now on. Entries whose host is not an
    /// IP literal, or with this supernode's own key, are ignored.
    public mutating func setNetworkSupernodes(_ supernodes: [SupernodeAddress]) {
        var seen: Set<[UInt8]> = [publicKeyBytes]
        let others = supernodes.filter { $0.endpoint != nil && seen.insert($0.publicKeyBytes).inserted }
        guard others != networkSupernodes else { return }
        networkSupernodes = others
        networkSupernodesGeneration &+= 1
    }

    /// The answer to a keepalive: the observed endpoint, and the peer's list of the other
    /// supernodes when it changed since the peer was last told (once per change per peer).
    /// - Precondition: session `sid` exists (its keepalive is being answered).
    mutating func keepaliveAck(session sid: UInt64) -> ControlFrame {
        var session = sessions[sid]!
        guard session.supernodesGeneration != networkSupernodesGeneration, let peer = session.peer else {
            return .keepaliveAck(observed: session.endpoint)
        }
        session.supernodesGeneration = networkSupernodesGeneration
        sessions[sid] = session
        return .keepaliveAck(observed: session.endpoint, supernodes: failoverSupernodes(for: peer, observed: session.endpoint))
    }

    /// The other supernodes in `peer`'s failover order, of the family `peer` registered from.
    func failoverSupernodes(for peer: PeerID, observed: PeerEndpoint) -> [SupernodeAddress] {
        guard !networkSupernodes.isEmpty else { return [] }
        let usable = networkSupernodes.filter { $0.endpoint?.family == observed.family }
        let ranked = usable.map { ($0, Self.rendezvousScore(peer: peer, supernode: $0.publicKeyBytes)) }
            .sorted { $0.1 > $1.1 }
        return ranked.prefix(ControlLimits.maximumAdvertisedSupernodes).map(\.0)
    }

    /// A 64-bit score of (peer, supernode) that every supernode computes alike: the first 16
    /// bytes of the key folded into the PeerID and mixed (splitmix64's finaliser). Not a
    /// security property: a peer chooses its own failover anyway.
    static func rendezvousScore(peer: PeerID, supernode key: [UInt8]) -> UInt64 {
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<min(8, key.count) { high = high << 8 | UInt64(key[i]) }
        for i in 8..<min(16, key.count) { low = low << 8 | UInt64(key[i]) }
        return mix(mix(peer.high ^ high) ^ peer.low ^ low)
    }

    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
