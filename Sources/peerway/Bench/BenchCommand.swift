import ArgumentParser

/// `peerway bench`: tools that print figures (not tests).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks that print figures; record them in BENCHMARKS.md with the command.",
        subcommands: [STUNBenchCommand.self, CheckpointBenchCommand.self, RelayBenchCommand.self, IndexBenchCommand.self, IndexControlBenchCommand.self,
                      ClusterBenchCommand.self, TunnelBenchCommand.self]
    )
}
