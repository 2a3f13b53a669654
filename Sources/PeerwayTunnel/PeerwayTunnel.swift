import PeerwayCheckpoint

/// Tunnel keys, path probes and encrypted records: see docs/traversal-protocol.md.
///
/// The module is pure: no sockets, no clocks, no threads. It turns bytes into bytes and keys into
/// keys; the traversal driver (sockets, timers, retries) lives elsewhere and calls it.
///
/// The pieces, in the order a traversal uses them (docs/traversal-protocol.md):
/// 1. ``TunnelKeyShare`` — each side's signed ephemeral key, sent inside its traversal offer
///    ("Tunnel keys").
/// 2. ``TunnelKeys`` — both directions' record keys, the probe key and the tunnel tag, derived
///    from the two shares ("Tunnel keys").
/// 3. ``TunnelProbe`` — the authenticated `"PWP"` probes that verify a UDP path ("Probes").
/// 4. ``TunnelDatagramCipher`` — UDP records `type counter ciphertext tag` ("Encrypted records").
/// 5. ``TunnelStreamHello``, ``TunnelStreamCipher``, ``TunnelStreamDecoder`` — the TCP stream
///    hello and `length ciphertext tag` records ("Encrypted records").
///
/// Every limit is in ``TunnelLimits``; every failure is a ``TunnelError``.
public enum TunnelProtocol {
    /// Version of the tunnel's wire formats (the `version` byte of the stream hello).
    public static let version: UInt8 = 1
}

/// Which side of a traversal a peer is: the HANDSHAKE's role, by the tunnel's name.
public typealias TunnelRole = TraversalRole

/// What a traversal is about, as one side sees it: the connection request it answers, the two
/// peers, this side's role, and the transport asked for.
///
/// Both sides build it from the same `connect` negotiation; only `role` differs between them.
/// The key share signs it (docs/traversal-protocol.md, "Tunnel keys"), so a share made for one
/// request, role or transport cannot be replayed into another.
public struct TunnelContext: Sendable, Hashable {
    /// The `requestID` of the `connect` that started this traversal.
    public var requestID: UInt64
    /// A, who sent `connect`.
    public var initiator: PeerID
    /// B, who accepted it.
    public var acceptor: PeerID
    /// The role of the side holding this context (the local side).
    public var role: TunnelRole
    /// UDP or TCP, as asked for in `connect`.
    public var transport: TunnelTransport

    public init(requestID: UInt64, initiator: PeerID, acceptor: PeerID, role: TunnelRole, transport: TunnelTransport) {
        self.requestID = requestID
        self.initiator = initiator
        self.acceptor = acceptor
        self.role = role
        self.transport = transport
    }

    /// The same traversal as the other side sees it (the role flipped).
    public var remote: TunnelContext {
        TunnelContext(requestID: requestID, initiator: initiator, acceptor: acceptor, role: role.other, transport: transport)
    }

    /// The local side's PeerID.
    public var localPeer: PeerID { role == .initiator ? initiator : acceptor }

    /// The other side's PeerID: the one its key share must prove.
    public var remotePeer: PeerID { role == .initiator ? acceptor : initiator }
}
