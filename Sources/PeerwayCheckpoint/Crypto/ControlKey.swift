import Crypto
import Foundation

/// A 32-byte symmetric key stored inline (four words), so a million sessions hold their keys
/// without a heap object each; `symmetricKey` makes the swift-crypto key at the moment of use.
public struct ControlKey: Equatable, Sendable {
    var w0, w1, w2, w3: UInt64

    /// From exactly 32 bytes.
    public init(bytes: some Collection<UInt8>) {
        precondition(bytes.count == 32, "a control key is 32 bytes")
        var words = [UInt64](repeating: 0, count: 4)
        for (i, b) in bytes.enumerated() { words[i / 8] = words[i / 8] << 8 | UInt64(b) }
        (w0, w1, w2, w3) = (words[0], words[1], words[2], words[3])
    }

    public init(_ key: SymmetricKey) {
        self.init(bytes: key.withUnsafeBytes { Array($0) })
    }

    /// Calls `body` with the 32 bytes (big-endian words), on the stack.
    func withBytes<T>(_ body: (UnsafeRawBufferPointer) -> T) -> T {
        var be = (w0.bigEndian, w1.bigEndian, w2.bigEndian, w3.bigEndian)
        return withUnsafeBytes(of: &be, body)
    }

    /// The key as swift-crypto takes it.
    public var symmetricKey: SymmetricKey { withBytes { SymmetricKey(data: $0) } }

    /// The 32 bytes.
    var bytes: [UInt8] { withBytes { Array($0) } }
}

/// The two directions' keys of one control session and the transcript hash they were made
/// from (the registration signs the transcript, binding the PeerID to this very session).
///
/// Derivation (Noise-NK-like, one round trip, forward secret):
/// ```
/// transcript = SHA-256("peerway control v1" ‖ e_c ‖ S ‖ e_s ‖ session(8))
/// okm        = HKDF-SHA256(ikm: DH(e_c, S) ‖ DH(e_c, e_s), salt: transcript, info: "peerway control keys", 64)
/// peerToCheckpoint = okm[0..<32], checkpointToPeer = okm[32..<64]
/// ```
/// Only the holder of S's private key computes DH(e_c, S), which authenticates the checkpoint;
/// DH(e_c, e_s) makes recorded traffic undecryptable after both ephemeral keys are gone.
public struct ControlSessionKeys: Equatable, Sendable {
    public var peerToCheckpoint: ControlKey
    public var checkpointToPeer: ControlKey
    /// 32 bytes.
    public var transcript: [UInt8]

    static let transcriptLabel = Array("peerway control v1".utf8)
    static let keysInfo = Array("peerway control keys".utf8)

    /// Hash of the handshake's public values.
    public static func transcript(peerEphemeral: [UInt8], checkpointStatic: [UInt8], checkpointEphemeral: [UInt8],
                                  sessionID: UInt64) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: transcriptLabel)
        hasher.update(data: peerEphemeral)
        hasher.update(data: checkpointStatic)
        hasher.update(data: checkpointEphemeral)
        withUnsafeBytes(of: sessionID.bigEndian) { hasher.update(bufferPointer: $0) }
        return Array(hasher.finalize())
    }

    /// Derives both keys from the two shared secrets.
    public static func derive(staticShared: SharedSecret, ephemeralShared: SharedSecret,
                              transcript: [UInt8]) -> ControlSessionKeys {
        var ikm = staticShared.withUnsafeBytes { Array($0) }
        ephemeralShared.withUnsafeBytes { ikm.append(contentsOf: $0) }
        let okm = HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: ikm), salt: transcript,
                                         info: keysInfo, outputByteCount: 64)
        let bytes = okm.withUnsafeBytes { Array($0) }
        return ControlSessionKeys(peerToCheckpoint: ControlKey(bytes: bytes[0..<32]),
                                  checkpointToPeer: ControlKey(bytes: bytes[32..<64]),
                                  transcript: transcript)
    }
}
