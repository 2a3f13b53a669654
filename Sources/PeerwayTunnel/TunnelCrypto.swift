import Crypto
import Foundation
import NIOCore

/// The primitives every tunnel format shares, built to avoid temporary arrays on the hot path
/// (the same tricks as `ControlCipher`: the nonce on the stack, the sealed box's `combined`
/// buffer copied once, skipping its nonce).
enum TunnelCrypto {
    /// ChaCha20-Poly1305 nonce `0(4) ‖ counter(8)` (docs/traversal-protocol.md, "Encrypted
    /// records"), built on the stack.
    static func nonce(_ counter: UInt64) -> ChaChaPoly.Nonce {
        var bytes: (UInt32, UInt64) = (0, 0)
        return withUnsafeMutableBytes(of: &bytes) { raw in
            // The tuple is laid out as UInt32, 4 bytes padding, UInt64: write the 12 bytes we use.
            raw.storeBytes(of: UInt32(0), toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: counter.bigEndian, toByteOffset: 4, as: UInt64.self)
            return try! ChaChaPoly.Nonce(data: UnsafeRawBufferPointer(rebasing: raw[0..<12]))
        }
    }

    /// Appends `ciphertext ‖ tag` of `plaintext` to `out`.
    static func seal(_ plaintext: UnsafeRawBufferPointer, key: SymmetricKey, counter: UInt64,
                     associatedData: UnsafeRawBufferPointer, appendingTo out: inout [UInt8]) {
        // ChaCha20-Poly1305 cannot fail with a 32-byte key and a 12-byte nonce.
        let box = try! ChaChaPoly.seal(plaintext, using: key, nonce: nonce(counter), authenticating: associatedData)
        box.combined.withUnsafeBytes { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[12...])) }
    }

    /// Decrypts `ciphertext ‖ tag` into `[UInt8]`; `nil` when the tag does not verify.
    static func open(_ sealed: UnsafeRawBufferPointer, key: SymmetricKey, counter: UInt64,
                     associatedData: UnsafeRawBufferPointer) -> [UInt8]? {
        guard sealed.count >= TunnelLimits.aeadTagBytes else { return nil }
        let split = sealed.count - TunnelLimits.aeadTagBytes
        do {
            let box = try ChaChaPoly.SealedBox(nonce: nonce(counter),
                                               ciphertext: UnsafeRawBufferPointer(rebasing: sealed[..<split]),
                                               tag: UnsafeRawBufferPointer(rebasing: sealed[split...]))
            let plain = try ChaChaPoly.open(box, using: key, authenticating: associatedData)
            return plain.withUnsafeBytes { [UInt8]($0) }
        } catch {
            return nil
        }
    }

    /// Appends HMAC-SHA256(key, out[start...])[0..<16] to `out` (no copy of the signed bytes).
    static func appendMAC(over start: Int, of out: inout [UInt8], key: SymmetricKey) {
        let mac = out.withUnsafeBytes {
            HMAC<SHA256>.authenticationCode(for: UnsafeRawBufferPointer(rebasing: $0[start...]), using: key)
        }
        mac.withUnsafeBytes { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[0..<TunnelLimits.probeMACBytes])) }
    }

    /// True when `mac` (16 bytes) is HMAC-SHA256(key, bytes)[0..<16]; compares in constant time.
    static func verifyMAC(_ mac: UnsafeRawBufferPointer, of bytes: UnsafeRawBufferPointer, key: SymmetricKey) -> Bool {
        guard mac.count == TunnelLimits.probeMACBytes else { return false }
        let expected = HMAC<SHA256>.authenticationCode(for: bytes, using: key)
        return expected.withUnsafeBytes { full in
            var difference: UInt8 = 0
            for i in 0..<mac.count { difference |= full[i] ^ mac[i] }
            return difference == 0
        }
    }
}

extension UnsafeRawBufferPointer {
    /// The big-endian integer at `offset` (no alignment needed).
    @inline(__always)
    func bigEndian<T: FixedWidthInteger>(at offset: Int, as: T.Type = T.self) -> T {
        T(bigEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension Array where Element == UInt8 {
    /// Appends `value` big-endian.
    @inline(__always)
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

/// `withUnsafeBytes` with the typed error kept (the standard and NIO ones are `rethrows`).
@inline(__always)
func withTunnelBytes<T>(of bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(TunnelError) -> T) throws(TunnelError) -> T {
    try bytes.withUnsafeBytes { raw in Result { () throws(TunnelError) -> T in try body(raw) } }.get()
}

/// `withUnsafeReadableBytes` with the typed error kept.
@inline(__always)
func withTunnelBytes<T>(of buffer: ByteBuffer, _ body: (UnsafeRawBufferPointer) throws(TunnelError) -> T) throws(TunnelError) -> T {
    try buffer.withUnsafeReadableBytes { raw in Result { () throws(TunnelError) -> T in try body(raw) } }.get()
}
