import NIOCore
import PeerwaySTUN

/// A bounds-checked big-endian cursor over the bytes of one frame, used by the frame decoder.
///
/// It reads straight from the buffer's memory (no intermediate arrays): integers with unaligned
/// loads, text by validating the UTF-8 in place and copying once into the `String`. Every read
/// names the field it was for, so that a short frame reports where it ended.
struct ControlWireReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    @inline(__always)
    private mutating func take(_ count: Int, _ what: @autoclosure () -> String) throws(ControlDecodingError) -> Int {
        guard count <= bytes.count - offset else { throw .truncated(what: what()) }
        let start = offset
        offset += count
        return start
    }

    @inline(__always)
    mutating func u8(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> UInt8 {
        bytes[try take(1, what())]
    }

    @inline(__always)
    mutating func u16(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> UInt16 {
        UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: try take(2, what()), as: UInt16.self))
    }

    @inline(__always)
    mutating func u32(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> UInt32 {
        UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: try take(4, what()), as: UInt32.self))
    }

    @inline(__always)
    mutating func u64(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> UInt64 {
        UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: try take(8, what()), as: UInt64.self))
    }

    /// Decodes one value with `decode` from `bytes`, which it must use up exactly (else
    /// `.trailingBytes`): a frame that fills a packet, or a frame embedded in another.
    static func whole<T>(_ bytes: UnsafeRawBufferPointer,
                         _ decode: (inout ControlWireReader) throws(ControlDecodingError) -> T) throws(ControlDecodingError) -> T {
        var reader = ControlWireReader(bytes)
        let value = try decode(&reader)
        guard reader.remaining == 0 else { throw .trailingBytes(reader.remaining) }
        return value
    }

    /// Moves past `count` bytes (an embedded frame decoded from a slice).
    mutating func skip(_ count: Int, _ what: @autoclosure () -> String) throws(ControlDecodingError) {
        _ = try take(count, what())
    }

    /// Exactly `count` bytes as an array (keys and signatures, which the types hold as arrays).
    mutating func array(_ count: Int, _ what: @autoclosure () -> String) throws(ControlDecodingError) -> [UInt8] {
        let start = try take(count, what())
        return Array(UnsafeRawBufferPointer(rebasing: bytes[start..<(start + count)]))
    }

    /// A boolean byte: 0 or 1, anything else is invalid.
    mutating func bool(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> Bool {
        let field = what()
        switch try u8(field) {
        case 0: return false
        case 1: return true
        case let b: throw .invalid(what: "\(field): boolean byte \(b) is neither 0 nor 1")
        }
    }

    /// A list count (one byte) at most `limit`.
    mutating func count(_ what: @autoclosure () -> String, limit: Int, limitName: String) throws(ControlDecodingError) -> Int {
        let n = Int(try u8(what()))
        guard n <= limit else { throw .invalid(what: "\(what()): \(n) items, over \(limitName) (\(limit))") }
        return n
    }

    /// A PeerID: 16 bytes.
    mutating func peerID(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> PeerID {
        let start = try take(PeerID.byteCount, what())
        return PeerID(
            high: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: start, as: UInt64.self)),
            low: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: start + 8, as: UInt64.self)))
    }

    /// An optional PeerID: `present(1)` then 16 bytes when 1.
    mutating func optionalPeerID(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> PeerID? {
        try bool(what()) ? try peerID(what()) : nil
    }

    /// An endpoint: `family(1: 4|6) address(4|16) port(2)`.
    mutating func endpoint(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> PeerEndpoint {
        let ip: PeerEndpoint.IP
        switch try u8(what()) {
        case 4: ip = .v4(try u32(what()))
        case 6: ip = .v6(high: try u64(what()), low: try u64(what()))
        case let family: throw .invalid(what: "\(what()): address family \(family) is neither 4 nor 6")
        }
        return PeerEndpoint(ip: ip, port: try u16(what()))
    }

    /// Short text: `length(2)` then that many bytes of valid UTF-8, at most `limit` bytes.
    mutating func text(_ what: @autoclosure () -> String, limit: Int, limitName: String) throws(ControlDecodingError) -> String {
        let length = Int(try u16(what()))
        guard length <= limit else { throw .invalid(what: "\(what()): \(length) bytes, over \(limitName) (\(limit))") }
        return try utf8(length, what())
    }

    /// `length` bytes of valid UTF-8 as a String.
    mutating func utf8(_ length: Int, _ what: @autoclosure () -> String) throws(ControlDecodingError) -> String {
        if length == 0 { return "" }
        let start = try take(length, what())
        let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)])
        guard ControlUTF8.isValid(slice) else { throw .invalid(what: "\(what()): not valid UTF-8") }
        return String(decoding: slice, as: UTF8.self)
    }

    /// Metadata: `count(1)` then per entry `keyLength(1) key valueLength(1) value`, validated by
    /// `PeerMetadata` (key alphabet and length, value length, total size); duplicate keys are
    /// invalid. The wire order need not be sorted.
    mutating func metadata(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> PeerMetadata {
        let n = try count(what(), limit: ControlLimits.maximumMetadataEntries, limitName: "maximumMetadataEntries")
        if n == 0 { return PeerMetadata() }
        var dictionary = [String: String](minimumCapacity: n)
        for _ in 0..<n {
            let key = try metadataKey(what())
            let value = try utf8(Int(try u8(what())), what())
            guard dictionary.updateValue(value, forKey: key) == nil else {
                throw .invalid(what: "\(what()): duplicate key '\(key)'")
            }
        }
        do {
            return try PeerMetadata(dictionary)
        } catch {
            throw .invalid(what: "\(what()): \(error)")
        }
    }

    /// A metadata key: `keyLength(1) key`, 1-32 bytes of `[a-z0-9_.-]` (checked here, before
    /// any String is made, so that the error names the field).
    mutating func metadataKey(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> String {
        let length = Int(try u8(what()))
        let start = try take(length, what())
        let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)])
        guard length >= 1, length <= PeerMetadata.maximumKeyBytes, slice.allSatisfy(ControlUTF8.isKeyByte) else {
            throw .invalid(what: "\(what()): metadata key of \(length) bytes is not 1-\(PeerMetadata.maximumKeyBytes) characters of a-z 0-9 _ . -")
        }
        return String(decoding: slice, as: UTF8.self)
    }
}

/// UTF-8 validation of raw bytes (Unicode §3.9, table 3-7: no overlong forms, no surrogates,
/// nothing above U+10FFFF), so that `String(decoding:)` afterwards never repairs anything.
enum ControlUTF8 {
    @inline(__always)
    static func isKeyByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2E || b == 0x2D
    }

    static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = bytes.count
        while i < n {
            // Eight ASCII bytes at a time, the common case.
            if i + 8 <= n, bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                i += 8
                continue
            }
            let b0 = bytes[i]
            if b0 < 0x80 {
                i += 1
                continue
            }
            let length: Int
            var low: UInt8 = 0x80, high: UInt8 = 0xBF
            switch b0 {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; high = 0x9F
            case 0xF0: length = 4; low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; high = 0x8F
            default: return false
            }
            guard i + length <= n else { return false }
            let b1 = bytes[i + 1]
            guard b1 >= low, b1 <= high else { return false }
            for j in 2..<max(2, length) where bytes[i + j] & 0xC0 != 0x80 { return false }
            i += length
        }
        return true
    }
}

extension ByteBuffer {
    /// Decodes one value that must fill the readable bytes exactly (`ControlWireReader.whole`);
    /// the reader index moves past them only when it succeeds.
    mutating func readWhole<T>(_ decode: (inout ControlWireReader) throws(ControlDecodingError) -> T) throws(ControlDecodingError) -> T {
        let value = try withUnsafeReadableBytes { raw throws(ControlDecodingError) -> T in try ControlWireReader.whole(raw, decode) }
        moveReaderIndex(to: writerIndex)
        return value
    }
}
