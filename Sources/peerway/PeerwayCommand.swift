import ArgumentParser

/// `peerway`: run supernodes, probe NATs, benchmark, and (later) talk to peers.
@main
struct PeerwayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peerway",
        abstract: "Peer-to-peer networking: supernodes, NAT discovery and tunnels between peers behind NATs.",
        subcommands: [
            SupernodeCommand.self,
            STUNCommand.self,
            NetcheckCommand.self,
            BenchCommand.self,
            LabCommand.self,
            PeerCommand.self,
            IndexCommand.self,
            IndexWriterCommand.self,
            StatusCommand.self,
        ]
    )
}
