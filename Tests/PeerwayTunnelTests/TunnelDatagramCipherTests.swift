import Crypto
import Foundation
import NIOCore
import PeerwayCheckpoint
import Testing
@testable import PeerwayTunnel

@Suite("Tunnel UDP records (docs/traversal-protocol.md, Encrypted records)")
struct TunnelDatagramCipherTests {
    func pair() throws -> (TunnelDatagramCipher, TunnelDatagramCipher) {
        let (a, b) = try Fixture.keys()
        return (TunnelDatagramCipher(keys: a), TunnelDatagramCipher(keys: b))
    }

    @Test func roundTripBothWaysEveryType() throws {
        var (alice, bob) = try pair()
        for type in TunnelDatagramCipher.RecordType.allCases {
            for size in [0, 1, 100, 1_200, TunnelLimits.maximumDatagramPayloadBytes] {
                let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
                let record = try alice.seal(payload, type: type)
                #expect(record.count == size + TunnelLimits.datagramOverheadBytes)
                #expect(record[0] == type.rawValue)
                #expect(TunnelDatagramCipher.isRecord(firstByte: record[0]))
                let opened = try bob.open(record)
                #expect(opened.type == type && opened.payload == payload)

                var buffer = ByteBuffer()
                try bob.seal(ByteBuffer(bytes: payload), type: type, into: &buffer)
                #expect(buffer.readableBytes == size + 25)
                let back = try alice.open(buffer)
                #expect(back.type == type && back.payload == payload)
            }
        }
        #expect(TunnelLimits.datagramOverheadBytes == 25)
        #expect(!TunnelDatagramCipher.isRecord(firstByte: TunnelLimits.probeMagic[0]))
    }

    @Test func layoutAndCounters() throws {
        var (alice, bob) = try pair()
        #expect(alice.nextCounter == 1)
        let first = try alice.seal([1, 2, 3])
        let second = try alice.seal([1, 2, 3])
        #expect(Array(first[0..<9]) == [0x17, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(Array(second[1..<9]) == [0, 0, 0, 0, 0, 0, 0, 2])
        #expect(first[9...] != second[9...])  // another nonce, other ciphertext
        #expect(try bob.open(second).counter == 2)
        #expect(bob.replayWindow.highest == 2)
    }

    @Test func tooLargePayloadIsRefused() throws {
        var (alice, _) = try pair()
        let limit = TunnelLimits.maximumDatagramPayloadBytes
        #expect(throws: TunnelError.payloadTooLarge(bytes: limit + 1, limit: limit)) {
            try alice.seal([UInt8](repeating: 0, count: limit + 1))
        }
        #expect(alice.nextCounter == 1)
    }

    @Test func replayIsRefused() throws {
        var (alice, bob) = try pair()
        let record = try alice.seal([9, 9, 9])
        _ = try bob.open(record)
        #expect(throws: TunnelError.replayed(counter: 1)) { try bob.open(record) }
    }

    @Test func reorderWithinTheWindowIsAcceptedOlderIsRefused() throws {
        var (alice, bob) = try pair()
        let records = try (0..<100).map { i in try alice.seal([UInt8(i)]) }
        // The newest of the first 64 first, then the others backwards: all inside the window.
        for i in (0..<64).reversed() { #expect(try bob.open(records[i]).payload == [UInt8(i)]) }
        for i in (0..<64) { #expect(throws: TunnelError.replayed(counter: UInt64(i + 1))) { try bob.open(records[i]) } }
        // Record 100 moves the window: counters up to 100 - 64 = 36 are now too old.
        _ = try bob.open(records[99])
        #expect(try bob.open(records[69]).counter == 70)  // inside the window, not seen yet
        #expect(throws: TunnelError.replayed(counter: 70)) { try bob.open(records[69]) }
        var fresh = try pair().1
        _ = try fresh.open(records[99])
        #expect(throws: TunnelError.replayed(counter: 36)) { try fresh.open(records[35]) }
        #expect(try fresh.open(records[36]).counter == 37)
    }

    @Test func tamperedRecordsAreRefusedAndDoNotMoveTheWindow() throws {
        var (alice, bob) = try pair()
        let record = try alice.seal(Array("hello, tunnel".utf8))
        for bit in 0..<(record.count * 8) {
            #expect(throws: TunnelError.self) { try bob.open(record.flipping(bit: bit)) }
        }
        #expect(bob.replayWindow.highest == 0)
        #expect(try bob.open(record).payload == Array("hello, tunnel".utf8))

        var forged = try alice.seal([1])
        forged.replaceSubrange(1..<9, with: [0, 0, 0, 0, 0, 0, 3, 0])
        #expect(throws: TunnelError.authenticationFailed(.datagram)) { try bob.open(forged) }
        #expect(bob.replayWindow.highest == 1)

        var typed = try alice.seal([1])
        typed[0] = TunnelDatagramCipher.RecordType.close.rawValue
        #expect(throws: TunnelError.authenticationFailed(.datagram)) { try bob.open(typed) }
        typed[0] = 0x20
        #expect(throws: TunnelError.unknownRecordType(0x20)) { try bob.open(typed) }
    }

    @Test func wrongDirectionAndTruncationAreRefused() throws {
        var (alice, bob) = try pair()
        let record = try alice.seal([1, 2, 3])
        #expect(throws: TunnelError.authenticationFailed(.datagram)) { try alice.open(record) }
        for length in 0..<TunnelLimits.datagramOverheadBytes {
            #expect(throws: TunnelError.truncated(what: "tunnel record", needed: 25, got: length)) {
                try bob.open(Array(record.prefix(length)))
            }
        }
        #expect(throws: TunnelError.authenticationFailed(.datagram)) { try bob.open(Array(record.dropLast())) }
        #expect(try bob.open(record).payload == [1, 2, 3])
    }

    @Test func replayWindowSizeIsTheSpecs() {
        #expect(TunnelLimits.replayWindow == ControlLimits.replayWindow)
    }

    /// Not a timed test: prints a throughput figure, asserts nothing about time.
    @Test func throughputFigure() throws {
        var (alice, bob) = try pair()
        let payload = [UInt8](repeating: 0xA5, count: 1_200)
        let count = 20_000
        var record: [UInt8] = []
        record.reserveCapacity(payload.count + TunnelLimits.datagramOverheadBytes)
        var opened = 0
        let start = ContinuousClock.now
        for _ in 0..<count {
            record.removeAll(keepingCapacity: true)
            try payload.withUnsafeBytes { raw in try alice.seal(raw, appendingTo: &record) }
            opened += try bob.open(record).payload.count
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        #expect(opened == count * payload.count)
        print(String(format: "TunnelDatagramCipher: %d × 1200-byte records sealed+opened in %.3f s = %.0f records/s, %.1f MB/s",
                     count, seconds, Double(count) / seconds, Double(opened) / seconds / 1e6))
    }
}
