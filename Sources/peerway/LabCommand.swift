import ArgumentParser
import Foundation
import PeerwayLab

#if canImport(Glibc)
import Glibc
#endif

/// `peerway lab`: real Linux NATs of every behaviour in network namespaces (root only).
struct LabCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "A NAT lab: sites behind real Linux NATs (network namespaces + nftables), and a supernode host (root only).",
        discussion: """
            Presets: \(LabPreset.allCases.map(\.rawValue).joined(separator: ", ")).
            Every namespace starts with '\(LabLimits.prefix)'; `peerway lab down` removes them all.

            Example: two peers behind two NATs, the STUN pair on the public host:
              sudo peerway lab up --site home=port-restricted --site office=symmetric
              sudo peerway lab exec home -- peerway netcheck --stun \(LabLimits.stunPrimary)
              sudo peerway lab down
            """,
        subcommands: [LabUp.self, LabExec.self, LabSendFailuresCommand.self, LabVerifyCommand.self, LabMatrixCommand.self, LabDown.self,
                      LabDelayQueueCommand.self]
    )

    /// The running executable, to start in the namespaces (`peerway stun`, `peerway netcheck`).
    static var selfPath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Checks root and tools; prints the error and exits non-zero otherwise.
    static func prerequisites(_ command: String) throws {
        do {
            try LabRunner.checkPrerequisites()
        } catch {
            fail(command, error)
        }
    }

    static func fail(_ command: String, _ error: LabError) -> Never {
        FileHandle.standardError.write(Data("peerway lab \(command): \(error)\n".utf8))
        Foundation.exit(1)
    }

    /// Removes the lab when the user interrupts a long-running subcommand.
    static func downOnSignal(_ command: String) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM, SIGHUP].map { signo in
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler {
                FileHandle.standardError.write(Data("peerway lab \(command): interrupted, removing the lab\n".utf8))
                LabRunner.down()
                Foundation.exit(130)
            }
            source.resume()
            return source
        }
    }
}

/// `peerway lab up`.
struct LabUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Build the lab: the public supernode host and the given sites (replaces any lab already up).")

    @Option(name: .customLong("site"), help: ArgumentHelp(
        "A site NAME=PRESET[,hairpin][,hosts=N] (repeatable).", valueName: "name=preset"))
    var sites: [String] = []

    @Option(name: .long, help: ArgumentHelp("Delay added on every site's WAN link, each way, ms (needs iptables: NFQUEUE).", valueName: "ms"))
    var delay: Int = 0

    @Option(name: .long, help: ArgumentHelp("Drop this percentage of packets on every WAN link, each way.", valueName: "pct"))
    var loss: Int = 0

    @Option(name: .customLong("udp-timeout"), help: ArgumentHelp("Conntrack UDP timeout in every NAT, seconds.", valueName: "s"))
    var udpTimeout: Int = LabLimits.defaultUDPTimeout

    @Option(name: .customLong("send-failures"), help: ArgumentHelp(
        "Make this percentage of a host's own UDP sends fail with EPERM, SITE[/N]=PCT (repeatable; see `lab send-failures`).",
        valueName: "site[/n]=pct"))
    var sendFailures: [String] = []

    @Flag(name: .customLong("no-stun"), help: "Do not start the STUN pair (\(LabLimits.stunPrimary), \(LabLimits.stunAlternate)) on the public host.")
    var noSTUN = false

    func run() async throws {
        try LabCommand.prerequisites("up")
        // Interrupted half-way, the lab is removed; once up, it stays until `lab down`.
        let signals = LabCommand.downOnSignal("up")
        defer { signals.forEach { $0.cancel() } }
        do {
            let specs = try sites.map { text throws(LabError) in try LabSiteSpec(parsing: text) }
            let failures = try sendFailures.map { text throws(LabError) in try LabSendFailure(parsing: text) }
            let topology = try LabTopology(LabConfiguration(sites: specs, lossPercent: loss, udpTimeout: udpTimeout, delayMilliseconds: delay,
                                                            sendFailures: failures))
            try LabRunner.up(topology, peerway: LabCommand.selfPath)
            if !noSTUN { try LabRunner.startSTUN(peerway: LabCommand.selfPath) }
            // miniupnpd (symmetric-upnp routers) checks its public address with the STUN pair.
            if !noSTUN { try LabPortMap.start(topology) }
            try LabRunner.writeDescription(topology)
            print(LabRunner.describe(topology))
            FileHandle.standardError.write(Data("""
                peerway lab up: \(topology.namespaces.count) namespaces; hosts described in \(LabRunner.hostsFile)
                \(noSTUN ? "" : "STUN pair on \(LabLimits.stunPrimary) + \(LabLimits.stunAlternate) (log \(LabRunner.stateDirectory)/stun.log)\n")\
                run a command behind a site: peerway lab exec SITE[/N] -- COMMAND...; remove everything: peerway lab down

                """.utf8))
        } catch {
            LabCommand.fail("up", error)
        }
    }
}

/// `peerway lab exec`.
struct LabExec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in host N (default 1) of a site, or in the public host ('public').")

    @Argument(help: ArgumentHelp("SITE or SITE/N, or 'public'.", valueName: "site[/n]"))
    var target: String

    @Argument(parsing: .postTerminator, help: "The command and its arguments, after '--'.")
    var command: [String] = []

    func run() async throws {
        try LabCommand.prerequisites("exec")
        guard !command.isEmpty else { throw ValidationError("give the command after '--': peerway lab exec \(target) -- COMMAND...") }
        let namespace: String
        do { namespace = try LabRunner.namespace(for: target) } catch { LabCommand.fail("exec", error) }
        let ip = LabRunner.path(of: "ip") ?? "/usr/sbin/ip"
        let argv = ["ip", "netns", "exec", namespace] + command
        var cArgs = argv.map { strdup($0) } + [nil]
        execv(ip, &cArgs)
        LabCommand.fail("exec", .commandFailed(command: argv.joined(separator: " "), status: errno, output: String(cString: strerror(errno))))
    }
}

/// `peerway lab verify`.
struct LabVerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Build every preset, run netcheck behind each against the STUN pair, print the table, remove the lab.")

    func run() async throws {
        try LabCommand.prerequisites("verify")
        let signals = LabCommand.downOnSignal("verify")
        defer { signals.forEach { $0.cancel() } }
        let rows: [LabVerifyRow]
        do {
            rows = try LabVerify.run(peerway: LabCommand.selfPath) { line in
                FileHandle.standardError.write(Data("peerway lab verify: \(line)\n".utf8))
            }
        } catch {
            LabCommand.fail("verify", error)
        }
        print(LabVerify.table(rows), terminator: "")
        if !rows.allSatisfy(\.passed) { throw ExitCode.failure }
    }
}

/// `peerway lab down`.
struct LabDown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Remove everything the lab made: its processes, namespaces (with their links and rules) and files.")

    func run() async throws {
        try LabCommand.prerequisites("down")
        let removed = LabRunner.down()
        print(removed.isEmpty ? "no lab namespaces" : "removed \(removed.count) namespaces: \(removed.joined(separator: " "))")
    }
}

/// `peerway lab delay-queue`: the NFQUEUE consumer `lab up --delay` starts in each namespace
/// whose WAN link is delayed (internal: not listed in the help).
struct LabDelayQueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delay-queue",
        abstract: "Hold every packet of an NFQUEUE queue for a fixed delay (started by lab up --delay).",
        shouldDisplay: false)

    @Option(name: .long, help: "The NFQUEUE queue number.") var queue: UInt16 = 0
    @Option(name: .long, help: "Delay, milliseconds.") var delay: Int

    func run() async throws {
        try LabCommand.prerequisites("delay-queue")
        guard (0...LabDelayQueue.maximumDelayMilliseconds).contains(delay) else {
            throw ValidationError("--delay \(delay): milliseconds in 0...\(LabDelayQueue.maximumDelayMilliseconds)")
        }
        do {
            try LabDelayQueue(queue: queue, delay: TimeInterval(delay) / 1000).run()
        } catch {
            LabCommand.fail("delay-queue", error)
        }
    }
}
