import ArgumentParser
import Foundation
import Logging
import PeerwaySupernode

/// `peerway supernode`: every service of a supernode in one process (today: the STUN pair).
struct SupernodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "supernode",
        abstract: "Run a supernode: the STUN pair now; CHECKPOINT, HANDSHAKE, RELAY and INDEX as they land.",
        discussion: "On loopback it needs no options: STUN on 127.0.0.1:3478 with its pair on 127.0.0.2:3479."
    )

    @OptionGroup(title: "STUN pair") var stun: SupernodeSTUNOptions

    @Option(name: .customLong("data-dir"), help: "Directory for the supernode's state (default ~/.peerway/supernode).")
    var dataDirectory: String = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".peerway/supernode").path

    @Flag(name: .long, help: "Debug logging.") var verbose = false

    func run() async throws {
        let logger = makeLogger(label: "peerway.supernode", verbose: verbose)
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let stunServer = STUNPairServer(configuration: try stun.configuration(), logger: logger)
        let layout = try await stunServer.start()
        print("supernode: STUN pair on \(layout)")
        if !layout.supportsChangeRequest {
            print("supernode: no alternate address: NAT mapping/filtering tests are unavailable (give --alternate IP:PORT)")
        }
        try await runUntilSignalled([stunServer], logger: logger)
    }
}
