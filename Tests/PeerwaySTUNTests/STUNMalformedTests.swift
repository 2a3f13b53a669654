import NIOCore
import PeerwaySTUN
import Testing

/// Every kind of malformed input maps to one exact `STUNDecodingError`, from both decoders, and a
/// failed stream decode leaves the reader index where it was (`TestSupport.streamError` checks).
@Suite("Malformed input")
struct STUNMalformedTests {
    typealias T = TestSupport

    /// Asserts both decoders reject `bytes` with exactly `error`.
    func expectError(_ bytes: [UInt8], _ error: STUNDecodingError, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(T.datagramError(bytes) == error, sourceLocation: sourceLocation)
        #expect(T.streamError(bytes) == error, sourceLocation: sourceLocation)
        // verifySTUNIntegrity reports the same problem rather than a verdict.
        #expect(throws: STUNIntegrityError.malformed(error), sourceLocation: sourceLocation) {
            try ByteBuffer(bytes: bytes).verifySTUNIntegrity(key: [0])
        }
    }

    /// A message whose body is one attribute.
    func single(_ type: UInt16, _ value: [UInt8]) -> [UInt8] { T.message(body: T.attribute(type, value)) }

    @Test("a top bit in the first byte is notSTUN, from the first byte on", arguments: [0x40, 0x80, 0xC0, 0x7F, 0xFF] as [UInt8])
    func notSTUN(first: UInt8) {
        var bytes = RFC5769.sampleRequest
        bytes[0] = first
        expectError(bytes, .notSTUN(firstByte: first))
        // Decided before a full header has arrived: a stream need not wait to reject it.
        #expect(T.streamError([first]) == .notSTUN(firstByte: first))
        #expect(T.datagramError([first, 0x01]) == .notSTUN(firstByte: first))
        #expect(!STUNMessage.looksLikeSTUN(ByteBuffer(bytes: bytes)))
    }

    @Test("a length that is not a multiple of 4", arguments: [1, 2, 3, 5, 0x57, 0xFFFF])
    func lengthNotMultipleOfFour(length: Int) {
        var bytes = T.message(body: Array(repeating: 0, count: length))
        #expect(Int(bytes[2]) << 8 | Int(bytes[3]) == length)
        expectError(bytes, .lengthNotMultipleOfFour(length))
        // Also rejected when the attribute bytes have not all arrived.
        bytes = Array(bytes.prefix(20))
        #expect(T.streamError(bytes) == .lengthNotMultipleOfFour(length))
    }

    @Test("an attribute value running past the end of the message")
    func attributeOverrun() {
        // SOFTWARE declares 8 bytes, the message holds 4 after its header.
        expectError(T.message(body: [0x80, 0x22, 0x00, 0x08, 0x61, 0x62, 0x63, 0x64]), .attributeOverrun(type: 0x8022, offset: 20))
        // Padding counts: a 5-byte value needs 8 bytes of room.
        expectError(T.message(body: [0x00, 0x06, 0x00, 0x05, 0x61, 0x62, 0x63, 0x64]), .attributeOverrun(type: 0x0006, offset: 20))
        // The second attribute overruns: offset 28.
        expectError(T.message(body: T.attribute(0x0027, [0x13, 0x88, 0, 0]) + [0xC0, 0x01, 0xFF, 0xFF]),
                    .attributeOverrun(type: 0xC001, offset: 28))
    }

    @Test("more attributes than STUNLimits.maximumAttributeCount")
    func tooManyAttributes() throws {
        let limit = STUNLimits.maximumAttributeCount
        let one = T.attribute(0xC0DE, [])
        let atLimit = T.message(body: Array([[UInt8]](repeating: one, count: limit).joined()))
        #expect(try STUNMessage(bytes: atLimit).attributes.count == limit)
        let over = T.message(body: Array([[UInt8]](repeating: one, count: limit + 1).joined()))
        expectError(over, .tooManyAttributes(limit))
    }

    @Test("address attributes: unknown family, wrong length for the family", arguments: [0x0001, 0x0002, 0x0004, 0x0005, 0x0020, 0x802B, 0x802C] as [UInt16])
    func badAddresses(code: UInt16) {
        let type = STUNAttributeType(rawValue: code)
        for family: UInt8 in [0x00, 0x03, 0xFF] {
            expectError(single(code, [0, family, 0x0D, 0x96, 192, 0, 2, 1]), .invalidAddressFamily(type: type, family: family))
        }
        // IPv4 family with an IPv6-sized value and vice versa, and too short for a family at all.
        expectError(single(code, [0, 1, 0x0D, 0x96] + Array(repeating: 0, count: 16)), .invalidAttributeLength(type: type, length: 20))
        expectError(single(code, [0, 2, 0x0D, 0x96, 192, 0, 2, 1]), .invalidAttributeLength(type: type, length: 8))
        expectError(single(code, [0, 1, 0x0D, 0x96, 192, 0, 2]), .invalidAttributeLength(type: type, length: 7))
        expectError(single(code, [0, 1]), .invalidAttributeLength(type: type, length: 2))
        expectError(single(code, []), .invalidAttributeLength(type: type, length: 0))
    }

    @Test("attributes of fixed size with the wrong length")
    func fixedLengths() {
        for length in [0, 16, 19, 21, 32] {
            expectError(single(0x0008, Array(repeating: 0, count: length)), .invalidAttributeLength(type: .messageIntegrity, length: length))
        }
        for length in [0, 3, 5, 8] {
            expectError(single(0x8028, Array(repeating: 0, count: length)), .invalidAttributeLength(type: .fingerprint, length: length))
        }
        for length in [0, 2, 3, 5, 8] {
            expectError(single(0x0003, Array(repeating: 0, count: length)), .invalidAttributeLength(type: .changeRequest, length: length))
        }
        for length in [0, 1, 3, 5, 8] {
            expectError(single(0x0027, Array(repeating: 0, count: length)), .invalidAttributeLength(type: .responsePort, length: length))
        }
        for length in [0, 12, 15, 18, 30, 36] {
            expectError(single(0x001C, Array(repeating: 0, count: length)), .invalidAttributeLength(type: .messageIntegritySHA256, length: length))
        }
        for length in [0, 3] {
            expectError(single(0x0009, Array(repeating: 0, count: length)), .invalidAttributeLength(type: .errorCode, length: length))
        }
        for length in [1, 3, 7] {
            expectError(single(0x000A, Array(repeating: 0, count: length)), .invalidAttributeLength(type: .unknownAttributes, length: length))
        }
    }

    @Test("MESSAGE-INTEGRITY-SHA256 accepts 16 to 32 bytes in steps of 4", arguments: [16, 20, 24, 28, 32])
    func sha256Lengths(length: Int) throws {
        let mac = (0..<length).map { UInt8($0) }
        #expect(try STUNMessage(bytes: single(0x001C, mac)).attributes == [.messageIntegritySHA256(mac)])
    }

    @Test("ERROR-CODE class outside 3-6 or number over 99")
    func invalidErrorCode() throws {
        for (cls, number) in [(0, 0), (1, 0), (2, 99), (7, 0), (4, 100), (3, 255), (6, 100)] as [(UInt8, UInt8)] {
            expectError(single(0x0009, [0, 0, cls, number]), .invalidErrorCode(errorClass: cls, number: number))
        }
        // Reserved bits above the class are ignored, so 0xFA is class 2.
        expectError(single(0x0009, [0, 0, 0xFA, 0]), .invalidErrorCode(errorClass: 2, number: 0))
        #expect(try STUNMessage(bytes: single(0x0009, [0, 0, 3, 0])).errorCode == STUNErrorCode(code: 300, reason: ""))
        #expect(try STUNMessage(bytes: single(0x0009, [0, 0, 6, 99])).errorCode == STUNErrorCode(code: 699, reason: ""))
    }

    @Test("invalid UTF-8 in the text attributes")
    func invalidUTF8() {
        let bad: [[UInt8]] = [[0xFF], [0x61, 0xC3], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0x80]]
        for bytes in bad {
            expectError(single(0x0006, bytes), .invalidUTF8(type: .username))
            expectError(single(0x8022, bytes), .invalidUTF8(type: .software))
            expectError(single(0x0009, [0, 0, 4, 0] + bytes), .invalidUTF8(type: .errorCode))
        }
    }

    @Test("over-long USERNAME, SOFTWARE and reason phrase")
    func textTooLong() throws {
        let limit = STUNLimits.maximumUsernameBytes
        #expect(try STUNMessage(bytes: single(0x0006, Array(repeating: 0x61, count: limit))).attributes
            == [.username(String(repeating: "a", count: limit))])
        expectError(single(0x0006, Array(repeating: 0x61, count: limit + 1)), .textTooLong(type: .username, length: limit + 1))
        let textLimit = STUNLimits.maximumTextBytes
        #expect(throws: Never.self) { try STUNMessage(bytes: single(0x8022, Array(repeating: 0x61, count: textLimit))) }
        expectError(single(0x8022, Array(repeating: 0x61, count: textLimit + 1)), .textTooLong(type: .software, length: textLimit + 1))
        expectError(single(0x0009, [0, 0, 4, 0] + Array(repeating: 0x61, count: textLimit + 1)), .textTooLong(type: .errorCode, length: textLimit + 1))
    }

    @Test("an attribute after FINGERPRINT")
    func attributeAfterFingerprint() {
        // The FINGERPRINT is valid for the final length, so only the ordering is wrong.
        let head = T.message(body: T.attribute(0x8022, Array("abc".utf8)))
        let trailing = T.attribute(0x8022, Array("late".utf8))
        var bytes = T.appendingFingerprint(to: head, finalLength: head.count - 20 + 8 + trailing.count) + trailing
        bytes[3] = UInt8(bytes.count - 20)
        expectError(bytes, .attributeAfterFingerprint(type: 0x8022))
        // A FINGERPRINT followed by a second FINGERPRINT is the same error.
        let again = T.attribute(0x8028, [0, 0, 0, 0])
        bytes = T.appendingFingerprint(to: head, finalLength: head.count - 20 + 16) + again
        bytes[3] = UInt8(bytes.count - 20)
        expectError(bytes, .attributeAfterFingerprint(type: 0x8028))
    }

    @Test("a FINGERPRINT that does not match")
    func fingerprintMismatch() {
        let good = STUNMessage(type: .bindingRequest, transactionID: T.id).encodedBytes(options: STUNEncodingOptions(fingerprint: true))
        let crc = UInt32(good[24]) << 24 | UInt32(good[25]) << 16 | UInt32(good[26]) << 8 | UInt32(good[27])
        var bad = good
        bad[27] ^= 0x80
        expectError(bad, .fingerprintMismatch(expected: crc, found: crc ^ 0x80))
        // A plain CRC-32 without the XOR with "STUN" is rejected too.
        bad = Array(good[0..<24]) + T.be32(crc ^ 0x5354_554E)
        expectError(bad, .fingerprintMismatch(expected: crc, found: crc ^ 0x5354_554E))
    }

    @Test("trailing bytes after the message in a datagram are lengthMismatch")
    func trailingBytes() {
        let message = STUNMessage(type: .bindingRequest, transactionID: T.id, attributes: [.software("x")]).encodedBytes()
        #expect(T.datagramError(message + [0, 0, 0, 0]) == .lengthMismatch(declared: 8, available: 12))
        #expect(T.datagramError(message + message) == .lengthMismatch(declared: 8, available: 36))
        #expect(T.datagramError(message + [0x80]) == .lengthMismatch(declared: 8, available: 9))
        // A length field shorter than the attributes: the message ends early and the rest trails.
        var short = STUNMessage(type: .bindingRequest, transactionID: T.id, attributes: [.software("x"), .software("y")]).encodedBytes()
        short[3] = 8
        #expect(T.datagramError(short) == .lengthMismatch(declared: 8, available: 16))
    }

    @Test("a failed decode in the middle of a stream leaves the reader index at the bad message")
    func readerIndexAfterFailure() throws {
        var bad = RFC5769.ipv4Response
        bad[30] ^= 1
        var buffer = ByteBuffer(bytes: RFC5769.sampleRequest + bad + RFC5769.ipv6Response)
        #expect(try buffer.readSTUNMessage() == STUNMessage(bytes: RFC5769.sampleRequest))
        let before = buffer.readerIndex
        for _ in 0..<2 {
            #expect(throws: STUNDecodingError.self) { try buffer.readSTUNMessage() }
            #expect(buffer.readerIndex == before)
        }
        buffer.moveReaderIndex(forwardBy: bad.count)
        #expect(try buffer.readSTUNMessage() == STUNMessage(bytes: RFC5769.ipv6Response))
    }
}
