import Crypto
import Foundation
import NIOCore

/// The stream hello that opens every TCP tunnel connection, encrypted or raw
/// (docs/traversal-protocol.md, "Encrypted records"):
///
///     "PWT"(3) version(1) role(1) tag(8) mac(16)                              = 29 bytes
///
/// `mac` = HMAC-SHA256(probe key, the 13 bytes before it)[0..<16]. Each side sends its own and
/// checks the other's: right magic and version, the *other* role (our own hello reflected back
/// is refused), our tunnel's tag and a valid MAC.
public enum TunnelStreamHello {
    /// This side's hello (role and tag from `keys`).
    public static func make(keys: TunnelKeys) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(TunnelLimits.helloBytes)
        out.append(contentsOf: TunnelLimits.helloMagic)
        out.append(TunnelProtocol.version)
        out.append(keys.role.rawValue)
        out.appendBigEndian(keys.tag)
        TunnelCrypto.appendMAC(over: 0, of: &out, key: keys.probeKey)
        return out
    }

    /// Checks the other side's hello: exactly ``TunnelLimits/helloBytes`` bytes.
    ///
    /// - Throws: ``TunnelError/truncated(what:needed:got:)`` when shorter,
    ///   ``TunnelError/badStreamHello(_:)`` for a wrong length, magic, version, role or tag,
    ///   ``TunnelError/authenticationFailed(_:)`` (`.streamHello`) for a bad MAC.
    public static func verify(_ hello: UnsafeRawBufferPointer, keys: TunnelKeys) throws(TunnelError) {
        guard hello.count >= TunnelLimits.helloBytes else {
            throw .truncated(what: "stream hello", needed: TunnelLimits.helloBytes, got: hello.count)
        }
        guard hello.count == TunnelLimits.helloBytes else {
            throw .badStreamHello("\(hello.count) bytes, not \(TunnelLimits.helloBytes)")
        }
        guard hello.prefix(3).elementsEqual(TunnelLimits.helloMagic) else { throw .badStreamHello("no \"PWT\" magic") }
        guard hello[3] == TunnelProtocol.version else {
            throw .badStreamHello("version \(hello[3]), this side speaks \(TunnelProtocol.version)")
        }
        let tag: UInt64 = hello.bigEndian(at: 5)
        guard tag == keys.tag else { throw .badStreamHello("the tag is another tunnel's") }
        let split = TunnelLimits.helloSignedBytes
        guard TunnelCrypto.verifyMAC(UnsafeRawBufferPointer(rebasing: hello[split...]),
                                     of: UnsafeRawBufferPointer(rebasing: hello[..<split]), key: keys.probeKey) else {
            throw .authenticationFailed(.streamHello)
        }
        guard hello[4] == keys.role.other.rawValue else {
            throw .badStreamHello(hello[4] == keys.role.rawValue ? "it carries our own role (reflected)" : "role \(hello[4])")
        }
    }

    /// Checks the other side's hello (see ``verify(_:keys:)-(UnsafeRawBufferPointer,_)``).
    public static func verify(_ hello: [UInt8], keys: TunnelKeys) throws(TunnelError) {
        try withTunnelBytes(of: hello) { (raw) throws(TunnelError) in try verify(raw, keys: keys) }
    }

    /// `true` when `hello` is the other side's valid hello for this tunnel.
    public static func check(_ hello: [UInt8], keys: TunnelKeys) -> Bool {
        (try? verify(hello, keys: keys)) != nil
    }
}

/// The sending half of an encrypted TCP tunnel (docs/traversal-protocol.md, "Encrypted
/// records"): after the hellos, records
///
///     length(2) ciphertext tag(16)
///
/// where `length` counts the bytes after it (ciphertext + tag, 16...16,400), the plaintext is at
/// most ``TunnelLimits/maximumStreamPlaintextBytes`` bytes, and ChaCha20-Poly1305 runs with the
/// direction's key, nonce `0(4) ‖ counter(8)` and an implicit counter from 0 (TCP neither loses
/// nor reorders). No associated data: a changed length moves where the tag is read and fails it.
/// ``TunnelStreamDecoder`` is the receiving half.
public struct TunnelStreamCipher: Sendable {
    private let key: SymmetricKey
    /// The counter of the next record sealed.
    public private(set) var nextCounter: UInt64 = 0

    /// Seals with `keys.sendKey`.
    public init(keys: TunnelKeys) { self.init(sendKey: keys.sendKey) }

    public init(sendKey: SymmetricKey) { key = sendKey }

    /// Appends `plaintext` as records to `out`: one per
    /// ``TunnelLimits/maximumStreamPlaintextBytes`` bytes, one empty record for an empty plaintext.
    public mutating func seal(_ plaintext: UnsafeRawBufferPointer, appendingTo out: inout [UInt8]) throws(TunnelError) {
        let limit = TunnelLimits.maximumStreamPlaintextBytes
        let records = max(1, (plaintext.count + limit - 1) / limit)
        guard nextCounter <= UInt64.max - UInt64(records) else { throw .counterExhausted }
        out.reserveCapacity(out.count + plaintext.count + records * TunnelLimits.streamOverheadBytes)
        var start = 0
        repeat {
            let end = min(start + limit, plaintext.count)
            out.appendBigEndian(UInt16(end - start + TunnelLimits.aeadTagBytes))
            TunnelCrypto.seal(UnsafeRawBufferPointer(rebasing: plaintext[start..<end]), key: key, counter: nextCounter,
                              associatedData: UnsafeRawBufferPointer(start: nil, count: 0), appendingTo: &out)
            nextCounter += 1
            start = end
        } while start < plaintext.count
    }

    /// `plaintext` as records.
    public mutating func seal(_ plaintext: [UInt8]) throws(TunnelError) -> [UInt8] {
        var out: [UInt8] = []
        try withTunnelBytes(of: plaintext) { (raw) throws(TunnelError) in try seal(raw, appendingTo: &out) }
        return out
    }

    /// Writes `plaintext`'s readable bytes as records into `out`.
    public mutating func seal(_ plaintext: ByteBuffer, into out: inout ByteBuffer) throws(TunnelError) {
        var records: [UInt8] = []
        try withTunnelBytes(of: plaintext) { (raw) throws(TunnelError) in try seal(raw, appendingTo: &records) }
        out.writeBytes(records)
    }
}

/// The receiving half of an encrypted TCP tunnel: takes the bytes as they arrive, in chunks of
/// any size (one byte at a time works), and yields the plaintexts of whole records in order.
///
/// A stream cannot resynchronise, so the first error (a length outside
/// ``TunnelLimits/minimumStreamRecordLength``...``TunnelLimits/maximumStreamRecordLength``, or
/// a tag that does not verify) is final: every later call throws it again; close the connection.
/// Memory: whatever was appended and not yet taken with ``next()``; a driver reads a socket only
/// after draining the records it already has, so that is at most one record plus one read.
public struct TunnelStreamDecoder: Sendable {
    private let key: SymmetricKey
    private var buffer = ByteBuffer()
    private var failure: TunnelError?
    /// The counter of the next record opened.
    public private(set) var nextCounter: UInt64 = 0

    /// Opens with `keys.receiveKey`.
    public init(keys: TunnelKeys) { self.init(receiveKey: keys.receiveKey) }

    public init(receiveKey: SymmetricKey) { key = receiveKey }

    /// Bytes received but not yet part of a whole record.
    public var bufferedBytes: Int { buffer.readableBytes }

    /// Adds received bytes.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) { buffer.writeBytes(bytes) }

    /// Adds received bytes.
    public mutating func append(_ bytes: some Sequence<UInt8>) { buffer.writeBytes(bytes) }

    /// Adds a received buffer's readable bytes.
    public mutating func append(_ bytes: ByteBuffer) { buffer.writeImmutableBuffer(bytes) }

    /// The plaintext of the next whole record, or `nil` until more bytes arrive.
    ///
    /// - Throws: ``TunnelError/badRecordLength(_:)`` as soon as a length is readable and out of
    ///   range; ``TunnelError/authenticationFailed(_:)`` (`.streamRecord`) for a bad tag;
    ///   ``TunnelError/counterExhausted``. Final (see the type's documentation).
    public mutating func next() throws(TunnelError) -> [UInt8]? {
        if let failure { throw failure }
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self).map(Int.init) else { return nil }
        guard length >= TunnelLimits.minimumStreamRecordLength, length <= TunnelLimits.maximumStreamRecordLength else {
            return try fail(.badRecordLength(length))
        }
        let total = TunnelLimits.streamLengthBytes + length
        guard buffer.readableBytes >= total else { return nil }
        guard nextCounter < UInt64.max else { return try fail(.counterExhausted) }
        let counter = nextCounter
        let key = self.key
        let plain = buffer.withUnsafeReadableBytes { raw in
            TunnelCrypto.open(UnsafeRawBufferPointer(rebasing: raw[TunnelLimits.streamLengthBytes..<total]), key: key,
                              counter: counter, associatedData: UnsafeRawBufferPointer(start: nil, count: 0))
        }
        guard let plain else { return try fail(.authenticationFailed(.streamRecord)) }
        nextCounter += 1
        buffer.moveReaderIndex(forwardBy: total)
        if buffer.readableBytes == 0 {
            buffer.clear()
        } else if buffer.readerIndex >= TunnelLimits.maximumStreamRecordLength {
            buffer.discardReadBytes()
        }
        return plain
    }

    /// Adds `chunk` and returns the plaintexts of every record now complete, in order.
    public mutating func decode(_ chunk: [UInt8]) throws(TunnelError) -> [[UInt8]] {
        append(chunk)
        var out: [[UInt8]] = []
        while let plain = try next() { out.append(plain) }
        return out
    }

    private mutating func fail(_ error: TunnelError) throws(TunnelError) -> [UInt8]? {
        failure = error
        throw error
    }
}
