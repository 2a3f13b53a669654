import Foundation
import PeerwayLab

#if canImport(Glibc)
import Glibc
#endif

/// One run of `peerway lab matrix`: builds the lab, starts the supernode, a peer per host, runs the
/// pairs through `LabMatrixExecutor` and always removes the lab again. Every wait is bounded.
struct LabMatrixRun {
    struct Options {
        var pairs: [LabMatrixPair]
        var transports: [LabMatrixTransport]
        var tries: Int
        var delay: Int
        var loss: Int
        var aioice: Bool
        var aioiceScript: String?
        var dryRun: Bool
        var timeLimit: TimeInterval
        var trialTimeouts: LabMatrixTrial.Timeouts
        /// Bytes echoed through each tunnel.
        var echoBytes: Int = LabMatrix.echoBytes
        var aioiceTimeout: TimeInterval
        var keepLogs: Bool
    }

    struct Report {
        var rows: [LabMatrixRow]
        var summary: LabMatrixSummary
    }

    /// How long the supernode may take to write its address, and every peer to register.
    static let supernodeTimeout: TimeInterval = 20
    static let registerTimeout: TimeInterval = 45
    /// A pause between two tries of a pair, so the last one's packets are gone.
    static let pauseBetweenTries: TimeInterval = 0.3

    let options: Options
    let peerway: String
    let ip: String
    let logs: String

    init(_ options: Options, peerway: String) {
        self.options = options
        self.peerway = peerway
        ip = LabRunner.path(of: "ip") ?? "/usr/sbin/ip"
        logs = FileManager.default.temporaryDirectory.appendingPathComponent("peerway-lab-matrix-\(getpid())").path
    }

    static func note(_ line: String) { FileHandle.standardError.write(Data("peerway lab matrix: \(line)\n".utf8)) }

    func run() throws(LabError) -> Report {
        // What the built peerway offers of the tunnel contract.
        let peerOptions = LabMatrix.options(inHelp: (try? Self.capture(peerway, ["peer", "--help"])) ?? "")
        let supernodeOptions = LabMatrix.options(inHelp: (try? Self.capture(peerway, ["supernode", "--help"])) ?? "")
        let echo = peerOptions.contains("--echo")
        if !echo && !options.dryRun {
            throw .badConfiguration("this peerway's `peer` has no --echo: tunnels are not in this build yet (try --dry-run for the setup and aioice)")
        }
        let supernodeArguments = LabMatrix.supernodeArguments(dataDirectory: logs + "/supernode")
        let missing = supernodeArguments.map(\.flag).filter { !supernodeOptions.contains($0) }
        if !missing.isEmpty {
            Self.note("this peerway's supernode has no \(missing.joined(separator: ", ")): started without \(missing.count == 1 ? "it" : "them")")
        }
        var setupFailures: [String] = []
        var aioice: [String]?
        if options.aioice && options.transports.contains(.udp) {
            do { aioice = try aioiceCommand() } catch {
                let why = if case .commandFailed = error { "python3 cannot import aioice: pip install aioice" } else { error.description }
                Self.note("aioice will not run: \(why)")
                if options.dryRun { setupFailures.append("aioice cannot run: \(why)") }
            }
        }

        try? FileManager.default.removeItem(atPath: logs)
        try? FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let sites = LabMatrix.sites(for: options.pairs)
        let topology = try LabTopology(LabConfiguration(sites: sites, lossPercent: options.loss, delayMilliseconds: options.delay))
        Self.note("building \(sites.count) sites (\(topology.namespaces.count) namespaces) for \(options.pairs.count) pairs; logs in \(logs)")
        var processes: [LabLineProcess] = []
        var passed = false
        // The lab is machine-wide: one `lab up` or `lab down` elsewhere replaces or removes it. A
        // token in the lab's state directory (which both remove) tells whether it is still ours,
        // so the teardown never removes someone else's lab.
        let token = UUID().uuidString
        let tokenFile = LabRunner.stateDirectory + "/matrix-owner"
        let stillOurs = { (try? String(contentsOfFile: tokenFile, encoding: .utf8)) == token }
        var built = false
        defer {
            processes.forEach { $0.stop() }
            if built {
                if stillOurs() { LabRunner.down() } else { Self.note("the lab was replaced or removed by someone else: left as it is") }
            }
            if passed && !options.keepLogs { try? FileManager.default.removeItem(atPath: logs) }
        }
        // (`up` removes what it made when it fails.)
        try LabRunner.up(topology, peerway: LabCommand.selfPath)
        do {
            try FileManager.default.createDirectory(atPath: LabRunner.stateDirectory, withIntermediateDirectories: true)
            try token.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        } catch {
            LabRunner.down()
            throw .commandFailed(command: "write \(tokenFile)", status: -1, output: "\(error)")
        }
        built = true

        // The supernode, with every part of the contract this build has.
        let flags = supernodeArguments.filter { supernodeOptions.contains($0.flag) }.flatMap { [$0.flag, $0.value] }
        let supernode = try LabLineProcess(name: "supernode", executable: ip,
                                           arguments: ["netns", "exec", LabTopology.publicNamespace, peerway, "supernode"] + flags,
                                           log: logs + "/supernode.log")
        processes.append(supernode)
        guard let address = Self.waitForFile(logs + "/supernode/address", timeout: Self.supernodeTimeout, while: { supernode.isRunning }) else {
            throw .commandFailed(command: "peerway supernode in \(LabTopology.publicNamespace)", status: -1,
                                 output: "no address within \(Int(Self.supernodeTimeout)) s: " + supernode.output.all.joined(separator: "\n"))
        }
        Self.note("supernode \(address)")
        // miniupnpd (symmetric-upnp routers) checks its public address with the supernode's STUN pair.
        try LabPortMap.start(topology)

        // A peer on every host.
        var peers: [LabMatrixEndpoint: LabLineProcess] = [:]
        for site in topology.sites {
            for n in 1...site.spec.hosts {
                let endpoint = LabMatrixEndpoint(site: site.spec.name, host: n)
                let peer = try LabLineProcess(
                    name: "peer-\(endpoint.site)-\(n)", executable: ip,
                    arguments: ["netns", "exec", endpoint.namespace, peerway]
                        + LabMatrix.peerArguments(supernode: address, identity: "\(logs)/\(endpoint.site)-\(n).key", echo: echo)
                        + LabProxy.peerArguments(for: site),
                    log: "\(logs)/peer-\(endpoint.site)-\(n).log")
                processes.append(peer)
                peers[endpoint] = peer
            }
        }
        let deadline = Date().addingTimeInterval(Self.registerTimeout)
        var ids: [LabMatrixEndpoint: String] = [:]
        for (endpoint, peer) in peers.sorted(by: { $0.key.description < $1.key.description }) {
            let id = peer.output.wait(after: 0, timeout: max(0, deadline.timeIntervalSinceNow)) { line -> String? in
                guard let e = LabPeerEvent.parse(line), e.event == "registered" else { return nil }
                return e.id
            }
            if let id { ids[endpoint] = id } else { setupFailures.append("the peer at \(endpoint) did not register within \(Int(Self.registerTimeout)) s") }
        }
        Self.note("\(ids.count)/\(peers.count) peers registered")

        let rows = runPairs(peers: peers, ids: ids, aioice: aioice)
        if !stillOurs() {
            setupFailures.append("the lab was removed or replaced during the run (another `peerway lab up` or `lab down`?): the results are void")
        }
        let summary = LabMatrixSummary(rows: rows, dryRun: options.dryRun, registered: ids.count, peers: peers.count, setupFailures: setupFailures)
        passed = summary.pass
        if !passed { Self.note("logs kept in \(logs)") }
        return Report(rows: rows, summary: summary)
    }

    /// Runs every pair (as the scheduler allows) and returns the rows in the pair list's order.
    func runPairs(peers: [LabMatrixEndpoint: LabLineProcess], ids: [LabMatrixEndpoint: String], aioice: [String]?) -> [LabMatrixRow] {
        let options = self.options
        let scheduler = LabMatrixScheduler(pairs: options.pairs, sites: LabMatrix.sites(for: options.pairs))
        let total = options.pairs.count
        let progress = Progress(total: total)
        let run = self
        let (results, skipped) = LabMatrixExecutor.run(scheduler, deadline: Date().addingTimeInterval(options.timeLimit)) { assignment in
            let rows = run.runPair(assignment, peers: peers, ids: ids, aioice: aioice)
            progress.finished(assignment, rows)
            return rows
        }
        var rows = results.flatMap(\.1)
        for pair in skipped {
            for transport in options.transports {
                rows.append(LabMatrixRow(assignment: .nominal(pair), transport: transport, tunnels: [],
                                         skipped: "the --time-limit of \(Int(options.timeLimit)) s passed before it could start"))
            }
        }
        return LabMatrixReport.ordered(rows, pairs: options.pairs)
    }

    /// Every try of one pair: Peerway's per transport, then aioice's for UDP.
    func runPair(_ assignment: LabMatrixAssignment, peers: [LabMatrixEndpoint: LabLineProcess], ids: [LabMatrixEndpoint: String],
                 aioice: [String]?) -> [LabMatrixRow] {
        Self.note("start \(assignment)")
        return options.transports.map { transport in
            var tunnels: [LabTunnelOutcome] = []
            if !options.dryRun {
                for _ in 0..<options.tries {
                    guard let initiator = peers[assignment.initiator], let acceptor = peers[assignment.acceptor],
                        let initiatorID = ids[assignment.initiator], let acceptorID = ids[assignment.acceptor]
                    else {
                        tunnels.append(LabTunnelOutcome(connected: false, error: "a peer of the pair did not register"))
                        continue
                    }
                    tunnels.append(LabMatrixTrial.run(initiator: initiator, acceptor: acceptor, acceptorID: acceptorID, initiatorID: initiatorID,
                                                      transport: transport, bytes: options.echoBytes, timeouts: options.trialTimeouts))
                    Thread.sleep(forTimeInterval: Self.pauseBetweenTries)
                }
            }
            var agents: [LabAioiceOutcome]?
            if transport == .udp, let aioice {
                agents = (0..<options.tries).map { _ in
                    let outcome = aioiceTry(assignment, command: aioice)
                    Thread.sleep(forTimeInterval: Self.pauseBetweenTries)
                    return outcome
                }
            }
            return LabMatrixRow(assignment: assignment, transport: transport, tunnels: tunnels, aioice: agents)
        }
    }

    /// One aioice try: an agent in each host's namespace, their lines relayed, both stopped after.
    func aioiceTry(_ assignment: LabMatrixAssignment, command: [String]) -> LabAioiceOutcome {
        func agent(_ endpoint: LabMatrixEndpoint, _ role: String) throws(LabError) -> LabLineProcess {
            try LabLineProcess(name: "aioice-\(endpoint.site)-\(endpoint.host)", executable: ip,
                               arguments: ["netns", "exec", endpoint.namespace] + command
                                   + ["--stun", LabLimits.stunPrimary, "--role", role, "--timeout", String(Int(options.aioiceTimeout))],
                               log: "\(logs)/aioice-\(endpoint.site)-\(endpoint.host).log")
        }
        var started: [LabLineProcess] = []
        defer { started.forEach { $0.stop() } }
        do {
            let controlling = try agent(assignment.initiator, "controlling")
            started.append(controlling)
            let controlled = try agent(assignment.acceptor, "controlled")
            started.append(controlled)
            return LabAioiceExchange.run(controlling: controlling, controlled: controlled, connectTimeout: options.aioiceTimeout)
        } catch {
            return LabAioiceOutcome(ran: false, connected: false, error: "\(error)")
        }
    }

    /// `[python3, script]` when both exist and python3 imports aioice; throws otherwise.
    func aioiceCommand() throws(LabError) -> [String] {
        guard let script = Self.findScript(options.aioiceScript, peerway: peerway) else {
            throw .badConfiguration("scripts/lab-aioice.py not found (give --aioice-script PATH)")
        }
        guard let python = LabRunner.path(of: "python3") else { throw .missingTool("python3", package: "python3") }
        // The interpreter itself (a pyenv shim re-resolves on every start), checked to import aioice.
        let executable = try Self.capture(python, ["-c", "import sys, aioice; print(sys.executable)"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return [executable.isEmpty ? python : executable, script]
    }

    /// Runs `executable arguments...` to completion (killed after `LabRunner.commandTimeout`); its
    /// stdout, or a `.commandFailed` with its output.
    static func capture(_ executable: String, _ arguments: [String]) throws(LabError) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        let command = ([executable] + arguments).joined(separator: " ")
        do { try process.run() } catch { throw .commandFailed(command: command, status: -1, output: "\(error)") }
        let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + LabRunner.commandTimeout, execute: killer)
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        killer.cancel()
        guard process.terminationStatus == 0 else { throw .commandFailed(command: command, status: process.terminationStatus, output: text) }
        return text
    }

    /// lab-aioice.py: the given path, else scripts/ in the working directory or above the executable.
    static func findScript(_ given: String?, peerway: String) -> String? {
        if let given { return FileManager.default.fileExists(atPath: given) ? given : nil }
        let relative = "scripts/lab-aioice.py"
        var candidates = [FileManager.default.currentDirectoryPath + "/" + relative]
        var dir = URL(fileURLWithPath: peerway).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<6 {
            candidates.append(dir.appendingPathComponent(relative).path)
            dir = dir.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }

    /// The trimmed contents of `path` once it is non-empty, polling while `alive()`; nil after `timeout`.
    static func waitForFile(_ path: String, timeout: TimeInterval, while alive: () -> Bool) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline && alive() {
            if let text = try? String(contentsOfFile: path, encoding: .utf8), !text.isEmpty {
                return text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return nil
    }
}

/// Progress lines on stderr as pairs finish.
private final class Progress: @unchecked Sendable {
    private let lock = NSLock()
    private var done = 0
    private let total: Int
    private let started = Date()

    init(total: Int) { self.total = total }

    func finished(_ assignment: LabMatrixAssignment, _ rows: [LabMatrixRow]) {
        lock.lock()
        done += 1
        let n = done
        lock.unlock()
        let parts = rows.map { row -> String in
            let ours = row.tries == 0 ? "" : " \(row.successes)/\(row.tries) \(row.path) \(row.methods.joined(separator: "+"))"
            let theirs = row.aioice.map { _ in " aioice \(row.aioiceDirect)/\(row.aioiceTries)" } ?? ""
            return "\(row.transport.rawValue)\(ours)\(theirs)"
        }
        LabMatrixRun.note("[\(n)/\(total), \(Int(Date().timeIntervalSince(started))) s] \(assignment): \(parts.joined(separator: "; "))")
    }
}
