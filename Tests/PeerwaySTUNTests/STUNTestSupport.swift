import NIOCore
@testable import PeerwaySTUN
import Testing

/// Shared helpers for the STUN codec tests: a bit-by-bit CRC-32 that is independent of the
/// codec's table-driven one, and builders for hand-made wire bytes. Randomized tests draw from
/// `STUNSeededRandom` so that every run sees the same inputs.
enum TestSupport {
    /// A fixed RFC 8489 transaction id: cookie + 0x0102030405060708090A0B0C.
    static let id = STUNTransactionID(cookieAnd96Bits: [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C])

    /// A fixed classic RFC 3489 transaction id (bytes 4-7 are not the magic cookie).
    static let classicID = STUNTransactionID(high: 0x0011_2233_4455_6677, low: 0x8899_AABB_CCDD_EEFF)

    /// CRC-32 (reflected 0xEDB88320, init and final XOR 0xFFFFFFFF), one bit at a time.
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 {
                crc = (crc & 1) == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1
            }
        }
        return ~crc
    }

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }

    static func be32(_ v: UInt32) -> [UInt8] { be16(UInt16(v >> 16)) + be16(UInt16(v & 0xFFFF)) }

    /// One attribute in TLV form, padded with `pad` bytes to a multiple of 4.
    static func attribute(_ type: UInt16, _ value: [UInt8], pad: UInt8 = 0) -> [UInt8] {
        let padding = (4 - value.count % 4) % 4
        return be16(type) + be16(UInt16(value.count)) + value + Array(repeating: pad, count: padding)
    }

    /// A header (with the length of `body`) followed by `body`.
    static func message(type: UInt16 = 0x0001, id: STUNTransactionID = TestSupport.id, body: [UInt8]) -> [UInt8] {
        be16(type) + be16(UInt16(body.count)) + id.bytes + body
    }

    /// Appends a FINGERPRINT computed over `bytes` as they stand after the header's length field
    /// is set to `finalLength` (defaults to the length including the FINGERPRINT itself).
    static func appendingFingerprint(to bytes: [UInt8], finalLength: Int? = nil) -> [UInt8] {
        var covered = bytes
        let length = UInt16(finalLength ?? (bytes.count - STUN.headerSize + 8))
        covered[2] = UInt8(length >> 8)
        covered[3] = UInt8(length & 0xFF)
        return covered + attribute(0x8028, be32(crc32(covered) ^ 0x5354_554E))
    }

    /// Decodes with the stream API from a buffer whose reader index is not zero, checking the
    /// reader index moved exactly past the message or, on failure, not at all.
    static func streamDecode(_ bytes: [UInt8]) throws(STUNDecodingError) -> STUNMessage? {
        var buffer = ByteBuffer(bytes: [0xEE, 0xEE, 0xEE] + bytes)
        buffer.moveReaderIndex(forwardBy: 3)
        do {
            let message = try buffer.readSTUNMessage()
            if message == nil {
                #expect(buffer.readerIndex == 3, "nil must leave the reader index alone")
            } else {
                #expect(buffer.readerIndex == 3 + bytes.count, "success must consume the message")
            }
            return message
        } catch {
            #expect(buffer.readerIndex == 3, "a failed decode must leave the reader index alone")
            #expect(buffer.readableBytes == bytes.count)
            throw error
        }
    }

    /// The error `STUNMessage(bytes:)` throws, or `nil` when it decodes.
    static func datagramError(_ bytes: [UInt8]) -> STUNDecodingError? {
        do {
            _ = try STUNMessage(bytes: bytes)
            return nil
        } catch {
            return error
        }
    }

    /// The error the stream decoder throws (also checking the reader index is untouched).
    static func streamError(_ bytes: [UInt8]) -> STUNDecodingError? {
        do {
            _ = try streamDecode(bytes)
            return nil
        } catch {
            return error
        }
    }
}

extension STUNAddress {
    /// Test shorthand: `STUNAddress("192.0.2.1:32853")`, trapping on bad text.
    init(_ text: String) {
        guard let parsed = STUNAddress(parsing: text) else { fatalError("bad test address \(text)") }
        self = parsed
    }
}
