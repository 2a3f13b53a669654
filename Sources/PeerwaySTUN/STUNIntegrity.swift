import Crypto
import NIOCore

/// MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) and MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
///
/// The HMAC covers the message up to the attribute, with the header's length field set as if the
/// integrity attribute were the last one.
public enum STUNIntegrity {
    /// The short-term credential key: the password's UTF-8 bytes (RFC 8489 §9.1.1).
    ///
    /// RFC 8489 asks for the OpaqueString profile (RFC 8265) first; Peerway applies no
    /// normalisation, which is the same for the ASCII passwords ICE and Peerway generate.
    public static func shortTermKey(password: String) -> [UInt8] { Array(password.utf8) }

    /// The long-term credential key for MD5: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
    /// The caller passes the already-prepared (SASLprep/OpaqueString) strings.
    public static func longTermKey(username: String, realm: String, password: String) -> [UInt8] {
        Array(Insecure.MD5.hash(data: Array("\(username):\(realm):\(password)".utf8)))
    }

    static func hmacSHA1(key: [UInt8], over buffer: ByteBuffer, start: Int, lengthIndex: Int, macLength: Int) -> [UInt8] {
        mac(HMAC<Insecure.SHA1>.self, key: key, over: buffer, start: start, lengthIndex: lengthIndex, macLength: macLength)
    }

    static func hmacSHA256(key: [UInt8], over buffer: ByteBuffer, start: Int, lengthIndex: Int, macLength: Int) -> [UInt8] {
        mac(HMAC<SHA256>.self, key: key, over: buffer, start: start, lengthIndex: lengthIndex, macLength: macLength)
    }

    /// HMAC over `buffer[start..<writerIndex]` with the length field patched to include an
    /// attribute of `macLength` bytes after it.
    private static func mac<H: HashFunction>(_: HMAC<H>.Type, key: [UInt8], over buffer: ByteBuffer, start: Int, lengthIndex: Int, macLength: Int) -> [UInt8] {
        var copy = buffer
        copy.moveReaderIndex(to: start)
        let patched = UInt16(copy.readableBytes - STUN.headerSize + STUN.attributeHeaderSize + macLength)
        copy.setInteger(patched, at: lengthIndex)
        var hmac = HMAC<H>(key: SymmetricKey(data: key))
        hmac.update(data: Array(copy.readableBytesView))
        return Array(hmac.finalize()).prefix(macLength).map { $0 }
    }
}

extension ByteBuffer {
    /// Verifies the integrity attribute of the STUN message at the reader index with `key`
    /// (RFC 8489 §9.1.3). MESSAGE-INTEGRITY-SHA256 is checked when present, else MESSAGE-INTEGRITY.
    /// Returns the attribute type that verified; throws `STUNIntegrityError` otherwise.
    /// The comparison takes time independent of where the MACs differ.
    public func verifySTUNIntegrity(key: [UInt8]) throws(STUNIntegrityError) -> STUNAttributeType {
        let total: Int
        do {
            guard let (_, t) = try peekSTUNMessage() else {
                throw STUNIntegrityError.malformed(.lengthMismatch(declared: 0, available: readableBytes))
            }
            total = t
        } catch let e as STUNIntegrityError {
            throw e
        } catch {
            throw .malformed(error as! STUNDecodingError)
        }
        let bytes = Array(readableBytesView.prefix(total))
        // Find the integrity attributes' offsets.
        var offset = STUN.headerSize
        var sha1Offset: Int?
        var sha256Offset: Int?
        while offset + 4 <= bytes.count {
            let type = UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
            let length = Int(UInt16(bytes[offset + 2]) << 8 | UInt16(bytes[offset + 3]))
            if type == STUNAttributeType.messageIntegrity.rawValue, sha1Offset == nil { sha1Offset = offset }
            if type == STUNAttributeType.messageIntegritySHA256.rawValue, sha256Offset == nil { sha256Offset = offset }
            offset += 4 + ((length + 3) & ~3)
        }
        func check<H: HashFunction>(_: H.Type, at attrOffset: Int, type: STUNAttributeType) throws(STUNIntegrityError) -> STUNAttributeType {
            let macLength = Int(UInt16(bytes[attrOffset + 2]) << 8 | UInt16(bytes[attrOffset + 3]))
            let found = bytes[(attrOffset + 4)..<(attrOffset + 4 + macLength)]
            var covered = Array(bytes[0..<attrOffset])
            let patched = UInt16(attrOffset - STUN.headerSize + 4 + macLength)
            covered[2] = UInt8(patched >> 8)
            covered[3] = UInt8(patched & 0xFF)
            let computed = Array(HMAC<H>.authenticationCode(for: covered, using: SymmetricKey(data: key))).prefix(macLength)
            var diff: UInt8 = 0
            for (a, b) in zip(computed, found) { diff |= a ^ b }
            guard diff == 0, computed.count == found.count else { throw .mismatch(type) }
            return type
        }
        if let o = sha256Offset { return try check(SHA256.self, at: o, type: .messageIntegritySHA256) }
        if let o = sha1Offset { return try check(Insecure.SHA1.self, at: o, type: .messageIntegrity) }
        throw .missing
    }
}
