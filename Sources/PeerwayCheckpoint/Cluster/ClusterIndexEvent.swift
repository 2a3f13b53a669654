import NIOCore

/*
 INDEX operations the other supernodes of the network must hear (issue 12: "presence and network
 watches work whichever supernodes the members are on").

 Why the supernode where an operation happened hands over the *event* and each supernode derives
 the notices for its own watchers (rather than shipping finished notices, or every supernode
 polling the database): a watch lives where its watcher is registered, and so does the live state
 a notice is computed from (which online peer is logged in as whom: the members lists read it
 too). Only the supernode that holds a watch knows it, and only the one that ran the operation
 knows it happened; the event is the smallest thing that joins the two, it keeps every
 supernode's live state right (not only its notices), and it costs one frame per operation on
 links that already exist, where polling PostgreSQL would cost every supernode reads all the time
 and still arrive late. Presence itself needs no event: every supernode already hears every
 peer's registration and end (`peersUp` / `peerDown`).

     supernode of the operation                     every other supernode
       signup / login ---------> loggedIn(peer, user, ids) binds the peer, tells watchers "online"
       logout -----------------> loggedOut(peer)           unbinds, "offline"
       join -------------------> joined(user, network)     the user's online peers: "online"
       leave / remove ---------> left(user, network)       "offline"; its peers stop watching it
       delete account ---------> accountDeleted(user, ids) its peers unbound, "offline"
       delete network ---------> networkDeleted(network)   its watches end

 Events travel in order with the peer rows on the sealed link, so a peer's `peersUp` always
 precedes the login of it. An event names the networks it concerns as they were when it happened
 (a login lists the user's networks then): the store may be ahead by the time another supernode
 applies it (the user joined one more), and what that later operation changes comes with its own
 event, so nothing is announced twice. A link that drops loses what was in flight: the receiving supernode
 re-reads the logins of its online peers when the link comes back.

 Layout (after the cluster frame's kind): `event(1)` then its fields; ids are int64 big endian,
 names `length(1)` UTF-8 (1-`IndexWireLimits.maximumNameBytes`), lists `count(2)`.
*/

/// A user or a network as an INDEX event names it: the store's id and the name.
public struct ClusterIndexName: Equatable, Sendable {
    public var id: Int64
    public var name: String

    public init(id: Int64, name: String) {
        self.id = id
        self.name = name
    }
}

/// An INDEX operation the other supernodes must hear to tell their watchers (flow above).
public enum ClusterIndexEvent: Equatable, Sendable {
    /// `peer` is logged in as `user` now (signup, login); the user belongs to the networks
    /// `networks` (ids).
    case loggedIn(peer: PeerID, user: ClusterIndexName, networks: [Int64])
    /// `peer` logged out.
    case loggedOut(peer: PeerID)
    /// `user` joined `network`.
    case joined(user: ClusterIndexName, network: ClusterIndexName)
    /// `user` left `network`, or was removed from it.
    case left(user: ClusterIndexName, network: ClusterIndexName)
    /// `user`'s account is gone with its sessions; it belonged to the networks `networks` (ids).
    case accountDeleted(user: ClusterIndexName, networks: [Int64])
    /// `network` was deleted.
    case networkDeleted(network: ClusterIndexName)

    enum Kind: UInt8 {
        case loggedIn = 1, loggedOut = 2, joined = 3, left = 4, accountDeleted = 5, networkDeleted = 6
    }

    /// The peer the event is about, if it is about one peer.
    public var peer: PeerID? {
        switch self {
        case .loggedIn(let peer, _, _), .loggedOut(let peer): return peer
        default: return nil
        }
    }
}

extension ClusterFrameLimits {
    /// Network ids in one `loggedIn` or `accountDeleted` event: the most networks a user may
    /// belong to (`IndexLimits.maximumNetworksPerUser`).
    public static let maximumNetworksPerIndexEvent = 256
}

extension ByteBuffer {
    /// Writes an INDEX event (layout above). Traps on a list of networks over
    /// `ClusterFrameLimits.maximumNetworksPerIndexEvent` or a name over 255 bytes; names over
    /// `IndexWireLimits.maximumNameBytes` are written and refused by the decoder.
    mutating func writeClusterIndexEvent(_ event: ClusterIndexEvent) {
        func name(_ n: ClusterIndexName) {
            writeInteger(n.id)
            writeWireName(n.name)
        }
        func ids(_ networks: [Int64]) {
            precondition(networks.count <= ClusterFrameLimits.maximumNetworksPerIndexEvent,
                         "an INDEX event names at most \(ClusterFrameLimits.maximumNetworksPerIndexEvent) networks")
            writeInteger(UInt16(networks.count))
            for id in networks { writeInteger(id) }
        }
        switch event {
        case .loggedIn(let peer, let user, let networks):
            writeInteger(ClusterIndexEvent.Kind.loggedIn.rawValue)
            writeWirePeerID(peer)
            name(user)
            ids(networks)
        case .loggedOut(let peer):
            writeInteger(ClusterIndexEvent.Kind.loggedOut.rawValue)
            writeWirePeerID(peer)
        case .joined(let user, let network):
            writeInteger(ClusterIndexEvent.Kind.joined.rawValue)
            name(user)
            name(network)
        case .left(let user, let network):
            writeInteger(ClusterIndexEvent.Kind.left.rawValue)
            name(user)
            name(network)
        case .accountDeleted(let user, let networks):
            writeInteger(ClusterIndexEvent.Kind.accountDeleted.rawValue)
            name(user)
            ids(networks)
        case .networkDeleted(let network):
            writeInteger(ClusterIndexEvent.Kind.networkDeleted.rawValue)
            name(network)
        }
    }
}

extension ClusterIndexEvent {
    static func decode(_ r: inout ControlWireReader) throws(ControlDecodingError) -> ClusterIndexEvent {
        func name(_ what: String) throws(ControlDecodingError) -> ClusterIndexName {
            let id = try r.int64("\(what).id")
            return ClusterIndexName(id: id, name: try r.name("\(what).name"))
        }
        func ids(_ what: String) throws(ControlDecodingError) -> [Int64] {
            let n = Int(try r.u16("\(what).count"))
            guard n <= ClusterFrameLimits.maximumNetworksPerIndexEvent else {
                throw .invalid(what: "\(what).count: \(n) networks, over maximumNetworksPerIndexEvent (\(ClusterFrameLimits.maximumNetworksPerIndexEvent))")
            }
            var networks: [Int64] = []
            networks.reserveCapacity(n)
            for _ in 0..<n { networks.append(try r.int64("\(what).network")) }
            return networks
        }
        let raw = try r.u8("index event")
        guard let kind = Kind(rawValue: raw) else { throw .invalid(what: "index event: unknown event \(raw) (a newer supernode? upgrade this one)") }
        switch kind {
        case .loggedIn:
            let peer = try r.peerID("loggedIn.peer")
            let user = try name("loggedIn.user")
            return .loggedIn(peer: peer, user: user, networks: try ids("loggedIn"))
        case .loggedOut:
            return .loggedOut(peer: try r.peerID("loggedOut.peer"))
        case .joined:
            let user = try name("joined.user")
            return .joined(user: user, network: try name("joined.network"))
        case .left:
            let user = try name("left.user")
            return .left(user: user, network: try name("left.network"))
        case .accountDeleted:
            let user = try name("accountDeleted.user")
            return .accountDeleted(user: user, networks: try ids("accountDeleted"))
        case .networkDeleted:
            return .networkDeleted(network: try name("networkDeleted.network"))
        }
    }
}
