import Crypto
import NIOCore

/// One handshake attempt with one supernode: a fresh ephemeral key, the hellos and their
/// retransmission schedule (`CheckpointClientBackoff.hello`).
struct ClientHandshake: Sendable {
    let supernode: Int
    private(set) var initiator: ControlHandshakeInitiator
    /// Hellos sent in the current phase (before the cookie, then with it).
    private(set) var sends = 0
    private(set) var nextSendAt: NIODeadline
    /// The attempt fails at this time without a hello reply.
    private(set) var gaveUpAt: NIODeadline
    private let backoff = CheckpointClientBackoff.hello

    init(supernode: Int, checkpointKey: Curve25519.KeyAgreement.PublicKey, now: NIODeadline) {
        self.supernode = supernode
        self.initiator = ControlHandshakeInitiator(checkpointKey: checkpointKey)
        self.nextSendAt = now
        self.gaveUpAt = now + backoff.timeout
    }

    /// The hello to send now; schedules the next one.
    mutating func nextHello(now: NIODeadline) -> ByteBuffer {
        sends += 1
        nextSendAt = now + backoff.interval(afterSend: sends)
        var bytes = ByteBuffer()
        bytes.writeControlPacket(initiator.hello)
        return bytes
    }

    /// Takes a cookie that echoes this attempt's key. Returns true when it is the first one:
    /// then the schedule (and the attempt's clock) starts again and a hello is due at once.
    mutating func accept(_ cookie: ControlCookie, now: NIODeadline) -> (accepted: Bool, first: Bool) {
        let first = initiator.cookie == nil
        guard initiator.accept(cookie) else { return (false, false) }
        if first {
            sends = 0
            nextSendAt = now
            gaveUpAt = now + backoff.timeout
        }
        return (true, first)
    }
}

/// An established control session: keys, counters, the replay window, the registration.
struct ClientSession: Sendable {
    let supernode: Int
    let id: UInt64
    let keys: ControlSessionKeys
    let welcome: Welcome
    /// Counter of the last sealed packet sent (the first one uses 1).
    private(set) var sendCounter: UInt64 = 0
    private var replay = ReplayWindow()
    /// Set once the checkpoint confirmed the registration.
    var registration: CheckpointRegistration?
    /// When the next keepalive is due (registered sessions only).
    var nextKeepaliveAt: NIODeadline?
    /// Push ids seen recently in this session.
    var pushes = RecentPushIDs(capacity: CheckpointClientLimits.rememberedPushIDs)

    init(supernode: Int, id: UInt64, keys: ControlSessionKeys, welcome: Welcome) {
        self.supernode = supernode
        self.id = id
        self.keys = keys
        self.welcome = welcome
    }

    /// A whole sealed packet carrying `frame` with the next counter.
    mutating func seal(_ frame: ControlFrame, id frameID: UInt32) -> ByteBuffer {
        sendCounter += 1
        var plain = ByteBuffer()
        plain.writeControlFrame(frame, id: frameID)
        return ControlCipher.sealPacket(plain, sessionID: id, counter: sendCounter, key: keys.peerToCheckpoint)
    }

    /// Why a sealed packet was dropped.
    enum OpenFailure: Error, Sendable {
        case otherSession, replayed, unauthenticated, malformed
    }

    /// Checks the replay window, authenticates, records the counter, decodes the frame.
    mutating func open(_ sealed: ControlSealed) -> Result<ControlEnvelope, OpenFailure> {
        guard sealed.sessionID == id else { return .failure(.otherSession) }
        guard replay.check(sealed.counter) else { return .failure(.replayed) }
        guard var plain = try? ControlCipher.openPacket(sealed, key: keys.checkpointToPeer) else {
            return .failure(.unauthenticated)
        }
        replay.record(sealed.counter)
        guard let envelope = try? plain.readControlFrame() else { return .failure(.malformed) }
        return .success(envelope)
    }
}

/// The last `capacity` push ids, to deliver a retransmitted push once.
struct RecentPushIDs: Sendable {
    private var ring: [UInt32] = []
    private var next = 0
    private var members: Set<UInt32> = []
    let capacity: Int

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// Adds `id`; false when it is among the remembered ones already.
    mutating func insert(_ id: UInt32) -> Bool {
        guard !members.contains(id) else { return false }
        if ring.count < capacity {
            ring.append(id)
        } else {
            members.remove(ring[next])
            ring[next] = id
            next = (next + 1) % capacity
        }
        members.insert(id)
        return true
    }
}

/// One request waiting for its response, and why it was made.
struct ClientRequest: Sendable {
    enum Purpose: Equatable, Sendable {
        /// The session's registration (or re-registration after an address change).
        case register
        case keepalive
        /// Re-subscribing the watch list after a new session (result not reported).
        case rewatch
        case unregister
        /// An API call.
        case call(CheckpointRequestToken)
        /// The `sendMessage` of the message in flight to this peer.
        case message(to: PeerID)
    }

    let purpose: Purpose
    let frame: ControlFrame
    /// Fails (or, for a message, completes as timed out) at this time.
    let deadline: NIODeadline
    /// Sends in the current session; 0 while held (no session, or a session still registering).
    var sends = 0
    /// When to send again; `nil` while held.
    var nextSendAt: NIODeadline?
    /// When it was first sent in the current session (its round trip is a sample if answered
    /// after that one send).
    var firstSentAt: NIODeadline?
}

/// Messages: one in flight per destination, the rest waiting in order.
struct ClientMessages: Sendable {
    struct Waiting: Sendable {
        let token: CheckpointRequestToken
        let text: String
    }

    struct InFlight: Sendable {
        let token: CheckpointRequestToken
        let messageID: UInt64
        /// The `sendMessage` request while it waits for its response; `nil` once it was `queued`.
        var transaction: UInt32?
        let deadline: NIODeadline
    }

    var waiting: [PeerID: [Waiting]] = [:]
    var inFlight: [PeerID: InFlight] = [:]

    var count: Int { inFlight.count + waiting.values.reduce(0) { $0 + $1.count } }
}

/// A connection request forwarded by the checkpoint, waiting for the pushed answer.
struct ClientConnectWait: Sendable {
    let token: CheckpointRequestToken
    let deadline: NIODeadline
}

/// Names a connection negotiation: the peer asked and the requester's id for it.
struct ClientConnectKey: Hashable, Sendable {
    let peer: PeerID
    let requestID: UInt64
}
