import Foundation

/// How a supernode stands: what `GET /status` answers and `peerway status` prints. Figures are
/// read when asked: gauges are "now", totals count since the supernode started. A service the
/// supernode does not run is absent (`relay`, `stun`, `index`, `cluster`).
public struct SupernodeStatus: Codable, Sendable, Equatable {
    /// The address peers dial (`peerway://KEY@HOST:PORT`).
    public var address: String
    /// When the supernode started, and seconds since.
    public var startedAt: Date
    public var uptimeSeconds: Int
    public var checkpoint: Checkpoint
    public var handshake: Handshake
    public var relay: Relay?
    public var stun: STUN?
    public var index: Index?
    public var cluster: Cluster?

    public init(address: String, startedAt: Date, uptimeSeconds: Int, checkpoint: Checkpoint, handshake: Handshake,
                relay: Relay? = nil, stun: STUN? = nil, index: Index? = nil, cluster: Cluster? = nil) {
        self.address = address
        self.startedAt = startedAt
        self.uptimeSeconds = uptimeSeconds
        self.checkpoint = checkpoint
        self.handshake = handshake
        self.relay = relay
        self.stun = stun
        self.index = index
        self.cluster = cluster
    }

    /// CHECKPOINT: presence, watches, messages.
    public struct Checkpoint: Codable, Sendable, Equatable {
        /// Where it listens (UDP; TCP when it has a control channel over TCP).
        public var udp: String
        public var tcp: String?
        /// Peers registered here now; sessions held (registered or not); peers registered on the
        /// other supernodes of the network, as this one's directory holds them.
        public var peersRegistered: Int
        public var sessions: Int
        public var remotePeers: Int
        /// Peers that watch others, and peers watched.
        public var watchers: Int
        public var watchedPeers: Int
        /// Since start: registrations, keepalives, messages by outcome, datagrams dropped
        /// (malformed, failed authentication, replayed, unknown session, rate limited, oversize).
        public var registrations: Int
        public var keepalives: Int
        public var messagesDelivered: Int
        public var messagesOffline: Int
        public var messagesTimedOut: Int
        public var dropped: Int

        public init(udp: String, tcp: String?, peersRegistered: Int, sessions: Int, remotePeers: Int, watchers: Int,
                    watchedPeers: Int, registrations: Int, keepalives: Int, messagesDelivered: Int, messagesOffline: Int,
                    messagesTimedOut: Int, dropped: Int) {
            self.udp = udp
            self.tcp = tcp
            self.peersRegistered = peersRegistered
            self.sessions = sessions
            self.remotePeers = remotePeers
            self.watchers = watchers
            self.watchedPeers = watchedPeers
            self.registrations = registrations
            self.keepalives = keepalives
            self.messagesDelivered = messagesDelivered
            self.messagesOffline = messagesOffline
            self.messagesTimedOut = messagesTimedOut
            self.dropped = dropped
        }
    }

    /// HANDSHAKE: traversals it coordinated, as their initiators reported them.
    public struct Handshake: Codable, Sendable, Equatable {
        /// Offers received, plans pushed, traversals whose second offer never came.
        public var offers: Int
        public var plans: Int
        public var offerTimeouts: Int
        /// Reported traversals by path (`direct`, `relayed`, `failed`), and the successful ones
        /// by method (`lan`, `hairpin`, `punch`, `predict`, `many-port`, `tcp-simultaneous-open`, `relay`).
        public var traversals: [String: Int]
        public var methods: [String: Int]

        public init(offers: Int, plans: Int, offerTimeouts: Int, traversals: [String: Int], methods: [String: Int]) {
            self.offers = offers
            self.plans = plans
            self.offerTimeouts = offerTimeouts
            self.traversals = traversals
            self.methods = methods
        }
    }

    /// RELAY: allocations and what went through them.
    public struct Relay: Codable, Sendable, Equatable {
        public var udp: String?
        public var tcp: String?
        /// Allocations now, and created since start.
        public var allocations: Int
        public var allocationsTotal: Int
        /// Payload bytes forwarded since start (both transports), and over the last second.
        public var forwardedBytes: UInt64
        public var bytesPerSecond: Double
        /// Datagrams dropped (partner not bound, not bound at all, oversize, send refused).
        public var dropped: Int

        public init(udp: String?, tcp: String?, allocations: Int, allocationsTotal: Int, forwardedBytes: UInt64,
                    bytesPerSecond: Double, dropped: Int) {
            self.udp = udp
            self.tcp = tcp
            self.allocations = allocations
            self.allocationsTotal = allocationsTotal
            self.forwardedBytes = forwardedBytes
            self.bytesPerSecond = bytesPerSecond
            self.dropped = dropped
        }
    }

    /// The STUN pair.
    public struct STUN: Codable, Sendable, Equatable {
        public var primary: String
        public var alternate: String?
        /// Success and error answers since start; requests dropped by the per-source rate limit;
        /// times a source went over it.
        public var answered: Int
        public var errors: Int
        public var rateLimited: Int
        public var limitedSources: Int

        public init(primary: String, alternate: String?, answered: Int, errors: Int, rateLimited: Int, limitedSources: Int) {
            self.primary = primary
            self.alternate = alternate
            self.answered = answered
            self.errors = errors
            self.rateLimited = rateLimited
            self.limitedSources = limitedSources
        }
    }

    /// The INDEX: where it is, and operations peers ran through their control channel.
    public struct Index: Codable, Sendable, Equatable {
        public var location: String
        public var operations: Int
        public var failedOperations: Int

        public init(location: String, operations: Int, failedOperations: Int) {
            self.location = location
            self.operations = operations
            self.failedOperations = failedOperations
        }
    }

    /// The network of supernodes as this one sees it.
    public struct Cluster: Codable, Sendable, Equatable {
        /// Live members (this one included), in key order.
        public var members: [Member]
        /// Members whose mesh link to this one is up.
        public var linked: Int
        /// Why the membership database does not answer, when it does not.
        public var databaseUnavailable: String?

        public init(members: [Member], linked: Int, databaseUnavailable: String? = nil) {
            self.members = members
            self.linked = linked
            self.databaseUnavailable = databaseUnavailable
        }
    }

    /// One member of the network.
    public struct Member: Codable, Sendable, Equatable {
        public var address: String
        /// This supernode.
        public var isSelf: Bool
        /// Its mesh link to this supernode is up (always false for itself).
        public var linkUp: Bool
        /// Its load at its last heartbeat, and how old that heartbeat is (the database's clock).
        public var peers: Int
        public var relayAllocations: Int
        public var heartbeatAgeMillis: Int

        public init(address: String, isSelf: Bool, linkUp: Bool, peers: Int, relayAllocations: Int, heartbeatAgeMillis: Int) {
            self.address = address
            self.isSelf = isSelf
            self.linkUp = linkUp
            self.peers = peers
            self.relayAllocations = relayAllocations
            self.heartbeatAgeMillis = heartbeatAgeMillis
        }
    }
}

// MARK: For people

extension SupernodeStatus {
    /// The status as `peerway status` prints it: one block per service, figures in words.
    public var text: String {
        var lines = ["supernode \(address)", "  up \(Self.duration(uptimeSeconds)) (since \(startedAt.formatted(.iso8601)))"]
        let c = checkpoint
        lines.append("CHECKPOINT  udp \(c.udp)" + (c.tcp.map { "  tcp \($0)" } ?? ""))
        lines.append("  peers     \(c.peersRegistered) registered, \(c.sessions) sessions"
                     + (cluster != nil ? ", \(c.remotePeers) on other supernodes" : ""))
        lines.append("  watches   \(c.watchers) peers watch \(c.watchedPeers) peers")
        let messages = c.messagesDelivered + c.messagesOffline + c.messagesTimedOut
        lines.append("  totals    \(c.registrations) registrations, \(c.keepalives) keepalives, \(messages) messages "
                     + "(\(c.messagesDelivered) delivered, \(c.messagesOffline) offline, \(c.messagesTimedOut) timed out), \(c.dropped) dropped")
        let h = handshake
        let reported = h.traversals.values.reduce(0, +)
        var traversal = "HANDSHAKE   \(reported) traversals: \(h.traversals["direct", default: 0]) direct, "
            + "\(h.traversals["relayed", default: 0]) relayed, \(h.traversals["failed", default: 0]) failed"
        if !h.methods.isEmpty {
            traversal += " (" + h.methods.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"
        }
        lines.append(traversal)
        lines.append("  \(h.offers) offers, \(h.plans) plans, \(h.offerTimeouts) offers timed out")
        if let r = relay {
            lines.append("RELAY       " + ([r.udp.map { "udp \($0)" }, r.tcp.map { "tcp \($0)" }].compactMap { $0 }.joined(separator: "  ")))
            lines.append("  \(r.allocations) allocations now (\(r.allocationsTotal) since start), \(Self.bytes(Double(r.forwardedBytes))) forwarded, "
                         + "\(Self.bytes(r.bytesPerSecond))/s, \(r.dropped) datagrams dropped")
        } else {
            lines.append("RELAY       not running")
        }
        if let s = stun {
            lines.append("STUN        \(s.primary)" + (s.alternate.map { " + \($0)" } ?? " (single address)"))
            lines.append("  \(s.answered) answered, \(s.errors) errors, \(s.rateLimited) rate limited (\(s.limitedSources) times a source went over its limit)")
        } else {
            lines.append("STUN        not running")
        }
        if let i = index {
            lines.append("INDEX       \(i.location)")
            lines.append("  \(i.operations) operations from peers (\(i.failedOperations) refused or failed)")
        } else {
            lines.append("INDEX       none")
        }
        if let n = cluster {
            let others = n.members.filter { !$0.isSelf }.count
            lines.append("NETWORK     \(n.members.count) supernodes, links up to \(n.linked) of \(others) others"
                         + (n.databaseUnavailable.map { "; membership database UNAVAILABLE: \($0)" } ?? ""))
            for m in n.members {
                let state = m.isSelf ? "this one" : (m.linkUp ? "link up" : "LINK DOWN")
                lines.append("  \(m.address)  \(state)  \(m.peers) peers  \(m.relayAllocations) relay allocations  heartbeat \(m.heartbeatAgeMillis) ms ago")
            }
        } else {
            lines.append("NETWORK     alone (no --cluster)")
        }
        return lines.joined(separator: "\n")
    }

    /// `3d 4h`, `2h 5m`, `4m 12s`, `9s`.
    static func duration(_ seconds: Int) -> String {
        let (d, h, m, s) = (seconds / 86_400, seconds % 86_400 / 3_600, seconds % 3_600 / 60, seconds % 60)
        if d > 0 { return "\(d)d \(h)h" }
        if h > 0 { return "\(h)h \(m)m" }
        if m > 0 { return "\(m)m \(s)s" }
        return "\(s)s"
    }

    /// `512 B`, `1.5 KB`, `3.2 MB`, `1.1 GB` (powers of 1000).
    static func bytes(_ count: Double) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = count
        var unit = 0
        while value >= 1000, unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return unit == 0 ? "\(Int(value)) B" : String(format: "%.1f", value) + " " + units[unit]
    }
}
