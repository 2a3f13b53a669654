import PeerwaySTUN

/// A transport address in control frames (observed endpoints, local candidates).
public typealias PeerEndpoint = STUNAddress

/// The plaintext inside a sealed packet: `kind(1) id(4) body`.
///
/// `id` is the transaction id for requests and their responses (chosen by the peer), and the
/// push id for pushes and their acks (chosen by the checkpoint). Body encodings (big-endian):
/// - endpoint: `family(1: 4|6) address(4|16) port(2)`
/// - peer id: 16 bytes; optional peer id: `present(1)` then 16 bytes when 1
/// - short text (`note`, `reason`, `query`, error text): `length(2)` UTF-8 bytes
/// - metadata: `count(1)` then per entry `keyLength(1) key valueLength(1) value`
/// - list of X: `count(1)` then the items
public enum ControlFrame: Equatable, Sendable {
    // MARK: requests (peer → checkpoint), each answered by one response with the same id
    /// Register this session as the peer owning `publicKey`.
    case register(RegisterRequest)
    /// Keep the registration and the NAT binding alive; answered with `keepaliveAck`.
    case keepalive
    /// End the registration now (watchers are told `offline`); answered with `ok`.
    case unregister
    /// Where and how is this peer? Answered with `lookupResult`.
    case lookup(PeerID)
    /// Change the own metadata; answered with `ok`. Watchers get `metadataChanged`.
    case publish(MetadataUpdate)
    /// Search live peers by metadata; answered with `searchResult`.
    case search(SearchRequest)
    /// Deliver an instant message; answered with `messageOutcome`.
    case sendMessage(OutgoingMessage)
    /// Subscribe to these peers' status; answered with `watchResult` (their current state).
    case watch([PeerID])
    /// Unsubscribe; answered with `ok`.
    case unwatch([PeerID])
    /// Ask `to` for a tunnel; answered with `ok` once forwarded, the decision arrives as a push.
    case connect(ConnectRequest)
    /// Accept or refuse a connection request received as a push; answered with `ok`.
    case answerConnect(ConnectDecision)
    /// HANDSHAKE: this side's candidates, NAT profile and key share for an accepted connection.
    case traversalOffer(TraversalOffer)
    /// HANDSHAKE: how this side's tunnel came out.
    case traversalResult(TraversalResult)
    /// INDEX: an operation on users, networks or memberships (IndexFrames.swift); answered with
    /// `indexResult` or `error`.
    case indexRequest(IndexCall)

    // MARK: responses (checkpoint → peer)
    /// Registration done.
    case registered(Registered)
    /// Success without a body.
    case ok
    /// Answer to keepalive: the source address the checkpoint sees (NAT rebinding shows here),
    /// and, once after the network's supernodes changed, the new list (as in `Registered`).
    case keepaliveAck(observed: PeerEndpoint, supernodes: [SupernodeAddress] = [])
    case lookupResult(LookupResult)
    case searchResult(SearchResult)
    case messageOutcome(MessageOutcome)
    case watchResult([PeerStatus])
    /// INDEX: the answer to `indexRequest`.
    case indexResult(IndexReply)
    /// The request failed; nothing changed on the checkpoint.
    case error(ControlFailure)

    // MARK: pushes (checkpoint → peer), each acknowledged with `ack`
    /// An instant message for this peer.
    case deliver(IncomingMessage)
    /// A watched peer came online, went offline, expired or changed its metadata.
    case status(StatusEvent)
    /// Someone asks this peer for a tunnel.
    case connectRequested(IncomingConnectRequest)
    /// The answer to this peer's connection request.
    case connectAnswered(ConnectDecision)
    /// The final outcome of a message whose first answer was `queued`.
    case messageStatus(MessageOutcome)
    /// HANDSHAKE: this side's traversal plan (both sides get theirs in the same instant).
    case traversalPlan(TraversalPlan)
    /// INDEX: a member of a network this peer watches came online or went offline.
    case networkStatus(NetworkMemberStatus)
    /// Acknowledges the push with this frame's id (peer → checkpoint).
    case ack

    // MARK: handshake
    /// Inside the hello reply: the session's parameters.
    case welcome(Welcome)

    /// Frame kind codes (the first byte).
    public enum Kind: UInt8, Sendable, CaseIterable {
        case register = 0x10, keepalive = 0x11, unregister = 0x12, lookup = 0x13, publish = 0x14
        case search = 0x15, sendMessage = 0x16, watch = 0x17, unwatch = 0x18, connect = 0x19
        case answerConnect = 0x1A, traversalOffer = 0x1B, traversalResult = 0x1C, indexRequest = 0x1D
        case registered = 0x30, ok = 0x31, keepaliveAck = 0x32, lookupResult = 0x33
        case searchResult = 0x34, messageOutcome = 0x35, watchResult = 0x36, indexResult = 0x37, error = 0x3F
        case deliver = 0x50, status = 0x51, connectRequested = 0x52, connectAnswered = 0x53
        case messageStatus = 0x54, traversalPlan = 0x55, networkStatus = 0x56
        case welcome = 0x60
        case ack = 0x7F
    }
}

/// `register` body: `publicKey(32) keepaliveSeconds(2) candidates metadata signature(64)`.
/// The signature is Ed25519 over `"peerway register v1" ‖ transcript(32) ‖` the body up to the
/// signature, so a registration cannot be replayed into another session.
public struct RegisterRequest: Equatable, Sendable {
    /// Raw Ed25519 public key (32 bytes); the PeerID is derived from it.
    public var publicKey: [UInt8]
    public var keepaliveSeconds: UInt16
    /// The peer's own interface addresses (host candidates).
    public var candidates: [PeerEndpoint]
    public var metadata: PeerMetadata
    /// 64 bytes.
    public var signature: [UInt8]

    public init(publicKey: [UInt8], keepaliveSeconds: UInt16, candidates: [PeerEndpoint], metadata: PeerMetadata, signature: [UInt8]) {
        self.publicKey = publicKey
        self.keepaliveSeconds = keepaliveSeconds
        self.candidates = candidates
        self.metadata = metadata
        self.signature = signature
    }
}

/// `registered` body: `peer(16) observed keepaliveSeconds(2) expiryMisses(1)` then the other
/// supernodes of the network: `count(1)` and per supernode `key(32) endpoint tcpPort(2)`, at most
/// `ControlLimits.maximumAdvertisedSupernodes`. A body that ends after `expiryMisses` (a
/// supernode alone, or of an earlier version) has none.
public struct Registered: Equatable, Sendable {
    public var peer: PeerID
    public var observed: PeerEndpoint
    /// The interval the checkpoint holds the peer to (the requested one, clamped).
    public var keepaliveSeconds: UInt16
    public var expiryMisses: UInt8
    /// The other supernodes of the network, in the order this peer should try them when its
    /// supernode fails (each peer gets its own order, so the peers of a failed supernode spread
    /// over the rest). Only supernodes whose address is an IP literal are listed.
    public var supernodes: [SupernodeAddress]

    public init(peer: PeerID, observed: PeerEndpoint, keepaliveSeconds: UInt16, expiryMisses: UInt8,
                supernodes: [SupernodeAddress] = []) {
        self.peer = peer
        self.observed = observed
        self.keepaliveSeconds = keepaliveSeconds
        self.expiryMisses = expiryMisses
        self.supernodes = supernodes
    }
}

/// `publish` body: `replace(1) count(1)` then per change `keyLength(1) key present(1)
/// [valueLength(1) value]`. `replace` drops every key not named; a change without a value removes
/// its key.
public struct MetadataUpdate: Equatable, Sendable {
    public var replace: Bool
    public var changes: [(key: String, value: String?)]

    public init(replace: Bool, changes: [(key: String, value: String?)]) {
        self.replace = replace
        self.changes = changes
    }

    public static func == (a: MetadataUpdate, b: MetadataUpdate) -> Bool {
        a.replace == b.replace && a.changes.count == b.changes.count
            && zip(a.changes, b.changes).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

/// `lookupResult` body: `peer(16) online(1)` then, when online, `observed candidates metadata`.
public struct LookupResult: Equatable, Sendable {
    public var peer: PeerID
    public var online: Bool
    public var observed: PeerEndpoint?
    public var candidates: [PeerEndpoint]
    public var metadata: PeerMetadata

    public init(peer: PeerID, online: Bool, observed: PeerEndpoint?, candidates: [PeerEndpoint], metadata: PeerMetadata) {
        self.peer = peer
        self.online = online
        self.observed = observed
        self.candidates = candidates
        self.metadata = metadata
    }
}

/// `search` body: `query(text) limit(2) after(optional peer id)`.
public struct SearchRequest: Equatable, Sendable {
    /// The query, in the language of `CheckpointQuery`.
    public var query: String
    /// Most results wanted on this page (clamped to `maximumSearchPage`).
    public var limit: UInt16
    /// Continue after this PeerID (the previous page's `next`).
    public var after: PeerID?

    public init(query: String, limit: UInt16, after: PeerID?) {
        self.query = query
        self.limit = limit
        self.after = after
    }
}

/// One search result: `peer(16) metadata`.
public struct SearchHit: Equatable, Sendable {
    public var peer: PeerID
    public var metadata: PeerMetadata

    public init(peer: PeerID, metadata: PeerMetadata) {
        self.peer = peer
        self.metadata = metadata
    }
}

/// `searchResult` body: `hits(list) next(optional peer id)`. Results come in PeerID order; `next`
/// is set when more match (the page was cut by `limit` or by the datagram size).
public struct SearchResult: Equatable, Sendable {
    public var hits: [SearchHit]
    public var next: PeerID?

    public init(hits: [SearchHit], next: PeerID?) {
        self.hits = hits
        self.next = next
    }
}

/// `sendMessage` body: `to(16) messageID(8) text(2-byte length, at most 1 KiB)`.
public struct OutgoingMessage: Equatable, Sendable {
    public var to: PeerID
    /// Chosen by the sender, unique per sender session; retransmissions reuse it.
    public var messageID: UInt64
    /// UTF-8 text, at most `maximumMessageBytes`.
    public var text: String

    public init(to: PeerID, messageID: UInt64, text: String) {
        self.to = to
        self.messageID = messageID
        self.text = text
    }
}

/// `deliver` body: `from(16) messageID(8) text`.
public struct IncomingMessage: Equatable, Sendable {
    public var from: PeerID
    public var messageID: UInt64
    public var text: String

    public init(from: PeerID, messageID: UInt64, text: String) {
        self.from = from
        self.messageID = messageID
        self.text = text
    }
}

/// `messageOutcome` / `messageStatus` body: `to(16) messageID(8) outcome(1)`.
public struct MessageOutcome: Equatable, Sendable {
    public enum Outcome: UInt8, Sendable {
        /// The recipient's library acknowledged it.
        case delivered = 1
        /// The recipient is not registered; nothing was sent.
        case offline = 2
        /// Not yet acknowledged; the final outcome follows as a `messageStatus` push.
        case queued = 3
        /// The recipient did not acknowledge it in time (it may have gone away).
        case timedOut = 4
    }

    public var to: PeerID
    public var messageID: UInt64
    public var outcome: Outcome

    public init(to: PeerID, messageID: UInt64, outcome: Outcome) {
        self.to = to
        self.messageID = messageID
        self.outcome = outcome
    }
}

/// One watched peer's state, in `watchResult`: `peer(16) online(1)`.
public struct PeerStatus: Equatable, Sendable {
    public var peer: PeerID
    public var online: Bool

    public init(peer: PeerID, online: Bool) {
        self.peer = peer
        self.online = online
    }
}

/// `status` body: `peer(16) change(1) metadata` (metadata only for `online` and `metadataChanged`).
public struct StatusEvent: Equatable, Sendable {
    public enum Change: UInt8, Sendable {
        case online = 1
        /// It unregistered.
        case offline = 2
        /// It stopped sending keepalives and was expired.
        case expired = 3
        case metadataChanged = 4
    }

    public var peer: PeerID
    public var change: Change
    public var metadata: PeerMetadata

    public init(peer: PeerID, change: Change, metadata: PeerMetadata = PeerMetadata()) {
        self.peer = peer
        self.change = change
        self.metadata = metadata
    }
}

/// Tunnel transports a connection may ask for.
public enum TunnelTransport: UInt8, Sendable, Codable, CustomStringConvertible {
    case udp = 0
    case tcp = 1

    public var description: String { self == .udp ? "udp" : "tcp" }
}

/// `connect` body: `to(16) requestID(8) transport(1) note(text)`.
public struct ConnectRequest: Equatable, Sendable {
    public var to: PeerID
    /// Chosen by the requester; names the negotiation in the answer.
    public var requestID: UInt64
    public var transport: TunnelTransport
    public var note: String

    public init(to: PeerID, requestID: UInt64, transport: TunnelTransport, note: String) {
        self.to = to
        self.requestID = requestID
        self.transport = transport
        self.note = note
    }
}

/// `connectRequested` body: `from(16) requestID(8) transport(1) note(text)`.
public struct IncomingConnectRequest: Equatable, Sendable {
    public var from: PeerID
    public var requestID: UInt64
    public var transport: TunnelTransport
    public var note: String

    public init(from: PeerID, requestID: UInt64, transport: TunnelTransport, note: String) {
        self.from = from
        self.requestID = requestID
        self.transport = transport
        self.note = note
    }
}

/// `answerConnect` / `connectAnswered` body: `peer(16) requestID(8) accepted(1) reason(text)`.
/// In `answerConnect` `peer` is the requester; in `connectAnswered` it is the one who answered.
public struct ConnectDecision: Equatable, Sendable {
    public var peer: PeerID
    public var requestID: UInt64
    public var accepted: Bool
    /// Why it was refused (empty when accepted).
    public var reason: String

    public init(peer: PeerID, requestID: UInt64, accepted: Bool, reason: String) {
        self.peer = peer
        self.requestID = requestID
        self.accepted = accepted
        self.reason = reason
    }
}

/// `error` body: `code(2) text`.
public struct ControlFailure: Equatable, Sendable, Error, CustomStringConvertible {
    public enum Code: UInt16, Sendable {
        /// The request is malformed or not allowed in this state.
        case badRequest = 1
        /// The session has not registered yet.
        case notRegistered = 2
        /// The peer named is not online.
        case peerOffline = 3
        /// A size limit was exceeded (the text names it).
        case tooLarge = 4
        /// Too many requests; retry later.
        case rateLimited = 5
        /// The search query does not parse (the text says where).
        case badQuery = 6
        /// The registration's signature does not verify.
        case badSignature = 7
        /// A per-peer limit (watches, queued messages) is reached.
        case limitReached = 8
        /// The PeerID is registered from another, newer session.
        case superseded = 9
        /// The connection request is unknown or already answered.
        case unknownRequest = 10
        /// INDEX: log in first (this peer has no session).
        case notLoggedIn = 11
        /// INDEX: the user or password is wrong.
        case badCredentials = 12
        /// INDEX: the logged-in user may not do this (the text says who may).
        case forbidden = 13
        /// INDEX: the user, network, membership or invitation named does not exist.
        case notFound = 14
        /// INDEX: the name is taken, or the state already is what was asked (already a member).
        case conflict = 15
        /// INDEX: the store failed or is closed; retry later.
        case unavailable = 16
    }

    public var code: Code
    public var text: String

    public init(_ code: Code, _ text: String) {
        self.code = code
        self.text = text
    }

    public var description: String { text }
}

/// `welcome` body: `observed keepaliveSeconds(2) serverTimeMillis(8)`.
public struct Welcome: Equatable, Sendable {
    public var observed: PeerEndpoint
    /// The checkpoint's default keepalive interval.
    public var keepaliveSeconds: UInt16
    public var serverTimeMillis: UInt64

    public init(observed: PeerEndpoint, keepaliveSeconds: UInt16, serverTimeMillis: UInt64) {
        self.observed = observed
        self.keepaliveSeconds = keepaliveSeconds
        self.serverTimeMillis = serverTimeMillis
    }
}
