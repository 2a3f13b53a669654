import NIOCore

/*
 The cluster link: one authenticated, encrypted TCP connection between two supernodes of the
 same network (issue 12). Each supernode has a static X25519 key (`SupernodeKey`); the PostgreSQL
 membership table lists the keys of the network's members. The dialer knows the acceptor's static
 key from that table; the acceptor lets in only dialers whose static key is listed.

     dialer                                                  acceptor
       hello   "PWCL"(4) version(1) dialer static(32)
               dialer ephemeral(32) acceptor static(32)   ->      101 bytes
                                                                  checks magic, version, that the
                                                                  expected acceptor key is its own
                                                                  (else closes: wrong target) and
                                                                  that the dialer key is allowed
                                                                  (else closes: not a member)
                                                       <-  reply   "PWCL"(4) version(1)
                                                                   acceptor ephemeral(32)
                                                                   confirmation record (empty)
       opens the confirmation: the acceptor holds its
       static private key (es) -> established
       confirmation record (empty)                        ->
       records...                                                  opens the confirmation: the
                                                                   dialer holds its static private
                                                                   key (se) -> established
                                                       <-> records...

 Keys (Noise-KK style, without the static-static term):
     ee = DH(dialer ephemeral, acceptor ephemeral)
     es = DH(dialer ephemeral, acceptor static)    only the real acceptor (or the dialer) can compute it
     se = DH(dialer static,    acceptor ephemeral) only the real dialer (or the acceptor) can compute it
     transcript = hello(101) || reply header(37)   (magic, version and the four public keys)
     salt = SHA-256("peerway cluster link v1" || transcript)
     okm  = HKDF-SHA256(ikm: ee || es || se, salt, info: "peerway cluster link v1 record keys", 64)
     dialer -> acceptor key = okm[0..<32], acceptor -> dialer key = okm[32..<64]

 Records, in each direction:
     length(4, big endian) || ChaCha20-Poly1305(key, nonce: 0(4) || counter(8, big endian),
                                                aad: the 4 length bytes, payload) || tag(16)
 `length` counts ciphertext + tag (16 ... maximumRecordPayloadBytes + 16). The counter is implicit
 (TCP neither loses nor reorders), starts at 0 with the confirmation record and must be exactly the
 next one: a replayed, reordered, dropped or tampered record fails its tag. Any failure is final:
 the state machine throws the same typed error from then on, and the connection must be closed.
 An empty record is a keepalive: it proves the peer is alive and is never delivered as a payload.
 The confirmation records are empty too, and during the handshake a first record of any other
 length is refused before it is buffered (an unauthenticated side cannot make the other hold more
 than a hello and one read).

 The I/O layer (`ClusterMesh` in PeerwaySupernode) closes a connection whose handshake has not
 completed within `handshakeTimeout`, sends a keepalive every `keepaliveInterval`, closes a link
 silent for `idleTimeout` and one whose outbound queue exceeds `maximumQueuedBytes`, and redials
 with a delay doubling from `redialInitialDelay` up to `redialMaximumDelay`.
*/

/// Every limit and timer of a cluster link (see the flow above).
public enum ClusterLinkLimits {
    /// The 4 bytes that open a hello and a reply: "PWCL".
    public static let magic: [UInt8] = Array("PWCL".utf8)
    /// The only protocol version spoken; a hello or reply with another is refused.
    public static let version: UInt8 = 1
    /// Bytes of an X25519 public key.
    public static let keyBytes = 32
    /// Bytes of a hello: magic(4) version(1) dialer static(32) dialer ephemeral(32) acceptor static(32).
    public static let helloBytes = 4 + 1 + 3 * keyBytes
    /// Bytes of a reply before its confirmation record: magic(4) version(1) acceptor ephemeral(32).
    public static let replyHeaderBytes = 4 + 1 + keyBytes
    /// Bytes of a record's length field (big endian).
    public static let lengthBytes = 4
    /// Bytes of a ChaCha20-Poly1305 tag.
    public static let tagBytes = 16
    /// Bytes a record adds to its payload: length(4) + tag(16).
    public static let recordOverheadBytes = lengthBytes + tagBytes
    /// Bytes of an empty record (a keepalive or a confirmation).
    public static let emptyRecordBytes = recordOverheadBytes
    /// Bytes of a whole reply: header(37) + an empty confirmation record(20).
    public static let replyBytes = replyHeaderBytes + emptyRecordBytes
    /// The largest payload one record carries (1 MiB); a larger length field is refused at once.
    public static let maximumRecordPayloadBytes = 1 << 20
    /// The smallest valid length field (an empty record: just the tag).
    public static let minimumRecordLength = tagBytes
    /// The largest valid length field.
    public static let maximumRecordLength = maximumRecordPayloadBytes + tagBytes

    /// A connection that has not completed its handshake this long after it opened is closed.
    public static let handshakeTimeout: TimeAmount = .seconds(5)
    /// A dial whose TCP connect has not completed this long is abandoned (and retried later).
    public static let connectTimeout: TimeAmount = .seconds(3)
    /// An up link sends an empty record this often, so the other side hears it even when idle.
    public static let keepaliveInterval: TimeAmount = .seconds(3)
    /// An up link that heard nothing (not even a keepalive) this long is closed: more than three
    /// keepalive intervals, so a frozen or vanished peer is noticed without a false alarm.
    public static let idleTimeout: TimeAmount = .seconds(10)
    /// Bytes an up link may have queued for sending (sealed records not yet written to the
    /// socket); a send that would exceed it closes the link (reported down) instead of growing
    /// memory behind a peer that does not read.
    public static let maximumQueuedBytes = 64 << 20
    /// The first redial of a member comes this long after its link went down or a dial failed.
    public static let redialInitialDelay: TimeAmount = .milliseconds(100)
    /// The redial delay doubles after each failure up to this.
    public static let redialMaximumDelay: TimeAmount = .seconds(5)
}

/// Why a cluster link failed. Every error is final: close the connection.
public enum ClusterLinkError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A hello or reply given whole to a decoder was shorter than its fixed size.
    case truncated(what: String, needed: Int, got: Int)
    /// The first 4 bytes were not "PWCL" (not a cluster link at all).
    case badMagic([UInt8])
    /// The other side speaks another protocol version.
    case unsupportedVersion(UInt8)
    /// The dialer expected another acceptor's static key (it dialed the wrong supernode).
    case wrongAcceptor(expected: [UInt8])
    /// The dialer's static key is not a member of the network.
    case dialerNotAllowed([UInt8])
    /// The dialer presented the acceptor's own static key.
    case dialerIsSelf
    /// A public key was not 32 bytes or gave no shared secret (a low-order point).
    case badKey(String)
    /// A record's length field is outside 16 ... maximumRecordLength.
    case badRecordLength(Int)
    /// A payload larger than ``ClusterLinkLimits/maximumRecordPayloadBytes`` was given to seal.
    case payloadTooLarge(Int)
    /// The record with this counter did not open: tampered, replayed, reordered, dropped before
    /// it, or sealed by someone without the right keys (an impostor).
    case authenticationFailed(counter: UInt64)
    /// A confirmation record was not the empty record the handshake requires.
    case badConfirmation(String)
    /// 2^64 - 1 records were sent or received in one direction.
    case counterExhausted
    /// A payload was given to seal before the handshake completed.
    case notEstablished

    public var description: String {
        switch self {
        case .truncated(let what, let needed, let got): return "\(what) truncated: \(got) of \(needed) bytes"
        case .badMagic(let bytes): return "not a cluster link: starts with \(bytes.clusterHex) instead of \"PWCL\""
        case .unsupportedVersion(let v): return "cluster link version \(v); this supernode speaks \(ClusterLinkLimits.version)"
        case .wrongAcceptor(let expected):
            return "the dialer expected supernode \(expected.clusterHex.prefix(16))…, not this one"
        case .dialerNotAllowed(let key): return "dialer \(key.clusterHex.prefix(16))… is not a member of the network"
        case .dialerIsSelf: return "the dialer presented this supernode's own static key"
        case .badKey(let why): return "bad public key: \(why)"
        case .badRecordLength(let n):
            return "record length \(n) outside \(ClusterLinkLimits.minimumRecordLength)...\(ClusterLinkLimits.maximumRecordLength)"
        case .payloadTooLarge(let n): return "payload of \(n) bytes exceeds \(ClusterLinkLimits.maximumRecordPayloadBytes)"
        case .authenticationFailed(let counter):
            return "record \(counter) failed authentication (tampered, replayed, reordered or forged)"
        case .badConfirmation(let why): return "bad handshake confirmation: \(why)"
        case .counterExhausted: return "record counter exhausted"
        case .notEstablished: return "the link's handshake has not completed"
        }
    }
}

extension Collection where Element == UInt8 {
    /// Lower-case hex, for logs and error messages.
    var clusterHex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(count * 2)
        for b in self { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
