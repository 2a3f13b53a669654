/// A STUN attribute type code (RFC 8489 §14, §18.3; RFC 5780 §7; RFC 3489 §11.2).
///
/// Types below 0x8000 are comprehension-required: a server that meets an unknown one in a request
/// answers 420 with UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1.1).
public struct STUNAttributeType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let mappedAddress = Self(rawValue: 0x0001)  // RFC 8489 §14.1
    public static let responseAddress = Self(rawValue: 0x0002)  // RFC 3489 §11.2.2 (never honoured)
    public static let changeRequest = Self(rawValue: 0x0003)  // RFC 5780 §7.2
    public static let sourceAddress = Self(rawValue: 0x0004)  // RFC 3489 §11.2.5
    public static let changedAddress = Self(rawValue: 0x0005)  // RFC 3489 §11.2.3
    public static let username = Self(rawValue: 0x0006)  // RFC 8489 §14.3
    public static let messageIntegrity = Self(rawValue: 0x0008)  // RFC 8489 §14.5
    public static let errorCode = Self(rawValue: 0x0009)  // RFC 8489 §14.8
    public static let unknownAttributes = Self(rawValue: 0x000A)  // RFC 8489 §14.9
    public static let realm = Self(rawValue: 0x0014)  // RFC 8489 §14.9
    public static let nonce = Self(rawValue: 0x0015)  // RFC 8489 §14.10
    public static let messageIntegritySHA256 = Self(rawValue: 0x001C)  // RFC 8489 §14.6
    public static let xorMappedAddress = Self(rawValue: 0x0020)  // RFC 8489 §14.2
    public static let padding = Self(rawValue: 0x0026)  // RFC 5780 §7.6
    public static let responsePort = Self(rawValue: 0x0027)  // RFC 5780 §7.5
    public static let software = Self(rawValue: 0x8022)  // RFC 8489 §14.14
    public static let alternateServer = Self(rawValue: 0x8023)  // RFC 8489 §14.15
    public static let fingerprint = Self(rawValue: 0x8028)  // RFC 8489 §14.7
    public static let responseOrigin = Self(rawValue: 0x802B)  // RFC 5780 §7.3
    public static let otherAddress = Self(rawValue: 0x802C)  // RFC 5780 §7.4

    /// Types 0x0000-0x7FFF must be understood by the receiver (RFC 8489 §14).
    public var isComprehensionRequired: Bool { rawValue < 0x8000 }

    public var description: String {
        let names: [UInt16: String] = [
            0x0001: "MAPPED-ADDRESS", 0x0002: "RESPONSE-ADDRESS", 0x0003: "CHANGE-REQUEST",
            0x0004: "SOURCE-ADDRESS", 0x0005: "CHANGED-ADDRESS", 0x0006: "USERNAME",
            0x0008: "MESSAGE-INTEGRITY", 0x0009: "ERROR-CODE", 0x000A: "UNKNOWN-ATTRIBUTES",
            0x0014: "REALM", 0x0015: "NONCE", 0x001C: "MESSAGE-INTEGRITY-SHA256",
            0x0020: "XOR-MAPPED-ADDRESS", 0x0026: "PADDING", 0x0027: "RESPONSE-PORT",
            0x8022: "SOFTWARE", 0x8023: "ALTERNATE-SERVER", 0x8028: "FINGERPRINT",
            0x802B: "RESPONSE-ORIGIN", 0x802C: "OTHER-ADDRESS",
        ]
        return names[rawValue] ?? "0x" + String(rawValue, radix: 16).leftPadded(to: 4)
    }
}

/// The flags of CHANGE-REQUEST (RFC 5780 §7.2, RFC 3489 §11.2.4).
public struct STUNChangeRequest: Hashable, Sendable {
    /// Answer from the other IP address of the pair.
    public var changeIP: Bool
    /// Answer from the other port of the pair.
    public var changePort: Bool
    public init(changeIP: Bool = false, changePort: Bool = false) {
        self.changeIP = changeIP
        self.changePort = changePort
    }
    /// Bit 0x4 is change-IP, bit 0x2 change-port; the rest are zero.
    var rawValue: UInt32 { (changeIP ? 0x4 : 0) | (changePort ? 0x2 : 0) }
}

/// One attribute, typed where Peerway understands it (RFC 8489 §14, RFC 5780 §7, RFC 3489 §11.2).
public enum STUNAttribute: Hashable, Sendable {
    /// MAPPED-ADDRESS, the reflexive address in clear (RFC 8489 §14.1).
    case mappedAddress(STUNAddress)
    /// XOR-MAPPED-ADDRESS, the reflexive address XOR-ed with cookie and id (RFC 8489 §14.2).
    case xorMappedAddress(STUNAddress)
    /// USERNAME, UTF-8, under 513 bytes (RFC 8489 §14.3).
    case username(String)
    /// MESSAGE-INTEGRITY: HMAC-SHA1, 20 bytes (RFC 8489 §14.5).
    case messageIntegrity([UInt8])
    /// MESSAGE-INTEGRITY-SHA256: HMAC-SHA256, 16 to 32 bytes in steps of 4 (RFC 8489 §14.6).
    case messageIntegritySHA256([UInt8])
    /// FINGERPRINT: CRC-32 of the message up to it, XOR 0x5354554E (RFC 8489 §14.7).
    case fingerprint(UInt32)
    /// ERROR-CODE (RFC 8489 §14.8).
    case errorCode(STUNErrorCode)
    /// SOFTWARE, a description of the agent (RFC 8489 §14.14).
    case software(String)
    /// UNKNOWN-ATTRIBUTES, the types a 420 answer did not understand (RFC 8489 §14.13).
    case unknownAttributes([UInt16])
    /// CHANGE-REQUEST (RFC 5780 §7.2).
    case changeRequest(STUNChangeRequest)
    /// RESPONSE-ORIGIN: the address the response was sent from (RFC 5780 §7.3).
    case responseOrigin(STUNAddress)
    /// OTHER-ADDRESS: the server's alternate IP and port (RFC 5780 §7.4).
    case otherAddress(STUNAddress)
    /// RESPONSE-PORT: the port the client wants the response on (RFC 5780 §7.5).
    case responsePort(UInt16)
    /// PADDING of the given length in bytes, content ignored (RFC 5780 §7.6).
    case padding(Int)
    /// CHANGED-ADDRESS: the classic OTHER-ADDRESS (RFC 3489 §11.2.3).
    case changedAddress(STUNAddress)
    /// SOURCE-ADDRESS: the classic RESPONSE-ORIGIN (RFC 3489 §11.2.5).
    case sourceAddress(STUNAddress)
    /// RESPONSE-ADDRESS (RFC 3489 §11.2.2). Decoded so it can be recognised; a Peerway server never
    /// sends a response anywhere but to the request's source (it would be a reflection vector).
    case responseAddress(STUNAddress)
    /// Any other attribute, value kept as-is so it round-trips.
    case unknown(type: UInt16, value: [UInt8])

    /// This attribute's type code.
    public var type: STUNAttributeType {
        switch self {
        case .mappedAddress: .mappedAddress
        case .xorMappedAddress: .xorMappedAddress
        case .username: .username
        case .messageIntegrity: .messageIntegrity
        case .messageIntegritySHA256: .messageIntegritySHA256
        case .fingerprint: .fingerprint
        case .errorCode: .errorCode
        case .software: .software
        case .unknownAttributes: .unknownAttributes
        case .changeRequest: .changeRequest
        case .responseOrigin: .responseOrigin
        case .otherAddress: .otherAddress
        case .responsePort: .responsePort
        case .padding: .padding
        case .changedAddress: .changedAddress
        case .sourceAddress: .sourceAddress
        case .responseAddress: .responseAddress
        case .unknown(let t, _): STUNAttributeType(rawValue: t)
        }
    }
}

/// ERROR-CODE contents (RFC 8489 §14.8): a code 300-699 and a UTF-8 reason phrase.
public struct STUNErrorCode: Hashable, Sendable, CustomStringConvertible {
    public var code: Int
    public var reason: String

    public init(code: Int, reason: String) {
        precondition((300...699).contains(code), "STUN error codes are 300-699 (RFC 8489 §14.8)")
        self.code = code
        self.reason = reason
    }

    /// 300 Try Alternate (RFC 8489 §15).
    public static let tryAlternate = STUNErrorCode(code: 300, reason: "Try Alternate")
    /// 400 Bad Request: malformed, or an attribute with a wrong value (RFC 8489 §15).
    public static let badRequest = STUNErrorCode(code: 400, reason: "Bad Request")
    /// 401 Unauthenticated (RFC 8489 §15).
    public static let unauthenticated = STUNErrorCode(code: 401, reason: "Unauthenticated")
    /// 420 Unknown Attribute, with UNKNOWN-ATTRIBUTES (RFC 8489 §15).
    public static let unknownAttribute = STUNErrorCode(code: 420, reason: "Unknown Attribute")
    /// 420 reused by RFC 5780 §6.1 for CHANGE-REQUEST on a server without an alternate address.
    public static let changeRequestUnsupported = STUNErrorCode(code: 420, reason: "CHANGE-REQUEST not supported: no alternate address")
    /// 500 Server Error (RFC 8489 §15).
    public static let serverError = STUNErrorCode(code: 500, reason: "Server Error")

    public var description: String { "\(code) \(reason)" }
}
