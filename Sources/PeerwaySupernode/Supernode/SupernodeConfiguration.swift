import PeerwayCheckpoint
import PeerwayIndex
import PeerwayIndexAPI
import PeerwayRelay
import PeerwaySTUN

/// Everything a `Supernode` runs with: which services, where they listen, where its state lives.
///
/// The defaults suit a test on loopback: CHECKPOINT (UDP and TCP), the RELAY and the STUN pair on
/// 127.0.0.1 (the pair's alternate on 127.0.0.2) with free ports, a fresh key, no INDEX, no
/// management API, nothing written to disk. `peerway supernode` sets each field from its flags
/// (named below) and gives the ports 7400, 7401, 3478/3479 and 7480.
public struct SupernodeConfiguration: Sendable {
    /// 127.0.0.1 with port 0 (a free port): where services listen by default.
    public static let loopback = STUNAddress(ip: .v4(0x7F00_0001), port: 0)
    /// 127.0.0.2 with port 0: the STUN pair's alternate address by default (on Linux every
    /// address of 127.0.0.0/8 is the loopback interface's).
    public static let loopbackAlternate = STUNAddress(ip: .v4(0x7F00_0002), port: 0)
    /// The STUN pair by default: `loopback` and `loopbackAlternate`, one engine thread, and no
    /// per-source rate limit (every peer of a loopback test shares the one source IP).
    public static let loopbackSTUN = STUNPairConfiguration(
        layout: try! STUNPairLayout(primary: loopback, alternate: loopbackAlternate), ratePerSecond: 0, workers: 1)
    /// The supernode key's file under the data directory (created on first start, mode 0600).
    public static let keyFileName = "supernode.key"
    /// The file under the data directory that holds the supernode's address once it runs.
    public static let addressFileName = "address"
    /// The file under the data directory that holds the management API's URL once it listens.
    public static let adminURLFileName = "admin-url"

    /// Where CHECKPOINT's control channel over TCP listens.
    public enum TCPListen: Sendable, Equatable {
        /// No TCP (`--no-tcp`): peers without UDP cannot register.
        case off
        /// The `listen` address (the default); when its port is 0, the UDP port's number when
        /// TCP can have it, else any free port.
        case sameAsUDP
        /// This address (`--tcp-listen`); port 0 on `listen`'s IP behaves as in `sameAsUDP`.
        case at(STUNAddress)
    }

    /// Where the RELAY listens (`--relay-listen`, `--relay-tcp-listen`).
    public struct Relay: Sendable {
        /// UDP address; port 0 picks a free port.
        public var udp: STUNAddress
        /// The relay's own TCP listener; `nil`: TCP binds reach it only through CHECKPOINT's TCP
        /// port (connections that start with "PWRB" are handed over).
        public var tcp: STUNAddress?
        /// The host peers dial for the relay; `nil`: the supernode's `advertisedHost`, or else
        /// the bound address.
        public var advertisedHost: String?

        /// A relay on `udp` and `tcp` (both loopback, free ports, by default).
        public init(udp: STUNAddress = SupernodeConfiguration.loopback, tcp: STUNAddress? = SupernodeConfiguration.loopback,
                    advertisedHost: String? = nil) {
            self.udp = udp
            self.tcp = tcp
            self.advertisedHost = advertisedHost
        }
    }

    /// The INDEX's storage (`--index`, `--no-index`).
    public enum IndexStorage: Sendable {
        /// No INDEX: peers' INDEX requests are refused with `unavailable`.
        case none
        /// SQLite in `directory/index.sqlite`, opened by the supernode and closed when it stops.
        case sqlite(directory: String, hasher: PasswordHasher = .interactive)
        /// PostgreSQL at `url` (`postgres://user:pass@host:port/db`), shared by supernodes;
        /// connected by the supernode and closed when it stops.
        case postgres(url: String, hasher: PasswordHasher = .interactive)
        /// A store the caller opened; the supernode uses it and never closes it.
        case store(any IndexStore)
    }

    /// The INDEX's management API (`--admin-listen`, `--admin-token`); it needs an INDEX.
    public struct Admin: Sendable {
        /// Address to bind (an IP or a host name).
        public var host: String
        /// Port to bind; 0 picks a free one.
        public var port: Int
        /// The admin credential; `nil`: the one in `DATA_DIR/admin-token`, created on first
        /// start (a supernode without a data directory needs one given here).
        public var token: AdminToken?
        /// Whether `GET /metrics` needs the token too (the default); false (`--metrics-without-token`)
        /// serves the metrics to whoever reaches the listener. `GET /status` always needs it.
        public var metricsNeedToken: Bool

        /// The management API on `host:port` (loopback, a free port, by default).
        public init(host: String = SupernodeConfiguration.loopback.ipString, port: Int = Int(SupernodeConfiguration.loopback.port),
                    token: AdminToken? = nil, metricsNeedToken: Bool = true) {
            self.host = host
            self.port = port
            self.token = token
            self.metricsNeedToken = metricsNeedToken
        }
    }

    /// The supernode's static key (its public half is in its address); `nil`: the one in
    /// `DATA_DIR/supernode.key` (created on first start), or a fresh one without a data directory.
    public var key: SupernodeKey?
    /// Where the supernode keeps its state (`--data-dir`): its key, admin token, `address` and
    /// `admin-url` files. `nil`: nothing is read or written.
    public var dataDirectory: String?
    /// CHECKPOINT's UDP address (`--listen`); port 0 picks a free port.
    public var listen: STUNAddress
    /// CHECKPOINT's control channel over TCP (`--tcp-listen`, `--no-tcp`).
    public var tcp: TCPListen
    /// The host peers dial when it differs from the bound one (`--advertise`: a wildcard bind, a
    /// NAT in front); `nil`: the bound IP.
    public var advertisedHost: String?
    /// Keepalive interval offered to peers, in seconds (`--keepalive`), within
    /// `ControlLimits.keepaliveSecondsRange`.
    public var keepaliveSeconds: UInt16
    /// The STUN pair (`--stun-*`); `nil`: none (`--no-stun`).
    public var stun: STUNPairConfiguration?
    /// The RELAY, granted by CHECKPOINT's HANDSHAKE; `nil`: none (`--no-relay`), and traversals
    /// that cannot go direct fail.
    public var relay: Relay?
    /// The INDEX.
    public var index: IndexStorage
    /// The management API; `nil`: none (`--no-admin`).
    public var admin: Admin?
    /// Last changes to CHECKPOINT's configuration (expiry, rate limits), applied after the
    /// supernode has set its key, keepalive, relay and INDEX.
    public var tuneCheckpoint: (@Sendable (inout CheckpointConfiguration) -> Void)?
    /// Membership in a network of supernodes sharing a PostgreSQL (`nil`: this supernode is alone).
    public var cluster: ClusterConfiguration?

    /// A configuration; every service but the INDEX and the management API, on loopback, by default.
    public init(key: SupernodeKey? = nil, dataDirectory: String? = nil, listen: STUNAddress = loopback,
                tcp: TCPListen = .sameAsUDP, advertisedHost: String? = nil,
                keepaliveSeconds: UInt16 = ControlLimits.defaultKeepaliveSeconds,
                stun: STUNPairConfiguration? = loopbackSTUN, relay: Relay? = Relay(), index: IndexStorage = .none,
                admin: Admin? = nil, tuneCheckpoint: (@Sendable (inout CheckpointConfiguration) -> Void)? = nil) {
        self.key = key
        self.dataDirectory = dataDirectory
        self.listen = listen
        self.tcp = tcp
        self.advertisedHost = advertisedHost
        self.keepaliveSeconds = keepaliveSeconds
        self.stun = stun
        self.relay = relay
        self.index = index
        self.admin = admin
        self.tuneCheckpoint = tuneCheckpoint
    }

    /// CHECKPOINT's TCP address, as `CheckpointServerConfiguration.tcp` takes it.
    var tcpAddress: STUNAddress? {
        switch tcp {
        case .off: return nil
        case .sameAsUDP: return listen
        case .at(let address): return address
        }
    }
}
