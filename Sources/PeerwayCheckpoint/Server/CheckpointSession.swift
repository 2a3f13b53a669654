import NIOCore

/// One handshaken control session on the checkpoint (about 200 bytes, inline: a million fit
/// in a few hundred megabytes).
struct CheckpointSession {
    let id: UInt64
    /// Peer → checkpoint key.
    let receiveKey: ControlKey
    /// Checkpoint → peer key.
    let sendKey: ControlKey
    /// The handshake transcript the registration signs.
    let transcript: ControlKey
    var sendCounter: UInt64 = 0
    var replay = ReplayWindow()
    /// Where the last authenticated packet came from (pushes go there).
    var endpoint: PeerEndpoint
    /// Set once registered.
    var peer: PeerID?
    /// Another session registered the same PeerID; this one only answers `superseded`.
    var superseded = false
    var lastHeardMillis: UInt64
    var keepaliveSeconds: UInt16
    var nextPushID: UInt32 = 1
    /// Request token bucket.
    var tokens: Float
    var tokensAtMillis: UInt64
    /// The second of the expiry wheel this session is filed under.
    var expirySecond: UInt64 = 0
    /// Messages this session has in flight.
    var messagesInFlight: UInt16 = 0
    /// Connection requests this session has open.
    var openConnectRequests: UInt16 = 0
    /// The `networkSupernodesGeneration` this peer was last told (ClusterFailover.swift).
    var supernodesGeneration: UInt32 = 0

    /// When the session expires: missed keepalives when registered, else the handshake grace.
    func expiryMillis(misses: UInt8) -> UInt64 {
        if peer != nil, !superseded {
            return lastHeardMillis + UInt64(keepaliveSeconds) * UInt64(misses) * 1000
        }
        return lastHeardMillis + UInt64(ControlLimits.unregisteredSessionSeconds) * 1000
    }
}

/// Names one push awaiting its ack: the session it went to and its id there.
struct PushKey: Hashable {
    var session: UInt64
    var push: UInt32
}

/// A push awaiting its ack, retransmitted until acknowledged or given up.
struct PendingPush {
    var frame: ControlFrame
    var nextSendMillis: UInt64
    var gapMillis: UInt64
    var giveUpMillis: UInt64
    /// Set when the push delivers a message: its sender is told the outcome.
    var flight: MessageFlight?
    /// Set when another supernode asked for the push: it is told the outcome.
    var origin: ClusterOrigin?
}

/// Another supernode's push, named as it named it.
struct ClusterOrigin: Equatable {
    var node: ClusterNode
    var id: UInt64
}

/// A push handed to another supernode: where, and the message it carries, if any.
struct RemotePush {
    var node: ClusterNode
    var flight: MessageFlight?
    /// When it ends `timedOut` if no outcome came (`remotePushLifetimeMillis`).
    var giveUpMillis: UInt64
}

/// A message between its sender's request and the recipient's ack.
struct MessageFlight {
    var senderSession: UInt64
    var transaction: UInt32
    var to: PeerID
    var messageID: UInt64
    /// The sender retransmitted and was told `queued`: the outcome goes out as a push.
    var answeredQueued = false
}

/// A message named by its sender's session and id (retransmissions carry the same).
struct SenderMessageKey: Hashable {
    var session: UInt64
    var messageID: UInt64
}

/// A connection negotiation named by requester, callee and the requester's id.
struct NegotiationKey: Hashable {
    var requester: PeerID
    var callee: PeerID
    var requestID: UInt64
}

struct Negotiation {
    var requesterSession: UInt64
    var answered: Bool
    /// Answered with an accept (the HANDSHAKE takes offers for it).
    var accepted = false
    /// Unanswered: when it times out. Answered: when it is forgotten.
    var deadlineMillis: UInt64
}

extension CheckpointMachine {
    /// Says goodbye before the checkpoint stops: every registered session gets `sessionUnknown`,
    /// so its peer starts a new handshake at once (failing over to its next supernode after one
    /// attempt, or registering again when this one is back) instead of at its next keepalive.
    /// 12 bytes per peer, to the address each one last used.
    public mutating func farewell(into out: inout [CheckpointAction]) {
        var goodbyes: [(UInt64, PeerEndpoint)] = []
        sessions.forEach { s in
            if s.peer != nil, !s.superseded { goodbyes.append((s.id, s.endpoint)) }
        }
        for (id, endpoint) in goodbyes {
            var b = ByteBuffer()
            b.writeControlPacket(.sessionUnknown(sessionID: id))
            counters.sent += 1
            out.append(.send(b, to: endpoint))
        }
    }
}
