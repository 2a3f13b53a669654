import NIOCore
import PeerwaySTUN

/*
 NAT-PMP (RFC 6886) wire format. Every message is big-endian; a client sends to the gateway's
 port 5351 and the gateway answers from it.

   §3.2 external address request     version(1)=0 opcode(1)=0                          2 bytes
   §3.2 external address response    version(1)=0 opcode(1)=128 result(2) epoch(4)
                                     external IPv4 address(4)                         12 bytes
   §3.3 mapping request              version(1)=0 opcode(1)=1 UDP | 2 TCP reserved(2)=0
                                     internal port(2) suggested external port(2)
                                     requested lifetime(4, seconds)                   12 bytes
   §3.3 mapping response             version(1)=0 opcode(1)=128+op result(2) epoch(4)
                                     internal port(2) mapped external port(2)
                                     lifetime(4, seconds)                             16 bytes
   §3.4 deletion: a mapping request with lifetime 0 and suggested external port 0.
   §3.5 result codes, below. A PCP server that gets a NAT-PMP request (or a NAT-PMP server a
   PCP one) answers with version 0 and result 1 "unsupported version" (RFC 6887 §9).
*/

/// NAT-PMP result codes (RFC 6886 §3.5).
public enum NATPMPResultCode: UInt16, Hashable, Sendable, CustomStringConvertible {
    case success = 0
    case unsupportedVersion = 1
    /// Not authorized / refused (e.g. the box supports mapping but the user turned it off).
    case notAuthorized = 2
    /// Network failure (e.g. the gateway has no external address yet).
    case networkFailure = 3
    /// Out of resources (cannot create more mappings).
    case outOfResources = 4
    case unsupportedOpcode = 5

    public var description: String {
        switch self {
        case .success: "success"
        case .unsupportedVersion: "unsupported version"
        case .notAuthorized: "not authorized/refused"
        case .networkFailure: "network failure"
        case .outOfResources: "out of resources"
        case .unsupportedOpcode: "unsupported opcode"
        }
    }
}

/// A NAT-PMP request (RFC 6886 §3.2, §3.3).
public enum NATPMPRequest: Hashable, Sendable {
    /// What is the gateway's external address?
    case externalAddress
    /// Map (or, with lifetime 0 and suggested port 0, delete) `internalPort`.
    case map(PortMapTransport, internalPort: UInt16, suggestedExternalPort: UInt16, lifetimeSeconds: UInt32)

    /// The version byte of NAT-PMP (RFC 6886 §3.2).
    public static let version: UInt8 = 0
    /// Opcode of the external address request (RFC 6886 §3.2).
    public static let externalAddressOpcode: UInt8 = 0
    /// Responses carry the request's opcode plus this (RFC 6886 §3.2).
    public static let responseBit: UInt8 = 128

    /// The deletion of the mapping of `internalPort` (RFC 6886 §3.4).
    public static func delete(_ transport: PortMapTransport, internalPort: UInt16) -> NATPMPRequest {
        .map(transport, internalPort: internalPort, suggestedExternalPort: 0, lifetimeSeconds: 0)
    }

    /// The request's opcode.
    public var opcode: UInt8 {
        switch self {
        case .externalAddress: Self.externalAddressOpcode
        case .map(let t, _, _, _): t.natPMPOpcode
        }
    }

    /// The request on the wire.
    public var bytes: [UInt8] {
        var b = ByteBuffer()
        b.writeNATPMPRequest(self)
        return Array(b.readableBytesView)
    }
}

/// A NAT-PMP response (RFC 6886 §3.2, §3.3).
public struct NATPMPResponse: Hashable, Sendable {
    public enum Body: Hashable, Sendable {
        /// The external address response (§3.2): the gateway's public IPv4 address.
        case externalAddress(UInt32)
        /// The mapping response (§3.3).
        case mapping(PortMapTransport, internalPort: UInt16, externalPort: UInt16, lifetimeSeconds: UInt32)
        /// An error answer whose body was left out or is not read (result code is not success).
        case none
    }

    /// The request opcode this answers (without the response bit).
    public var opcode: UInt8
    public var result: NATPMPResultCode
    /// Seconds since the gateway's port mapping table was (re)initialised (§3.6).
    public var epochSeconds: UInt32
    public var body: Body

    public init(opcode: UInt8, result: NATPMPResultCode, epochSeconds: UInt32, body: Body) {
        self.opcode = opcode
        self.result = result
        self.epochSeconds = epochSeconds
        self.body = body
    }

    /// Size of the response header: version, opcode, result, epoch (§3.2).
    public static let headerBytes = 8
    /// Size of an external address response (§3.2).
    public static let externalAddressBytes = 12
    /// Size of a mapping response (§3.3).
    public static let mappingBytes = 16

    /// Decodes a datagram from the gateway's port 5351.
    public init(bytes: some Collection<UInt8>) throws(PortMapDecodeError) {
        var b = ByteBuffer(bytes: Array(bytes))
        self = try b.readNATPMPResponse()
    }

    /// The response on the wire (for tests and fake gateways).
    public var bytes: [UInt8] {
        var b = ByteBuffer()
        b.writeInteger(NATPMPRequest.version)
        b.writeInteger(opcode | NATPMPRequest.responseBit)
        b.writeInteger(result.rawValue)
        b.writeInteger(epochSeconds)
        switch body {
        case .externalAddress(let ip):
            b.writeInteger(ip)
        case .mapping(_, let internalPort, let externalPort, let lifetime):
            b.writeInteger(internalPort)
            b.writeInteger(externalPort)
            b.writeInteger(lifetime)
        case .none:
            break
        }
        return Array(b.readableBytesView)
    }
}

extension ByteBuffer {
    /// Writes a NAT-PMP request (RFC 6886 §3.2, §3.3).
    public mutating func writeNATPMPRequest(_ request: NATPMPRequest) {
        writeInteger(NATPMPRequest.version)
        writeInteger(request.opcode)
        if case .map(_, let internalPort, let suggested, let lifetime) = request {
            writeInteger(UInt16(0))  // reserved
            writeInteger(internalPort)
            writeInteger(suggested)
            writeInteger(lifetime)
        }
    }

    /// Reads a NAT-PMP response (RFC 6886 §3.2-3.5). An unsupported-version answer is read from
    /// its header alone (RFC 6887 §9 servers send only the 8-byte header with result 1).
    public mutating func readNATPMPResponse() throws(PortMapDecodeError) -> NATPMPResponse {
        guard readableBytes >= NATPMPResponse.headerBytes,
              let version: UInt8 = readInteger(), let op: UInt8 = readInteger(),
              let code: UInt16 = readInteger(), let epoch: UInt32 = readInteger()
        else { throw PortMapDecodeError("NAT-PMP response shorter than its \(NATPMPResponse.headerBytes)-byte header") }
        guard version == NATPMPRequest.version else { throw PortMapDecodeError("NAT-PMP response with version \(version), not 0") }
        guard op & NATPMPRequest.responseBit != 0 else { throw PortMapDecodeError("NAT-PMP opcode \(op) is a request, not a response") }
        guard let result = NATPMPResultCode(rawValue: code) else { throw PortMapDecodeError("NAT-PMP result code \(code) is unknown") }
        let opcode = op & ~NATPMPRequest.responseBit
        guard result == .success else { return NATPMPResponse(opcode: opcode, result: result, epochSeconds: epoch, body: .none) }
        switch opcode {
        case NATPMPRequest.externalAddressOpcode:
            guard let ip: UInt32 = readInteger() else {
                throw PortMapDecodeError("NAT-PMP external address response shorter than \(NATPMPResponse.externalAddressBytes) bytes")
            }
            return NATPMPResponse(opcode: opcode, result: result, epochSeconds: epoch, body: .externalAddress(ip))
        case PortMapTransport.udp.natPMPOpcode, PortMapTransport.tcp.natPMPOpcode:
            guard let internalPort: UInt16 = readInteger(), let externalPort: UInt16 = readInteger(),
                  let lifetime: UInt32 = readInteger()
            else { throw PortMapDecodeError("NAT-PMP mapping response shorter than \(NATPMPResponse.mappingBytes) bytes") }
            let transport: PortMapTransport = opcode == PortMapTransport.udp.natPMPOpcode ? .udp : .tcp
            return NATPMPResponse(opcode: opcode, result: result, epochSeconds: epoch,
                                  body: .mapping(transport, internalPort: internalPort, externalPort: externalPort, lifetimeSeconds: lifetime))
        default:
            throw PortMapDecodeError("NAT-PMP response to unknown opcode \(opcode)")
        }
    }
}
