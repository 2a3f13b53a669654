import Crypto
import Foundation
import NIOCore
import PeerwayCheckpoint

/// Encrypted UDP records of a tunnel (docs/traversal-protocol.md, "Encrypted records"):
///
///     type(1) counter(8) ciphertext tag(16)                         overhead 25 bytes
///
/// ChaCha20-Poly1305 with the direction's key (``TunnelKeys/sendKey`` to seal,
/// ``TunnelKeys/receiveKey`` to open), nonce `0(4) ‖ counter(8)`, associated data the first 9
/// bytes (`type ‖ counter`), so neither can be changed without the tag failing. Counters start at
/// ``TunnelLimits/firstDatagramCounter`` and go up by one per record; the receiver keeps a
/// ``TunnelLimits/replayWindow``-record window (`ReplayWindow`, RFC 6479 style): a record seen
/// before or older than the window is refused, a reordered one inside it is accepted.
///
/// One value per tunnel and direction pair: it holds the send counter and the replay window, so
/// it is a mutable struct owned by whoever owns the socket. No clocks: keepalive timing is the
/// caller's.
public struct TunnelDatagramCipher: Sendable {
    /// The `type` byte of a record.
    public enum RecordType: UInt8, Sendable, Hashable, CaseIterable {
        /// Application payload (0x17).
        case data = 0x17
        /// Keeps NAT mappings open; payload normally empty (0x18).
        case keepalive = 0x18
        /// The sender closes the tunnel; payload normally empty (0x19).
        case close = 0x19
    }

    /// An opened record.
    public struct Record: Sendable, Hashable {
        public var type: RecordType
        public var counter: UInt64
        public var payload: [UInt8]

        public init(type: RecordType, counter: UInt64, payload: [UInt8]) {
            self.type = type
            self.counter = counter
            self.payload = payload
        }
    }

    private let sendKey: SymmetricKey
    private let receiveKey: SymmetricKey
    /// The counter of the next record sealed.
    public private(set) var nextCounter: UInt64 = TunnelLimits.firstDatagramCounter
    /// Counters of records opened so far.
    public private(set) var replayWindow = ReplayWindow()

    /// The cipher of one side of a tunnel: seals with `keys.sendKey`, opens with `keys.receiveKey`.
    public init(keys: TunnelKeys) {
        self.init(sendKey: keys.sendKey, receiveKey: keys.receiveKey)
    }

    /// From explicit direction keys (tests, benchmarks).
    public init(sendKey: SymmetricKey, receiveKey: SymmetricKey) {
        self.sendKey = sendKey
        self.receiveKey = receiveKey
    }

    /// `true` when `firstByte` is a record type (0x17-0x19): a cheap demultiplexing check that
    /// never matches a probe (`"P"` = 0x50).
    public static func isRecord(firstByte: UInt8) -> Bool { RecordType(rawValue: firstByte) != nil }

    // MARK: Sealing

    /// Appends the record of `payload` to `out` (reserve
    /// `payload.count + TunnelLimits.datagramOverheadBytes` first to avoid regrowth).
    ///
    /// - Throws: ``TunnelError/payloadTooLarge(bytes:limit:)`` above
    ///   ``TunnelLimits/maximumDatagramPayloadBytes``; ``TunnelError/counterExhausted``.
    public mutating func seal(_ payload: UnsafeRawBufferPointer, type: RecordType = .data,
                              appendingTo out: inout [UInt8]) throws(TunnelError) {
        let counter = try takeCounter(payloadBytes: payload.count)
        Self.withHeader(type: type, counter: counter) { header in
            out.append(contentsOf: header)
            TunnelCrypto.seal(payload, key: sendKey, counter: counter, associatedData: header, appendingTo: &out)
        }
    }

    /// The record of `payload`.
    public mutating func seal(_ payload: [UInt8], type: RecordType = .data) throws(TunnelError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(payload.count + TunnelLimits.datagramOverheadBytes)
        try withTunnelBytes(of: payload) { (raw) throws(TunnelError) in try seal(raw, type: type, appendingTo: &out) }
        return out
    }

    /// Writes the record of `payload`'s readable bytes into `out`.
    public mutating func seal(_ payload: ByteBuffer, type: RecordType = .data,
                              into out: inout ByteBuffer) throws(TunnelError) {
        let counter = try takeCounter(payloadBytes: payload.readableBytes)
        let key = sendKey
        Self.withHeader(type: type, counter: counter) { header in
            out.reserveCapacity(minimumWritableBytes: payload.readableBytes + TunnelLimits.datagramOverheadBytes)
            out.writeBytes(header)
            let box = payload.withUnsafeReadableBytes { plain in
                try! ChaChaPoly.seal(plain, using: key, nonce: TunnelCrypto.nonce(counter), authenticating: header)
            }
            // `combined` is nonce ‖ ciphertext ‖ tag: skip the nonce.
            _ = box.combined.withUnsafeBytes { out.writeBytes(UnsafeRawBufferPointer(rebasing: $0[12...])) }
        }
    }

    private mutating func takeCounter(payloadBytes: Int) throws(TunnelError) -> UInt64 {
        guard payloadBytes <= TunnelLimits.maximumDatagramPayloadBytes else {
            throw .payloadTooLarge(bytes: payloadBytes, limit: TunnelLimits.maximumDatagramPayloadBytes)
        }
        guard nextCounter < UInt64.max else { throw .counterExhausted }
        defer { nextCounter += 1 }
        return nextCounter
    }

    /// Calls `body` with the 9-byte header `type ‖ counter`, built on the stack.
    private static func withHeader<T, E: Error>(type: RecordType, counter: UInt64,
                                                _ body: (UnsafeRawBufferPointer) throws(E) -> T) throws(E) -> T {
        var storage: (UInt64, UInt64) = (0, 0)
        return try withUnsafeMutableBytes(of: &storage) { (raw) throws(E) -> T in
            raw[0] = type.rawValue
            raw.storeBytes(of: counter.bigEndian, toByteOffset: 1, as: UInt64.self)
            return try body(UnsafeRawBufferPointer(rebasing: raw[0..<TunnelLimits.datagramHeaderBytes]))
        }
    }

    // MARK: Opening

    /// Opens one received record and records its counter in the replay window.
    ///
    /// The window moves only after the tag verified, so forged records cannot push it.
    /// - Throws: ``TunnelError/truncated(what:needed:got:)``,
    ///   ``TunnelError/unknownRecordType(_:)``, ``TunnelError/replayed(counter:)``,
    ///   ``TunnelError/authenticationFailed(_:)`` (`.datagram`): drop the datagram in each case.
    public mutating func open(_ raw: UnsafeRawBufferPointer) throws(TunnelError) -> Record {
        guard raw.count >= TunnelLimits.datagramOverheadBytes else {
            throw .truncated(what: "tunnel record", needed: TunnelLimits.datagramOverheadBytes, got: raw.count)
        }
        guard raw.count <= TunnelLimits.maximumDatagramBytes else {
            throw .payloadTooLarge(bytes: raw.count - TunnelLimits.datagramOverheadBytes,
                                   limit: TunnelLimits.maximumDatagramPayloadBytes)
        }
        guard let type = RecordType(rawValue: raw[0]) else { throw .unknownRecordType(raw[0]) }
        let counter: UInt64 = raw.bigEndian(at: 1)
        guard replayWindow.check(counter) else { throw .replayed(counter: counter) }
        let header = UnsafeRawBufferPointer(rebasing: raw[0..<TunnelLimits.datagramHeaderBytes])
        let sealed = UnsafeRawBufferPointer(rebasing: raw[TunnelLimits.datagramHeaderBytes...])
        guard let payload = TunnelCrypto.open(sealed, key: receiveKey, counter: counter, associatedData: header) else {
            throw .authenticationFailed(.datagram)
        }
        replayWindow.record(counter)
        return Record(type: type, counter: counter, payload: payload)
    }

    /// Opens one received record (see ``open(_:)-(UnsafeRawBufferPointer)``).
    public mutating func open(_ record: [UInt8]) throws(TunnelError) -> Record {
        try withTunnelBytes(of: record) { (raw) throws(TunnelError) in try open(raw) }
    }

    /// Opens the readable bytes of a received datagram; the buffer (a copy) is not consumed.
    public mutating func open(_ datagram: ByteBuffer) throws(TunnelError) -> Record {
        try withTunnelBytes(of: datagram) { (raw) throws(TunnelError) in try open(raw) }
    }
}
