import ArgumentParser
import Logging
import NIOPosix
import PeerwaySupernode
import ServiceLifecycle

/// `peerway stun`: the STUN pair alone.
struct STUNCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stun",
        abstract: "Run the STUN pair alone (RFC 8489 Binding, RFC 5780 NAT discovery, RFC 3489 classic clients).",
        discussion: """
            Four sockets: --listen A:p, A:p2, B:p and --alternate B:p2. Example on loopback:
              peerway stun --listen 127.0.0.1:3478 --alternate 127.0.0.2:3479
            """
    )

    @OptionGroup var stun: STUNOptions
    @Flag(name: .long, help: "Log each start and stop at debug level.") var verbose = false

    func run() async throws {
        let logger = makeLogger(label: "peerway.stun", verbose: verbose)
        let server = STUNPairServer(configuration: try stun.configuration(), logger: logger)
        let layout = try await server.start()
        print("STUN pair on \(layout)")
        try await runUntilSignalled([server], logger: logger)
        let c = await server.counters()
        logger.info("STUN pair stopped", metadata: [
            "received": "\(c.received)", "answered": "\(c.answered)", "malformed": "\(c.malformed)",
            "rateLimited": "\(c.rateLimited)",
        ])
    }
}

func makeLogger(label: String, verbose: Bool) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = verbose ? .debug : .info
    return logger
}

/// Runs services in a `ServiceGroup` until SIGINT or SIGTERM, then shuts them down gracefully.
func runUntilSignalled(_ services: [any Service], logger: Logger) async throws {
    let group = ServiceGroup(
        configuration: ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
    try await group.run()
}
