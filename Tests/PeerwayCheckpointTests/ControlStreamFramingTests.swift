import NIOCore
import PeerwayCheckpoint
import Testing

@Suite("Control stream framing (control channel over TCP)")
struct ControlStreamFramingTests {
    static func packet(_ n: Int, seed: UInt8 = 0) -> ByteBuffer {
        ByteBuffer(bytes: (0..<n).map { UInt8(truncatingIfNeeded: $0 &+ Int(seed)) })
    }

    static func stream(_ packets: [ByteBuffer]) -> [UInt8] {
        var out = ByteBuffer()
        for p in packets { ControlStreamFraming.write(p, into: &out) }
        return Array(out.readableBytesView)
    }

    static func drain(_ deframer: inout ControlStreamDeframer) throws -> [ByteBuffer] {
        var frames: [ByteBuffer] = []
        while let f = try deframer.next() { frames.append(f) }
        return frames
    }

    @Test("a frame is length(2, big-endian) then exactly the packet")
    func layout() {
        let framed = ControlStreamFraming.framed(Self.packet(300, seed: 7))
        let bytes = Array(framed.readableBytesView)
        #expect(bytes.count == 302)
        #expect(bytes[0] == 0x01 && bytes[1] == 0x2C)
        #expect(Array(bytes[2...]) == Array(Self.packet(300, seed: 7).readableBytesView))
    }

    @Test("byte at a time: every frame comes out whole, once, in order")
    func byteAtATime() throws {
        let packets = [Self.packet(1), Self.packet(256, seed: 1), Self.packet(1200, seed: 2),
                       Self.packet(ControlStreamFraming.maximumFrameBytes, seed: 3), Self.packet(28, seed: 4)]
        var deframer = ControlStreamDeframer()
        var out: [ByteBuffer] = []
        for byte in Self.stream(packets) {
            [byte].withUnsafeBytes { deframer.append($0) }
            out += try Self.drain(&deframer)
        }
        #expect(out == packets)
        #expect(deframer.bufferedBytes == 0)
        #expect(try deframer.next() == nil)
    }

    @Test("any segmentation gives the same frames")
    func segmentations() throws {
        let packets = (0..<20).map { Self.packet(1 + ($0 * 97) % 1300, seed: UInt8($0)) }
        let all = Self.stream(packets)
        for chunk in [2, 3, 7, 258, 1000, 4096, all.count] {
            var deframer = ControlStreamDeframer()
            var out: [ByteBuffer] = []
            var i = 0
            while i < all.count {
                let end = min(all.count, i + chunk)
                deframer.append(ByteBuffer(bytes: all[i..<end]))
                out += try Self.drain(&deframer)
                i = end
            }
            #expect(out == packets, "chunk \(chunk)")
            // The buffer never holds much more than one frame and one chunk.
            #expect(deframer.bufferedBytes == 0)
        }
    }

    @Test("a frame kept by the caller stays intact while more bytes arrive")
    func framesAreValues() throws {
        var deframer = ControlStreamDeframer()
        let packets = (0..<50).map { Self.packet(1000, seed: UInt8($0)) }
        var kept: [ByteBuffer] = []
        for p in packets {
            deframer.append(ControlStreamFraming.framed(p))
            kept += try Self.drain(&deframer)
        }
        #expect(kept == packets)
    }

    @Test("a length over the limit fails at once, before its bytes arrive, and keeps failing")
    func oversize() throws {
        var deframer = ControlStreamDeframer()
        deframer.append(ControlStreamFraming.framed(Self.packet(10)))
        let over = ControlStreamFraming.maximumFrameBytes + 1
        deframer.append(ByteBuffer(bytes: [UInt8(over >> 8), UInt8(over & 0xFF)]))
        #expect(try deframer.next() == Self.packet(10))
        #expect(throws: ControlStreamError.frameTooLarge(bytes: over)) { try deframer.next() }
        deframer.append(ControlStreamFraming.framed(Self.packet(10)))
        #expect(throws: ControlStreamError.frameTooLarge(bytes: over)) { try deframer.next() }
        #expect(deframer.bufferedBytes == 0)

        var largest = ControlStreamDeframer()
        largest.append(ByteBuffer(bytes: [0xFF, 0xFF]))
        #expect(throws: ControlStreamError.frameTooLarge(bytes: 65535)) { try largest.next() }
        #expect(ControlStreamError.frameTooLarge(bytes: 65535).description.contains("1500"))
    }

    @Test("malformed: an empty frame; a relay bind's first bytes are never a valid length")
    func malformed() throws {
        var deframer = ControlStreamDeframer()
        deframer.append(ByteBuffer(bytes: [0, 0, 0, 5, 1, 2, 3, 4, 5]))
        #expect(throws: ControlStreamError.emptyFrame) { try deframer.next() }

        var relay = ControlStreamDeframer()
        relay.append(ByteBuffer(bytes: ControlStreamFraming.relayBindPrefix + [1]))
        #expect(throws: ControlStreamError.self) { try relay.next() }
        let asLength = Int(ControlStreamFraming.relayBindPrefix[0]) << 8 | Int(ControlStreamFraming.relayBindPrefix[1])
        #expect(asLength > ControlStreamFraming.maximumFrameBytes)

        // One byte of a length, or a length and part of its packet: not an error, just incomplete.
        var partial = ControlStreamDeframer()
        partial.append(ByteBuffer(bytes: [0x05]))
        #expect(try partial.next() == nil)
        partial.append(ByteBuffer(bytes: [0xDC, 1, 2, 3]))
        #expect(try partial.next() == nil)
        #expect(partial.bufferedBytes == 5)
    }
}
