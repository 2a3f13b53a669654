import Crypto
import Foundation
import NIOCore

/// The peer's side of the control channel's key exchange (see `ControlSessionKeys`).
///
/// Pure: it makes packets and consumes packets; the caller sends, retransmits and times out.
public struct ControlHandshakeInitiator: Sendable {
    /// Fresh per handshake, so each session has its own keys.
    public let ephemeral: Curve25519.KeyAgreement.PrivateKey
    /// The checkpoint's static key, from its address.
    public let checkpointKey: Curve25519.KeyAgreement.PublicKey
    /// The cookie received for this handshake, once one arrived.
    public private(set) var cookie: [UInt8]?

    public init(checkpointKey: Curve25519.KeyAgreement.PublicKey,
                ephemeral: Curve25519.KeyAgreement.PrivateKey = .init()) {
        self.checkpointKey = checkpointKey
        self.ephemeral = ephemeral
    }

    public var ephemeralKey: [UInt8] { Array(ephemeral.publicKey.rawRepresentation) }

    /// The hello to send now (with the cookie once one was accepted).
    public var hello: ControlPacket {
        .hello(ControlHello(ephemeralKey: ephemeralKey, cookie: cookie))
    }

    /// Takes a cookie if it echoes this handshake's key; returns whether it did.
    public mutating func accept(_ c: ControlCookie) -> Bool {
        guard c.echo == Array(ephemeralKey.prefix(ControlLimits.cookieEchoBytes)),
              c.cookie.count == ControlLimits.cookieBytes else { return false }
        cookie = c.cookie
        return true
    }

    /// Completes the exchange from the hello reply: the session keys and the welcome.
    public func complete(_ reply: ControlHelloReply) throws(ControlCryptoError) -> (keys: ControlSessionKeys, welcome: Welcome) {
        guard let checkpointEphemeral = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: reply.ephemeralKey),
              let ss = try? ephemeral.sharedSecretFromKeyAgreement(with: checkpointKey),
              let ee = try? ephemeral.sharedSecretFromKeyAgreement(with: checkpointEphemeral)
        else { throw .badKey }
        let transcript = ControlSessionKeys.transcript(
            peerEphemeral: ephemeralKey, checkpointStatic: Array(checkpointKey.rawRepresentation),
            checkpointEphemeral: reply.ephemeralKey, sessionID: reply.sessionID)
        let keys = ControlSessionKeys.derive(staticShared: ss, ephemeralShared: ee, transcript: transcript)
        var plain = try ControlCipher.open(
            reply.sealedWelcome, counter: 0, key: keys.checkpointToPeer,
            associatedData: ControlCipher.helloReplyHeader(sessionID: reply.sessionID, ephemeralKey: reply.ephemeralKey))
        let envelope: ControlEnvelope
        do { envelope = try plain.readControlFrame() } catch { throw .badWelcome("\(error)") }
        guard case .welcome(let welcome) = envelope.frame else { throw .badWelcome("frame is \(envelope.frame)") }
        return (keys, welcome)
    }
}

/// The checkpoint's side: answers a hello that carried a valid cookie.
public enum ControlHandshakeResponder {
    /// Makes the session keys and the hello reply for `hello`.
    /// - Parameters:
    ///   - sessionID: the new session's id (random, unique on this checkpoint).
    ///   - welcome: what the reply tells the peer (its observed endpoint, keepalive, time).
    public static func respond(to hello: ControlHello, key: SupernodeKey, sessionID: UInt64, welcome: Welcome,
                               ephemeral: Curve25519.KeyAgreement.PrivateKey = .init())
        throws(ControlCryptoError) -> (reply: ControlHelloReply, keys: ControlSessionKeys)
    {
        guard let peerEphemeral = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: hello.ephemeralKey),
              let ss = try? key.privateKey.sharedSecretFromKeyAgreement(with: peerEphemeral),
              let ee = try? ephemeral.sharedSecretFromKeyAgreement(with: peerEphemeral)
        else { throw .badKey }
        let ephemeralKey = Array(ephemeral.publicKey.rawRepresentation)
        let transcript = ControlSessionKeys.transcript(
            peerEphemeral: hello.ephemeralKey, checkpointStatic: Array(key.publicKey.rawRepresentation),
            checkpointEphemeral: ephemeralKey, sessionID: sessionID)
        let keys = ControlSessionKeys.derive(staticShared: ss, ephemeralShared: ee, transcript: transcript)
        var plain = ByteBuffer()
        plain.writeControlFrame(.welcome(welcome), id: 0)
        let sealed = ControlCipher.seal(plain, counter: 0, key: keys.checkpointToPeer,
                                        associatedData: ControlCipher.helloReplyHeader(sessionID: sessionID, ephemeralKey: ephemeralKey))
        return (ControlHelloReply(sessionID: sessionID, ephemeralKey: ephemeralKey, sealedWelcome: sealed), keys)
    }
}
