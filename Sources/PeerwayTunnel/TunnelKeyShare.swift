import Crypto
import Foundation
import NIOCore
import PeerwayCheckpoint

/// One side's contribution to the tunnel keys, sent inside its traversal offer
/// (docs/traversal-protocol.md, "Tunnel keys"):
///
///     ephemeral(32) identityPublicKey(32) signature(64)                       = 128 bytes
///
/// `signature` is Ed25519 by the identity key over
/// `"peerway-tunnel-v1" requestID(8) initiator(16) acceptor(16) role(1) transport(1) ephemeral(32)`,
/// so the share is bound to one connection request, one role and one transport. The receiver
/// checks (``verify(expectedPeer:context:)``) that the identity key hashes to the PeerID it
/// expects and that the signature verifies: the supernode relaying the shares cannot substitute
/// its own ephemeral key.
public struct TunnelKeyShare: Sendable, Hashable {
    /// The sender's ephemeral X25519 public key (32 bytes), made for this traversal only.
    public let ephemeral: [UInt8]
    /// The sender's Ed25519 identity public key (32 bytes); its SHA-256 prefix is its PeerID.
    public let identityPublicKey: [UInt8]
    /// Ed25519 signature (64 bytes) over ``signedBytes(context:ephemeral:)``.
    public let signature: [UInt8]

    /// From the three fields; `nil` unless they are 32, 32 and 64 bytes.
    public init?(ephemeral: [UInt8], identityPublicKey: [UInt8], signature: [UInt8]) {
        guard ephemeral.count == TunnelLimits.ephemeralKeyBytes,
              identityPublicKey.count == TunnelLimits.identityKeyBytes,
              signature.count == TunnelLimits.signatureBytes else { return nil }
        self.ephemeral = ephemeral
        self.identityPublicKey = identityPublicKey
        self.signature = signature
    }

    /// From its 128 wire bytes; `nil` for any other length.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == TunnelLimits.keyShareBytes else { return nil }
        let all = Array(bytes)
        let identityEnd = TunnelLimits.ephemeralKeyBytes + TunnelLimits.identityKeyBytes
        self.init(ephemeral: Array(all[0..<TunnelLimits.ephemeralKeyBytes]),
                  identityPublicKey: Array(all[TunnelLimits.ephemeralKeyBytes..<identityEnd]),
                  signature: Array(all[identityEnd...]))
    }

    /// The 128 wire bytes.
    public var bytes: [UInt8] { ephemeral + identityPublicKey + signature }

    /// The PeerID the identity key belongs to (how `PeerID` is derived everywhere).
    public var peerID: PeerID { PeerID(digestOf: identityPublicKey) }

    /// Makes this side's share for `context` (signed with `context.role`) and the ephemeral
    /// private key to keep until ``TunnelKeys/derive(ephemeralPrivateKey:theirShare:context:)``.
    public static func make(identity: PeerIdentity, context: TunnelContext)
        -> (share: TunnelKeyShare, ephemeralPrivateKey: Curve25519.KeyAgreement.PrivateKey)
    {
        let ephemeralKey = Curve25519.KeyAgreement.PrivateKey()
        return (make(identity: identity, context: context, ephemeralPrivateKey: ephemeralKey), ephemeralKey)
    }

    /// The share for a given ephemeral key (deterministic tests; production uses
    /// ``make(identity:context:)``, which makes a fresh key).
    public static func make(identity: PeerIdentity, context: TunnelContext,
                            ephemeralPrivateKey: Curve25519.KeyAgreement.PrivateKey) -> TunnelKeyShare {
        let ephemeral = Array(ephemeralPrivateKey.publicKey.rawRepresentation)
        let signed = signedBytes(context: context, ephemeral: ephemeral)
        // Ed25519 signing with a valid private key does not fail.
        let signature = try! identity.signature(for: signed)
        return TunnelKeyShare(ephemeral: ephemeral, identityPublicKey: Array(identity.publicKey.rawRepresentation),
                              signature: signature)!
    }

    /// The bytes a share signs: `"peerway-tunnel-v1" requestID(8) initiator(16) acceptor(16)
    /// role(1) transport(1) ephemeral(32)`, with `role` the signer's (`context.role`).
    public static func signedBytes(context: TunnelContext, ephemeral: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(TunnelLimits.signedShareBytes)
        out.append(contentsOf: TunnelLimits.label)
        out.appendBigEndian(context.requestID)
        out.appendBigEndian(context.initiator.high)
        out.appendBigEndian(context.initiator.low)
        out.appendBigEndian(context.acceptor.high)
        out.appendBigEndian(context.acceptor.low)
        out.append(context.role.rawValue)
        out.append(context.transport.rawValue)
        out.append(contentsOf: ephemeral)
        return out
    }

    /// Checks a share received from the other side.
    ///
    /// - Parameters:
    ///   - expectedPeer: the PeerID the other side must be (normally `context.remotePeer`).
    ///   - context: the *local* side's context; the signature must be over the same request,
    ///     peers and transport with the other role (`context.role.other`), so a share sent back to
    ///     its maker, or made for another request or transport, is refused.
    /// - Throws: ``TunnelError/wrongPeer(expected:actual:)`` when the identity key is not
    ///   `expectedPeer`'s, ``TunnelError/badKey`` when it is not an Ed25519 key,
    ///   ``TunnelError/badShareSignature`` when the signature does not verify.
    public func verify(expectedPeer: PeerID, context: TunnelContext) throws(TunnelError) {
        let actual = peerID
        guard actual == expectedPeer else { throw .wrongPeer(expected: expectedPeer, actual: actual) }
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: identityPublicKey) else { throw .badKey }
        let signed = Self.signedBytes(context: context.remote, ephemeral: ephemeral)
        guard key.isValidSignature(signature, for: signed) else { throw .badShareSignature }
    }
}

extension ByteBuffer {
    /// Writes the 128 bytes of `share`; returns 128.
    @discardableResult
    public mutating func writeTunnelKeyShare(_ share: TunnelKeyShare) -> Int {
        writeBytes(share.ephemeral) + writeBytes(share.identityPublicKey) + writeBytes(share.signature)
    }

    /// Reads a key share (128 bytes); `nil`, with the reader index unmoved, when fewer are readable.
    public mutating func readTunnelKeyShare() -> TunnelKeyShare? {
        guard let bytes = readBytes(length: TunnelLimits.keyShareBytes) else { return nil }
        return TunnelKeyShare(bytes: bytes)
    }
}
