/// Every size and limit of the tunnel formats, in one place (docs/traversal-protocol.md).
///
/// Byte counts are exact wire sizes unless named `maximum…`/`minimum…`.
public enum TunnelLimits {
    // MARK: Key share ("Tunnel keys")

    /// Label that starts the signed bytes of a key share and the key-derivation salt.
    public static let label: [UInt8] = Array("peerway-tunnel-v1".utf8)
    /// HKDF `info` of the tunnel key derivation.
    public static let keysInfo: [UInt8] = Array("peerway tunnel keys".utf8)
    /// An X25519 public key (the share's `ephemeral`).
    public static let ephemeralKeyBytes = 32
    /// An Ed25519 public key (the share's `identityPublicKey`).
    public static let identityKeyBytes = 32
    /// An Ed25519 signature (the share's `signature`).
    public static let signatureBytes = 64
    /// A whole key share: `ephemeral(32) identityPublicKey(32) signature(64)` = 128.
    public static let keyShareBytes = ephemeralKeyBytes + identityKeyBytes + signatureBytes
    /// The bytes a share signs: `label(17) requestID(8) initiator(16) acceptor(16) role(1)
    /// transport(1) ephemeral(32)` = 91.
    public static let signedShareBytes = label.count + 8 + 16 + 16 + 1 + 1 + ephemeralKeyBytes

    // MARK: Derived keys ("Tunnel keys")

    /// One ChaCha20-Poly1305 record key (each direction) and the probe (HMAC) key.
    public static let keyBytes = 32
    /// The tunnel tag that names a tunnel in probes and the stream hello.
    public static let tagBytes = 8
    /// HKDF output: initiator→acceptor key, acceptor→initiator key, probe key, tag = 104.
    public static let derivedBytes = 3 * keyBytes + tagBytes

    // MARK: Probes ("Probes")

    /// `"PWP"`, the first bytes of every probe.
    public static let probeMagic: [UInt8] = Array("PWP".utf8)
    /// `"PWP"(3) kind(1) tag(8) role(1) txid(8)` = 21: the fixed part before the endpoint.
    public static let probeHeaderBytes = 3 + 1 + tagBytes + 1 + 8
    /// The truncated HMAC-SHA256 that ends a probe.
    public static let probeMACBytes = 16
    /// An IPv4 observed endpoint: `family(1) address(4) port(2)`.
    public static let endpointV4Bytes = 1 + 4 + 2
    /// An IPv6 observed endpoint: `family(1) address(16) port(2)`.
    public static let endpointV6Bytes = 1 + 16 + 2
    /// A request, select or selectAck (no endpoint): 37 bytes; also the shortest probe.
    public static let minimumProbeBytes = probeHeaderBytes + probeMACBytes
    /// A response with an IPv6 endpoint: 56 bytes, the longest probe.
    public static let maximumProbeBytes = probeHeaderBytes + endpointV6Bytes + probeMACBytes

    // MARK: UDP records ("Encrypted records")

    /// `type(1) counter(8)`: the cleartext header, also the AEAD's associated data.
    public static let datagramHeaderBytes = 9
    /// The Poly1305 tag that ends every record (UDP and TCP).
    public static let aeadTagBytes = 16
    /// Bytes a UDP record adds to its payload: header 9 + tag 16 = 25.
    public static let datagramOverheadBytes = datagramHeaderBytes + aeadTagBytes
    /// The largest UDP payload IPv4 can carry (65,535 − 20 IP − 8 UDP): the largest record.
    public static let maximumDatagramBytes = 65_507
    /// The largest plaintext one UDP record carries (65,482). Applications that want no IP
    /// fragmentation keep records under the path MTU (1,200 bytes is safe nearly everywhere).
    public static let maximumDatagramPayloadBytes = maximumDatagramBytes - datagramOverheadBytes
    /// Replay window of UDP records, in records: a record older than the newest seen by this
    /// many is refused. Equal to `ControlLimits.replayWindow`, which `ReplayWindow` uses.
    public static let replayWindow = 64
    /// The first counter a UDP sender uses (counter 0 is never sent: the replay window treats it
    /// as seen).
    public static let firstDatagramCounter: UInt64 = 1

    // MARK: TCP stream ("Encrypted records")

    /// `"PWT"`, the first bytes of a stream hello.
    public static let helloMagic: [UInt8] = Array("PWT".utf8)
    /// `"PWT"(3) version(1) role(1) tag(8)`: the bytes the hello's MAC covers (13).
    public static let helloSignedBytes = 3 + 1 + 1 + tagBytes
    /// The truncated HMAC-SHA256 that ends a stream hello.
    public static let helloMACBytes = 16
    /// A whole stream hello: 29 bytes.
    public static let helloBytes = helloSignedBytes + helloMACBytes
    /// The `length(2)` prefix of a stream record.
    public static let streamLengthBytes = 2
    /// The largest plaintext of one stream record.
    public static let maximumStreamPlaintextBytes = 16_384
    /// Bytes a stream record adds to its plaintext: length 2 + tag 16 = 18.
    public static let streamOverheadBytes = streamLengthBytes + aeadTagBytes
    /// The largest value of a record's `length` field (ciphertext + tag: 16,400).
    public static let maximumStreamRecordLength = maximumStreamPlaintextBytes + aeadTagBytes
    /// The smallest value of a record's `length` field (an empty record: the tag alone).
    public static let minimumStreamRecordLength = aeadTagBytes
}
