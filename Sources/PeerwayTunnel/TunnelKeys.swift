import Crypto
import Foundation
import PeerwayCheckpoint

/// The keys of one tunnel, as one side holds them (docs/traversal-protocol.md, "Tunnel keys"):
///
///     shared = X25519(mine, theirs)
///     salt   = SHA-256("peerway-tunnel-v1" requestID(8) initiator(16) acceptor(16) transport(1)
///                      initiatorEphemeral(32) acceptorEphemeral(32))
///     okm    = HKDF-SHA256(shared, salt, info "peerway tunnel keys", 104 bytes)
///            = initiator→acceptor key(32) ‖ acceptor→initiator key(32) ‖ probe key(32) ‖ tag(8)
///
/// Both sides compute the same 104 bytes; ``role`` decides which direction key is
/// ``sendKey`` and which is ``receiveKey``. Forward secret: once both ephemeral private keys are
/// gone, recorded traffic cannot be decrypted, even with the identity keys.
public struct TunnelKeys: Sendable, Equatable {
    /// The side holding these keys.
    public let role: TunnelRole
    /// ChaCha20-Poly1305 key of records from the initiator to the acceptor.
    public let initiatorToAcceptor: SymmetricKey
    /// ChaCha20-Poly1305 key of records from the acceptor to the initiator.
    public let acceptorToInitiator: SymmetricKey
    /// HMAC-SHA256 key of probes and of the stream hello (both directions).
    public let probeKey: SymmetricKey
    /// The tunnel tag (okm bytes 96-103, big-endian): names this tunnel in probes and hellos, so
    /// a socket shared by several traversals tells their probes apart before any MAC.
    public let tag: UInt64

    /// From given keys (tests, or keys kept from an earlier derivation).
    public init(role: TunnelRole, initiatorToAcceptor: SymmetricKey, acceptorToInitiator: SymmetricKey,
                probeKey: SymmetricKey, tag: UInt64) {
        self.role = role
        self.initiatorToAcceptor = initiatorToAcceptor
        self.acceptorToInitiator = acceptorToInitiator
        self.probeKey = probeKey
        self.tag = tag
    }

    /// The key this side seals its records with.
    public var sendKey: SymmetricKey { role == .initiator ? initiatorToAcceptor : acceptorToInitiator }
    /// The key this side opens the other side's records with.
    public var receiveKey: SymmetricKey { role == .initiator ? acceptorToInitiator : initiatorToAcceptor }

    /// Verifies the other side's share and derives the tunnel keys.
    ///
    /// - Parameters:
    ///   - ephemeralPrivateKey: the key ``TunnelKeyShare/make(identity:context:)`` returned
    ///     with this side's share.
    ///   - theirShare: the other side's share, checked with
    ///     ``TunnelKeyShare/verify(expectedPeer:context:)`` against `context.remotePeer`.
    ///   - context: this side's context (its `role` is the role of the keys returned).
    /// - Throws: the share's verification errors, or ``TunnelError/badKey`` when the other
    ///   ephemeral key is not an X25519 key or is a low-order point (all-zero shared secret).
    public static func derive(ephemeralPrivateKey: Curve25519.KeyAgreement.PrivateKey, theirShare: TunnelKeyShare,
                              context: TunnelContext) throws(TunnelError) -> TunnelKeys {
        try theirShare.verify(expectedPeer: context.remotePeer, context: context)
        guard let theirKey = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: theirShare.ephemeral),
              let shared = try? ephemeralPrivateKey.sharedSecretFromKeyAgreement(with: theirKey) else { throw .badKey }
        // swift-crypto does not refuse the all-zero secret of a low-order point: do it here.
        let allZero = shared.withUnsafeBytes { $0.allSatisfy { $0 == 0 } }
        guard !allZero else { throw .badKey }

        let mine = Array(ephemeralPrivateKey.publicKey.rawRepresentation)
        let (initiatorEphemeral, acceptorEphemeral) = context.role == .initiator
            ? (mine, theirShare.ephemeral) : (theirShare.ephemeral, mine)
        let salt = Self.salt(context: context, initiatorEphemeral: initiatorEphemeral,
                             acceptorEphemeral: acceptorEphemeral)
        let okm = shared.hkdfDerivedSymmetricKey(using: SHA256.self, salt: salt, sharedInfo: TunnelLimits.keysInfo,
                                                 outputByteCount: TunnelLimits.derivedBytes)
        return okm.withUnsafeBytes { raw in
            let k = TunnelLimits.keyBytes
            return TunnelKeys(role: context.role,
                              initiatorToAcceptor: SymmetricKey(data: UnsafeRawBufferPointer(rebasing: raw[0..<k])),
                              acceptorToInitiator: SymmetricKey(data: UnsafeRawBufferPointer(rebasing: raw[k..<2 * k])),
                              probeKey: SymmetricKey(data: UnsafeRawBufferPointer(rebasing: raw[2 * k..<3 * k])),
                              tag: raw.bigEndian(at: 3 * k, as: UInt64.self))
        }
    }

    /// The HKDF salt: SHA-256 over the label, the request, both peers, the transport and both
    /// ephemeral keys (initiator's first). The role is not in it: both sides compute the same.
    public static func salt(context: TunnelContext, initiatorEphemeral: [UInt8], acceptorEphemeral: [UInt8]) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: TunnelLimits.label)
        var fixed: [UInt8] = []
        fixed.reserveCapacity(8 + 16 + 16 + 1)
        fixed.appendBigEndian(context.requestID)
        fixed.appendBigEndian(context.initiator.high)
        fixed.appendBigEndian(context.initiator.low)
        fixed.appendBigEndian(context.acceptor.high)
        fixed.appendBigEndian(context.acceptor.low)
        fixed.append(context.transport.rawValue)
        hasher.update(data: fixed)
        hasher.update(data: initiatorEphemeral)
        hasher.update(data: acceptorEphemeral)
        return Array(hasher.finalize())
    }
}
