import Crypto
import NIOCore
import PeerwayCheckpoint
import Testing
@testable import PeerwayTunnel

@Suite("Tunnel TCP stream: hello and records (docs/traversal-protocol.md, Encrypted records)")
struct TunnelStreamCipherTests {
    static let sizes = [0, 1, 100, 16_383, 16_384, 16_385, 50_000]

    func message(_ size: Int, seed: UInt8 = 0) -> [UInt8] {
        (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
    }

    @Test func helloBothWays() throws {
        let (a, b) = try Fixture.keys(transport: .tcp)
        let helloA = TunnelStreamHello.make(keys: a), helloB = TunnelStreamHello.make(keys: b)
        #expect(helloA.count == TunnelLimits.helloBytes && helloA.count == 29)
        #expect(Array(helloA.prefix(5)) == Array("PWT".utf8) + [TunnelProtocol.version, 0])
        #expect(helloB[4] == 1)
        try TunnelStreamHello.verify(helloA, keys: b)
        try TunnelStreamHello.verify(helloB, keys: a)
        #expect(TunnelStreamHello.check(helloA, keys: b) && TunnelStreamHello.check(helloB, keys: a))
        // Our own hello reflected, another tunnel's hello, tampered and truncated ones.
        #expect(!TunnelStreamHello.check(helloA, keys: a))
        let (other, _) = try Fixture.keys(transport: .udp)
        #expect(throws: TunnelError.badStreamHello("the tag is another tunnel's")) {
            try TunnelStreamHello.verify(TunnelStreamHello.make(keys: other), keys: b)
        }
        for bit in 0..<(helloA.count * 8) {
            #expect(!TunnelStreamHello.check(helloA.flipping(bit: bit), keys: b), "bit \(bit)")
        }
        for length in 0..<helloA.count {
            #expect(throws: TunnelError.truncated(what: "stream hello", needed: 29, got: length)) {
                try TunnelStreamHello.verify(Array(helloA.prefix(length)), keys: b)
            }
        }
        #expect(!TunnelStreamHello.check(helloA + [0], keys: b))
    }

    @Test func roundTripByteAtATime() throws {
        let (a, b) = try Fixture.keys(transport: .tcp)
        var sender = TunnelStreamCipher(keys: a)
        var receiver = TunnelStreamDecoder(keys: b)
        for (i, size) in Self.sizes.enumerated() {
            let plain = message(size, seed: UInt8(i))
            let wire = try sender.seal(plain)
            let records = max(1, (size + 16_383) / 16_384)
            #expect(wire.count == size + records * TunnelLimits.streamOverheadBytes)
            var got: [UInt8] = []
            var pieces = 0
            for byte in wire {
                for piece in try receiver.decode([byte]) { got += piece; pieces += 1 }
            }
            #expect(got == plain && pieces == records)
            #expect(receiver.bufferedBytes == 0)
        }
        #expect(sender.nextCounter == receiver.nextCounter)
    }

    @Test(arguments: [1 as UInt64, 2, 3, 4])
    func roundTripInRandomChunks(seed: UInt64) throws {
        let (a, b) = try Fixture.keys(transport: .tcp)
        var toB = TunnelStreamCipher(keys: a), atB = TunnelStreamDecoder(keys: b)
        var toA = TunnelStreamCipher(keys: b), atA = TunnelStreamDecoder(keys: a)
        var random = SplitMix64(state: seed)
        var wireAB: [UInt8] = [], wireBA: [UInt8] = [], sent: [UInt8] = []
        for i in 0..<40 {
            let plain = message(Int.random(in: 0...40_000, using: &random), seed: UInt8(i))
            sent += plain
            wireAB += try toB.seal(plain)
            wireBA += try toA.seal(plain)
        }
        for (wire, decoderIsB) in [(wireAB, true), (wireBA, false)] {
            var got: [UInt8] = []
            var offset = 0
            while offset < wire.count {
                let n = min(wire.count - offset, Int.random(in: 1...20_000, using: &random))
                let chunk = Array(wire[offset..<offset + n])
                for plain in try decoderIsB ? atB.decode(chunk) : atA.decode(chunk) { got += plain }
                offset += n
            }
            #expect(got == sent)
        }
    }

    @Test func byteBufferSealing() throws {
        let (a, b) = try Fixture.keys(transport: .tcp)
        var sender = TunnelStreamCipher(keys: a)
        var receiver = TunnelStreamDecoder(keys: b)
        var out = ByteBuffer()
        try sender.seal(ByteBuffer(bytes: message(20_000)), into: &out)
        receiver.append(out)
        #expect(try receiver.next() == message(16_384))
        #expect(try receiver.next() == Array(message(20_000)[16_384...]))
        #expect(try receiver.next() == nil)
    }

    @Test func oversizeAndUndersizeLengthsAreRefused() throws {
        let (_, b) = try Fixture.keys(transport: .tcp)
        var decoder = TunnelStreamDecoder(keys: b)
        #expect(try decoder.decode([0x40]).isEmpty)  // half a length: wait
        #expect(throws: TunnelError.badRecordLength(16_401)) { try decoder.decode([0x11]) }
        // Final: the stream stays refused.
        #expect(throws: TunnelError.badRecordLength(16_401)) { try decoder.decode([]) }

        var small = TunnelStreamDecoder(keys: b)
        #expect(throws: TunnelError.badRecordLength(15)) { try small.decode([0x00, 0x0F]) }
        var huge = TunnelStreamDecoder(keys: b)
        #expect(throws: TunnelError.badRecordLength(0xFFFF)) { try huge.decode([0xFF, 0xFF]) }
        #expect(TunnelLimits.maximumStreamPlaintextBytes == 16_384)
    }

    @Test func tamperedReorderedAndWrongKeyRecordsAreRefused() throws {
        let (a, b) = try Fixture.keys(transport: .tcp)
        var sender = TunnelStreamCipher(keys: a)
        let first = try sender.seal(message(100, seed: 1))
        let second = try sender.seal(message(100, seed: 2))
        for bit in 16..<(first.count * 8) {  // past the length: a changed length is another test
            var decoder = TunnelStreamDecoder(keys: b)
            #expect(throws: TunnelError.authenticationFailed(.streamRecord)) { try decoder.decode(first.flipping(bit: bit)) }
        }
        // A changed length moves the tag: refused (or waits for bytes that would never verify).
        var shifted = TunnelStreamDecoder(keys: b)
        var shortened = first
        shortened[1] -= 1
        #expect(throws: TunnelError.authenticationFailed(.streamRecord)) { try shifted.decode(shortened) }

        var reordered = TunnelStreamDecoder(keys: b)
        #expect(throws: TunnelError.authenticationFailed(.streamRecord)) { try reordered.decode(second + first) }
        var ownKey = TunnelStreamDecoder(keys: a)
        #expect(throws: TunnelError.authenticationFailed(.streamRecord)) { try ownKey.decode(first) }
        var inOrder = TunnelStreamDecoder(keys: b)
        #expect(try inOrder.decode(first + second) == [message(100, seed: 1), message(100, seed: 2)])
    }
}
