import ArgumentParser
import Foundation
import PeerwayLab

/// `peerway lab matrix`: every NAT preset against every other, Peerway's tunnels and aioice's ICE
/// through each pair, in one table.
struct LabMatrixCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matrix",
        abstract: "The NAT traversal matrix: tunnels between every pair of presets (and aioice beside them), one table (root).",
        discussion: """
            Builds two sites per preset (fc-a, fc-b, ...; the -a sites have two hosts), a supernode on the \
            public host (CHECKPOINT, RELAY and the STUN pair), and a `peerway peer --json --echo --stay` on \
            every host. Then, for the \(LabMatrix.pairs.count) pairs (every two presets, each with itself, \
            and two hosts behind the same NAT), pairs that share no site at once: connect, 64 KiB echoed \
            through the tunnel, close, --tries times per transport; and for UDP the same number of aioice \
            ICE tries (scripts/lab-aioice.py, no TURN) between the same two hosts. Always removes the lab.

            Required: every try connects and echoes; every UDP try goes direct where direct is possible \
            (everywhere except symmetric x symmetric, symmetric x symmetric-sequential, udp-blocked with \
            anything across NATs). Exit status 1 when a required check fails.

            --pairs takes comma-separated terms: PRESET (either side), A/B, same-NAT, PRESET/same-NAT.
            """)

    @Option(name: .long, help: ArgumentHelp("Transports to try: udp, tcp or both.", valueName: "udp|tcp|both"))
    var transport: String = "both"

    @Option(name: .long, help: "Tries per pair and transport (and aioice tries per UDP pair).")
    var tries: Int = 3

    @Option(name: .long, help: ArgumentHelp("Delay added on every site's WAN link, each way, ms.", valueName: "ms"))
    var delay: Int = 0

    @Option(name: .long, help: ArgumentHelp("Drop this percentage of packets on every WAN link, each way.", valueName: "pct"))
    var loss: Int = 0

    @Flag(name: .long, help: "One JSON object per pair and transport, then a summary object.")
    var json = false

    @Flag(name: .customLong("no-aioice"), help: "Do not run aioice beside Peerway.")
    var noAioice = false

    @Option(name: .long, help: ArgumentHelp("Only these pairs: PRESET, A/B, same-NAT, PRESET/same-NAT (comma-separated).", valueName: "filter"))
    var pairs: String?

    @Flag(name: .customLong("dry-run"), help: "Set everything up, check every peer registers and aioice runs, try no tunnel, tear down.")
    var dryRun = false

    @Option(name: .customLong("time-limit"), help: ArgumentHelp("Start no pair after this many seconds (those left fail as skipped).", valueName: "s"))
    var timeLimit: Int = 1800

    @Option(name: .customLong("tunnel-timeout"), help: ArgumentHelp("Seconds from connect to the tunnel event.", valueName: "s"))
    var tunnelTimeout: Int = 30

    @Option(name: .customLong("echo-bytes"), help: ArgumentHelp("Bytes echoed through each tunnel (smaller under heavy loss, where TCP crawls).", valueName: "n"))
    var echoBytes: Int = LabMatrix.echoBytes

    @Option(name: .customLong("echo-timeout"), help: ArgumentHelp("Seconds the echo may take.", valueName: "s"))
    var echoTimeout: Int = 20

    @Option(name: .customLong("aioice-timeout"), help: ArgumentHelp("Seconds aioice's connect() may take.", valueName: "s"))
    var aioiceTimeout: Int = 10

    @Option(name: .customLong("aioice-script"), help: ArgumentHelp("Path of lab-aioice.py (default: scripts/lab-aioice.py here or beside the build).", valueName: "path"))
    var aioiceScript: String?

    @Flag(name: .customLong("keep-logs"), help: "Keep the processes' logs even when every check passes.")
    var keepLogs = false

    @Option(name: .customLong("peerway"), help: ArgumentHelp(
        "The executable started as supernode and peers in the namespaces (default: this one; a stand-in for testing the runner).",
        valueName: "path", visibility: .hidden))
    var peerwayExecutable: String?

    func validate() throws {
        guard ["udp", "tcp", "both"].contains(transport) else { throw ValidationError("--transport \(transport): udp, tcp or both") }
        guard (1...100).contains(tries) else { throw ValidationError("--tries \(tries): between 1 and 100") }
        guard LabLimits.delayRange.contains(delay) else { throw ValidationError("--delay \(delay): milliseconds in \(LabLimits.delayRange)") }
        guard LabLimits.lossRange.contains(loss) else { throw ValidationError("--loss \(loss): a percentage in \(LabLimits.lossRange)") }
        guard timeLimit > 0, tunnelTimeout > 0, aioiceTimeout > 0, echoTimeout > 0 else { throw ValidationError("time limits must be positive") }
        guard (1...(1 << 30)).contains(echoBytes) else { throw ValidationError("--echo-bytes must be 1 to 2^30") }
    }

    func run() async throws {
        try LabCommand.prerequisites("matrix")
        let selected: [LabMatrixPair]
        do { selected = try pairs.map { text throws(LabError) in try LabMatrix.filter(LabMatrix.pairs, text) } ?? LabMatrix.pairs } catch {
            LabCommand.fail("matrix", error)
        }
        let existing = LabRunner.existingNamespaces()
        guard existing.isEmpty else {
            LabCommand.fail("matrix", .badConfiguration(
                "a lab is up (\(existing.count) \(LabLimits.prefix)* namespaces, e.g. \(existing[0])): wait for it, or remove it with `peerway lab down`"))
        }
        let options = LabMatrixRun.Options(
            pairs: selected, transports: transport == "both" ? [.udp, .tcp] : [LabMatrixTransport(rawValue: transport)!],
            tries: tries, delay: delay, loss: loss, aioice: !noAioice, aioiceScript: aioiceScript, dryRun: dryRun,
            timeLimit: TimeInterval(timeLimit), trialTimeouts: .init(tunnel: TimeInterval(tunnelTimeout), echo: TimeInterval(echoTimeout)),
            echoBytes: echoBytes, aioiceTimeout: TimeInterval(aioiceTimeout), keepLogs: keepLogs)
        let signals = LabCommand.downOnSignal("matrix")
        defer { signals.forEach { $0.cancel() } }
        let report: LabMatrixRun.Report
        do {
            report = try LabMatrixRun(options, peerway: peerwayExecutable ?? LabCommand.selfPath).run()
        } catch {
            LabCommand.fail("matrix", error)
        }
        print(json ? LabMatrixReport.json(report.rows, summary: report.summary) : LabMatrixReport.table(report.rows, summary: report.summary),
              terminator: "")
        if !report.summary.pass { throw ExitCode.failure }
    }
}
