import Foundation
import PeerwayCheckpoint

/// What the dashboard shows at one instant: the data of each event of `GET /dashboard/events`
/// and the answer of `GET /dashboard/snapshot` (JSON, schema `DashboardSnapshot` in
/// `/openapi.json`). Built from the supernode's status (`SupernodeReporter.status()`), its NAT
/// tally (`natTypes()`) and the dashboard's history.
public struct DashboardSnapshot: Codable, Sendable, Equatable {
    /// When it was taken.
    public var time: Date
    /// This supernode.
    public var supernode: Node
    /// Peers online.
    public var peers: Peers
    /// Traversal offers taken since start, by the NAT kind of the offering side (`NATKind`).
    public var natTypes: [String: Int]
    /// Traversals reported since start.
    public var traversals: Traversals
    /// Absent when the supernode runs no RELAY.
    public var relay: Relay?
    /// The supernodes of the network, this one included (alone: this one only), with their load.
    public var supernodes: [Member]
    /// Samples of the last `DashboardLimits.historySamples × historyIntervalSeconds` seconds, oldest
    /// first. An event stream sends it in its first event and whenever a sample was added; other
    /// events leave it out.
    public var history: [Sample]?

    /// This supernode.
    public struct Node: Codable, Sendable, Equatable {
        /// `peerway://KEY@HOST:PORT`, and its key alone.
        public var address: String
        public var key: String
        /// When it started, and seconds since.
        public var startedAt: Date
        public var uptimeSeconds: Int
    }

    /// Peers online.
    public struct Peers: Codable, Sendable, Equatable {
        /// Registered here now; sessions held; registered on the whole network (this supernode's
        /// and the others', as its directory holds them).
        public var online: Int
        public var sessions: Int
        public var network: Int
    }

    /// Traversals reported by their initiators since start.
    public struct Traversals: Codable, Sendable, Equatable {
        /// By path: straight between the peers, through a RELAY, or no tunnel at all.
        public var direct: Int
        public var relayed: Int
        public var failed: Int
        /// Successful ones by method (`lan`, `hairpin`, `punch`, `predict`, `many-port`,
        /// `tcp-simultaneous-open`: direct; `relay`: relayed).
        public var methods: [String: Int]
    }

    /// The RELAY's throughput and load.
    public struct Relay: Codable, Sendable, Equatable {
        /// Allocations now.
        public var allocations: Int
        /// Payload bytes forwarded over the last second, and since start.
        public var bytesPerSecond: Double
        public var forwardedBytes: UInt64
    }

    /// One supernode of the network.
    public struct Member: Codable, Sendable, Equatable {
        /// Its address (`peerway://KEY@HOST:PORT`), and its key alone.
        public var address: String
        public var key: String
        /// This supernode.
        public var isSelf: Bool
        /// Its mesh link to this supernode is up (true for this one itself).
        public var linkUp: Bool
        /// Its load: peers registered and relay allocations (this one's now, the others' at their
        /// last heartbeat), and how old that heartbeat is.
        public var peers: Int
        public var relayAllocations: Int
        public var heartbeatAgeMillis: Int
    }

    /// One sample of the history.
    public struct Sample: Codable, Sendable, Equatable {
        /// When it was taken.
        public var time: Date
        /// Peers registered here, and on the whole network.
        public var peers: Int
        public var networkPeers: Int
        public var relayBytesPerSecond: Double
    }

    /// The key of a `peerway://KEY@HOST:PORT` address (the address itself when it is not one).
    static func key(of address: String) -> String {
        guard address.hasPrefix(SupernodeAddress.scheme) else { return address }
        let rest = address.dropFirst(SupernodeAddress.scheme.count)
        return String(rest.prefix { $0 != "@" })
    }

    /// The snapshot of `status` and `natTypes` at `time` (without history).
    init(status: SupernodeStatus, natTypes: [String: Int], time: Date) {
        let c = status.checkpoint
        self.time = time
        supernode = Node(address: status.address, key: Self.key(of: status.address), startedAt: status.startedAt,
                         uptimeSeconds: status.uptimeSeconds)
        peers = Peers(online: c.peersRegistered, sessions: c.sessions, network: c.peersRegistered + c.remotePeers)
        self.natTypes = natTypes.filter { $0.value > 0 }
        let t = status.handshake.traversals
        traversals = Traversals(direct: t["direct", default: 0], relayed: t["relayed", default: 0], failed: t["failed", default: 0],
                                methods: status.handshake.methods)
        relay = status.relay.map { Relay(allocations: $0.allocations, bytesPerSecond: $0.bytesPerSecond, forwardedBytes: $0.forwardedBytes) }
        if let cluster = status.cluster, !cluster.members.isEmpty {
            supernodes = cluster.members.map { m in
                Member(address: m.address, key: Self.key(of: m.address), isSelf: m.isSelf, linkUp: m.isSelf || m.linkUp,
                       peers: m.isSelf ? c.peersRegistered : m.peers,
                       relayAllocations: m.isSelf ? (status.relay?.allocations ?? m.relayAllocations) : m.relayAllocations,
                       heartbeatAgeMillis: m.heartbeatAgeMillis)
            }
        } else {
            supernodes = [Member(address: status.address, key: supernode.key, isSelf: true, linkUp: true, peers: c.peersRegistered,
                                 relayAllocations: status.relay?.allocations ?? 0, heartbeatAgeMillis: 0)]
        }
        history = nil
    }

    /// This snapshot as one history sample.
    var sample: Sample {
        Sample(time: time, peers: peers.online, networkPeers: peers.network, relayBytesPerSecond: relay?.bytesPerSecond ?? 0)
    }
}

/// The dashboard's history: a sample every `DashboardLimits.historyIntervalSeconds` at most, the
/// last `DashboardLimits.historySamples` kept. Pure: the time is the sample's.
struct DashboardHistoryRing: Sendable {
    private(set) var samples: [DashboardSnapshot.Sample] = []
    /// Grows by one with every sample added (streams send the history again when it changed).
    private(set) var version = 0

    /// Adds `sample` unless the last one is younger than the interval; whether it did.
    @discardableResult
    mutating func add(_ sample: DashboardSnapshot.Sample) -> Bool {
        if let last = samples.last,
           sample.time.timeIntervalSince(last.time) < TimeInterval(DashboardLimits.historyIntervalSeconds) - 0.05 {
            return false
        }
        samples.append(sample)
        if samples.count > DashboardLimits.historySamples { samples.removeFirst(samples.count - DashboardLimits.historySamples) }
        version += 1
        return true
    }
}

/// The history of one management API (in memory).
actor DashboardHistory {
    private var ring = DashboardHistoryRing()

    /// Adds the sample when one is due; the history's version and samples afterwards.
    func record(_ sample: DashboardSnapshot.Sample) -> (version: Int, samples: [DashboardSnapshot.Sample]) {
        ring.add(sample)
        return (ring.version, ring.samples)
    }
}
