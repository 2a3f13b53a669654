import NIOCore

extension ByteBuffer {
    /// Reads one STUN message (RFC 8489 §5, or classic RFC 3489) from the readable bytes.
    ///
    /// Stream semantics, as for STUN over TCP: returns `nil` without moving the reader index when
    /// fewer bytes than the header announces are readable; throws `STUNDecodingError` on malformed
    /// input, again without moving the reader index. On success the reader index moves past the
    /// message. The FINGERPRINT, when present, is checked; MESSAGE-INTEGRITY needs the key and is
    /// checked separately (`verifySTUNIntegrity(key:)`).
    public mutating func readSTUNMessage() throws(STUNDecodingError) -> STUNMessage? {
        guard let (message, length) = try peekSTUNMessage() else { return nil }
        moveReaderIndex(forwardBy: length)
        return message
    }

    /// Decodes the message at the reader index without moving it; returns it with its total size.
    func peekSTUNMessage() throws(STUNDecodingError) -> (STUNMessage, Int)? {
        if let first = getInteger(at: readerIndex, as: UInt8.self), first & 0xC0 != 0 {
            throw .notSTUN(firstByte: first)
        }
        guard readableBytes >= STUN.headerSize,
            let rawType = getInteger(at: readerIndex, as: UInt16.self),
            let length = getInteger(at: readerIndex + 2, as: UInt16.self),
            let high = getInteger(at: readerIndex + 4, as: UInt64.self),
            let low = getInteger(at: readerIndex + 12, as: UInt64.self)
        else { return nil }
        guard let type = STUNMessageType(rawValue: rawType) else {
            throw .notSTUN(firstByte: UInt8(rawType >> 8))
        }
        guard length % 4 == 0 else { throw .lengthNotMultipleOfFour(Int(length)) }
        let total = STUN.headerSize + Int(length)
        guard readableBytes >= total else { return nil }
        let id = STUNTransactionID(high: high, low: low)
        let attributes = try withUnsafeReadableBytes { raw throws(STUNDecodingError) in
            try STUNAttributeDecoder.decodeAll(UnsafeRawBufferPointer(rebasing: raw[0..<total]), transactionID: id)
        }
        return (STUNMessage(type: type, transactionID: id, attributes: attributes), total)
    }
}

extension STUNMessage {
    /// Decodes one whole datagram: exactly one message, no bytes missing and none left over.
    ///
    /// Use this on UDP, where a short or over-long datagram is malformed rather than incomplete.
    public init(datagram: ByteBuffer) throws(STUNDecodingError) {
        var buffer = datagram
        guard let message = try buffer.readSTUNMessage() else {
            let declared = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self).map(Int.init) ?? 0
            throw .lengthMismatch(declared: declared, available: max(0, datagram.readableBytes - STUN.headerSize))
        }
        guard buffer.readableBytes == 0 else {
            throw .lengthMismatch(
                declared: datagram.readableBytes - STUN.headerSize - buffer.readableBytes,
                available: datagram.readableBytes - STUN.headerSize)
        }
        self = message
    }

    /// Decodes one whole datagram from a byte array (see `init(datagram:)`).
    public init(bytes: [UInt8]) throws(STUNDecodingError) {
        try self.init(datagram: ByteBuffer(bytes: bytes))
    }

    /// Cheap pre-check for demultiplexing (RFC 8489 §7 / RFC 7983): could these bytes be STUN?
    /// True when the top two bits are zero, the length fits and is a multiple of 4.
    public static func looksLikeSTUN(_ datagram: ByteBuffer) -> Bool {
        guard datagram.readableBytes >= STUN.headerSize,
            let first = datagram.getInteger(at: datagram.readerIndex, as: UInt8.self), first & 0xC0 == 0,
            let length = datagram.getInteger(at: datagram.readerIndex + 2, as: UInt16.self)
        else { return false }
        return length % 4 == 0 && Int(length) + STUN.headerSize == datagram.readableBytes
    }
}

/// Decodes the attribute section of a message held in one contiguous region.
enum STUNAttributeDecoder {
    static func decodeAll(_ message: UnsafeRawBufferPointer, transactionID: STUNTransactionID) throws(STUNDecodingError) -> [STUNAttribute] {
        var attributes: [STUNAttribute] = []
        var offset = STUN.headerSize
        var afterIntegrity = false
        var afterSHA256 = false
        var seenFingerprint = false
        var count = 0
        while offset < message.count {
            guard offset + STUN.attributeHeaderSize <= message.count else {
                throw .attributeOverrun(type: readU16(message, offset), offset: offset)
            }
            let type = readU16(message, offset)
            let length = Int(readU16(message, offset + 2))
            let valueStart = offset + STUN.attributeHeaderSize
            let padded = (length + 3) & ~3
            guard valueStart + padded <= message.count else { throw .attributeOverrun(type: type, offset: offset) }
            if seenFingerprint { throw .attributeAfterFingerprint(type: type) }
            count += 1
            guard count <= STUNLimits.maximumAttributeCount else { throw .tooManyAttributes(STUNLimits.maximumAttributeCount) }
            let value = UnsafeRawBufferPointer(rebasing: message[valueStart..<(valueStart + length)])
            let attrType = STUNAttributeType(rawValue: type)
            switch attrType {
            case .fingerprint:
                let attribute = try decode(attrType, value, transactionID: transactionID)
                guard case .fingerprint(let found) = attribute else { break }
                let expected = STUNCRC32.checksum(UnsafeRawBufferPointer(rebasing: message[0..<offset])) ^ STUN.fingerprintXOR
                guard expected == found else { throw .fingerprintMismatch(expected: expected, found: found) }
                seenFingerprint = true
                attributes.append(attribute)
            case .messageIntegrity, .messageIntegritySHA256:
                // RFC 8489 §14.5-14.6: after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and
                // FINGERPRINT count; after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT.
                let attribute = try decode(attrType, value, transactionID: transactionID)
                if !afterSHA256 && !(afterIntegrity && attrType == .messageIntegrity) { attributes.append(attribute) }
                afterIntegrity = true
                if attrType == .messageIntegritySHA256 { afterSHA256 = true }
            default:
                // RFC 8489 §14.5: attributes after MESSAGE-INTEGRITY are ignored, except
                // MESSAGE-INTEGRITY-SHA256 and FINGERPRINT.
                let attribute = try decode(attrType, value, transactionID: transactionID)
                if !afterIntegrity { attributes.append(attribute) }
            }
            offset = valueStart + padded
        }
        return attributes
    }

    @inline(__always)
    static func readU16(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        guard offset + 2 <= p.count else { return offset < p.count ? UInt16(p[offset]) << 8 : 0 }
        return UInt16(p[offset]) << 8 | UInt16(p[offset + 1])
    }

    @inline(__always)
    static func readU32(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(readU16(p, offset)) << 16 | UInt32(readU16(p, offset + 2))
    }

    static func decode(_ type: STUNAttributeType, _ value: UnsafeRawBufferPointer, transactionID: STUNTransactionID) throws(STUNDecodingError) -> STUNAttribute {
        switch type {
        case .mappedAddress: return .mappedAddress(try address(type, value, xor: nil))
        case .xorMappedAddress: return .xorMappedAddress(try address(type, value, xor: transactionID))
        case .responseOrigin: return .responseOrigin(try address(type, value, xor: nil))
        case .otherAddress: return .otherAddress(try address(type, value, xor: nil))
        case .changedAddress: return .changedAddress(try address(type, value, xor: nil))
        case .sourceAddress: return .sourceAddress(try address(type, value, xor: nil))
        case .responseAddress: return .responseAddress(try address(type, value, xor: nil))
        case .username: return .username(try text(type, value, limit: STUNLimits.maximumUsernameBytes))
        case .software: return .software(try text(type, value, limit: STUNLimits.maximumTextBytes))
        case .messageIntegrity:
            guard value.count == 20 else { throw .invalidAttributeLength(type: type, length: value.count) }
            return .messageIntegrity(Array(value))
        case .messageIntegritySHA256:
            guard (16...32).contains(value.count), value.count % 4 == 0 else {
                throw .invalidAttributeLength(type: type, length: value.count)
            }
            return .messageIntegritySHA256(Array(value))
        case .fingerprint:
            guard value.count == 4 else { throw .invalidAttributeLength(type: type, length: value.count) }
            return .fingerprint(readU32(value, 0))
        case .errorCode:
            guard value.count >= 4 else { throw .invalidAttributeLength(type: type, length: value.count) }
            let errorClass = value[2] & 0x07
            let number = value[3]
            guard (3...6).contains(errorClass), number < 100 else {
                throw .invalidErrorCode(errorClass: errorClass, number: number)
            }
            let reason = try text(type, UnsafeRawBufferPointer(rebasing: value[4...]), limit: STUNLimits.maximumTextBytes)
            return .errorCode(STUNErrorCode(code: Int(errorClass) * 100 + Int(number), reason: reason))
        case .unknownAttributes:
            guard value.count % 2 == 0 else { throw .invalidAttributeLength(type: type, length: value.count) }
            return .unknownAttributes(stride(from: 0, to: value.count, by: 2).map { readU16(value, $0) })
        case .changeRequest:
            guard value.count == 4 else { throw .invalidAttributeLength(type: type, length: value.count) }
            let flags = readU32(value, 0)
            return .changeRequest(STUNChangeRequest(changeIP: flags & 0x4 != 0, changePort: flags & 0x2 != 0))
        case .responsePort:
            guard value.count == 2 || value.count == 4 else {
                throw .invalidAttributeLength(type: type, length: value.count)
            }
            return .responsePort(readU16(value, 0))
        case .padding:
            return .padding(value.count)
        default:
            return .unknown(type: type.rawValue, value: Array(value))
        }
    }

    static func address(_ type: STUNAttributeType, _ value: UnsafeRawBufferPointer, xor id: STUNTransactionID?) throws(STUNDecodingError) -> STUNAddress {
        guard value.count >= 4 else { throw .invalidAttributeLength(type: type, length: value.count) }
        let familyByte = value[1]
        guard let family = STUNAddress.Family(rawValue: familyByte) else {
            throw .invalidAddressFamily(type: type, family: familyByte)
        }
        let expected = family == .ipv4 ? 8 : 20
        guard value.count == expected else { throw .invalidAttributeLength(type: type, length: value.count) }
        var port = readU16(value, 2)
        if let id { port ^= UInt16(truncatingIfNeeded: id.high >> 48) }
        switch family {
        case .ipv4:
            var ip = readU32(value, 4)
            if let id { ip ^= UInt32(truncatingIfNeeded: id.high >> 32) }
            return STUNAddress(ip: .v4(ip), port: port)
        case .ipv6:
            var hi = UInt64(readU32(value, 4)) << 32 | UInt64(readU32(value, 8))
            var lo = UInt64(readU32(value, 12)) << 32 | UInt64(readU32(value, 16))
            if let id {
                hi ^= id.high
                lo ^= id.low
            }
            return STUNAddress(ip: .v6(high: hi, low: lo), port: port)
        }
    }

    static func text(_ type: STUNAttributeType, _ value: UnsafeRawBufferPointer, limit: Int) throws(STUNDecodingError) -> String {
        guard value.count <= limit else { throw .textTooLong(type: type, length: value.count) }
        guard let s = String(validating: value, as: UTF8.self) else { throw .invalidUTF8(type: type) }
        return s
    }
}
