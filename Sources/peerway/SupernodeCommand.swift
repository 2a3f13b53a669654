import ArgumentParser
import Foundation
import Logging
import PeerwayCheckpoint
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
        its key lives in DATA_DIR/supernode.key (created on first start, mode 0600).
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

    @Flag(name: .long, help: "Debug logging.") var verbose = false

    func run() async throws {
        let logger = makeLogger(label: "peerway.supernode", verbose: verbose)
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let key = try SupernodeKey.loadOrCreate(at: dataDirectory + "/supernode.key")
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
        let checkpoint = CheckpointServer(
            configuration: CheckpointServerConfiguration(listen: listenAddress, advertisedHost: advertise ?? Self.advertisedHost(for: listenAddress),
                                                         checkpoint: checkpointConfiguration, tcp: tcpAddress, relayHandoff: relayHandoff),
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
        try await runUntilSignalled(services, logger: logger)
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
