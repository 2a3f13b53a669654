import NIOCore
import PeerwaySTUN
import Testing

@Suite("RFC 5769 test vectors")
struct RFC5769VectorTests {
    let shortTermKey = STUNIntegrity.shortTermKey(password: RFC5769.shortTermPassword)
    let longTermKey = STUNIntegrity.longTermKey(
        username: RFC5769.longTermUsername, realm: RFC5769.longTermRealm, password: RFC5769.longTermPassword)

    // MARK: decoding

    @Test("2.1 sample request decodes to its attributes")
    func sampleRequestDecodes() throws {
        let message = try STUNMessage(bytes: RFC5769.sampleRequest)
        #expect(message.type == .bindingRequest)
        #expect(message.transactionID == RFC5769.transactionID)
        #expect(!message.isClassic)
        #expect(message.attributes == [
            .software("STUN test client"),
            .unknown(type: 0x0024, value: [0x6E, 0x00, 0x01, 0xFF]),  // PRIORITY
            .unknown(type: 0x8029, value: [0x93, 0x2F, 0xF9, 0xB1, 0x51, 0x26, 0x3B, 0x36]),  // ICE-CONTROLLED
            .username("evtj:h6vY"),
            .messageIntegrity(Array(RFC5769.sampleRequest[80..<100])),
            .fingerprint(0xE57A_3BCF),
        ])
    }

    @Test("2.2 IPv4 response: XOR-MAPPED-ADDRESS is 192.0.2.1:32853")
    func ipv4ResponseDecodes() throws {
        let message = try STUNMessage(bytes: RFC5769.ipv4Response)
        #expect(message.type == .bindingSuccess)
        #expect(message.transactionID == RFC5769.transactionID)
        #expect(message.attributes.count == 4)
        #expect(message.attributes.first == .software("test vector"))
        let expected = STUNAddress(ip: .v4(0xC000_0201), port: 32853)
        #expect(message.attributes[1] == .xorMappedAddress(expected))
        #expect(message.mappedAddress == expected)
        #expect(message.mappedAddress?.description == "192.0.2.1:32853")
        #expect(message.attributes.last == .fingerprint(0xC07D_4C96))
    }

    @Test("2.3 IPv6 response: XOR-MAPPED-ADDRESS is [2001:db8:1234:5678:11:2233:4455:6677]:32853")
    func ipv6ResponseDecodes() throws {
        let message = try STUNMessage(bytes: RFC5769.ipv6Response)
        #expect(message.type == .bindingSuccess)
        #expect(message.attributes.first == .software("test vector"))
        let expected = STUNAddress(ip: .v6(high: 0x2001_0DB8_1234_5678, low: 0x0011_2233_4455_6677), port: 32853)
        #expect(message.attributes[1] == .xorMappedAddress(expected))
        #expect(message.mappedAddress?.ipString == "2001:db8:1234:5678:11:2233:4455:6677")
        #expect(message.mappedAddress?.port == 32853)
        #expect(message.attributes.last == .fingerprint(0xC8FB_0B4C))
    }

    @Test("2.4 long-term request: USERNAME, NONCE, REALM, MESSAGE-INTEGRITY")
    func longTermRequestDecodes() throws {
        let message = try STUNMessage(bytes: RFC5769.longTermRequest)
        #expect(message.type == .bindingRequest)
        #expect(message.transactionID == RFC5769.longTermTransactionID)
        #expect(message.attributes == [
            .username("マトリックス"),
            .unknown(type: 0x0015, value: Array(RFC5769.longTermNonce.utf8)),  // NONCE
            .unknown(type: 0x0014, value: Array("example.org".utf8)),  // REALM
            .messageIntegrity(Array(RFC5769.longTermRequest[96..<116])),
        ])
        #expect(message.attribute(.fingerprint) == nil)
    }

    @Test("the stream decoder agrees with the datagram decoder on every vector", arguments: RFC5769.all.map(\.bytes))
    func streamAndDatagramAgree(bytes: [UInt8]) throws {
        let datagram = try STUNMessage(bytes: bytes)
        let streamed = try #require(try TestSupport.streamDecode(bytes))
        #expect(streamed == datagram)
        #expect(STUNMessage.looksLikeSTUN(ByteBuffer(bytes: bytes)))
    }

    // MARK: FINGERPRINT

    @Test("a flipped body byte breaks the FINGERPRINT", arguments: [
        RFC5769.sampleRequest, RFC5769.ipv4Response, RFC5769.ipv6Response,
    ])
    func flippedByteFailsFingerprint(vector: [UInt8]) {
        let found = UInt32(vector[vector.count - 4]) << 24 | UInt32(vector[vector.count - 3]) << 16
            | UInt32(vector[vector.count - 2]) << 8 | UInt32(vector[vector.count - 1])
        // Bytes inside SOFTWARE's value, inside the transaction id, and inside MESSAGE-INTEGRITY:
        // none makes the message malformed, so only the CRC can catch them.
        for index in [9, 25, vector.count - 20] {
            var corrupted = vector
            corrupted[index] ^= 0x01
            guard case .fingerprintMismatch(let expected, let got)? = TestSupport.datagramError(corrupted) else {
                Issue.record("flipping byte \(index) was not caught by FINGERPRINT")
                continue
            }
            #expect(got == found)
            #expect(expected != found)
            #expect(expected == TestSupport.crc32(Array(corrupted[0..<(vector.count - 8)])) ^ 0x5354_554E)
            #expect(TestSupport.streamError(corrupted) == .fingerprintMismatch(expected: expected, found: got))
        }
    }

    @Test("the FINGERPRINT values of the vectors are CRC-32 XOR 0x5354554E of what precedes them")
    func fingerprintValuesMatchIndependentCRC() throws {
        for (name, vector) in RFC5769.all where name != "2.4 long-term request" {
            let message = try STUNMessage(bytes: vector)
            let crc = TestSupport.crc32(Array(vector[0..<(vector.count - 8)])) ^ 0x5354_554E
            #expect(message.attributes.last == .fingerprint(crc), "\(name)")
        }
    }

    // MARK: MESSAGE-INTEGRITY

    @Test("short-term MESSAGE-INTEGRITY verifies with the right password only", arguments: [
        RFC5769.sampleRequest, RFC5769.ipv4Response, RFC5769.ipv6Response,
    ])
    func shortTermIntegrity(vector: [UInt8]) throws {
        let buffer = ByteBuffer(bytes: vector)
        #expect(try buffer.verifySTUNIntegrity(key: shortTermKey) == .messageIntegrity)
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegrity)) {
            try buffer.verifySTUNIntegrity(key: STUNIntegrity.shortTermKey(password: "VOkJxbRl1RmTxUk/WvJxBT"))
        }
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegrity)) {
            try buffer.verifySTUNIntegrity(key: [])
        }
    }

    @Test("long-term MESSAGE-INTEGRITY verifies with MD5(username:realm:password) only")
    func longTermIntegrity() throws {
        let buffer = ByteBuffer(bytes: RFC5769.longTermRequest)
        #expect(longTermKey.count == 16)
        #expect(try buffer.verifySTUNIntegrity(key: longTermKey) == .messageIntegrity)
        let wrongPassword = STUNIntegrity.longTermKey(username: RFC5769.longTermUsername, realm: "example.org", password: "TheMatrix")
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegrity)) {
            try buffer.verifySTUNIntegrity(key: wrongPassword)
        }
        let wrongRealm = STUNIntegrity.longTermKey(username: RFC5769.longTermUsername, realm: "example.com", password: "TheMatrIX")
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegrity)) {
            try buffer.verifySTUNIntegrity(key: wrongRealm)
        }
        // The password itself is not the key for long-term credentials.
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegrity)) {
            try buffer.verifySTUNIntegrity(key: STUNIntegrity.shortTermKey(password: "TheMatrIX"))
        }
    }

    @Test("a flipped byte in the long-term request (no FINGERPRINT) decodes but fails integrity")
    func longTermTamperFailsIntegrity() throws {
        var corrupted = RFC5769.longTermRequest
        corrupted[50] ^= 0x20  // inside NONCE: still valid text, different value
        let message = try STUNMessage(bytes: corrupted)
        #expect(message.attributes[1] != .unknown(type: 0x0015, value: Array(RFC5769.longTermNonce.utf8)))
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegrity)) {
            try ByteBuffer(bytes: corrupted).verifySTUNIntegrity(key: longTermKey)
        }
    }

    // MARK: re-encoding

    /// The vector with every attribute's padding bytes set to zero, plus the byte ranges of the
    /// MESSAGE-INTEGRITY and FINGERPRINT values.
    private func normalised(_ vector: [UInt8]) -> (bytes: [UInt8], macRanges: [Range<Int>]) {
        var bytes = vector
        var ranges: [Range<Int>] = []
        var offset = STUN.headerSize
        while offset + 4 <= bytes.count {
            let type = UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
            let length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let padded = (length + 3) & ~3
            for i in (offset + 4 + length)..<(offset + 4 + padded) { bytes[i] = 0 }
            if type == 0x0008 || type == 0x8028 { ranges.append((offset + 4)..<(offset + 4 + length)) }
            offset += 4 + padded
        }
        return (bytes, ranges)
    }

    @Test("re-encoding the decoded attributes with MESSAGE-INTEGRITY and FINGERPRINT reproduces the vector", arguments: [
        RFC5769.sampleRequest, RFC5769.ipv4Response, RFC5769.ipv6Response,
    ])
    func reencodeShortTermVectors(vector: [UInt8]) throws {
        let decoded = try STUNMessage(bytes: vector)
        var stripped = decoded
        stripped.attributes.removeAll { $0.type == .messageIntegrity || $0.type == .fingerprint }
        let encoded = stripped.encodedBytes(options: STUNEncodingOptions(messageIntegrityKey: shortTermKey, fingerprint: true))
        #expect(encoded.count == vector.count)

        // RFC 5769 pads USERNAME (2.1) and SOFTWARE (2.2, 2.3) with 0x20 spaces, where the
        // encoder writes zeros (RFC 8489 lets the sender choose; the receiver ignores them). The
        // padding is covered by the HMAC and the CRC, so the MESSAGE-INTEGRITY and FINGERPRINT
        // values necessarily differ. Every other byte must match once the vector's padding is
        // zeroed; our own MESSAGE-INTEGRITY and FINGERPRINT must still verify.
        let (zeroPadded, macRanges) = normalised(vector)
        #expect(zeroPadded != vector, "these vectors do have non-zero padding")
        #expect(macRanges.count == 2)
        var expected = zeroPadded
        var actual = encoded
        for range in macRanges {
            expected.replaceSubrange(range, with: repeatElement(0, count: range.count))
            actual.replaceSubrange(range, with: repeatElement(0, count: range.count))
        }
        #expect(actual == expected)
        #expect(encoded[macRanges[0]] != vector[macRanges[0]])

        let again = try STUNMessage(bytes: encoded)
        #expect(Array(again.attributes.dropLast(2)) == stripped.attributes)
        #expect(try ByteBuffer(bytes: encoded).verifySTUNIntegrity(key: shortTermKey) == .messageIntegrity)
    }

    @Test("re-encoding the 2.4 request with the long-term key reproduces it exactly")
    func reencodeLongTermVector() throws {
        let decoded = try STUNMessage(bytes: RFC5769.longTermRequest)
        #expect(normalised(RFC5769.longTermRequest).bytes == RFC5769.longTermRequest, "all padding is zero here")
        var stripped = decoded
        stripped.attributes.removeAll { $0.type == .messageIntegrity }
        #expect(stripped.attributes.count == 3)
        let encoded = stripped.encodedBytes(options: STUNEncodingOptions(messageIntegrityKey: longTermKey))
        #expect(encoded == RFC5769.longTermRequest)
        // Re-encoding the decoded message as-is (MESSAGE-INTEGRITY copied) also gives the vector.
        #expect(decoded.encodedBytes() == RFC5769.longTermRequest)
    }

    @Test("building the 2.4 request from scratch gives the vector")
    func buildLongTermFromScratch() {
        let message = STUNMessage(
            type: .bindingRequest, transactionID: RFC5769.longTermTransactionID,
            attributes: [
                .username(RFC5769.longTermUsername),
                .unknown(type: STUNAttributeType.nonce.rawValue, value: Array(RFC5769.longTermNonce.utf8)),
                .unknown(type: STUNAttributeType.realm.rawValue, value: Array(RFC5769.longTermRealm.utf8)),
            ])
        #expect(message.encodedBytes(options: STUNEncodingOptions(messageIntegrityKey: longTermKey)) == RFC5769.longTermRequest)
    }
}
