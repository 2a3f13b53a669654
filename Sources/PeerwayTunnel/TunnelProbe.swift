import Crypto
import Foundation
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN

/// A path-verification probe (docs/traversal-protocol.md, "Probes"):
///
///     "PWP"(3) kind(1) tag(8) role(1) txid(8) [observed endpoint] mac(16)
///
/// `mac` = HMAC-SHA256(probe key, every byte before it)[0..<16]; a response carries the source
/// address its request came from as `family(1: 4|6) address(4|16) port(2)`. A path counts only
/// once this side's request was answered by a valid response, so a third party who saw the
/// candidates cannot forge one.
///
/// ``open(_:keys:)-(UnsafeRawBufferPointer,_)`` checks, cheapest first: the magic, the length,
/// the kind, the tag (another tunnel's probe is ``TunnelError/foreignProbe(tag:)``, to ignore),
/// the MAC, then the role (our own probe sent back is ``TunnelError/reflectedProbe``).
public struct TunnelProbe: Sendable, Hashable {
    /// The `kind` byte.
    public enum Kind: UInt8, Sendable, Hashable, CaseIterable {
        /// Asks the other side to answer on this path (kind 1).
        case request = 1
        /// Answers a request: echoes its txid, carries its source address (kind 2).
        case response = 2
        /// The initiator picks this verified path for the tunnel (kind 3).
        case select = 3
        /// The acceptor confirms the selected path (kind 4).
        case selectAck = 4
        /// The sender's new server-reflexive address, in `observed` (kind 5): sent over the relay
        /// after a network change, so the other side probes it and the NATs punch anew.
        case candidate = 5

        /// Whether the probe carries an endpoint (`observed`).
        public var carriesEndpoint: Bool { self == .response || self == .candidate }
    }

    public var kind: Kind
    /// The tunnel tag (``TunnelKeys/tag``).
    public var tag: UInt64
    /// The sender's role.
    public var role: TunnelRole
    /// Transaction id: chosen by the requester, echoed by the response.
    public var txid: UInt64
    /// Responses: the address the request came from, as the responder saw it; candidates: the
    /// sender's new address.
    public var observed: PeerEndpoint?

    public init(kind: Kind, tag: UInt64, role: TunnelRole, txid: UInt64, observed: PeerEndpoint? = nil) {
        self.kind = kind
        self.tag = tag
        self.role = role
        self.txid = txid
        self.observed = observed
    }

    /// Cheap pre-check for demultiplexing a socket: `true` when `firstBytes` starts with `"PWP"`
    /// and is at least a minimal probe long. Says nothing about validity (a raw tunnel's payload
    /// may look like this too); ``open(_:keys:)-(UnsafeRawBufferPointer,_)`` decides.
    public static func isProbe(_ firstBytes: some Collection<UInt8>) -> Bool {
        guard firstBytes.count >= TunnelLimits.minimumProbeBytes else { return false }
        var i = firstBytes.startIndex
        for m in TunnelLimits.probeMagic {
            guard firstBytes[i] == m else { return false }
            i = firstBytes.index(after: i)
        }
        return true
    }

    /// Cheap pre-check on a datagram, without touching its reader index.
    public static func isProbe(_ datagram: ByteBuffer) -> Bool {
        datagram.withUnsafeReadableBytes { isProbe($0) }
    }

    // MARK: Sealing

    /// The wire bytes of a probe from this side: tag and role from `keys`. `observed` is
    /// required for a response and ignored otherwise.
    public static func seal(kind: Kind, txid: UInt64, observed: PeerEndpoint? = nil, keys: TunnelKeys) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(TunnelLimits.maximumProbeBytes)
        append(kind: kind, txid: txid, observed: observed, keys: keys, to: &out)
        return out
    }

    /// Writes the probe into `buffer` (see ``seal(kind:txid:observed:keys:)``); returns its size.
    @discardableResult
    public static func seal(kind: Kind, txid: UInt64, observed: PeerEndpoint? = nil, keys: TunnelKeys,
                            into buffer: inout ByteBuffer) -> Int {
        buffer.writeBytes(seal(kind: kind, txid: txid, observed: observed, keys: keys))
    }

    /// Appends the probe to `out`.
    public static func append(kind: Kind, txid: UInt64, observed: PeerEndpoint? = nil, keys: TunnelKeys,
                              to out: inout [UInt8]) {
        precondition(!kind.carriesEndpoint || observed != nil, "a probe response or candidate carries an endpoint")
        let start = out.count
        out.append(contentsOf: TunnelLimits.probeMagic)
        out.append(kind.rawValue)
        out.appendBigEndian(keys.tag)
        out.append(keys.role.rawValue)
        out.appendBigEndian(txid)
        if kind.carriesEndpoint, let observed {
            switch observed.ip {
            case .v4(let address):
                out.append(4)
                out.appendBigEndian(address)
            case .v6(let high, let low):
                out.append(6)
                out.appendBigEndian(high)
                out.appendBigEndian(low)
            }
            out.appendBigEndian(observed.port)
        }
        TunnelCrypto.appendMAC(over: start, of: &out, key: keys.probeKey)
    }

    // MARK: Opening

    /// Opens a probe received for the tunnel of `keys`.
    public static func open(_ bytes: [UInt8], keys: TunnelKeys) throws(TunnelError) -> TunnelProbe {
        try withTunnelBytes(of: bytes) { (raw) throws(TunnelError) in try open(raw, keys: keys) }
    }

    /// Opens a probe datagram; the buffer (a copy) is not consumed.
    public static func open(_ datagram: ByteBuffer, keys: TunnelKeys) throws(TunnelError) -> TunnelProbe {
        try withTunnelBytes(of: datagram) { (raw) throws(TunnelError) in try open(raw, keys: keys) }
    }

    /// Opens a probe: checks magic, length, kind, tag, MAC and role, in that order.
    ///
    /// - Throws: ``TunnelError/notAProbe``, ``TunnelError/truncated(what:needed:got:)``,
    ///   ``TunnelError/malformed(_:)``, ``TunnelError/foreignProbe(tag:)``,
    ///   ``TunnelError/authenticationFailed(_:)`` (`.probe`), ``TunnelError/reflectedProbe``.
    public static func open(_ raw: UnsafeRawBufferPointer, keys: TunnelKeys) throws(TunnelError) -> TunnelProbe {
        let magic = TunnelLimits.probeMagic
        let compared = min(raw.count, magic.count)
        for i in 0..<compared where raw[i] != magic[i] { throw .notAProbe }
        guard raw.count >= TunnelLimits.minimumProbeBytes else {
            throw .truncated(what: "probe", needed: TunnelLimits.minimumProbeBytes, got: raw.count)
        }
        guard let kind = Kind(rawValue: raw[3]) else { throw .malformed("probe kind \(raw[3]) is not 1-5") }
        let expectedLength: Int
        if kind.carriesEndpoint {
            let family = raw[TunnelLimits.probeHeaderBytes]
            switch family {
            case 4: expectedLength = TunnelLimits.minimumProbeBytes + TunnelLimits.endpointV4Bytes
            case 6: expectedLength = TunnelLimits.minimumProbeBytes + TunnelLimits.endpointV6Bytes
            default: throw .malformed("probe \(kind) address family \(family) is neither 4 nor 6")
            }
        } else {
            expectedLength = TunnelLimits.minimumProbeBytes
        }
        guard raw.count >= expectedLength else {
            throw .truncated(what: "probe \(kind)", needed: expectedLength, got: raw.count)
        }
        guard raw.count == expectedLength else {
            throw .malformed("probe \(kind) is \(raw.count) bytes, not \(expectedLength)")
        }
        let tag: UInt64 = raw.bigEndian(at: 4)
        guard tag == keys.tag else { throw .foreignProbe(tag: tag) }
        let macStart = expectedLength - TunnelLimits.probeMACBytes
        guard TunnelCrypto.verifyMAC(UnsafeRawBufferPointer(rebasing: raw[macStart...]),
                                     of: UnsafeRawBufferPointer(rebasing: raw[..<macStart]), key: keys.probeKey) else {
            throw .authenticationFailed(.probe)
        }
        guard let role = TunnelRole(rawValue: raw[12]) else { throw .malformed("probe role \(raw[12]) is not 0 or 1") }
        guard role != keys.role else { throw .reflectedProbe }
        let txid: UInt64 = raw.bigEndian(at: 13)
        var observed: PeerEndpoint? = nil
        if kind.carriesEndpoint {
            let at = TunnelLimits.probeHeaderBytes + 1
            if raw[TunnelLimits.probeHeaderBytes] == 4 {
                observed = PeerEndpoint(ip: .v4(raw.bigEndian(at: at)), port: raw.bigEndian(at: at + 4))
            } else {
                observed = PeerEndpoint(ip: .v6(high: raw.bigEndian(at: at), low: raw.bigEndian(at: at + 8)),
                                        port: raw.bigEndian(at: at + 16))
            }
        }
        return TunnelProbe(kind: kind, tag: tag, role: role, txid: txid, observed: observed)
    }
}
