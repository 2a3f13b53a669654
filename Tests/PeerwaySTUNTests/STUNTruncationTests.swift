import NIOCore
import PeerwaySTUN
import Testing

/// Every proper prefix of a valid message is "incomplete" to the stream decoder and malformed
/// (`lengthMismatch`) to the datagram decoder, and neither crashes nor consumes anything.
@Suite("Truncation")
struct STUNTruncationTests {
    static let samples: [(String, [UInt8])] = {
        var g = STUNSeededRandom(seed: 0x7A11)
        var list = RFC5769.all
        list.append(("empty request", STUNMessage(type: .bindingRequest, transactionID: TestSupport.id).encodedBytes()))
        list.append(("classic response", STUNMessage(
            type: .bindingSuccess, transactionID: TestSupport.classicID,
            attributes: [.mappedAddress(STUNAddress("198.51.100.7:40000")), .changedAddress(STUNAddress("[2001:db8::2]:3479"))]
        ).encodedBytes()))
        list.append(("everything + MI + MI-SHA256 + FINGERPRINT", STUNMessage(
            type: .bindingError, transactionID: TestSupport.id, attributes: STUNRoundTripTests.everyAttribute
        ).encodedBytes(options: STUNEncodingOptions(messageIntegrityKey: [1], messageIntegritySHA256Key: [2], fingerprint: true))))
        for i in 0..<4 {
            list.append(("random \(i)", RandomMessages.message(&g).encodedBytes(options: STUNEncodingOptions(fingerprint: i % 2 == 0))))
        }
        return list
    }()

    @Test("every proper prefix: the stream decoder returns nil and does not move", arguments: samples.map(\.1))
    func streamPrefixes(bytes: [UInt8]) throws {
        for cut in 0..<bytes.count {
            var buffer = ByteBuffer(bytes: [0x99] + bytes[0..<cut])
            buffer.moveReaderIndex(forwardBy: 1)
            let result = try buffer.readSTUNMessage()
            #expect(result == nil, "prefix of \(cut) bytes decoded to a message")
            #expect(buffer.readerIndex == 1)
            #expect(buffer.readableBytes == cut)
        }
        var whole = ByteBuffer(bytes: bytes)
        #expect(try whole.readSTUNMessage() != nil)
        #expect(whole.readableBytes == 0)
    }

    @Test("every proper prefix: the datagram decoder throws lengthMismatch with the right numbers", arguments: samples.map(\.1))
    func datagramPrefixes(bytes: [UInt8]) {
        let declared = Int(bytes[2]) << 8 | Int(bytes[3])
        for cut in 0..<bytes.count {
            let prefix = Array(bytes[0..<cut])
            let error = TestSupport.datagramError(prefix)
            if cut >= STUN.headerSize {
                #expect(error == .lengthMismatch(declared: declared, available: cut - STUN.headerSize), "cut \(cut)")
            } else {
                // Shorter than a header: the length field is reported when it is there at all.
                #expect(error == .lengthMismatch(declared: cut >= 4 ? declared : 0, available: 0), "cut \(cut)")
            }
            #expect(!STUNMessage.looksLikeSTUN(ByteBuffer(bytes: prefix)))
        }
    }

    @Test("corrupted prefixes: the stream decoder returns nil or throws, never crashes or moves (seeded)")
    func corruptedPrefixes() {
        var g = STUNSeededRandom(seed: 99)
        for (_, bytes) in Self.samples {
            for cut in 0...bytes.count {
                var prefix = Array(bytes[0..<cut])
                if cut > 0 { prefix[Int.random(in: 0..<cut, using: &g)] ^= UInt8.random(in: 1...255, using: &g) }
                var buffer = ByteBuffer(bytes: prefix)
                do {
                    if let m = try buffer.readSTUNMessage() {
                        // Only possible when the corruption shortened the declared length.
                        let declared = Int(prefix[2]) << 8 | Int(prefix[3])
                        #expect(buffer.readerIndex == STUN.headerSize + declared)
                        #expect(m.encodedBytes().count <= STUN.headerSize + declared)
                    } else {
                        #expect(buffer.readerIndex == 0)
                    }
                } catch {
                    #expect(buffer.readerIndex == 0)
                }
            }
        }
    }

    @Test("two messages fed one byte at a time come out whole, in order")
    func byteByByteStream() throws {
        let first = STUNMessage(type: .bindingRequest, transactionID: TestSupport.id, attributes: [.software("first"), .changeRequest(STUNChangeRequest(changeIP: true))])
        let second = try STUNMessage(bytes: RFC5769.ipv6Response)
        let wire = first.encodedBytes(options: STUNEncodingOptions(fingerprint: true)) + RFC5769.ipv6Response
        var buffer = ByteBuffer()
        var out: [STUNMessage] = []
        var completedAt: [Int] = []
        for (i, byte) in wire.enumerated() {
            buffer.writeInteger(byte)
            while let m = try buffer.readSTUNMessage() {
                out.append(m)
                completedAt.append(i + 1)
            }
        }
        #expect(out.count == 2)
        #expect(Array(out.first?.attributes.dropLast() ?? []) == first.attributes)
        #expect(out.last == second)
        #expect(completedAt == [wire.count - RFC5769.ipv6Response.count, wire.count])
        #expect(buffer.readableBytes == 0)
    }

    @Test("a whole message followed by a partial one: the first is read, the rest waits")
    func messageThenPartial() throws {
        let partial = Array(RFC5769.ipv4Response.prefix(30))
        var buffer = ByteBuffer(bytes: RFC5769.sampleRequest + partial)
        #expect(try buffer.readSTUNMessage() == STUNMessage(bytes: RFC5769.sampleRequest))
        #expect(try buffer.readSTUNMessage() == nil)
        #expect(buffer.readerIndex == RFC5769.sampleRequest.count)
        #expect(buffer.readableBytes == partial.count)
        buffer.writeBytes(RFC5769.ipv4Response.dropFirst(30))
        #expect(try buffer.readSTUNMessage() == STUNMessage(bytes: RFC5769.ipv4Response))
    }

    @Test("a datagram holding a message plus trailing bytes is lengthMismatch", arguments: [1, 3, 4, 20, 108])
    func trailingBytes(extra: Int) throws {
        let bytes = RFC5769.sampleRequest + Array(repeating: 0, count: extra)
        #expect(TestSupport.datagramError(bytes) == .lengthMismatch(declared: 0x58, available: 0x58 + extra))
        #expect(!STUNMessage.looksLikeSTUN(ByteBuffer(bytes: bytes)))
        // The stream decoder reads the message and leaves the rest.
        var buffer = ByteBuffer(bytes: bytes)
        #expect(try buffer.readSTUNMessage() != nil)
        #expect(buffer.readableBytes == extra)
    }
}
