import Crypto
import Foundation
import NIOCore

/// What the driver of a ``ClusterLink`` does after feeding it bytes, in order.
public enum ClusterLinkAction: Equatable, Sendable {
    /// Write these bytes to the connection (the reply, or the dialer's confirmation).
    case send(ByteBuffer)
    /// The handshake completed: `peer` (its static public key) proved it holds its private key.
    /// Payloads may be sealed from now on.
    case established(peer: [UInt8])
    /// A payload arrived (in order; keepalives are not delivered).
    case deliver(ByteBuffer)
}

/// One side of a cluster link: the handshake and then the records, as a pure state machine
/// (no I/O, no clock; see ``ClusterLinkLimits`` for the flow and the timers its driver keeps).
///
/// The dialer sends ``hello`` first; both sides then pass every received chunk (any size) to
/// ``receive(_:)`` and perform the returned actions in order, and seal outgoing payloads with
/// ``seal(_:)`` once established. Any thrown error is final (later calls throw it again): close
/// the connection.
public struct ClusterLink: Sendable {
    /// Which end of the TCP connection this is.
    public enum Role: Sendable, Equatable {
        /// Opened the connection; knows the acceptor's static key in advance.
        case dialer
        /// Accepted the connection; learns the dialer's static key from the hello.
        case acceptor
    }

    private enum State: Sendable {
        /// Acceptor: waiting for the whole hello.
        case awaitingHello
        /// Dialer: waiting for the reply header.
        case awaitingReply
        /// Either side: keys derived, waiting for the other side's (empty) first record.
        case awaitingConfirmation
        case established
        case failed(ClusterLinkError)
    }

    /// This side's role.
    public let role: Role
    /// This side's static public key (32 bytes).
    public let localKey: [UInt8]
    /// The other side's static public key: for a dialer the one it expects from the start, for an
    /// acceptor the one the hello presented. Authenticated only once ``isEstablished``.
    public private(set) var peerKey: [UInt8]?

    private let staticKey: Curve25519.KeyAgreement.PrivateKey
    private let ephemeral: Curve25519.KeyAgreement.PrivateKey
    private let isAllowed: @Sendable ([UInt8]) -> Bool
    private var state: State
    /// Handshake bytes received and not yet consumed.
    private var pending = ByteBuffer()
    /// The dialer's hello (the first half of the transcript).
    private var helloBytes: [UInt8] = []
    private var sealer: ClusterLinkSealer?
    private var opener: ClusterLinkOpener?

    /// A dialer that means to reach the supernode whose static public key is `acceptor`.
    ///
    /// - Parameter ephemeral: this link's fresh key (tests pass a fixed one).
    /// - Throws: ``ClusterLinkError/badKey(_:)`` when `acceptor` is not a 32-byte X25519 key.
    public init(dialing acceptor: [UInt8], key: SupernodeKey,
                ephemeral: Curve25519.KeyAgreement.PrivateKey = .init()) throws(ClusterLinkError) {
        guard acceptor.count == ClusterLinkLimits.keyBytes else {
            throw .badKey("the acceptor's key has \(acceptor.count) bytes, not \(ClusterLinkLimits.keyBytes)")
        }
        role = .dialer
        staticKey = key.privateKey
        localKey = Array(key.publicKey.rawRepresentation)
        self.ephemeral = ephemeral
        isAllowed = { _ in false }
        peerKey = acceptor
        state = .awaitingReply
        helloBytes = ClusterLinkHello(dialerStatic: localKey, dialerEphemeral: Array(ephemeral.publicKey.rawRepresentation),
                                      acceptorStatic: acceptor).bytes
    }

    /// An acceptor that lets in only dialers whose static public key `isAllowed` approves.
    ///
    /// - Parameters:
    ///   - isAllowed: asked once per connection with the dialer's static key (32 bytes), before
    ///     any key agreement; `false` refuses the link.
    ///   - ephemeral: this link's fresh key (tests pass a fixed one).
    public init(accepting key: SupernodeKey, isAllowed: @escaping @Sendable ([UInt8]) -> Bool,
                ephemeral: Curve25519.KeyAgreement.PrivateKey = .init()) {
        role = .acceptor
        staticKey = key.privateKey
        localKey = Array(key.publicKey.rawRepresentation)
        self.ephemeral = ephemeral
        self.isAllowed = isAllowed
        state = .awaitingHello
    }

    /// The dialer's hello, to send as soon as the connection is open (empty for an acceptor).
    public var hello: ByteBuffer { ByteBuffer(bytes: helloBytes) }

    /// True once the other side proved its static key; ``seal(_:)`` works from then on.
    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// The error that ended the link, if one did.
    public var failure: ClusterLinkError? {
        if case .failed(let error) = state { return error }
        return nil
    }

    /// Takes the next received bytes (any chunk size) and returns what to do, in order.
    ///
    /// - Throws: any ``ClusterLinkError``; the first is final.
    public mutating func receive(_ bytes: ByteBuffer) throws(ClusterLinkError) -> [ClusterLinkAction] {
        var actions: [ClusterLinkAction] = []
        do {
            try step(bytes, into: &actions)
        } catch {
            state = .failed(error)
            pending = ByteBuffer()
            sealer = nil
            opener = nil
            throw error
        }
        return actions
    }

    /// `payload` as one record for the other side (an empty payload is a keepalive).
    ///
    /// - Throws: ``ClusterLinkError/notEstablished`` before the handshake completed (or after a
    ///   failure), ``ClusterLinkError/payloadTooLarge(_:)``, ``ClusterLinkError/counterExhausted``.
    public mutating func seal(_ payload: ByteBuffer) throws(ClusterLinkError) -> ByteBuffer {
        var out = ByteBuffer()
        try seal(payload, into: &out)
        return out
    }

    /// Appends `payload` as one record to `out` (see ``seal(_:)``).
    public mutating func seal(_ payload: ByteBuffer, into out: inout ByteBuffer) throws(ClusterLinkError) {
        guard isEstablished, sealer != nil else { throw .notEstablished }
        try sealer!.seal(payload, into: &out)
    }

    // MARK: the steps

    private mutating func step(_ bytes: ByteBuffer, into actions: inout [ClusterLinkAction]) throws(ClusterLinkError) {
        switch state {
        case .failed(let error):
            throw error
        case .established:
            try deliverRecords(bytes, into: &actions)
        case .awaitingConfirmation:
            try confirm(bytes, into: &actions)
        case .awaitingHello, .awaitingReply:
            pending.writeImmutableBuffer(bytes)
            let needed = role == .acceptor ? ClusterLinkLimits.helloBytes : ClusterLinkLimits.replyHeaderBytes
            let head = pending.getBytes(at: pending.readerIndex, length: min(pending.readableBytes, needed)) ?? []
            try ClusterLinkWire.checkPreamble(head[...])
            guard head.count == needed else { return }
            pending.moveReaderIndex(forwardBy: needed)
            let rest = pending
            pending = ByteBuffer()
            if role == .acceptor {
                try acceptHello(head, into: &actions)
            } else {
                try takeReplyHeader(head)
            }
            state = .awaitingConfirmation
            try confirm(rest, into: &actions)
        }
    }

    /// Acceptor: checks the hello, derives the keys and answers with the reply.
    private mutating func acceptHello(_ bytes: [UInt8], into actions: inout [ClusterLinkAction]) throws(ClusterLinkError) {
        let hello = try ClusterLinkHello(decoding: bytes)
        guard hello.acceptorStatic == localKey else { throw .wrongAcceptor(expected: hello.acceptorStatic) }
        guard hello.dialerStatic != localKey else { throw .dialerIsSelf }
        guard isAllowed(hello.dialerStatic) else { throw .dialerNotAllowed(hello.dialerStatic) }
        let dialerStatic = try Self.publicKey(hello.dialerStatic, "the dialer's static key")
        let dialerEphemeral = try Self.publicKey(hello.dialerEphemeral, "the dialer's ephemeral key")
        peerKey = hello.dialerStatic
        let header = ClusterLinkReply.header(acceptorEphemeral: Array(ephemeral.publicKey.rawRepresentation))
        let keys = try ClusterLinkKeys.derive(
            ee: Self.agree(ephemeral, dialerEphemeral, "ee"),
            es: Self.agree(staticKey, dialerEphemeral, "es"),
            se: Self.agree(ephemeral, dialerStatic, "se"),
            transcript: bytes + header)
        var sealer = ClusterLinkSealer(key: keys.acceptorToDialer)
        var reply = ByteBuffer(bytes: header)
        try sealer.seal(ByteBuffer(), into: &reply)
        self.sealer = sealer
        opener = ClusterLinkOpener(key: keys.dialerToAcceptor)
        actions.append(.send(reply))
    }

    /// Dialer: derives the keys from the reply header (the confirmation record follows).
    private mutating func takeReplyHeader(_ header: [UInt8]) throws(ClusterLinkError) {
        let acceptorEphemeral = try Self.publicKey(Array(header[5...]), "the acceptor's ephemeral key")
        let acceptorStatic = try Self.publicKey(peerKey ?? [], "the acceptor's static key")
        let keys = try ClusterLinkKeys.derive(
            ee: Self.agree(ephemeral, acceptorEphemeral, "ee"),
            es: Self.agree(ephemeral, acceptorStatic, "es"),
            se: Self.agree(staticKey, acceptorEphemeral, "se"),
            transcript: helloBytes + header)
        sealer = ClusterLinkSealer(key: keys.dialerToAcceptor)
        opener = ClusterLinkOpener(key: keys.acceptorToDialer)
    }

    /// Either side: opens the other side's first record, which must be empty.
    private mutating func confirm(_ bytes: ByteBuffer, into actions: inout [ClusterLinkAction]) throws(ClusterLinkError) {
        guard var opener else { throw .notEstablished }
        opener.append(bytes)
        // Refuse a first record of any other size before buffering it.
        if let length = opener.pendingLength, length != ClusterLinkLimits.tagBytes {
            self.opener = opener
            throw .badConfirmation("the first record has length \(length), not \(ClusterLinkLimits.tagBytes)")
        }
        guard try opener.next() != nil else {
            self.opener = opener
            return
        }
        self.opener = opener
        if role == .dialer {
            var confirmation = ByteBuffer()
            try sealer!.seal(ByteBuffer(), into: &confirmation)
            actions.append(.send(confirmation))
        }
        state = .established
        actions.append(.established(peer: peerKey ?? []))
        try deliverRecords(ByteBuffer(), into: &actions)
    }

    /// Established: every whole record's payload, keepalives left out.
    private mutating func deliverRecords(_ bytes: ByteBuffer, into actions: inout [ClusterLinkAction]) throws(ClusterLinkError) {
        for payload in try opener!.open(bytes) { actions.append(.deliver(payload)) }
    }

    // MARK: keys

    private static func publicKey(_ raw: [UInt8], _ what: String) throws(ClusterLinkError) -> Curve25519.KeyAgreement.PublicKey {
        guard raw.count == ClusterLinkLimits.keyBytes,
              let key = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: raw) else {
            throw .badKey("\(what) is not an X25519 public key")
        }
        return key
    }

    private static func agree(_ mine: Curve25519.KeyAgreement.PrivateKey, _ theirs: Curve25519.KeyAgreement.PublicKey,
                              _ what: String) throws(ClusterLinkError) -> [UInt8] {
        guard let secret = try? mine.sharedSecretFromKeyAgreement(with: theirs) else {
            throw .badKey("no shared secret for \(what) (a low-order point)")
        }
        return secret.withUnsafeBytes { Array($0) }
    }
}

/// The two record keys of a link (see ``ClusterLinkLimits`` for the derivation).
struct ClusterLinkKeys {
    let dialerToAcceptor: SymmetricKey
    let acceptorToDialer: SymmetricKey

    static let saltLabel = Array("peerway cluster link v1".utf8)
    static let info = Array("peerway cluster link v1 record keys".utf8)

    /// HKDF-SHA256 over `ee || es || se`, salted with a hash of the transcript (the hello and the
    /// reply header), split into the two directions' keys.
    static func derive(ee: [UInt8], es: [UInt8], se: [UInt8], transcript: [UInt8]) throws(ClusterLinkError) -> ClusterLinkKeys {
        let all = ee + es + se
        // X25519 implementations refuse an all-zero result; be explicit about it here too.
        guard ee.contains(where: { $0 != 0 }), es.contains(where: { $0 != 0 }), se.contains(where: { $0 != 0 }) else {
            throw .badKey("a key agreement gave the all-zero secret")
        }
        let salt = SHA256.hash(data: saltLabel + transcript)
        let okm = HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: all), salt: Array(salt), info: info,
                                         outputByteCount: 64)
        return okm.withUnsafeBytes { raw in
            ClusterLinkKeys(dialerToAcceptor: SymmetricKey(data: UnsafeRawBufferPointer(rebasing: raw[0..<32])),
                            acceptorToDialer: SymmetricKey(data: UnsafeRawBufferPointer(rebasing: raw[32..<64])))
        }
    }
}
