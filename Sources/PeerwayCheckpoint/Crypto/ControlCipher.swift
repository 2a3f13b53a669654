import Crypto
import Foundation
import NIOCore

/// ChaCha20-Poly1305 for control packets. The nonce is `0(4) ‖ counter(8)`; the associated data
/// is the packet's cleartext header (20 bytes for `sealed`, 44 for `helloReply`), so a header
/// cannot be changed or moved to another session without the tag failing.
public enum ControlCipher {
    /// The cleartext header of a sealed packet (also its associated data).
    public static func sealedHeader(sessionID: UInt64, counter: UInt64) -> [UInt8] {
        withSealedHeader(sessionID: sessionID, counter: counter) { Array($0) }
    }

    /// The associated data of a hello reply: its first 44 bytes.
    public static func helloReplyHeader(sessionID: UInt64, ephemeralKey: [UInt8]) -> [UInt8] {
        var h: [UInt8] = [ControlLimits.version, ControlPacket.Kind.helloReply.rawValue, 0, 0]
        withUnsafeBytes(of: sessionID.bigEndian) { h.append(contentsOf: $0) }
        h.append(contentsOf: ephemeralKey)
        return h
    }

    static func nonce(_ counter: UInt64) -> ChaChaPoly.Nonce {
        // 0(4) ‖ counter(8), built on the stack rather than in an array.
        var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &bytes) { raw in
            raw.storeBytes(of: counter.bigEndian, toByteOffset: 4, as: UInt64.self)
            return try! ChaChaPoly.Nonce(data: UnsafeRawBufferPointer(raw))
        }
    }

    /// Encrypts `plaintext` and returns `ciphertext ‖ tag`.
    public static func seal(_ plaintext: ByteBuffer, counter: UInt64, key: ControlKey, associatedData: [UInt8]) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(plaintext.readableBytes + ControlLimits.tagBytes)
        append(sealing: plaintext, counter: counter, key: key, associatedData: associatedData, to: &out)
        return out
    }

    /// Appends `ciphertext ‖ tag` of `plaintext` to `out`.
    private static func append(sealing plaintext: ByteBuffer, counter: UInt64, key: ControlKey,
                               associatedData: some DataProtocol, to out: inout ByteBuffer) {
        let box = plaintext.withUnsafeReadableBytes { bytes in
            try! ChaChaPoly.seal(bytes, using: key.symmetricKey, nonce: nonce(counter), authenticating: associatedData)
        }
        // `combined` is nonce ‖ ciphertext ‖ tag in one buffer: skip the nonce.
        _ = box.combined.withUnsafeBytes { out.writeBytes(UnsafeRawBufferPointer(rebasing: $0[12...])) }
    }

    /// Decrypts `ciphertext ‖ tag`; throws `.authenticationFailed` when the tag does not verify.
    public static func open(_ sealed: ByteBuffer, counter: UInt64, key: ControlKey,
                            associatedData: some DataProtocol) throws(ControlCryptoError) -> ByteBuffer {
        guard sealed.readableBytes >= ControlLimits.tagBytes else { throw .authenticationFailed }
        do {
            let plain = try sealed.withUnsafeReadableBytes { bytes -> Data in
                let split = bytes.count - ControlLimits.tagBytes
                let box = try ChaChaPoly.SealedBox(nonce: nonce(counter),
                                                   ciphertext: UnsafeRawBufferPointer(rebasing: bytes[..<split]),
                                                   tag: UnsafeRawBufferPointer(rebasing: bytes[split...]))
                return try ChaChaPoly.open(box, using: key.symmetricKey, authenticating: associatedData)
            }
            return ByteBuffer(bytes: plain)
        } catch {
            throw .authenticationFailed
        }
    }

    /// A whole sealed packet for `frame` (header, ciphertext, tag).
    public static func sealPacket(_ plaintext: ByteBuffer, sessionID: UInt64, counter: UInt64, key: ControlKey) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(ControlLimits.sealedHeaderBytes + plaintext.readableBytes + ControlLimits.tagBytes)
        withSealedHeader(sessionID: sessionID, counter: counter) { header in
            out.writeBytes(header)
            append(sealing: plaintext, counter: counter, key: key, associatedData: header, to: &out)
        }
        return out
    }

    /// Opens a sealed packet's body with its header as associated data.
    public static func openPacket(_ sealed: ControlSealed, key: ControlKey) throws(ControlCryptoError) -> ByteBuffer {
        try withSealedHeader(sessionID: sealed.sessionID, counter: sealed.counter) { (header) throws(ControlCryptoError) in
            try open(sealed.ciphertext, counter: sealed.counter, key: key, associatedData: header)
        }
    }

    /// Calls `body` with a sealed packet's 20-byte header, built on the stack.
    private static func withSealedHeader<T, E: Error>(sessionID: UInt64, counter: UInt64,
                                                      _ body: (UnsafeRawBufferPointer) throws(E) -> T) throws(E) -> T {
        var storage: (UInt64, UInt64, UInt64) = (0, 0, 0)
        return try withUnsafeMutableBytes(of: &storage) { (raw) throws(E) -> T in
            raw.storeBytes(of: (UInt16(ControlLimits.version) << 8 | UInt16(ControlPacket.Kind.sealed.rawValue)).bigEndian,
                           toByteOffset: 0, as: UInt16.self)
            raw.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
            raw.storeBytes(of: sessionID.bigEndian, toByteOffset: 4, as: UInt64.self)
            raw.storeBytes(of: counter.bigEndian, toByteOffset: 12, as: UInt64.self)
            return try body(UnsafeRawBufferPointer(rebasing: raw[0..<ControlLimits.sealedHeaderBytes]))
        }
    }
}

/// Why a control packet could not be authenticated or a handshake not completed.
public enum ControlCryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The AEAD tag did not verify: wrong key, tampered bytes, or not meant for this session.
    case authenticationFailed
    /// The counter was seen before or is older than the replay window.
    case replayed(counter: UInt64)
    /// A public key in the handshake is not a valid X25519 key.
    case badKey
    /// The hello reply did not carry a welcome frame.
    case badWelcome(String)

    public var description: String {
        switch self {
        case .authenticationFailed: return "control packet failed authentication (wrong supernode key, or tampered)"
        case .replayed(let c): return "control packet counter \(c) was replayed or is too old"
        case .badKey: return "handshake carried an invalid X25519 public key"
        case .badWelcome(let why): return "hello reply is not a valid welcome: \(why)"
        }
    }
}
