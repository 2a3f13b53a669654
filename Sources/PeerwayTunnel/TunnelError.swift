import PeerwayCheckpoint

/// Why a key share, a probe, a record or a stream hello was refused, and what to do about it
/// (docs/traversal-protocol.md). `description` says both.
///
/// Cases a caller handles differently:
/// - ``foreignProbe(tag:)`` and ``notAProbe``: not for this tunnel; drop silently and cheaply.
/// - ``authenticationFailed(_:)``, ``replayed(counter:)``, ``reflectedProbe``, ``malformed(_:)``:
///   drop the packet, keep the tunnel (on UDP anyone can send anything).
/// - share errors (``wrongPeer(expected:actual:)``, ``badShareSignature``, ``badKey``): abandon
///   the traversal; somebody is substituting keys.
/// - stream errors: close the TCP connection; a byte stream cannot resynchronise.
public enum TunnelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Where an authentication failure happened.
    public enum Check: String, Sendable, Equatable {
        /// A probe's HMAC.
        case probe
        /// A stream hello's HMAC.
        case streamHello = "stream hello"
        /// A UDP record's Poly1305 tag.
        case datagram
        /// A TCP stream record's Poly1305 tag.
        case streamRecord = "stream record"
    }

    /// Fewer bytes than the format needs.
    case truncated(what: String, needed: Int, got: Int)
    /// Bytes that do not follow the format (a bad field value or a wrong length).
    case malformed(String)
    /// A key share's identity key does not hash to the PeerID expected.
    case wrongPeer(expected: PeerID, actual: PeerID)
    /// A key share's signature does not verify for this context.
    case badShareSignature
    /// A public key is not usable (not 32 bytes, or a low-order X25519 point).
    case badKey
    /// The bytes do not start with `"PWP"`.
    case notAProbe
    /// A valid-looking probe of another tunnel (its tag is not ours).
    case foreignProbe(tag: UInt64)
    /// A probe that carries our own role: one of ours, sent back.
    case reflectedProbe
    /// A MAC or AEAD tag did not verify.
    case authenticationFailed(Check)
    /// A UDP record counter seen before or older than the replay window.
    case replayed(counter: UInt64)
    /// A UDP record type other than data, keepalive or close.
    case unknownRecordType(UInt8)
    /// A payload larger than one record carries.
    case payloadTooLarge(bytes: Int, limit: Int)
    /// A stream record length outside what a record can be.
    case badRecordLength(Int)
    /// A stream hello that is not the other side's hello for this tunnel.
    case badStreamHello(String)
    /// The record counter of this direction is used up.
    case counterExhausted

    public var description: String {
        switch self {
        case .truncated(let what, let needed, let got):
            return "\(what) is truncated: needs \(needed) bytes, got \(got); wait for more bytes or drop it"
        case .malformed(let why):
            return "malformed tunnel bytes (\(why)); drop them"
        case .wrongPeer(let expected, let actual):
            return "key share is signed by \(actual), not by the expected peer \(expected): "
                + "the keys were substituted on the way; abandon this traversal"
        case .badShareSignature:
            return "key share signature does not verify (tampered, or made for another request, role or transport); "
                + "abandon this traversal"
        case .badKey:
            return "key share carries an unusable public key; abandon this traversal"
        case .notAProbe:
            return "not a tunnel probe (no \"PWP\" magic); hand it to whatever else listens on the socket"
        case .foreignProbe(let tag):
            return "probe of another tunnel (tag \(String(tag, radix: 16))); ignore it"
        case .reflectedProbe:
            return "probe carries our own role (our probe sent back); ignore it"
        case .authenticationFailed(let check):
            return "\(check.rawValue) failed authentication (wrong keys or tampered); drop it"
        case .replayed(let counter):
            return "record counter \(counter) was replayed or is older than the \(TunnelLimits.replayWindow)-record window; drop it"
        case .unknownRecordType(let type):
            return "unknown tunnel record type 0x\(String(type, radix: 16)); drop it"
        case .payloadTooLarge(let bytes, let limit):
            return "payload of \(bytes) bytes exceeds the \(limit)-byte record limit; split it"
        case .badRecordLength(let length):
            return "stream record length \(length) is outside \(TunnelLimits.minimumStreamRecordLength)..."
                + "\(TunnelLimits.maximumStreamRecordLength); close the connection"
        case .badStreamHello(let why):
            return "stream hello refused (\(why)); close the connection"
        case .counterExhausted:
            return "record counter exhausted; close the tunnel and open a new one"
        }
    }
}
