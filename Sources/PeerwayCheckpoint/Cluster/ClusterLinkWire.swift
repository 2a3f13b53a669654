import Crypto
import Foundation
import NIOCore

/// The dialer's first message: `"PWCL"(4) version(1) dialer static(32) dialer ephemeral(32)
/// acceptor static(32)`, 101 bytes (see ``ClusterLinkLimits``).
public struct ClusterLinkHello: Equatable, Sendable {
    /// The dialer's static X25519 public key: who is calling.
    public var dialerStatic: [UInt8]
    /// The dialer's fresh X25519 public key for this link.
    public var dialerEphemeral: [UInt8]
    /// The static key of the supernode the dialer means to reach; any other acceptor refuses.
    public var acceptorStatic: [UInt8]

    /// A hello from its three keys (32 bytes each).
    public init(dialerStatic: [UInt8], dialerEphemeral: [UInt8], acceptorStatic: [UInt8]) {
        self.dialerStatic = dialerStatic
        self.dialerEphemeral = dialerEphemeral
        self.acceptorStatic = acceptorStatic
    }

    /// The 101 bytes on the wire (keys must be 32 bytes each).
    public var bytes: [UInt8] {
        var out = ClusterLinkLimits.magic
        out.reserveCapacity(ClusterLinkLimits.helloBytes)
        out.append(ClusterLinkLimits.version)
        out += dialerStatic
        out += dialerEphemeral
        out += acceptorStatic
        return out
    }

    /// Decodes exactly one hello.
    ///
    /// - Throws: ``ClusterLinkError/truncated(what:needed:got:)`` when shorter than 101 bytes
    ///   (after checking whatever magic and version bytes are there),
    ///   ``ClusterLinkError/badMagic(_:)``, ``ClusterLinkError/unsupportedVersion(_:)``.
    public init(decoding bytes: [UInt8]) throws(ClusterLinkError) {
        try ClusterLinkWire.checkPreamble(bytes[...])
        guard bytes.count >= ClusterLinkLimits.helloBytes else {
            throw .truncated(what: "cluster link hello", needed: ClusterLinkLimits.helloBytes, got: bytes.count)
        }
        let k = ClusterLinkLimits.keyBytes
        dialerStatic = Array(bytes[5..<(5 + k)])
        dialerEphemeral = Array(bytes[(5 + k)..<(5 + 2 * k)])
        acceptorStatic = Array(bytes[(5 + 2 * k)..<(5 + 3 * k)])
    }
}

/// The acceptor's answer: `"PWCL"(4) version(1) acceptor ephemeral(32)` then the acceptor's first
/// record, which must be empty (its confirmation).
public struct ClusterLinkReply: Equatable, Sendable {
    /// The acceptor's fresh X25519 public key for this link.
    public var acceptorEphemeral: [UInt8]
    /// The sealed confirmation record: `length(4) || ciphertext + tag`.
    public var confirmation: [UInt8]

    /// A reply from the acceptor's ephemeral key (32 bytes) and its sealed confirmation record.
    public init(acceptorEphemeral: [UInt8], confirmation: [UInt8]) {
        self.acceptorEphemeral = acceptorEphemeral
        self.confirmation = confirmation
    }

    /// The 37 header bytes (they are part of the transcript the keys are bound to).
    public var header: [UInt8] { ClusterLinkReply.header(acceptorEphemeral: acceptorEphemeral) }

    /// Header and confirmation as sent.
    public var bytes: [UInt8] { header + confirmation }

    static func header(acceptorEphemeral: [UInt8]) -> [UInt8] {
        var out = ClusterLinkLimits.magic
        out.reserveCapacity(ClusterLinkLimits.replyHeaderBytes)
        out.append(ClusterLinkLimits.version)
        out += acceptorEphemeral
        return out
    }

    /// Decodes a whole reply (header and one empty record, 57 bytes).
    ///
    /// - Throws: ``ClusterLinkError/truncated(what:needed:got:)``, ``ClusterLinkError/badMagic(_:)``,
    ///   ``ClusterLinkError/unsupportedVersion(_:)``, ``ClusterLinkError/badConfirmation(_:)``
    ///   when the record is not exactly an empty one.
    public init(decoding bytes: [UInt8]) throws(ClusterLinkError) {
        try ClusterLinkWire.checkPreamble(bytes[...])
        guard bytes.count >= ClusterLinkLimits.replyBytes else {
            throw .truncated(what: "cluster link reply", needed: ClusterLinkLimits.replyBytes, got: bytes.count)
        }
        let h = ClusterLinkLimits.replyHeaderBytes
        let length = bytes[h..<(h + 4)].reduce(0) { $0 << 8 | Int($1) }
        guard length == ClusterLinkLimits.tagBytes, bytes.count == ClusterLinkLimits.replyBytes else {
            throw .badConfirmation("a record of \(length) bytes in a reply of \(bytes.count) bytes")
        }
        acceptorEphemeral = Array(bytes[5..<h])
        confirmation = Array(bytes[h...])
    }
}

enum ClusterLinkWire {
    /// Checks as much of "PWCL" and the version as `bytes` holds (so a stranger is refused after
    /// its first byte that differs, not after a whole hello).
    static func checkPreamble(_ bytes: ArraySlice<UInt8>) throws(ClusterLinkError) {
        let magic = ClusterLinkLimits.magic
        let n = min(bytes.count, magic.count)
        guard bytes.prefix(n).elementsEqual(magic.prefix(n)) else { throw .badMagic(Array(bytes.prefix(magic.count))) }
        if bytes.count > magic.count, bytes[bytes.startIndex + magic.count] != ClusterLinkLimits.version {
            throw .unsupportedVersion(bytes[bytes.startIndex + magic.count])
        }
    }

    /// ChaCha20-Poly1305 nonce `0(4) || counter(8, big endian)`.
    static func nonce(_ counter: UInt64) -> ChaChaPoly.Nonce {
        var bytes: (UInt32, UInt32, UInt32) = (0, 0, 0)
        return withUnsafeMutableBytes(of: &bytes) { raw in
            raw.storeBytes(of: counter.bigEndian, toByteOffset: 4, as: UInt64.self)
            return try! ChaChaPoly.Nonce(data: UnsafeRawBufferPointer(raw))
        }
    }
}

/// Seals payloads into records for one direction of an established link
/// (`length(4) || ciphertext || tag(16)`, counter from 0; see ``ClusterLinkLimits``).
public struct ClusterLinkSealer: Sendable {
    private let key: SymmetricKey
    /// The counter of the next record sealed.
    public private(set) var nextCounter: UInt64 = 0

    /// Seals with `key` (32 bytes), the first record with counter 0.
    public init(key: SymmetricKey) { self.key = key }

    /// Appends `payload`'s readable bytes as one record to `out`; an empty payload makes a keepalive.
    ///
    /// - Throws: ``ClusterLinkError/payloadTooLarge(_:)``, ``ClusterLinkError/counterExhausted``.
    public mutating func seal(_ payload: ByteBuffer, into out: inout ByteBuffer) throws(ClusterLinkError) {
        let size = payload.readableBytes
        guard size <= ClusterLinkLimits.maximumRecordPayloadBytes else { throw .payloadTooLarge(size) }
        guard nextCounter < UInt64.max else { throw .counterExhausted }
        let length = UInt32(size + ClusterLinkLimits.tagBytes)
        out.reserveCapacity(minimumWritableBytes: size + ClusterLinkLimits.recordOverheadBytes)
        out.writeInteger(length, endianness: .big)
        let nonce = ClusterLinkWire.nonce(nextCounter)
        let key = self.key
        let box = withUnsafeBytes(of: length.bigEndian) { aad in
            payload.withUnsafeReadableBytes { plain in
                // Cannot fail with a 32-byte key and a 12-byte nonce.
                try! ChaChaPoly.seal(plain, using: key, nonce: nonce, authenticating: aad)
            }
        }
        // `combined` is nonce(12) || ciphertext || tag: skip the nonce.
        box.combined.withUnsafeBytes { _ = out.writeBytes(UnsafeRawBufferPointer(rebasing: $0[12...])) }
        nextCounter += 1
    }

    /// `payload` as one record.
    public mutating func seal(_ payload: ByteBuffer) throws(ClusterLinkError) -> ByteBuffer {
        var out = ByteBuffer()
        try seal(payload, into: &out)
        return out
    }
}

/// Opens the records of one direction of an established link as the bytes arrive, in chunks of
/// any size (one byte at a time works).
///
/// A length outside ``ClusterLinkLimits/minimumRecordLength``...``ClusterLinkLimits/maximumRecordLength``
/// is refused as soon as its 4 bytes are there; a record that does not open with the next counter
/// fails. The first error is final: every later call throws it again. Memory: at most one
/// incomplete record plus the last chunk appended.
public struct ClusterLinkOpener: Sendable {
    private let key: SymmetricKey
    private var buffer = ByteBuffer()
    private var failure: ClusterLinkError?
    /// The counter of the next record opened.
    public private(set) var nextCounter: UInt64 = 0

    /// Opens with `key` (32 bytes), the first record with counter 0.
    public init(key: SymmetricKey) { self.key = key }

    /// Bytes received but not yet part of a whole record.
    public var bufferedBytes: Int { buffer.readableBytes }

    /// Adds received bytes.
    public mutating func append(_ bytes: ByteBuffer) {
        guard failure == nil else { return }
        if buffer.readableBytes == 0 { buffer = bytes } else { buffer.writeImmutableBuffer(bytes) }
    }

    /// The length field of the next record once its 4 bytes are there (not checked).
    var pendingLength: Int? { buffer.getInteger(at: buffer.readerIndex, as: UInt32.self).map(Int.init) }

    /// The payload of the next whole record (empty for a keepalive), or `nil` until more bytes arrive.
    ///
    /// - Throws: ``ClusterLinkError/badRecordLength(_:)``,
    ///   ``ClusterLinkError/authenticationFailed(counter:)``, ``ClusterLinkError/counterExhausted``.
    public mutating func next() throws(ClusterLinkError) -> ByteBuffer? {
        if let failure { throw failure }
        guard let length = pendingLength else { return nil }
        guard length >= ClusterLinkLimits.minimumRecordLength, length <= ClusterLinkLimits.maximumRecordLength else {
            throw fail(.badRecordLength(length))
        }
        let total = ClusterLinkLimits.lengthBytes + length
        guard buffer.readableBytes >= total else { return nil }
        guard nextCounter < UInt64.max else { throw fail(.counterExhausted) }
        let nonce = ClusterLinkWire.nonce(nextCounter)
        let key = self.key
        let plain: Data? = buffer.withUnsafeReadableBytes { raw in
            let split = total - ClusterLinkLimits.tagBytes
            let aad = UnsafeRawBufferPointer(rebasing: raw[0..<ClusterLinkLimits.lengthBytes])
            guard let box = try? ChaChaPoly.SealedBox(
                nonce: nonce, ciphertext: UnsafeRawBufferPointer(rebasing: raw[ClusterLinkLimits.lengthBytes..<split]),
                tag: UnsafeRawBufferPointer(rebasing: raw[split..<total])) else { return nil }
            return try? ChaChaPoly.open(box, using: key, authenticating: aad)
        }
        guard let plain else { throw fail(.authenticationFailed(counter: nextCounter)) }
        nextCounter += 1
        buffer.moveReaderIndex(forwardBy: total)
        if buffer.readableBytes == 0 {
            buffer.clear()
        } else if buffer.readerIndex >= 64 * 1024 {
            buffer.discardReadBytes()
        }
        return ByteBuffer(bytes: plain)
    }

    /// Adds `bytes` and returns the payloads of every record now complete, in order, leaving out
    /// keepalives (empty records).
    public mutating func open(_ bytes: ByteBuffer) throws(ClusterLinkError) -> [ByteBuffer] {
        append(bytes)
        var out: [ByteBuffer] = []
        while let payload = try next() {
            if payload.readableBytes > 0 { out.append(payload) }
        }
        return out
    }

    mutating func fail(_ error: ClusterLinkError) -> ClusterLinkError {
        failure = error
        buffer = ByteBuffer()
        return error
    }
}
