import NIOCore
@testable import PeerwaySTUN
import Testing

@Suite("MESSAGE-INTEGRITY and what follows it")
struct STUNIntegrityTests {
    typealias T = TestSupport
    let key = STUNIntegrity.shortTermKey(password: "swordfish")
    let key256 = STUNIntegrity.shortTermKey(password: "swordfish-256")
    let base = STUNMessage(type: .bindingRequest, transactionID: TestSupport.id, attributes: [
        .username("alice:bob"), .software("Peerway test"), .changeRequest(STUNChangeRequest(changeIP: true)),
    ])

    func verify(_ bytes: [UInt8], _ key: [UInt8]) throws(STUNIntegrityError) -> STUNAttributeType {
        try ByteBuffer(bytes: bytes).verifySTUNIntegrity(key: key)
    }

    @Test("short-term key is the password's UTF-8")
    func shortTermKey() {
        #expect(STUNIntegrity.shortTermKey(password: "VOkJxbRl1RmTxUk/WvJxBt") == Array("VOkJxbRl1RmTxUk/WvJxBt".utf8))
        #expect(STUNIntegrity.shortTermKey(password: "é") == [0xC3, 0xA9])
    }

    @Test("MESSAGE-INTEGRITY verifies with its key and no other")
    func sha1() throws {
        let bytes = base.encodedBytes(options: STUNEncodingOptions(messageIntegrityKey: key))
        #expect(try verify(bytes, key) == .messageIntegrity)
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegrity)) { try verify(bytes, key256) }
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegrity)) { try verify(bytes, Array("swordfisH".utf8)) }
        // (HMAC pads short keys with zeros, so `key + [0]` would be the same key: not a test.)
    }

    @Test("MESSAGE-INTEGRITY-SHA256 is preferred when both are present")
    func sha256Preferred() throws {
        let both = base.encodedBytes(options: STUNEncodingOptions(messageIntegrityKey: key, messageIntegritySHA256Key: key256))
        #expect(try verify(both, key256) == .messageIntegritySHA256)
        // The SHA-1 key alone does not pass: the SHA-256 one is checked.
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegritySHA256)) { try verify(both, key) }
        // Cut after MESSAGE-INTEGRITY (length patched), the SHA-1 MAC verifies by itself: it was
        // computed before MESSAGE-INTEGRITY-SHA256 was appended.
        var cut = Array(both.dropLast(36))
        cut[2] = 0
        cut[3] = UInt8(cut.count - 20)
        #expect(try verify(cut, key) == .messageIntegrity)
        let only256 = base.encodedBytes(options: STUNEncodingOptions(messageIntegritySHA256Key: key256))
        #expect(try verify(only256, key256) == .messageIntegritySHA256)
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegritySHA256)) { try verify(only256, key) }
        let decoded = try STUNMessage(bytes: only256)
        guard case .messageIntegritySHA256(let mac)? = decoded.attributes.last else {
            Issue.record("no MESSAGE-INTEGRITY-SHA256")
            return
        }
        #expect(mac.count == 32)
    }

    @Test("a truncated 16-byte MESSAGE-INTEGRITY-SHA256 verifies")
    func truncatedSHA256() throws {
        var buffer = ByteBuffer()
        buffer.writeSTUNMessage(base)
        let mac = STUNIntegrity.hmacSHA256(key: key256, over: buffer, start: 0, lengthIndex: 2, macLength: 16)
        #expect(mac.count == 16)
        buffer.writeBytes(T.attribute(0x001C, mac))
        buffer.setInteger(UInt16(buffer.readableBytes - 20), at: 2)
        let bytes = Array(buffer.readableBytesView)
        #expect(try verify(bytes, key256) == .messageIntegritySHA256)
        var tampered = bytes
        tampered[tampered.count - 1] ^= 1
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegritySHA256)) { try verify(tampered, key256) }
    }

    @Test("any change to the covered bytes breaks it: header, id, attributes")
    func tamper() throws {
        let bytes = base.encodedBytes(options: STUNEncodingOptions(messageIntegrityKey: key))
        let macStart = bytes.count - 20
        for index in [1, 4, 8, 19, 20, 25, 40, macStart - 1, macStart, bytes.count - 1] {
            var tampered = bytes
            tampered[index] ^= 0x01
            // Some changes make the message malformed instead (e.g. an attribute type); that is
            // also a failure, never a pass.
            do {
                _ = try verify(tampered, key)
                Issue.record("byte \(index) changed and MESSAGE-INTEGRITY still verified")
            } catch {
                if case .missing = error { Issue.record("byte \(index): MESSAGE-INTEGRITY vanished") }
            }
        }
    }

    @Test("no integrity attribute: .missing; malformed: .malformed; incomplete: .malformed(lengthMismatch)")
    func missingAndMalformed() {
        #expect(throws: STUNIntegrityError.missing) { try verify(base.encodedBytes(), key) }
        #expect(throws: STUNIntegrityError.missing) { try verify(base.encodedBytes(options: STUNEncodingOptions(fingerprint: true)), key) }
        #expect(throws: STUNIntegrityError.malformed(.notSTUN(firstByte: 0xFF))) { try verify([0xFF, 0, 0, 0], key) }
        let bytes = base.encodedBytes(options: STUNEncodingOptions(messageIntegrityKey: key))
        // An incomplete message cannot be checked (the numbers in the error are not asserted:
        // this path reports them differently from `STUNMessage(bytes:)`).
        do {
            _ = try verify(Array(bytes.prefix(30)), key)
            Issue.record("an incomplete message verified")
        } catch {
            guard case .malformed(.lengthMismatch) = error else {
                Issue.record("expected .malformed(.lengthMismatch), got \(error)")
                return
            }
        }
    }

    @Test("encoding into a non-empty buffer and verifying from a moved reader index, with bytes after")
    func offsetsInBuffers() throws {
        var buffer = ByteBuffer()
        buffer.writeString("leading junk")
        buffer.moveReaderIndex(forwardBy: 5)
        let start = buffer.writerIndex
        let written = buffer.writeSTUNMessage(base, options: STUNEncodingOptions(messageIntegrityKey: key, messageIntegritySHA256Key: key256, fingerprint: true))
        buffer.writeBytes([0x00, 0x01, 0x00])  // the start of the next message
        let alone = base.encodedBytes(options: STUNEncodingOptions(messageIntegrityKey: key, messageIntegritySHA256Key: key256, fingerprint: true))
        #expect(Array(buffer.getBytes(at: start, length: written) ?? []) == alone)
        buffer.moveReaderIndex(to: start)
        #expect(try buffer.verifySTUNIntegrity(key: key256) == .messageIntegritySHA256)
        let decoded = try #require(try buffer.readSTUNMessage())
        #expect(Array(decoded.attributes.prefix(3)) == base.attributes)
        #expect(buffer.readableBytes == 3)
    }

    @Test("attributes after MESSAGE-INTEGRITY are ignored, except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT")
    func ignoredAfterIntegrity() throws {
        let mi = T.attribute(0x0008, Array(repeating: 0xA1, count: 20))
        let mi256 = T.attribute(0x001C, Array(repeating: 0xB2, count: 32))
        let body = T.attribute(0x8022, Array("kept".utf8)) + mi + T.attribute(0x0006, Array("ignored".utf8))
            + mi256 + T.attribute(0x0020, [0, 1, 0, 1, 1, 2, 3, 4]) + T.attribute(0xC001, [9])
        let bytes = T.appendingFingerprint(to: T.message(body: body))
        let decoded = try STUNMessage(bytes: bytes)
        #expect(decoded.attributes.map(\.type) == [.software, .messageIntegrity, .messageIntegritySHA256, .fingerprint])
        #expect(decoded.attributes.first == .software("kept"))
        #expect(decoded.attribute(.username) == nil)
        #expect(decoded.mappedAddress == nil)
    }

    @Test("a second integrity attribute is ignored like any other that follows MESSAGE-INTEGRITY")
    func duplicateIntegrity() throws {
        let first = T.attribute(0x0008, Array(repeating: 0x11, count: 20))
        let second = T.attribute(0x0008, Array(repeating: 0x22, count: 20))
        let sha = T.attribute(0x001C, Array(repeating: 0x33, count: 32))
        let sha2 = T.attribute(0x001C, Array(repeating: 0x44, count: 16))
        // MESSAGE-INTEGRITY twice: the second follows the first, so it is ignored (RFC 8489 §14.5).
        var decoded = try STUNMessage(bytes: T.message(body: first + second))
        #expect(decoded.attributes == [.messageIntegrity(Array(repeating: 0x11, count: 20))])
        // MESSAGE-INTEGRITY after MESSAGE-INTEGRITY-SHA256 is ignored (RFC 8489 §14.6).
        decoded = try STUNMessage(bytes: T.message(body: sha + first))
        #expect(decoded.attributes == [.messageIntegritySHA256(Array(repeating: 0x33, count: 32))])
        // So is a second MESSAGE-INTEGRITY-SHA256.
        decoded = try STUNMessage(bytes: T.message(body: first + sha + sha2))
        #expect(decoded.attributes.map(\.type) == [.messageIntegrity, .messageIntegritySHA256])
        #expect(decoded.attributes.last == .messageIntegritySHA256(Array(repeating: 0x33, count: 32)))
    }

    @Test("an attribute appended after MESSAGE-INTEGRITY does not break it and is not decoded")
    func appendedAfterIntegrity() throws {
        var bytes = base.encodedBytes(options: STUNEncodingOptions(messageIntegrityKey: key))
        bytes += T.attribute(0x8022, Array("appended by a middlebox".utf8))
        bytes[2] = UInt8((bytes.count - 20) >> 8)
        bytes[3] = UInt8((bytes.count - 20) & 0xFF)
        #expect(try verify(bytes, key) == .messageIntegrity)
        let decoded = try STUNMessage(bytes: bytes)
        #expect(decoded.attributes.count == base.attributes.count + 1)
        #expect(decoded.attributes.last?.type == .messageIntegrity)
        // Whereas an attribute inserted before it is covered.
        var inserted = base
        inserted.attributes.append(.software("x"))
        var forged = inserted.encodedBytes()
        forged += Array(bytes[(bytes.count - 24 - 28)..<(bytes.count - 28)])  // the old MESSAGE-INTEGRITY
        forged[3] = UInt8(forged.count - 20)
        #expect(throws: STUNIntegrityError.mismatch(.messageIntegrity)) { try verify(forged, key) }
    }
}
