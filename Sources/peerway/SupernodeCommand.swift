import ArgumentParser
import Foundation
import Peerway
import PeerwayCheckpoint
import PeerwayIndexAPI
import PeerwayRelay
import PeerwaySTUN
import PeerwaySupernode

/// `peerway supernode`: every service of a supernode in one process, composed by `Supernode`
/// from the `SupernodeConfiguration` its flags describe.
struct SupernodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "supernode",
        abstract: "Run a supernode: CHECKPOINT and the STUN pair (HANDSHAKE, RELAY and INDEX as they land).",
        discussion: """
        On loopback it needs no options: CHECKPOINT on 127.0.0.1:7400, STUN on 127.0.0.1:3478 with its \
        pair on 127.0.0.2:3479. It prints its address (peerway://KEY@HOST:PORT) and writes it to DATA_DIR/address; \
        its key lives in DATA_DIR/supernode.key (created on first start, mode 0600). The INDEX is \
        DATA_DIR/index.sqlite unless --index names another; its management API listens on 127.0.0.1:7480 \
        (--admin-listen), writes its URL to DATA_DIR/admin-url and takes the token in DATA_DIR/admin-token \
        (created on first start, mode 0600) unless --admin-token or PEERWAY_ADMIN_TOKEN gives one. \
        --config FILE reads every setting from a TOML file whose keys are these flags' long names \
        (listen = "0.0.0.0:7400", keepalive = 25, no-relay = true; see docs/supernode.example.toml); \
        a flag given as well overrides the file's key.
        """
    )

    @Option(name: .long, help: "Read the settings from this TOML file (keys: the long flags below); flags override it.")
    var config: String?

    @Option(name: .long, help: "CHECKPOINT address (IP:PORT; port 0 picks a free one; default \(Self.defaultListen)).")
    var listen: String?

    @Option(name: .customLong("tcp-listen"),
            help: "CHECKPOINT's control channel over TCP, for peers without UDP (IP:PORT; default: the --listen address; the printed address says ?tcp=PORT when the port differs).")
    var tcpListen: String?

    @Flag(name: .customLong("no-tcp"), help: "Run CHECKPOINT over UDP only.")
    var noTCP = false

    @Option(name: .long, help: "Host peers dial, when it differs from --listen (a wildcard bind, a NAT in front).")
    var advertise: String?

    @Option(name: .long, help: "Keepalive interval offered to peers, in seconds (default \(ControlLimits.defaultKeepaliveSeconds)).")
    var keepalive: Int?

    @OptionGroup(title: "STUN pair") var stun: SupernodeSTUNOptions

    @Flag(name: .customLong("no-stun"), help: "Run CHECKPOINT without the STUN pair.")
    var noSTUN = false

    @Option(name: .customLong("relay-listen"), help: "RELAY UDP address (IP:PORT; default: the --listen host, port 7401, or a free port when --listen's port is 0).")
    var relayListen: String?

    @Option(name: .customLong("relay-tcp-listen"), help: "RELAY TCP address (IP:PORT; default: the --listen host, port 7401, or a free port when --listen's port is 0).")
    var relayTCPListen: String?

    @Flag(name: .customLong("no-relay"), help: "Run without the RELAY.")
    var noRelay = false

    @Option(name: .customLong("data-dir"), help: "Directory for the supernode's state (default ~/.peerway/supernode).")
    var dataDirectoryFlag: String?

    @Option(name: .long,
            help: "INDEX storage: postgres://user:pass@host:port/db (PostgreSQL, shared by supernodes), or sqlite:DIR (DIR/index.sqlite); default: DATA_DIR/index.sqlite.")
    var index: String?

    @Option(name: .customLong("admin-listen"),
            help: "INDEX management API (HTTP) address (HOST:PORT; default 127.0.0.1:7480, or a free port when --listen's port is 0).")
    var adminListen: String?

    @Option(name: .customLong("admin-token"),
            help: "The management API's token (default: env PEERWAY_ADMIN_TOKEN, else DATA_DIR/admin-token, created on first start, mode 0600).")
    var adminToken: String?

    @Flag(name: .customLong("no-admin"), help: "Run without the INDEX management API.")
    var noAdmin = false

    @Flag(name: .customLong("metrics-without-token"),
          help: "Serve GET /metrics (Prometheus) on the management API without the admin token (for a scraper on a trusted network).")
    var metricsWithoutToken = false

    @Flag(name: .customLong("no-index"), help: "Run without the INDEX (peers' INDEX requests are refused; no management API).")
    var noIndex = false

    @Option(name: .long,
            help: "Join a network of supernodes whose membership is in this PostgreSQL (postgres://user:pass@host:port/db; it may hold the INDEX too: --index the same URL).")
    var cluster: String?

    @Option(name: .customLong("cluster-listen"),
            help: "Where the other supernodes of the network reach this one (IP:PORT; default: the --listen host, port 7402, or a free port when --listen's port is 0).")
    var clusterListen: String?

    @Flag(name: .long, help: "Debug logging.") var verbose = false

    /// CHECKPOINT's address when neither a flag nor the file gives one.
    static let defaultListen = "127.0.0.1:7400"

    /// The settings the flags give (nil: not given; a flag that is absent leaves the file's key).
    var flagSettings: SupernodeSettings {
        var s = SupernodeSettings()
        s.listen = listen
        s.tcpListen = tcpListen
        s.noTCP = noTCP ? true : nil
        s.advertise = advertise
        s.keepalive = keepalive
        s.stunListen = stun.listen
        s.stunAlternate = stun.alternate
        s.stunRateLimit = stun.rateLimit
        s.stunRateBurst = stun.rateBurst
        s.stunWorkers = stun.workers
        s.noSTUN = noSTUN ? true : nil
        s.relayListen = relayListen
        s.relayTCPListen = relayTCPListen
        s.noRelay = noRelay ? true : nil
        s.dataDirectory = dataDirectoryFlag
        s.index = index
        s.adminListen = adminListen
        s.adminToken = adminToken
        s.noAdmin = noAdmin ? true : nil
        s.metricsWithoutToken = metricsWithoutToken ? true : nil
        s.noIndex = noIndex ? true : nil
        s.cluster = cluster
        s.clusterListen = clusterListen
        s.verbose = verbose ? true : nil
        return s
    }

    func run() async throws {
        var command = self
        if let config {
            // The file's settings, each replaced by the flag's when one is given.
            command.apply(try SupernodeSettings.load(path: config).overridden(by: flagSettings))
        }
        try await command.serve()
    }

    /// Takes every setting from `s` (the file's merged with the flags').
    mutating func apply(_ s: SupernodeSettings) {
        listen = s.listen
        tcpListen = s.tcpListen
        noTCP = s.noTCP ?? false
        advertise = s.advertise
        keepalive = s.keepalive
        stun.listen = s.stunListen
        stun.alternate = s.stunAlternate
        stun.rateLimit = s.stunRateLimit
        stun.rateBurst = s.stunRateBurst
        stun.workers = s.stunWorkers
        noSTUN = s.noSTUN ?? false
        relayListen = s.relayListen
        relayTCPListen = s.relayTCPListen
        noRelay = s.noRelay ?? false
        dataDirectoryFlag = s.dataDirectory
        index = s.index
        adminListen = s.adminListen
        adminToken = s.adminToken
        noAdmin = s.noAdmin ?? false
        metricsWithoutToken = s.metricsWithoutToken ?? false
        noIndex = s.noIndex ?? false
        cluster = s.cluster
        clusterListen = s.clusterListen
        verbose = s.verbose ?? false
    }

    /// The data directory: --data-dir, else ~/.peerway/supernode.
    var dataDirectory: String {
        dataDirectoryFlag ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".peerway/supernode").path
    }

    func serve() async throws {
        let logger = makeLogger(label: "peerway.supernode", verbose: verbose)
        let (configuration, tokenSource) = try supernodeConfiguration()
        let supernode = try await Supernode.start(configuration, logger: logger)
        if let location = supernode.indexLocation { say("supernode: INDEX in \(location)") }
        say("supernode: \(supernode.address)")
        if let relay = supernode.relay {
            say("supernode: RELAY on udp \(relay.udpAddress!), tcp \(relay.tcpAddress.map(\.description) ?? "-")")
        }
        if let layout = supernode.stunLayout {
            say("supernode: STUN pair on \(layout)")
            if !layout.supportsChangeRequest {
                say("supernode: no alternate address: NAT mapping/filtering tests are unavailable (give --stun-alternate IP:PORT)")
            }
        }
        if let url = supernode.adminURL { say("supernode: INDEX management API on \(url) (token: \(tokenSource))") }
        if let cluster = supernode.cluster {
            let status = cluster.status
            say("supernode: member of a network of \(status.members.count) supernode(s) (membership in \(cluster.location))")
        }
        try await runUntilSignalled([supernode], logger: logger)
    }

    /// The supernode the flags describe, and where its admin token comes from (for the output).
    func supernodeConfiguration() throws -> (SupernodeConfiguration, tokenSource: String) {
        let listen = self.listen ?? Self.defaultListen
        guard let listenAddress = STUNAddress(parsing: listen) else {
            throw ValidationError("--listen \(listen): expected IP:PORT, e.g. 0.0.0.0:7400 or [::]:7400")
        }
        let keepalive = self.keepalive ?? Int(ControlLimits.defaultKeepaliveSeconds)
        guard let keepaliveSeconds = UInt16(exactly: keepalive), ControlLimits.keepaliveSecondsRange.contains(keepaliveSeconds) else {
            throw ValidationError("--keepalive must be within \(ControlLimits.keepaliveSecondsRange) seconds")
        }
        var configuration = SupernodeConfiguration(
            dataDirectory: dataDirectory, listen: listenAddress, advertisedHost: advertise ?? Self.advertisedHost(for: listenAddress),
            keepaliveSeconds: keepaliveSeconds, stun: noSTUN ? nil : try stun.configuration(),
            relay: noRelay ? nil : try relay(listen: listenAddress), index: noIndex ? .none : try indexStorage())
        if noTCP {
            configuration.tcp = .off
        } else if let tcpListen {
            guard let address = STUNAddress(parsing: tcpListen) else {
                throw ValidationError("--tcp-listen \(tcpListen): expected IP:PORT, e.g. 0.0.0.0:443 or [::]:443")
            }
            configuration.tcp = .at(address)
        }
        if let cluster {
            guard cluster.hasPrefix("postgres://") || cluster.hasPrefix("postgresql://") else {
                throw ValidationError("--cluster \(cluster): expected postgres://user:pass@host:port/db")
            }
            let text = clusterListen ?? listenAddress.with(port: listenAddress.port == 0 ? 0 : ClusterLimits.defaultLinkPort).description
            guard let link = STUNAddress(parsing: text) else {
                throw ValidationError("--cluster-listen \(text): expected IP:PORT, e.g. 0.0.0.0:7402")
            }
            configuration.cluster = ClusterConfiguration(url: cluster, linkListen: link,
                                                         advertisedHost: advertise ?? Self.advertisedHost(for: link))
        }
        var tokenSource = ""
        if !noAdmin, !noIndex {
            (configuration.admin, tokenSource) = try admin(listen: listenAddress)
            configuration.admin?.metricsNeedToken = !metricsWithoutToken
        }
        return (configuration, tokenSource)
    }

    /// The INDEX management API: on --admin-listen, with the token of --admin-token, the
    /// environment or DATA_DIR/admin-token (nil: the supernode loads or creates that file).
    func admin(listen: STUNAddress) throws -> (SupernodeConfiguration.Admin, tokenSource: String) {
        let text = adminListen ?? "127.0.0.1:\(listen.port == 0 ? 0 : IndexAPILimits.defaultPort)"
        guard let (host, port) = IndexAdminConfiguration.parseListen(text) else {
            throw ValidationError("--admin-listen \(text): expected HOST:PORT, e.g. 127.0.0.1:7480 or [::1]:7480")
        }
        if let given = adminToken {
            return (.init(host: host, port: port, token: try AdminToken(given)), "--admin-token")
        }
        if let given = ProcessInfo.processInfo.environment[AdminToken.environmentVariable] {
            return (.init(host: host, port: port, token: try AdminToken(given)), "$" + AdminToken.environmentVariable)
        }
        return (.init(host: host, port: port), dataDirectory + "/" + AdminToken.fileName)
    }

    /// The INDEX storage `--index` names: PostgreSQL for a postgres:// URL, else SQLite (`sqlite:DIR`, or DATA_DIR).
    func indexStorage() throws -> SupernodeConfiguration.IndexStorage {
        let location = index ?? "sqlite:" + dataDirectory
        if location.hasPrefix("postgres://") || location.hasPrefix("postgresql://") {
            return .postgres(url: location)
        }
        guard location.hasPrefix("sqlite:"), location.count > "sqlite:".count else {
            throw ValidationError("--index \(location): expected postgres://user:pass@host:port/db or sqlite:DIR")
        }
        return .sqlite(directory: String(location.dropFirst("sqlite:".count)))
    }

    /// The RELAY of this supernode: UDP and TCP on the --listen host, port 7401 by default.
    func relay(listen: STUNAddress) throws -> SupernodeConfiguration.Relay {
        let port = listen.port == 0 ? 0 : RelayLimits.defaultPort
        func parse(_ text: String?, _ flag: String) throws -> STUNAddress {
            guard let text else { return listen.with(port: port) }
            guard let a = STUNAddress(parsing: text) else { throw ValidationError("\(flag) \(text): expected IP:PORT, e.g. 0.0.0.0:7401") }
            return a
        }
        let udp = try parse(relayListen, "--relay-listen")
        let tcp = try parse(relayTCPListen, "--relay-tcp-listen")
        // A relay on a wildcard advertises a routable address of this host, else its bound one.
        return .init(udp: udp, tcp: tcp, advertisedHost: advertise ?? Self.advertisedHost(for: udp) ?? udp.ipString)
    }

    /// For a wildcard bind, the first routable address of this host of the same family.
    static func advertisedHost(for listen: STUNAddress) -> String? {
        guard listen.isWildcard else { return nil }
        return LocalAddresses.firstRoutable(listen.family)?.ipString
    }
}
