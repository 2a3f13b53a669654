import NIOCore
@testable import PeerwaySTUN
import Testing

/// Hand-written expected wire bytes for the encoder, and the decoder reading them back.
@Suite("Golden bytes")
struct STUNGoldenBytesTests {
    let id = TestSupport.id
    let header: [UInt8] = [0x21, 0x12, 0xA4, 0x42, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C]

    /// Encodes a message of one attribute and returns only the attribute's bytes.
    func attributeBytes(_ attribute: STUNAttribute, id: STUNTransactionID = TestSupport.id) -> [UInt8] {
        Array(STUNMessage(type: .bindingRequest, transactionID: id, attributes: [attribute]).encodedBytes().dropFirst(20))
    }

    /// Checks one attribute against its expected bytes both ways.
    func check(_ attribute: STUNAttribute, _ expected: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(attributeBytes(attribute) == expected, sourceLocation: sourceLocation)
        let decoded = try STUNMessage(bytes: TestSupport.message(body: expected))
        #expect(decoded.attributes == [attribute], sourceLocation: sourceLocation)
    }

    @Test("a Binding request without attributes is exactly its 20-byte header")
    func emptyBindingRequest() throws {
        let message = STUNMessage(type: .bindingRequest, transactionID: id)
        let expected: [UInt8] = [0x00, 0x01, 0x00, 0x00] + header
        #expect(message.encodedBytes() == expected)
        #expect(try STUNMessage(bytes: expected) == message)
        var buffer = ByteBuffer()
        buffer.writeString("xx")
        #expect(buffer.writeSTUNMessage(message) == 20)
        #expect(Array(buffer.readableBytesView.dropFirst(2)) == expected)
    }

    @Test("an empty Binding request with FINGERPRINT: length 8, CRC over the header with that length")
    func emptyBindingRequestWithFingerprint() throws {
        let bytes = STUNMessage(type: .bindingRequest, transactionID: id).encodedBytes(options: STUNEncodingOptions(fingerprint: true))
        let headerWithLength: [UInt8] = [0x00, 0x01, 0x00, 0x08] + header
        let crc = TestSupport.crc32(headerWithLength) ^ 0x5354_554E
        #expect(bytes == headerWithLength + [0x80, 0x28, 0x00, 0x04] + TestSupport.be32(crc))
    }

    @Test("the table-driven CRC-32 gives the standard check value and agrees with a bitwise one")
    func crcCheckValue() {
        let check = Array("123456789".utf8)
        #expect(STUNCRC32.checksum(check) == 0xCBF4_3926)
        #expect(TestSupport.crc32(check) == 0xCBF4_3926)
        var g = STUNSeededRandom(seed: 7)
        for n in [0, 1, 3, 64, 1000] {
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
            let viaPointer = bytes.withUnsafeBytes { STUNCRC32.checksum($0) }
            #expect(viaPointer == TestSupport.crc32(bytes))
            #expect(STUNCRC32.checksum(bytes) == viaPointer)
        }
    }

    @Test("a classic RFC 3489 Binding response with MAPPED-, SOURCE- and CHANGED-ADDRESS")
    func classicBindingResponse() throws {
        let message = STUNMessage(
            type: .bindingSuccess, transactionID: TestSupport.classicID,
            attributes: [
                .mappedAddress(STUNAddress("198.51.100.7:40000")),
                .sourceAddress(STUNAddress("192.0.2.10:3478")),
                .changedAddress(STUNAddress("192.0.2.11:3479")),
            ])
        let expected: [UInt8] = [
            0x01, 0x01, 0x00, 0x24,  // Binding success response, 36 attribute bytes
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,  // 128-bit id
            0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x9C, 0x40, 0xC6, 0x33, 0x64, 0x07,  // MAPPED-ADDRESS 198.51.100.7:40000
            0x00, 0x04, 0x00, 0x08, 0x00, 0x01, 0x0D, 0x96, 0xC0, 0x00, 0x02, 0x0A,  // SOURCE-ADDRESS 192.0.2.10:3478
            0x00, 0x05, 0x00, 0x08, 0x00, 0x01, 0x0D, 0x97, 0xC0, 0x00, 0x02, 0x0B,  // CHANGED-ADDRESS 192.0.2.11:3479
        ]
        #expect(message.encodedBytes() == expected)
        let decoded = try STUNMessage(bytes: expected)
        #expect(decoded == message)
        #expect(decoded.isClassic)
        #expect(decoded.mappedAddress == STUNAddress("198.51.100.7:40000"))
        #expect(decoded.responseOrigin == STUNAddress("192.0.2.10:3478"))
        #expect(decoded.otherAddress == STUNAddress("192.0.2.11:3479"))
    }

    @Test("address attributes: IPv6 in clear, XOR-MAPPED-ADDRESS for v4 and v6")
    func addressAttributes() throws {
        try check(.otherAddress(STUNAddress("[2001:db8::1]:3479")), [
            0x80, 0x2C, 0x00, 0x14, 0x00, 0x02, 0x0D, 0x97,
            0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        ])
        try check(.responseOrigin(STUNAddress("203.0.113.5:3478")), [
            0x80, 0x2B, 0x00, 0x08, 0x00, 0x01, 0x0D, 0x96, 0xCB, 0x00, 0x71, 0x05,
        ])
        try check(.responseAddress(STUNAddress("203.0.113.6:1")), [
            0x00, 0x02, 0x00, 0x08, 0x00, 0x01, 0x00, 0x01, 0xCB, 0x00, 0x71, 0x06,
        ])
        // Port XOR 0x2112, address XOR 0x2112A442: 0x1F90 ^ 0x2112 = 0x3E82; 10.0.0.1 ^ cookie.
        try check(.xorMappedAddress(STUNAddress("10.0.0.1:8080")), [
            0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0x3E, 0x82, 0x2B, 0x12, 0xA4, 0x43,
        ])
        // IPv6 XORs the 16 bytes with cookie + transaction id.
        try check(.xorMappedAddress(STUNAddress("[::]:0")), [
            0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0x21, 0x12,
            0x21, 0x12, 0xA4, 0x42, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C,
        ])
    }

    @Test("CHANGE-REQUEST: change-IP is 0x4, change-port 0x2")
    func changeRequest() throws {
        try check(.changeRequest(STUNChangeRequest(changeIP: true, changePort: true)), [0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x06])
        try check(.changeRequest(STUNChangeRequest(changeIP: true)), [0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04])
        try check(.changeRequest(STUNChangeRequest(changePort: true)), [0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02])
        try check(.changeRequest(STUNChangeRequest()), [0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00])
        // Unknown flag bits are ignored on decode.
        let decoded = try STUNMessage(bytes: TestSupport.message(body: [0x00, 0x03, 0x00, 0x04, 0xFF, 0xFF, 0xFF, 0xF9]))
        #expect(decoded.changeRequest == STUNChangeRequest(changeIP: false, changePort: false))
    }

    @Test("RESPONSE-PORT: 16-bit port then 2 bytes of padding; a 2-byte form is read too")
    func responsePort() throws {
        try check(.responsePort(5000), [0x00, 0x27, 0x00, 0x04, 0x13, 0x88, 0x00, 0x00])
        let short = try STUNMessage(bytes: TestSupport.message(body: [0x00, 0x27, 0x00, 0x02, 0xFF, 0xFE, 0x00, 0x00]))
        #expect(short.attributes == [.responsePort(0xFFFE)])
    }

    @Test("PADDING: the declared length, zero-filled to a multiple of 4")
    func padding() throws {
        try check(.padding(5), [0x00, 0x26, 0x00, 0x05, 0, 0, 0, 0, 0, 0, 0, 0])
        try check(.padding(0), [0x00, 0x26, 0x00, 0x00])
        try check(.padding(8), [0x00, 0x26, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 0])
        // Content is ignored on decode.
        let decoded = try STUNMessage(bytes: TestSupport.message(body: [0x00, 0x26, 0x00, 0x03, 0xAA, 0xBB, 0xCC, 0xDD]))
        #expect(decoded.attributes == [.padding(3)])
    }

    @Test("ERROR-CODE: class in bits 8-10, number below, then the reason")
    func errorCode() throws {
        try check(.errorCode(.unknownAttribute), [
            0x00, 0x09, 0x00, 0x15, 0x00, 0x00, 0x04, 0x14,
            0x55, 0x6E, 0x6B, 0x6E, 0x6F, 0x77, 0x6E, 0x20, 0x41, 0x74, 0x74, 0x72, 0x69, 0x62, 0x75, 0x74, 0x65,  // "Unknown Attribute"
            0x00, 0x00, 0x00,
        ])
        try check(.errorCode(STUNErrorCode(code: 699, reason: "")), [0x00, 0x09, 0x00, 0x04, 0x00, 0x00, 0x06, 0x63])
        try check(.errorCode(STUNErrorCode(code: 300, reason: "Try")), [0x00, 0x09, 0x00, 0x07, 0x00, 0x00, 0x03, 0x00, 0x54, 0x72, 0x79, 0x00])
        // The 21 reserved bits are ignored on decode.
        let decoded = try STUNMessage(bytes: TestSupport.message(body: [0x00, 0x09, 0x00, 0x04, 0xFF, 0xFF, 0xFD, 0x01]))
        #expect(decoded.errorCode == STUNErrorCode(code: 501, reason: ""))
    }

    @Test("UNKNOWN-ATTRIBUTES: 16-bit types, padded to 4")
    func unknownAttributes() throws {
        try check(.unknownAttributes([0x0024, 0x8029, 0x0031]), [0x00, 0x0A, 0x00, 0x06, 0x00, 0x24, 0x80, 0x29, 0x00, 0x31, 0x00, 0x00])
        try check(.unknownAttributes([0x7FFF, 0x0001]), [0x00, 0x0A, 0x00, 0x04, 0x7F, 0xFF, 0x00, 0x01])
        try check(.unknownAttributes([]), [0x00, 0x0A, 0x00, 0x00])
    }

    @Test("text and opaque attributes are zero-padded")
    func textAttributes() throws {
        try check(.software("abc"), [0x80, 0x22, 0x00, 0x03, 0x61, 0x62, 0x63, 0x00])
        try check(.username("é"), [0x00, 0x06, 0x00, 0x02, 0xC3, 0xA9, 0x00, 0x00])
        try check(.username(""), [0x00, 0x06, 0x00, 0x00])
        try check(.unknown(type: 0xC001, value: [1, 2, 3, 4, 5]), [0xC0, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0])
    }

    @Test("an error response: type 0x0111 with ERROR-CODE and UNKNOWN-ATTRIBUTES")
    func errorResponse() throws {
        let message = STUNMessage(type: .bindingError, transactionID: id, attributes: [
            .errorCode(STUNErrorCode(code: 420, reason: "")), .unknownAttributes([0x0031]),
        ])
        let expected: [UInt8] = [0x01, 0x11, 0x00, 0x10] + header + [
            0x00, 0x09, 0x00, 0x04, 0x00, 0x00, 0x04, 0x14,
            0x00, 0x0A, 0x00, 0x02, 0x00, 0x31, 0x00, 0x00,
        ]
        #expect(message.encodedBytes() == expected)
        #expect(try STUNMessage(bytes: expected) == message)
    }
}
