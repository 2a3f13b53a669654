/// The CHECKPOINT control protocol, version 1: constants and the flow they govern.
///
/// ```
///  peer                                              checkpoint (static key S, address peerway://S@host:port)
///   |-- hello(e_c, no cookie) ≥ 256 B ------------------->|  stateless: cookie = MAC(secret_t, src, e_c)
///   |<------------------------------ cookie(cookie) 28 B --|  (never more bytes than received)
///   |-- hello(e_c, cookie) ≥ 256 B ---------------------->|  verifies the cookie: the source can receive
///   |<-- helloReply(session, e_s, seal_0(welcome)) ~96 B --|  keys = HKDF(DH(e_c,S) ‖ DH(e_c,e_s), transcript)
///   |-- sealed(register: key, candidates, meta, sig) ---->|  sig binds the PeerID to this session
///   |<---------------------------- sealed(registered) -----|
///   |-- sealed(keepalive) every 25 s -------------------->|  expiry after `expiryMisses` missed intervals
///   |<--------------------- sealed(keepaliveAck(observed))-|
///   |-- sealed(request, id) ----------------------------->|  requests retransmitted with backoff until
///   |<------------------------- sealed(response, same id) -|  their response; pushes are acknowledged:
///   |<------------------------------- sealed(push, id) ----|
///   |-- sealed(ack, id) --------------------------------->|
/// ```
///
/// Every packet starts with `version(1) type(1) flags(1) reserved(1)`. A `sealed` packet is
/// `header(4) session(8) counter(8) ChaCha20-Poly1305(frame)`; the 20 header bytes are the AEAD's
/// associated data and the counter its nonce, checked against a sliding replay window. An
/// unknown session gets `sessionUnknown` (12 bytes, less than any sealed packet), which tells a
/// peer whose supernode restarted to handshake again.
public enum ControlLimits {
    /// Protocol version carried in every packet's first byte.
    public static let version: UInt8 = 1
    /// Bytes of the common packet header (version, type, flags, reserved).
    public static let headerBytes = 4
    /// Largest datagram either side sends or accepts: under the IPv6 minimum MTU less headers,
    /// so control packets never fragment.
    public static let maximumDatagramBytes = 1200
    /// A hello is padded to at least this size; smaller hellos are dropped, so that neither
    /// the cookie nor the hello reply is ever larger than the datagram that caused it.
    public static let minimumHelloBytes = 256
    /// Bytes of an X25519 public key.
    public static let keyBytes = 32
    /// Bytes of a cookie.
    public static let cookieBytes = 16
    /// Bytes of the client ephemeral key echoed in a cookie, so a peer ignores stale cookies.
    public static let cookieEchoBytes = 8
    /// Seconds a cookie secret is current; cookies of the current and the previous period are
    /// accepted, so a cookie lives between 30 and 60 seconds.
    public static let cookieSecretPeriodSeconds = 30
    /// Bytes of the ChaCha20-Poly1305 tag.
    public static let tagBytes = 16
    /// Bytes of a sealed packet's cleartext header (common header, session id, counter).
    public static let sealedHeaderBytes = 20
    /// Largest frame a sealed packet can carry.
    public static let maximumFrameBytes = maximumDatagramBytes - sealedHeaderBytes - tagBytes
    /// Packets a session's replay window remembers behind the highest counter seen.
    public static let replayWindow = 64

    /// Largest instant message text, in bytes of UTF-8.
    public static let maximumMessageBytes = 1024
    /// Longest note on a connection request, and longest refusal reason, in bytes.
    public static let maximumNoteBytes = 256
    /// Longest search query, in bytes.
    public static let maximumQueryBytes = 512
    /// Most results a search returns per page.
    public static let maximumSearchPage = 100
    /// Most local candidates a peer registers.
    public static let maximumCandidates = 8
    /// Other supernodes of the network listed in a `registered` answer (the peer's failover
    /// list; 53 bytes each).
    public static let maximumAdvertisedSupernodes = 8
    /// Most peers named in one watch or unwatch request.
    public static let maximumWatchBatch = 32
    /// Most peers one peer may watch.
    public static let maximumWatchedPeers = 1024
    /// Longest error message text, in bytes.
    public static let maximumErrorTextBytes = 256
    /// Most metadata entries carried in one frame (equal to the metadata limit).
    public static let maximumMetadataEntries = PeerMetadata.maximumEntries

    /// Keepalive interval a peer uses unless configured otherwise, in seconds.
    public static let defaultKeepaliveSeconds: UInt16 = 25
    /// Shortest and longest keepalive interval a checkpoint accepts, in seconds.
    public static let keepaliveSecondsRange: ClosedRange<UInt16> = 5...300
    /// Missed keepalive intervals after which a peer is expired and its watchers are told.
    public static let expiryMisses: UInt8 = 3
    /// Seconds a handshaken but unregistered session lives.
    public static let unregisteredSessionSeconds = 30

    // MARK: HANDSHAKE (docs/traversal-protocol.md)
    /// Bytes of a tunnel key share (ephemeral X25519 key, identity key, Ed25519 signature).
    public static let keyShareBytes = 128
    /// Bytes of a relay token.
    public static let relayTokenBytes = 32
    /// Most other TCP endpoints of one relay grant (`RelayGrant.alternatives`: the relay's
    /// supernode's shared TCP port, which takes the same bind as the relay's own).
    public static let maximumRelayAlternatives = 4
    /// Most candidates in one traversal offer.
    public static let maximumTraversalCandidates = 16
    /// Most targets in one traversal plan.
    public static let maximumTraversalTargets = 24
    /// Most ports one target names.
    public static let maximumTargetPorts: UInt16 = 256
    /// Most random ports one plan sprays.
    public static let maximumSprayPorts: UInt16 = 4096
    /// Most local sockets one plan asks a side to probe from.
    public static let maximumPlanSockets: UInt16 = 512
}
