import NIOCore

/// What the encoder appends after a message's own attributes, in RFC 8489 order:
/// MESSAGE-INTEGRITY, then MESSAGE-INTEGRITY-SHA256, then FINGERPRINT (RFC 8489 §14.5-14.7).
public struct STUNEncodingOptions: Sendable {
    /// Key for MESSAGE-INTEGRITY (HMAC-SHA1), when it should be added.
    public var messageIntegrityKey: [UInt8]?
    /// Key for MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256, full 32 bytes), when it should be added.
    public var messageIntegritySHA256Key: [UInt8]?
    /// Whether to append FINGERPRINT.
    public var fingerprint: Bool

    public init(messageIntegrityKey: [UInt8]? = nil, messageIntegritySHA256Key: [UInt8]? = nil, fingerprint: Bool = false) {
        self.messageIntegrityKey = messageIntegrityKey
        self.messageIntegritySHA256Key = messageIntegritySHA256Key
        self.fingerprint = fingerprint
    }

    /// No integrity, no fingerprint: the message exactly as given.
    public static let plain = STUNEncodingOptions()
}

extension ByteBuffer {
    /// Writes `message` (RFC 8489 §5) followed by what `options` asks for; returns the bytes written.
    ///
    /// Precondition: every attribute, and the whole attribute section, fits the 16-bit length
    /// fields (65,535 bytes). A decoded message always does; a message built by hand must.
    ///
    /// Attributes are written in order, each padded with zeros to a multiple of 4. A message built
    /// from a decoded one re-encodes to the same bytes, except for the padding content and any
    /// attributes the decoder ignored after MESSAGE-INTEGRITY.
    @discardableResult
    public mutating func writeSTUNMessage(_ message: STUNMessage, options: STUNEncodingOptions = .plain) -> Int {
        let start = writerIndex
        writeInteger(message.type.rawValue)
        let lengthIndex = writerIndex
        writeInteger(UInt16(0))
        writeInteger(message.transactionID.high)
        writeInteger(message.transactionID.low)
        for attribute in message.attributes {
            writeSTUNAttribute(attribute, transactionID: message.transactionID)
        }
        if let key = options.messageIntegrityKey {
            let mac = STUNIntegrity.hmacSHA1(key: key, over: self, start: start, lengthIndex: lengthIndex, macLength: 20)
            writeAttributeHeader(.messageIntegrity, length: mac.count)
            writeBytes(mac)
        }
        if let key = options.messageIntegritySHA256Key {
            let mac = STUNIntegrity.hmacSHA256(key: key, over: self, start: start, lengthIndex: lengthIndex, macLength: 32)
            writeAttributeHeader(.messageIntegritySHA256, length: mac.count)
            writeBytes(mac)
        }
        if options.fingerprint {
            setInteger(UInt16(writerIndex - start - STUN.headerSize + 8), at: lengthIndex)
            let crc = withUnsafeReadableBytes { raw in
                STUNCRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[(start - readerIndex)..<(writerIndex - readerIndex)]))
            }
            writeAttributeHeader(.fingerprint, length: 4)
            writeInteger(crc ^ STUN.fingerprintXOR)
        }
        let bodyLength = writerIndex - start - STUN.headerSize
        precondition(bodyLength <= Int(UInt16.max), "STUN message body of \(bodyLength) bytes exceeds the 16-bit length field (RFC 8489 §5)")
        setInteger(UInt16(bodyLength), at: lengthIndex)
        return writerIndex - start
    }

    mutating func writeAttributeHeader(_ type: STUNAttributeType, length: Int) {
        precondition(length <= Int(UInt16.max), "STUN attribute \(type) of \(length) bytes exceeds the 16-bit length field (RFC 8489 §14)")
        writeInteger(type.rawValue)
        writeInteger(UInt16(length))
    }

    mutating func writeSTUNAttribute(_ attribute: STUNAttribute, transactionID: STUNTransactionID) {
        let type = attribute.type
        switch attribute {
        case .mappedAddress(let a), .responseOrigin(let a), .otherAddress(let a), .changedAddress(let a),
            .sourceAddress(let a), .responseAddress(let a):
            writeAddressAttribute(type, a, xor: nil)
        case .xorMappedAddress(let a):
            writeAddressAttribute(type, a, xor: transactionID)
        case .username(let s), .software(let s):
            writePadded(type, Array(s.utf8))
        case .messageIntegrity(let b), .messageIntegritySHA256(let b):
            writePadded(type, b)
        case .fingerprint(let v):
            writeAttributeHeader(type, length: 4)
            writeInteger(v)
        case .errorCode(let e):
            let reason = Array(e.reason.utf8)
            writeAttributeHeader(type, length: 4 + reason.count)
            writeInteger(UInt16(0))
            writeInteger(UInt8(e.code / 100))
            writeInteger(UInt8(e.code % 100))
            writeBytes(reason)
            writeZeros(padding(for: reason.count))
        case .unknownAttributes(let types):
            writeAttributeHeader(type, length: types.count * 2)
            for t in types { writeInteger(t) }
            writeZeros(padding(for: types.count * 2))
        case .changeRequest(let c):
            writeAttributeHeader(type, length: 4)
            writeInteger(c.rawValue)
        case .responsePort(let p):
            writeAttributeHeader(type, length: 4)
            writeInteger(p)
            writeInteger(UInt16(0))
        case .padding(let n):
            writeAttributeHeader(type, length: n)
            writeZeros(n + padding(for: n))
        case .unknown(_, let value):
            writePadded(type, value)
        }
    }

    private mutating func writePadded(_ type: STUNAttributeType, _ bytes: [UInt8]) {
        writeAttributeHeader(type, length: bytes.count)
        writeBytes(bytes)
        writeZeros(padding(for: bytes.count))
    }

    private mutating func writeZeros(_ n: Int) {
        if n > 0 { writeRepeatingByte(0, count: n) }
    }

    private func padding(for length: Int) -> Int { (4 - length % 4) % 4 }

    private mutating func writeAddressAttribute(_ type: STUNAttributeType, _ address: STUNAddress, xor id: STUNTransactionID?) {
        writeAttributeHeader(type, length: 4 + address.addressLength)
        writeInteger(UInt8(0))
        writeInteger(address.family.rawValue)
        let portMask = id.map { UInt16(truncatingIfNeeded: $0.high >> 48) } ?? 0
        writeInteger(address.port ^ portMask)
        switch address.ip {
        case .v4(let a):
            writeInteger(a ^ (id.map { UInt32(truncatingIfNeeded: $0.high >> 32) } ?? 0))
        case .v6(let hi, let lo):
            writeInteger(hi ^ (id?.high ?? 0))
            writeInteger(lo ^ (id?.low ?? 0))
        }
    }
}

extension STUNMessage {
    /// The wire bytes of this message with what `options` asks for appended.
    public func encoded(options: STUNEncodingOptions = .plain) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(STUN.headerSize + attributes.count * 24 + 64)
        buffer.writeSTUNMessage(self, options: options)
        return buffer
    }

    /// The wire bytes as an array (tests, fuzzing, logging).
    public func encodedBytes(options: STUNEncodingOptions = .plain) -> [UInt8] {
        Array(encoded(options: options).readableBytesView)
    }
}
