import NIOCore
import PeerwaySTUN

/*
 PCP (RFC 6887) wire format for the MAP opcode, all a client needs to open a port. Big-endian;
 client to the server's port 5351 and back. IPv4 addresses travel as IPv4-mapped IPv6
 (::ffff:a.b.c.d, §5); "no preference" for an IPv4 external address is ::ffff:0.0.0.0.

   §7.1 request header    version(1)=2 R(1 bit)=0|opcode(7 bits) reserved(2)
                          requested lifetime(4) client IP address(16)                  24 bytes
   §7.2 response header   version(1)=2 R(1 bit)=1|opcode(7 bits) reserved(1) result(1)
                          lifetime(4) epoch time(4) reserved(12)                        24 bytes
   §11.1 MAP request      nonce(12) protocol(1) reserved(3) internal port(2)
                          suggested external port(2) suggested external IP(16)          36 bytes
   §11.1 MAP response     nonce(12) protocol(1) reserved(3) internal port(2)
                          assigned external port(2) assigned external IP(16)            36 bytes
   §15   deletion: a MAP request with lifetime 0 and the mapping's nonce, protocol and port.
   §7    messages are a multiple of 4 bytes and at most 1100 bytes; options (none sent here)
         follow the opcode's data and are skipped when read.
   §9    a server that speaks only NAT-PMP answers a PCP request with a NAT-PMP header
         (version 0) and result 1 "unsupported version": `PCPDecoded.natPMPOnly`.
*/

/// PCP result codes (RFC 6887 §7.4).
public enum PCPResultCode: UInt8, Hashable, Sendable, CustomStringConvertible {
    case success = 0
    case unsupportedVersion = 1
    case notAuthorized = 2
    case malformedRequest = 3
    case unsupportedOpcode = 4
    case unsupportedOption = 5
    case malformedOption = 6
    case networkFailure = 7
    case noResources = 8
    case unsupportedProtocol = 9
    case userExceededQuota = 10
    case cannotProvideExternal = 11
    case addressMismatch = 12
    case excessiveRemotePeers = 13

    public var description: String {
        switch self {
        case .success: "SUCCESS"
        case .unsupportedVersion: "UNSUPP_VERSION"
        case .notAuthorized: "NOT_AUTHORIZED"
        case .malformedRequest: "MALFORMED_REQUEST"
        case .unsupportedOpcode: "UNSUPP_OPCODE"
        case .unsupportedOption: "UNSUPP_OPTION"
        case .malformedOption: "MALFORMED_OPTION"
        case .networkFailure: "NETWORK_FAILURE"
        case .noResources: "NO_RESOURCES"
        case .unsupportedProtocol: "UNSUPP_PROTOCOL"
        case .userExceededQuota: "USER_EX_QUOTA"
        case .cannotProvideExternal: "CANNOT_PROVIDE_EXTERNAL"
        case .addressMismatch: "ADDRESS_MISMATCH"
        case .excessiveRemotePeers: "EXCESSIVE_REMOTE_PEERS"
        }
    }

    /// Long-lifetime errors (§7.4: the client should not retry soon) versus short ones.
    public var isTransient: Bool {
        switch self {
        case .networkFailure, .noResources, .userExceededQuota, .cannotProvideExternal: true
        default: false
        }
    }
}

/// A PCP MAP request (RFC 6887 §7.1, §11.1).
public struct PCPMapRequest: Hashable, Sendable {
    /// 96 random bits that tie answers (and later renewals and the deletion) to this mapping (§11.1).
    public var nonce: [UInt8]
    public var transport: PortMapTransport
    public var internalPort: UInt16
    public var suggestedExternalPort: UInt16
    /// 0: no preference.
    public var suggestedExternalIP: UInt32
    /// Seconds; 0 deletes the mapping (§15).
    public var lifetimeSeconds: UInt32
    /// This host's address as the server sees it (it answers ADDRESS_MISMATCH otherwise, §8.1).
    public var clientIP: UInt32

    /// PCP's version (RFC 6887 §7.1).
    public static let version: UInt8 = 2
    /// The MAP opcode (RFC 6887 §19.2).
    public static let mapOpcode: UInt8 = 1
    /// The response bit of the opcode byte (RFC 6887 §7.2).
    public static let responseBit: UInt8 = 0x80
    /// Bytes of the common header (§7.1, §7.2).
    public static let headerBytes = 24
    /// Bytes of MAP's opcode-specific data (§11.1).
    public static let mapBytes = 36
    /// Bytes of the nonce (§11.1).
    public static let nonceBytes = 12
    /// Largest PCP message (§7).
    public static let maximumMessageBytes = 1_100

    public init(nonce: [UInt8], transport: PortMapTransport, internalPort: UInt16, suggestedExternalPort: UInt16,
                suggestedExternalIP: UInt32 = 0, lifetimeSeconds: UInt32, clientIP: UInt32) {
        precondition(nonce.count == Self.nonceBytes, "a PCP nonce is 96 bits")
        self.nonce = nonce
        self.transport = transport
        self.internalPort = internalPort
        self.suggestedExternalPort = suggestedExternalPort
        self.suggestedExternalIP = suggestedExternalIP
        self.lifetimeSeconds = lifetimeSeconds
        self.clientIP = clientIP
    }

    /// The request on the wire (60 bytes).
    public var bytes: [UInt8] {
        var b = ByteBuffer()
        b.writePCPMapRequest(self)
        return Array(b.readableBytesView)
    }
}

/// A PCP MAP response (RFC 6887 §7.2, §11.1).
public struct PCPMapResponse: Hashable, Sendable {
    public var result: PCPResultCode
    /// Seconds granted (on success) or how long the error holds (on error, §7.2).
    public var lifetimeSeconds: UInt32
    /// Seconds since the server's state was (re)initialised (§8.5).
    public var epochSeconds: UInt32
    public var nonce: [UInt8]
    public var transport: PortMapTransport?
    public var internalPort: UInt16
    public var externalPort: UInt16
    /// The assigned external address (IPv4; nil when it is not IPv4-mapped).
    public var externalIP: UInt32?

    public init(result: PCPResultCode, lifetimeSeconds: UInt32, epochSeconds: UInt32, nonce: [UInt8], transport: PortMapTransport?,
                internalPort: UInt16, externalPort: UInt16, externalIP: UInt32?) {
        self.result = result
        self.lifetimeSeconds = lifetimeSeconds
        self.epochSeconds = epochSeconds
        self.nonce = nonce
        self.transport = transport
        self.internalPort = internalPort
        self.externalPort = externalPort
        self.externalIP = externalIP
    }

    /// The response on the wire (for tests and fake gateways).
    public var bytes: [UInt8] {
        var b = ByteBuffer()
        b.writeInteger(PCPMapRequest.version)
        b.writeInteger(PCPMapRequest.mapOpcode | PCPMapRequest.responseBit)
        b.writeInteger(UInt8(0))
        b.writeInteger(result.rawValue)
        b.writeInteger(lifetimeSeconds)
        b.writeInteger(epochSeconds)
        b.writeRepeatingByte(0, count: 12)
        b.writeBytes(nonce)
        b.writeInteger(transport?.ianaNumber ?? 0)
        b.writeRepeatingByte(0, count: 3)
        b.writeInteger(internalPort)
        b.writeInteger(externalPort)
        b.writePCPAddress(externalIP ?? 0)
        return Array(b.readableBytesView)
    }
}

/// What a datagram from port 5351 turned out to be, read as an answer to a PCP request.
public enum PCPDecoded: Hashable, Sendable {
    /// A PCP MAP response.
    case map(PCPMapResponse)
    /// A NAT-PMP server's "unsupported version" (RFC 6887 §9): it speaks NAT-PMP, not PCP.
    case natPMPOnly
}

extension ByteBuffer {
    /// Writes an IPv4 address as PCP carries it: IPv4-mapped IPv6 (RFC 6887 §5).
    mutating func writePCPAddress(_ ipv4: UInt32) {
        writeRepeatingByte(0, count: 10)
        writeInteger(UInt16(0xFFFF))
        writeInteger(ipv4)
    }

    /// Reads a 16-byte PCP address: the IPv4 value when IPv4-mapped, nil otherwise.
    mutating func readPCPAddress() -> UInt32?? {
        guard let high: UInt64 = readInteger(), let zero: UInt16 = readInteger(), let ones: UInt16 = readInteger(),
              let ipv4: UInt32 = readInteger() else { return nil }
        return .some(high == 0 && zero == 0 && ones == 0xFFFF ? ipv4 : nil)
    }

    /// Writes a PCP MAP request (RFC 6887 §7.1, §11.1).
    public mutating func writePCPMapRequest(_ r: PCPMapRequest) {
        writeInteger(PCPMapRequest.version)
        writeInteger(PCPMapRequest.mapOpcode)
        writeInteger(UInt16(0))
        writeInteger(r.lifetimeSeconds)
        writePCPAddress(r.clientIP)
        writeBytes(r.nonce)
        writeInteger(r.transport.ianaNumber)
        writeRepeatingByte(0, count: 3)
        writeInteger(r.internalPort)
        writeInteger(r.suggestedExternalPort)
        writePCPAddress(r.suggestedExternalIP)
    }

    /// Reads the answer to a PCP MAP request (RFC 6887 §7.2, §9, §11.1); options after the MAP
    /// data are skipped. Error answers may stop after the header: their MAP fields read as zero.
    public mutating func readPCPResponse() throws(PortMapDecodeError) -> PCPDecoded {
        guard let version: UInt8 = getInteger(at: readerIndex) else { throw PortMapDecodeError("empty PCP response") }
        if version == NATPMPRequest.version {
            let natpmp = try readNATPMPResponse()
            guard natpmp.result == .unsupportedVersion else {
                throw PortMapDecodeError("NAT-PMP answer (\(natpmp.result)) to a PCP request")
            }
            return .natPMPOnly
        }
        guard readableBytes <= PCPMapRequest.maximumMessageBytes else {
            throw PortMapDecodeError("PCP response of \(readableBytes) bytes, more than \(PCPMapRequest.maximumMessageBytes)")
        }
        guard readableBytes >= PCPMapRequest.headerBytes,
              let _: UInt8 = readInteger(), let op: UInt8 = readInteger(), let _: UInt8 = readInteger(), let code: UInt8 = readInteger(),
              let lifetime: UInt32 = readInteger(), let epoch: UInt32 = readInteger(), readSlice(length: 12) != nil
        else { throw PortMapDecodeError("PCP response shorter than its \(PCPMapRequest.headerBytes)-byte header") }
        guard version == PCPMapRequest.version else { throw PortMapDecodeError("PCP response with version \(version), not 2") }
        guard op & PCPMapRequest.responseBit != 0 else { throw PortMapDecodeError("PCP message with R = 0 is a request") }
        guard op & ~PCPMapRequest.responseBit == PCPMapRequest.mapOpcode else {
            throw PortMapDecodeError("PCP response to opcode \(op & ~PCPMapRequest.responseBit), not MAP")
        }
        guard let result = PCPResultCode(rawValue: code) else { throw PortMapDecodeError("PCP result code \(code) is unknown") }
        guard readableBytes >= PCPMapRequest.mapBytes else {
            guard result != .success else { throw PortMapDecodeError("PCP MAP response without its \(PCPMapRequest.mapBytes) bytes of MAP data") }
            return .map(PCPMapResponse(result: result, lifetimeSeconds: lifetime, epochSeconds: epoch, nonce: [], transport: nil,
                                       internalPort: 0, externalPort: 0, externalIP: nil))
        }
        let nonce = readBytes(length: PCPMapRequest.nonceBytes) ?? []
        let protocolNumber: UInt8 = readInteger() ?? 0
        _ = readSlice(length: 3)
        let internalPort: UInt16 = readInteger() ?? 0
        let externalPort: UInt16 = readInteger() ?? 0
        let externalIP = readPCPAddress() ?? nil
        moveReaderIndex(forwardBy: readableBytes)  // options: none is needed
        let transport: PortMapTransport? = protocolNumber == 17 ? .udp : protocolNumber == 6 ? .tcp : nil
        return .map(PCPMapResponse(result: result, lifetimeSeconds: lifetime, epochSeconds: epoch, nonce: nonce, transport: transport,
                                   internalPort: internalPort, externalPort: externalPort, externalIP: externalIP))
    }
}

extension PCPDecoded {
    /// Decodes a datagram from the server's port 5351.
    public init(bytes: some Collection<UInt8>) throws(PortMapDecodeError) {
        var b = ByteBuffer(bytes: Array(bytes))
        self = try b.readPCPResponse()
    }
}
