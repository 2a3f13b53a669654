import NIOCore

/*
 STUN (RFC 8489) in one page, as Peerway speaks it.

 Every message is a 20-byte header followed by TLV attributes, each padded to 4 bytes:

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |0 0|     STUN Message Type     |         Message Length        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Magic Cookie                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                     Transaction ID (96 bits)                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

 - The message length counts the attributes only, never the header (RFC 8489 §5).
 - A classic RFC 3489 message has no magic cookie: its 128-bit transaction id fills bytes 4-19.
   `STUNTransactionID` keeps all 16 bytes so both forms are echoed exactly.
 - Binding flow: the client sends a Binding request; the server answers from the socket the request
   reached (or, for RFC 5780 CHANGE-REQUEST, from the socket with the other address and/or port)
   with XOR-MAPPED-ADDRESS = the source the request came from. Clients retransmit per RFC 8489 §6.2.1.
*/

/// Protocol constants of RFC 8489 that every module shares.
public enum STUN {
    /// The fixed value in bytes 4-7 of every RFC 5389/8489 message (RFC 8489 §5).
    public static let magicCookie: UInt32 = 0x2112_A442
    /// Size of the fixed message header in bytes (RFC 8489 §5).
    public static let headerSize = 20
    /// Size of an attribute's type + length prefix (RFC 8489 §14).
    public static let attributeHeaderSize = 4
    /// XOR value applied to the CRC-32 in FINGERPRINT (RFC 8489 §14.7): "STUN" in ASCII.
    public static let fingerprintXOR: UInt32 = 0x5354_554E
    /// The default STUN port for UDP and TCP (RFC 8489 §18.6).
    public static let defaultPort: UInt16 = 3478
    /// Largest message the decoder accepts: the 16-bit length field's maximum plus the header.
    /// Datagram services apply the tighter `STUNLimits.maximumDatagramSize` first.
    public static let maximumMessageSize = headerSize + Int(UInt16.max)
}

/// Named bounds on what the codec accepts, so a hostile message costs bounded work.
public enum STUNLimits {
    /// At most this many attributes are parsed from one message; more is `tooManyAttributes`.
    public static let maximumAttributeCount = 64
    /// USERNAME must be under 513 bytes (RFC 8489 §14.3).
    public static let maximumUsernameBytes = 512
    /// SOFTWARE, REALM and an ERROR-CODE reason are under 128 characters, at most 763 bytes
    /// (RFC 8489 §14.9, §14.8, §14.14).
    public static let maximumTextBytes = 763
    /// Largest datagram a STUN service reads: bigger ones are dropped before decoding. Above one
    /// Ethernet MTU on purpose: RFC 5780 §7.6 PADDING exists to make requests that fragment
    /// (coturn's turnutils_stunclient sends a 1532-byte one).
    public static let maximumDatagramSize = 4096
}

/// The class of a message (RFC 8489 §5): two bits spread over the message type.
public enum STUNClass: UInt8, Sendable, Hashable, CaseIterable {
    case request = 0b00
    case indication = 0b01
    case successResponse = 0b10
    case errorResponse = 0b11
}

/// A STUN method (RFC 8489 §18.2): 12 bits. Peerway uses Binding; others round-trip untouched.
public struct STUNMethod: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue & 0x0FFF }
    /// Binding (0x001), the only method of plain STUN (RFC 8489 §18.2).
    public static let binding = STUNMethod(rawValue: 0x001)
    public var description: String { self == .binding ? "Binding" : "method 0x\(String(rawValue, radix: 16))" }
}

/// The 14-bit message type: method and class interleaved (RFC 8489 §5, figure 3).
public struct STUNMessageType: Hashable, Sendable, CustomStringConvertible {
    public var method: STUNMethod
    public var messageClass: STUNClass

    public init(method: STUNMethod, class messageClass: STUNClass) {
        self.method = method
        self.messageClass = messageClass
    }

    public static let bindingRequest = STUNMessageType(method: .binding, class: .request)
    public static let bindingSuccess = STUNMessageType(method: .binding, class: .successResponse)
    public static let bindingError = STUNMessageType(method: .binding, class: .errorResponse)
    public static let bindingIndication = STUNMessageType(method: .binding, class: .indication)

    /// The 16-bit wire value (top two bits zero).
    public var rawValue: UInt16 {
        let m = method.rawValue
        let c = UInt16(messageClass.rawValue)
        return (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2)
            | ((c & 0b01) << 4) | ((c & 0b10) << 7)
    }

    /// Decodes a wire value; `nil` when either of the top two bits is set (not STUN).
    public init?(rawValue: UInt16) {
        guard rawValue & 0xC000 == 0 else { return nil }
        let m = (rawValue & 0x000F) | ((rawValue & 0x00E0) >> 1) | ((rawValue & 0x3E00) >> 2)
        let c = ((rawValue & 0x0010) >> 4) | ((rawValue & 0x0100) >> 7)
        self.method = STUNMethod(rawValue: m)
        self.messageClass = STUNClass(rawValue: UInt8(c))!
    }

    public var description: String { "\(method) \(messageClass)" }
}

/// The 16 bytes after the type and length: magic cookie plus 96-bit id (RFC 8489), or the whole
/// 128-bit id of a classic RFC 3489 message. Responses echo all 16 bytes.
public struct STUNTransactionID: Hashable, Sendable, CustomStringConvertible {
    /// Header bytes 4-11 (the cookie in the top 32 bits for RFC 8489 messages).
    public var high: UInt64
    /// Header bytes 12-19.
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A fresh random RFC 8489 transaction id (cookie + 96 random bits, RFC 8489 §6).
    public static func random() -> STUNTransactionID {
        var g = SystemRandomNumberGenerator()
        return random(using: &g)
    }

    /// A fresh random id drawn from `generator` (deterministic tests pass a seeded one).
    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> STUNTransactionID {
        STUNTransactionID(
            high: UInt64(STUN.magicCookie) << 32 | UInt64(UInt32.random(in: .min ... .max, using: &generator)),
            low: UInt64.random(in: .min ... .max, using: &generator)
        )
    }

    /// A random classic RFC 3489 id, guaranteed not to start with the magic cookie.
    public static func randomClassic() -> STUNTransactionID {
        var id: STUNTransactionID
        repeat {
            id = STUNTransactionID(high: UInt64.random(in: .min ... .max), low: UInt64.random(in: .min ... .max))
        } while id.hasMagicCookie
        return id
    }

    /// Builds an id from the 12 bytes after the magic cookie.
    public init<Bytes: Collection>(cookieAnd96Bits bytes: Bytes) where Bytes.Element == UInt8 {
        precondition(bytes.count == 12, "an RFC 8489 transaction id is 12 bytes")
        var hi = UInt64(STUN.magicCookie) << 32
        var lo: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 4 { hi |= UInt64(b) << (8 * (3 - i)) } else { lo |= UInt64(b) << (8 * (11 - i)) }
        }
        self.init(high: hi, low: lo)
    }

    /// Whether bytes 4-7 hold the RFC 8489 magic cookie (otherwise: a classic RFC 3489 message).
    public var hasMagicCookie: Bool { UInt32(truncatingIfNeeded: high >> 32) == STUN.magicCookie }

    /// All 16 bytes, cookie included, in wire order.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    public var description: String { bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined() }
}

/// A decoded or to-be-encoded STUN message (RFC 8489 §5, RFC 3489 §11.1).
public struct STUNMessage: Hashable, Sendable {
    public var type: STUNMessageType
    public var transactionID: STUNTransactionID
    /// Attributes in wire order. MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT decoded from the wire
    /// appear here; the encoder computes fresh ones when asked (`STUNEncodingOptions`).
    public var attributes: [STUNAttribute]

    public init(type: STUNMessageType, transactionID: STUNTransactionID = .random(), attributes: [STUNAttribute] = []) {
        self.type = type
        self.transactionID = transactionID
        self.attributes = attributes
    }

    /// True for a classic RFC 3489 message (no magic cookie).
    public var isClassic: Bool { !transactionID.hasMagicCookie }

    /// The first attribute of the given type, if any.
    public func attribute(_ type: STUNAttributeType) -> STUNAttribute? {
        attributes.first { $0.type == type }
    }

    /// The reflexive address: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (classic servers).
    public var mappedAddress: STUNAddress? {
        var plain: STUNAddress?
        for a in attributes {
            switch a {
            case .xorMappedAddress(let x): return x
            case .mappedAddress(let m): if plain == nil { plain = m }
            default: continue
            }
        }
        return plain
    }

    /// OTHER-ADDRESS (RFC 5780 §7.4), else the classic CHANGED-ADDRESS (RFC 3489 §11.2.3).
    public var otherAddress: STUNAddress? {
        var classic: STUNAddress?
        for a in attributes {
            switch a {
            case .otherAddress(let x): return x
            case .changedAddress(let c): if classic == nil { classic = c }
            default: continue
            }
        }
        return classic
    }

    /// RESPONSE-ORIGIN (RFC 5780 §7.3), else the classic SOURCE-ADDRESS (RFC 3489 §11.2.5).
    public var responseOrigin: STUNAddress? {
        var classic: STUNAddress?
        for a in attributes {
            switch a {
            case .responseOrigin(let x): return x
            case .sourceAddress(let s): if classic == nil { classic = s }
            default: continue
            }
        }
        return classic
    }

    /// The CHANGE-REQUEST flags (RFC 5780 §7.2), both false when absent.
    public var changeRequest: STUNChangeRequest {
        for case .changeRequest(let c) in attributes { return c }
        return STUNChangeRequest()
    }

    /// The ERROR-CODE, when present.
    public var errorCode: STUNErrorCode? {
        for case .errorCode(let e) in attributes { return e }
        return nil
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
