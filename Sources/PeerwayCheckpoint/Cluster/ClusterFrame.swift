import NIOCore

/*
 What the checkpoints of one network tell each other (issue 12: many supernodes act as one).

 Each supernode is the only writer of the peers registered on it (their *home*); every other
 supernode keeps a replica of them in its live directory, so lookup, search and watches read
 locally. The frames travel over the sealed, ordered mesh links between supernodes
 (`ClusterLink`), one frame per record:

     home                                   every other supernode
       register / publish / roam ---------> peersUp([row])        replica upsert, watchers told
       unregister / expire --------------> peerDown(peer, change) replica remove, watchers told
       link up: snapshot ----------------> snapshot(start), peersUp..., snapshot(end)
                                           (rows of that home not in the snapshot are removed)

     sender's supernode                     recipient's supernode
       push(id, to, control frame) -------> pushed to its registered peer, retransmitted
       <--------------------------------- pushOutcome(id, delivered|offline|timedOut)

     callee's / acceptor's supernode        requester's supernode (holds the negotiation and
       forward(from, observed, answerConnect | traversalOffer | traversalResult) --> HANDSHAKE)

     supernode of an INDEX operation        every other supernode (ClusterIndexEvent.swift)
       index(event) ----------------------> its INDEX tells its own watchers

 A row carries a version: the home's wall clock in milliseconds at registration, raised above
 any version the home already knew for that peer. When two supernodes both claim a peer (it
 moved), the higher version wins and the other one closes its stale session; equal versions go
 to the larger supernode key. No frame is ever answered with more than it asked for.

 Layout: `kind(1)` then the body; integers big endian; endpoints, PeerIDs and metadata as in the
 control frames (ControlFrameBodies.swift); an embedded control frame is `length(2)` then the
 frame as `ByteBuffer.writeControlFrame` writes it (id 0).
*/

/// One supernode of the network, named by its static X25519 public key (32 bytes).
public struct ClusterNode: Hashable, Sendable, CustomStringConvertible {
    public let key: [UInt8]

    public init(key: [UInt8]) { self.key = key }

    /// The first 8 characters of the key in base32: enough to tell supernodes apart in logs.
    public var description: String { String(Base32.encode(key).prefix(8)) }
}

/// A registered peer as its home supernode publishes it to the others.
public struct ClusterPeerRow: Equatable, Sendable {
    public var peer: PeerID
    public var observed: PeerEndpoint
    public var candidates: [PeerEndpoint]
    public var metadata: PeerMetadata
    /// Orders competing registrations of one peer on two supernodes (see the flow above).
    public var version: UInt64

    public init(peer: PeerID, observed: PeerEndpoint, candidates: [PeerEndpoint], metadata: PeerMetadata, version: UInt64) {
        self.peer = peer
        self.observed = observed
        self.candidates = candidates
        self.metadata = metadata
        self.version = version
    }
}

/// A frame between two supernodes of one network (flow above).
public enum ClusterFrame: Equatable, Sendable {
    /// Peers registered on the sender, new or changed.
    case peersUp([ClusterPeerRow])
    /// A peer left the sender (unregistered, expired, or moved to another supernode).
    case peerDown(PeerID, change: StatusEvent.Change)
    /// The sender starts (`true`) or ends (`false`) the full list of its peers.
    case snapshot(start: Bool)
    /// Push `frame` to `to`, registered on the receiver; answer `pushOutcome` with `id`.
    case push(id: UInt64, to: PeerID, frame: ControlFrame)
    /// What became of the sender's push `id` for the receiver.
    case pushOutcome(id: UInt64, outcome: MessageOutcome.Outcome)
    /// A request by `from`, registered on the sender, about state the receiver holds (the
    /// negotiation or traversal of a peer registered there); `observed` is where the sender sees it.
    case forward(from: PeerID, observed: PeerEndpoint, frame: ControlFrame)
    /// An INDEX operation on the sender that the receiver's watchers must hear of (the owner
    /// hands it to the INDEX; the checkpoint's machine has nothing to do with it).
    case index(ClusterIndexEvent)

    enum Kind: UInt8 {
        case peersUp = 1, peerDown = 2, snapshot = 3, push = 4, pushOutcome = 5, forward = 6, index = 7
    }
}

/// Limits of the cluster frames.
public enum ClusterFrameLimits {
    /// Rows in one `peersUp` frame (a snapshot is cut into frames of at most this many rows).
    public static let maximumRowsPerFrame = 256
}

/// Why bytes from another supernode are not a cluster frame.
public enum ClusterFrameError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case unknownKind(UInt8)
    case malformed(ControlDecodingError)

    public var description: String {
        switch self {
        case .empty: return "empty cluster frame"
        case .unknownKind(let k): return "unknown cluster frame kind \(k) (a newer supernode? upgrade this one)"
        case .malformed(let e): return "malformed cluster frame: \(e)"
        }
    }
}

extension ByteBuffer {
    /// Writes one cluster frame (layout above).
    public mutating func writeClusterFrame(_ frame: ClusterFrame) {
        switch frame {
        case .peersUp(let rows):
            precondition(rows.count <= ClusterFrameLimits.maximumRowsPerFrame, "a peersUp frame holds at most \(ClusterFrameLimits.maximumRowsPerFrame) rows")
            writeInteger(ClusterFrame.Kind.peersUp.rawValue)
            writeInteger(UInt16(rows.count))
            for row in rows {
                writeWirePeerID(row.peer)
                writeWireEndpoint(row.observed)
                writeWireCount(row.candidates.count, "cluster row candidates")
                for c in row.candidates { writeWireEndpoint(c) }
                writeWireMetadata(row.metadata)
                writeInteger(row.version)
            }
        case .peerDown(let peer, let change):
            writeInteger(ClusterFrame.Kind.peerDown.rawValue)
            writeWirePeerID(peer)
            writeInteger(change.rawValue)
        case .snapshot(let start):
            writeInteger(ClusterFrame.Kind.snapshot.rawValue)
            writeWireBool(start)
        case .push(let id, let to, let frame):
            writeInteger(ClusterFrame.Kind.push.rawValue)
            writeInteger(id)
            writeWirePeerID(to)
            writeEmbeddedControlFrame(frame)
        case .pushOutcome(let id, let outcome):
            writeInteger(ClusterFrame.Kind.pushOutcome.rawValue)
            writeInteger(id)
            writeInteger(outcome.rawValue)
        case .forward(let from, let observed, let frame):
            writeInteger(ClusterFrame.Kind.forward.rawValue)
            writeWirePeerID(from)
            writeWireEndpoint(observed)
            writeEmbeddedControlFrame(frame)
        case .index(let event):
            writeInteger(ClusterFrame.Kind.index.rawValue)
            writeClusterIndexEvent(event)
        }
    }

    private mutating func writeEmbeddedControlFrame(_ frame: ControlFrame) {
        let lengthIndex = writerIndex
        writeInteger(0 as UInt16)
        let length = writeControlFrame(frame, id: 0)
        setInteger(UInt16(clamping: length), at: lengthIndex)
    }

    /// Reads one cluster frame that fills the rest of the buffer. Throws on anything malformed,
    /// trailing bytes included; the reader index then does not move.
    public mutating func readClusterFrame() throws(ClusterFrameError) -> ClusterFrame {
        guard readableBytes > 0 else { throw .empty }
        do {
            return try readWhole(ClusterFrame.decode)
        } catch .unknownType(let kind) {
            throw .unknownKind(kind)
        } catch {
            throw .malformed(error)
        }
    }
}

extension ClusterFrame {
    static func decode(_ r: inout ControlWireReader) throws(ControlDecodingError) -> ClusterFrame {
        let raw = try r.u8("cluster frame kind")
        guard let kind = Kind(rawValue: raw) else { throw .unknownType(raw) }
        switch kind {
        case .peersUp:
            let n = Int(try r.u16("peersUp.count"))
            guard n <= ClusterFrameLimits.maximumRowsPerFrame else {
                throw .invalid(what: "peersUp.count: \(n) rows, over maximumRowsPerFrame (\(ClusterFrameLimits.maximumRowsPerFrame))")
            }
            var rows: [ClusterPeerRow] = []
            rows.reserveCapacity(n)
            for _ in 0..<n {
                let peer = try r.peerID("peersUp.peer")
                let observed = try r.endpoint("peersUp.observed")
                let c = try r.count("peersUp.candidates", limit: ControlLimits.maximumCandidates, limitName: "maximumCandidates")
                var candidates: [PeerEndpoint] = []
                for _ in 0..<c { candidates.append(try r.endpoint("peersUp.candidate")) }
                let metadata = try r.metadata("peersUp.metadata")
                rows.append(ClusterPeerRow(peer: peer, observed: observed, candidates: candidates, metadata: metadata,
                                           version: try r.u64("peersUp.version")))
            }
            return .peersUp(rows)
        case .peerDown:
            let peer = try r.peerID("peerDown.peer")
            let raw = try r.u8("peerDown.change")
            guard let change = StatusEvent.Change(rawValue: raw), change != .online, change != .metadataChanged else {
                throw .invalid(what: "peerDown.change: \(raw) is not offline (2) or expired (3)")
            }
            return .peerDown(peer, change: change)
        case .snapshot:
            return .snapshot(start: try r.bool("snapshot.start"))
        case .push:
            let id = try r.u64("push.id")
            let to = try r.peerID("push.to")
            return .push(id: id, to: to, frame: try embedded(&r, "push.frame"))
        case .pushOutcome:
            let id = try r.u64("pushOutcome.id")
            let raw = try r.u8("pushOutcome.outcome")
            guard let outcome = MessageOutcome.Outcome(rawValue: raw), outcome != .queued else {
                throw .invalid(what: "pushOutcome.outcome: \(raw) is not delivered (1), offline (2) or timedOut (4)")
            }
            return .pushOutcome(id: id, outcome: outcome)
        case .forward:
            let from = try r.peerID("forward.from")
            let observed = try r.endpoint("forward.observed")
            return .forward(from: from, observed: observed, frame: try embedded(&r, "forward.frame"))
        case .index:
            return .index(try ClusterIndexEvent.decode(&r))
        }
    }

    private static func embedded(_ r: inout ControlWireReader, _ what: String) throws(ControlDecodingError) -> ControlFrame {
        let length = Int(try r.u16(what))
        guard length <= r.remaining else { throw .truncated(what: what) }
        let start = r.offset
        let envelope = try ControlWireReader.whole(UnsafeRawBufferPointer(rebasing: r.bytes[start..<(start + length)]), ControlFrame.decode)
        try r.skip(length, what)
        return envelope.frame
    }
}
