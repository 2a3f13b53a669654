import ArgumentParser
import Foundation
import Logging
import PeerwayCheckpoint
import PeerwayIndex
import PeerwayIndexAPI
import PeerwayRelay
import PeerwaySTUN
import NIOCore
import Peerway
import NIOPosix
import PeerwaySupernode
import ServiceLifecycle

/// `peerway supernode`: every service of a supernode in one process (CHECKPOINT and the STUN pair).
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
        (created on first start, mode 0600) unless --admin-token or PEERWAY_ADMIN_TOKEN gives one.
        """
    )

    @Option(name: .long, help: "CHECKPOINT address (IP:PORT; port 0 picks a free one).")
    var listen: String = "127.0.0.1:7400"

    @Option(name: .customLong("tcp-listen"),
            help: "CHECKPOINT's control channel over TCP, for peers without UDP (IP:PORT; default: the --listen address; the printed address says ?tcp=PORT when the port differs).")
    var tcpListen: String?

    @Flag(name: .customLong("no-tcp"), help: "Run CHECKPOINT over UDP only.")
    var noTCP = false

    @Option(name: .long, help: "Host peers dial, when it differs from --listen (a wildcard bind, a NAT in front).")
    var advertise: String?

    @Option(name: .long, help: "Keepalive interval offered to peers, in seconds.")
    var keepalive: UInt16 = ControlLimits.defaultKeepaliveSeconds

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
    var dataDirectory: String = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".peerway/supernode").path

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

    @Flag(name: .customLong("no-index"), help: "Run without the INDEX (peers' INDEX requests are refused; no management API).")
    var noIndex = false

    @Flag(name: .long, help: "Debug logging.") var verbose = false

    func run() async throws {
        let logger = makeLogger(label: "peerway.supernode", verbose: verbose)
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let key = try SupernodeKey.loadOrCreate(at: dataDirectory + "/supernode.key")
        // The INDEX: opened before the services that use it, closed after they have all stopped.
        let indexStore: (any IndexStore)? = noIndex ? nil : try await openIndexStore(logger: logger)
        do {
            try await runServices(key: key, indexStore: indexStore, logger: logger)
        } catch {
            await indexStore?.close()
            throw error
        }
        await indexStore?.close()
    }

    /// The services of this supernode, run until SIGINT or SIGTERM.
    func runServices(key: SupernodeKey, indexStore: (any IndexStore)?, logger: Logger) async throws {
        guard let listenAddress = STUNAddress(parsing: listen) else {
            throw ValidationError("--listen \(listen): expected IP:PORT, e.g. 0.0.0.0:7400 or [::]:7400")
        }
        var checkpointConfiguration = CheckpointConfiguration(key: key)
        guard ControlLimits.keepaliveSecondsRange.contains(keepalive) else {
            throw ValidationError("--keepalive must be within \(ControlLimits.keepaliveSecondsRange) seconds")
        }
        checkpointConfiguration.keepaliveSeconds = keepalive
        // The HANDSHAKE hands out this supernode's relay (created before the checkpoint that grants it).
        let relay = noRelay ? nil : try makeRelay(listen: listenAddress, logger: logger)
        if let relay {
            try relay.start()
            checkpointConfiguration.relays = SupernodeRelays([relay])
        }
        var tcpAddress: STUNAddress?
        if !noTCP {
            guard let a = STUNAddress(parsing: tcpListen ?? listen) else {
                throw ValidationError("--tcp-listen \(tcpListen ?? ""): expected IP:PORT, e.g. 0.0.0.0:443 or [::]:443")
            }
            tcpAddress = a
        }
        // Connections to the TCP port that start with "PWRB" are relay binds: the relay takes them.
        var relayHandoff: (@Sendable (Int32, [UInt8]) -> Void)?
        if let relay {
            relayHandoff = { fd, firstBytes in relay.adoptTCP(fd: fd, firstBytes: firstBytes) }
        }
        // Peers reach the INDEX over their control channel; the checkpoint's presence shows in
        // member lists and in the management API.
        let index = indexStore.map { IndexControlService(store: $0) }
        let checkpoint = CheckpointServer(
            configuration: CheckpointServerConfiguration(listen: listenAddress, advertisedHost: advertise ?? Self.advertisedHost(for: listenAddress),
                                                         checkpoint: checkpointConfiguration, tcp: tcpAddress, relayHandoff: relayHandoff,
                                                         index: index),
            logger: logger)
        let address = try checkpoint.start()
        try (address.description + "\n").write(toFile: dataDirectory + "/address", atomically: true, encoding: .utf8)
        say("supernode: \(address)")
        var services: [any Service] = [checkpoint]
        if let relay {
            say("supernode: RELAY on udp \(relay.udpAddress!), tcp \(relay.tcpAddress.map(\.description) ?? "-")")
            services.append(relay)
        }
        if !noSTUN {
            let stunServer = STUNPairServer(configuration: try stun.configuration(), logger: logger)
            let layout = try await stunServer.start()
            say("supernode: STUN pair on \(layout)")
            if !layout.supportsChangeRequest {
                say("supernode: no alternate address: NAT mapping/filtering tests are unavailable (give --stun-alternate IP:PORT)")
            }
            services.append(stunServer)
        }
        if !noAdmin, let indexStore, let index {
            services.append(try makeAdminServer(indexStore: indexStore, presence: index.presence, listen: listenAddress, logger: logger))
        }
        try await runUntilSignalled(services, logger: logger)
    }

    /// The INDEX management API: on --admin-listen, with the token of --admin-token, the
    /// environment or DATA_DIR/admin-token. It prints its URL and writes it to DATA_DIR/admin-url.
    func makeAdminServer(indexStore: any IndexStore, presence: any IndexPresence, listen: STUNAddress, logger: Logger) throws -> IndexAdminServer {
        let text = adminListen ?? "127.0.0.1:\(listen.port == 0 ? 0 : IndexAPILimits.defaultPort)"
        guard let (host, port) = IndexAdminConfiguration.parseListen(text) else {
            throw ValidationError("--admin-listen \(text): expected HOST:PORT, e.g. 127.0.0.1:7480 or [::1]:7480")
        }
        let token: AdminToken
        let tokenSource: String
        if let given = adminToken {
            (token, tokenSource) = (try AdminToken(given), "--admin-token")
        } else if let given = ProcessInfo.processInfo.environment[AdminToken.environmentVariable] {
            (token, tokenSource) = (try AdminToken(given), "$" + AdminToken.environmentVariable)
        } else {
            (token, tokenSource) = (try AdminToken.loadOrCreate(directory: dataDirectory), dataDirectory + "/" + AdminToken.fileName)
        }
        let urlFile = dataDirectory + "/admin-url"
        try? FileManager.default.removeItem(atPath: urlFile)
        return IndexAdminServer(configuration: IndexAdminConfiguration(
            host: host, port: port, token: token, store: indexStore, presence: presence, logger: logger,
            onListening: { url in
                try? (url + "\n").write(toFile: urlFile, atomically: true, encoding: .utf8)
                say("supernode: INDEX management API on \(url) (token: \(tokenSource))")
            }))
    }

    /// The INDEX store `--index` names: PostgreSQL for a postgres:// URL, else SQLite (`sqlite:DIR`, or DATA_DIR).
    func openIndexStore(logger: Logger) async throws -> any IndexStore {
        let location = index ?? "sqlite:" + dataDirectory
        if location.hasPrefix("postgres://") || location.hasPrefix("postgresql://") {
            let store = try await PostgresIndexStore(url: location, logger: logger)
            say("supernode: INDEX in \(store.location)")
            return store
        }
        guard location.hasPrefix("sqlite:"), location.count > "sqlite:".count else {
            throw ValidationError("--index \(location): expected postgres://user:pass@host:port/db or sqlite:DIR")
        }
        let store = try SQLiteIndexStore(directory: String(location.dropFirst("sqlite:".count)))
        say("supernode: INDEX in \(store.path)")
        return store
    }

    /// The RELAY of this supernode (not started): UDP and TCP on the --listen host, port 7401 by default.
    func makeRelay(listen: STUNAddress, logger: Logger) throws -> RelayServer {
        let port = listen.port == 0 ? 0 : RelayLimits.defaultPort
        func parse(_ text: String?, _ flag: String) throws -> STUNAddress {
            guard let text else { return listen.with(port: port) }
            guard let a = STUNAddress(parsing: text) else { throw ValidationError("\(flag) \(text): expected IP:PORT, e.g. 0.0.0.0:7401") }
            return a
        }
        let udp = try parse(relayListen, "--relay-listen")
        let tcp = try parse(relayTCPListen, "--relay-tcp-listen")
        return RelayServer(configuration: .init(udp: udp, tcp: tcp, advertisedHost: advertise ?? Self.advertisedHost(for: udp)),
                           logger: logger)
    }

    /// For a wildcard bind, the first routable address of this host of the same family.
    static func advertisedHost(for listen: STUNAddress) -> String? {
        guard listen.isWildcard else { return nil }
        return LocalAddresses.firstRoutable(listen.family)?.ipString
    }
}
