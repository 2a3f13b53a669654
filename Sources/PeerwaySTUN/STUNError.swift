/// Why bytes could not be decoded as a STUN message. Every malformed input maps to one case, and a
/// failed decode never moves the buffer's reader index.
public enum STUNDecodingError: Error, Hashable, Sendable, CustomStringConvertible {
    /// One of the top two bits of the first byte is set: not a STUN message (RFC 8489 §5).
    case notSTUN(firstByte: UInt8)
    /// The message length is not a multiple of 4 (RFC 8489 §5).
    case lengthNotMultipleOfFour(Int)
    /// The datagram holds more or fewer bytes than the header's length field says.
    case lengthMismatch(declared: Int, available: Int)
    /// An attribute header or value runs past the end of the message.
    case attributeOverrun(type: UInt16, offset: Int)
    /// More attributes than `STUNLimits.maximumAttributeCount`.
    case tooManyAttributes(Int)
    /// A known attribute has a length its definition does not allow.
    case invalidAttributeLength(type: STUNAttributeType, length: Int)
    /// An address attribute has a family other than 0x01 (IPv4) or 0x02 (IPv6).
    case invalidAddressFamily(type: STUNAttributeType, family: UInt8)
    /// ERROR-CODE class not 3-6 or number not 0-99 (RFC 8489 §14.8).
    case invalidErrorCode(errorClass: UInt8, number: UInt8)
    /// A text attribute is not valid UTF-8.
    case invalidUTF8(type: STUNAttributeType)
    /// A text attribute exceeds its limit (`STUNLimits`).
    case textTooLong(type: STUNAttributeType, length: Int)
    /// An attribute follows FINGERPRINT, which must be last (RFC 8489 §14.7).
    case attributeAfterFingerprint(type: UInt16)
    /// FINGERPRINT does not match the CRC-32 of the message (RFC 8489 §14.7): corrupted, or not STUN.
    case fingerprintMismatch(expected: UInt32, found: UInt32)

    public var description: String {
        switch self {
        case .notSTUN(let b):
            return "not a STUN message: first byte 0x\(String(b, radix: 16)) has a top bit set"
        case .lengthNotMultipleOfFour(let l):
            return "STUN message length \(l) is not a multiple of 4"
        case .lengthMismatch(let d, let a):
            return "STUN header declares \(d) attribute bytes but \(a) are present"
        case .attributeOverrun(let t, let o):
            return "STUN attribute 0x\(String(t, radix: 16)) at offset \(o) runs past the end of the message"
        case .tooManyAttributes(let n):
            return "STUN message has more than \(n) attributes"
        case .invalidAttributeLength(let t, let l):
            return "STUN attribute \(t) has invalid length \(l)"
        case .invalidAddressFamily(let t, let f):
            return "STUN attribute \(t) has unknown address family 0x\(String(f, radix: 16))"
        case .invalidErrorCode(let c, let n):
            return "STUN ERROR-CODE has class \(c) and number \(n); expected class 3-6, number 0-99"
        case .invalidUTF8(let t):
            return "STUN attribute \(t) is not valid UTF-8"
        case .textTooLong(let t, let l):
            return "STUN attribute \(t) is \(l) bytes, over its limit"
        case .attributeAfterFingerprint(let t):
            return "STUN attribute 0x\(String(t, radix: 16)) follows FINGERPRINT, which must be last"
        case .fingerprintMismatch(let e, let f):
            return "STUN FINGERPRINT mismatch: computed 0x\(String(e, radix: 16)), message has 0x\(String(f, radix: 16))"
        }
    }
}

/// Why MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 did not verify.
public enum STUNIntegrityError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The message carries neither integrity attribute.
    case missing
    /// The HMAC does not match: wrong key, or the message was altered (answer 401, RFC 8489 §9.1.3).
    case mismatch(STUNAttributeType)
    /// The bytes are not a well-formed message; see the underlying decoding error.
    case malformed(STUNDecodingError)

    public var description: String {
        switch self {
        case .missing: return "STUN message has no MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256"
        case .mismatch(let t): return "STUN \(t) does not match: wrong key or altered message"
        case .malformed(let e): return "cannot check integrity: \(e)"
        }
    }
}
