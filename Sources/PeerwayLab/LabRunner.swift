import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs the lab's steps with the real tools (`ip`, `nft`, `sysctl`): the only part of the lab
/// that touches the system. Every namespace it makes starts with `LabLimits.prefix`.
public struct LabRunner: Sendable {
    /// Where `lab up` writes its JSON description and the supernode's log.
    public static let stateDirectory = "/run/peerway-lab"
    /// The JSON description of every node, written by `lab up`.
    public static var hostsFile: String { "\(stateDirectory)/hosts.json" }
    /// How long to wait for the STUN pair to print that it listens.
    public static let stunStartTimeout: TimeInterval = 10
    /// `down` kills the processes in the lab's namespaces up to this many times, pausing between.
    static let downKillRounds = 5
    static let downKillPause: TimeInterval = 0.1
    /// How long one `ip`/`nft`/`sysctl` call may take.
    public static let commandTimeout: TimeInterval = 20

    /// Debian packages of the tools the lab needs: tool -> package.
    public static let tools = ["ip": "iproute2", "nft": "nftables", "sysctl": "procps"]

    public init() {}

    /// Throws unless running as root with every tool installed.
    public static func checkPrerequisites() throws(LabError) {
        guard geteuid() == 0 else { throw .notRoot }
        for (tool, package) in tools.sorted(by: { $0.key < $1.key }) where path(of: tool) == nil {
            throw .missingTool(tool, package: package)
        }
    }

    /// The full path of `tool` (PATH, then the sbin directories sudo may leave out).
    public static func path(of tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
            let candidate = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `tool args...` to completion; throws with its output when it fails.
    @discardableResult
    public static func run(_ tool: String, _ args: [String], input: String? = nil) throws(LabError) -> String {
        guard let executable = path(of: tool) else { throw .missingTool(tool, package: tools[tool] ?? tool) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let stdin = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        do { try process.run() } catch {
            throw .commandFailed(command: ([tool] + args).joined(separator: " "), status: -1, output: "\(error)")
        }
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + commandTimeout, execute: killer)
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        killer.cancel()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw .commandFailed(command: ([tool] + args).joined(separator: " "), status: process.terminationStatus, output: text)
        }
        return text
    }

    /// How long a delay queue gets to bind before packets are queued to it.
    public static let delayQueueStartTime: TimeInterval = 0.3
    /// The NFQUEUE queue number of the delay queues (one per namespace).
    public static let delayQueueNumber = 0

    /// Performs one step; `peerway` is the executable started for `.delay`.
    public static func perform(_ step: LabStep, peerway: String) throws(LabError) {
        switch step {
        case .ip(let args):
            try run("ip", args)
        case .sysctl(let ns, let key, let value):
            try run("ip", ["netns", "exec", ns, "sysctl", "-qw", "\(key)=\(value)"])
        case .sysctlIfPresent(let ns, let key, let value):
            let file = "/proc/sys/" + key.replacingOccurrences(of: ".", with: "/")
            let present = (try? run("ip", ["netns", "exec", ns, "test", "-e", file])) != nil
            if present { try run("ip", ["netns", "exec", ns, "sysctl", "-qw", "\(key)=\(value)"]) }
        case .nft(let ns, let ruleset):
            try run("ip", ["netns", "exec", ns, "nft", "-f", "-"], input: ruleset)
        case .delay(let ns, let device, let ms):
            guard path(of: "iptables") != nil else { throw .missingTool("iptables", package: "iptables") }
            let queue = String(delayQueueNumber)
            let process = try detach(["netns", "exec", ns, peerway, "lab", "delay-queue", "--queue", queue, "--delay", String(ms)],
                                     log: "\(stateDirectory)/delay-\(ns).log")
            Thread.sleep(forTimeInterval: delayQueueStartTime)
            guard process.isRunning else {
                throw .commandFailed(command: "peerway lab delay-queue in \(ns)", status: process.terminationStatus,
                                     output: (try? String(contentsOfFile: "\(stateDirectory)/delay-\(ns).log", encoding: .utf8)) ?? "")
            }
            // NFQUEUE is an xtables target (this kernel has no nftables `queue`): iptables-nft.
            try run("ip", ["netns", "exec", ns, "iptables", "-t", "mangle", "-A", "PREROUTING", "-i", device, "-j", "NFQUEUE", "--queue-num", queue])
            try run("ip", ["netns", "exec", ns, "iptables", "-t", "mangle", "-A", "POSTROUTING", "-o", device, "-j", "NFQUEUE", "--queue-num", queue])
        case .proxy(let ns, let configuration):
            try startProxy(namespace: ns, configuration: configuration)
        }
    }

    /// Starts `ip ARGS...` detached, output to `log`.
    static func detach(_ args: [String], log: String) throws(LabError) -> Process {
        try? FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path(of: "ip") ?? "/usr/sbin/ip")
        process.arguments = args
        let handle = FileHandle(forWritingAtPath: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw .commandFailed(command: "ip " + args.joined(separator: " "), status: -1, output: "\(error)")
        }
        return process
    }

    /// The lab's namespaces that exist now (every one whose name starts with the prefix).
    public static func existingNamespaces() -> [String] {
        guard let text = try? run("ip", ["netns", "list"]) else { return [] }
        return text.split(separator: "\n")
            .compactMap { $0.split(separator: " ").first.map(String.init) }
            .filter { $0.hasPrefix(LabLimits.prefix) }
    }

    /// Removes everything the lab made: kills the processes in its namespaces, deletes the
    /// namespaces (which deletes their links and rules) and the state directory. Idempotent.
    /// Returns the namespaces removed.
    @discardableResult
    public static func down() -> [String] {
        let namespaces = existingNamespaces()
        // Again until none is left: a process may be entering a namespace while we kill the others.
        for _ in 0..<downKillRounds {
            var killed = false
            for ns in namespaces {
                let pids = (try? run("ip", ["netns", "pids", ns]))?.split(separator: "\n").compactMap { Int32($0) } ?? []
                for pid in pids { kill(pid, SIGKILL) }
                killed = killed || !pids.isEmpty
            }
            if !killed { break }
            Thread.sleep(forTimeInterval: downKillPause)
        }
        for ns in namespaces { _ = try? run("ip", ["netns", "del", ns]) }
        try? FileManager.default.removeItem(atPath: stateDirectory)
        return namespaces
    }

    /// Builds `topology` (after removing any earlier lab); on failure removes what it made.
    /// `peerway` is the executable to start in namespaces (delay queues).
    public static func up(_ topology: LabTopology, peerway: String) throws(LabError) {
        try checkPrerequisites()
        down()
        do {
            for step in LabPlan.steps(for: topology) { try perform(step, peerway: peerway) }
        } catch {
            down()
            throw error
        }
    }

    /// Starts the STUN pair (`peerway stun`) in the public host, detached, logging to the state
    /// directory, and waits until it listens. Returns its process id.
    @discardableResult
    public static func startSTUN(peerway: String) throws(LabError) -> Int32 {
        let log = "\(stateDirectory)/stun.log"
        let process = try detach([
            "netns", "exec", LabTopology.publicNamespace, peerway, "stun",
            "--listen", LabLimits.stunPrimary, "--alternate", LabLimits.stunAlternate, "--rate-limit", "0",
        ], log: log)
        let deadline = Date().addingTimeInterval(stunStartTimeout)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if text.contains("STUN pair listening") || text.contains("STUN pair on") { return process.processIdentifier }
            if !process.isRunning {
                throw .commandFailed(command: "peerway stun in \(LabTopology.publicNamespace)", status: process.terminationStatus, output: text)
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw .commandFailed(command: "peerway stun in \(LabTopology.publicNamespace)", status: -1,
                             output: "did not listen within \(stunStartTimeout) s; log: \(log)")
    }

    /// The JSON description of every node of `topology`, pretty-printed.
    public static func describe(_ topology: LabTopology) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(topology.nodes)) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Writes `describe(topology)` to `hostsFile`.
    public static func writeDescription(_ topology: LabTopology) throws(LabError) {
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            try (describe(topology) + "\n").write(toFile: hostsFile, atomically: true, encoding: .utf8)
        } catch {
            throw .commandFailed(command: "write \(hostsFile)", status: -1, output: "\(error)")
        }
    }

    /// The namespace of `SITE[/N]` in the running lab (`public` is the supernode host).
    public static func namespace(for target: String) throws(LabError) -> String {
        let existing = existingNamespaces()
        guard !existing.isEmpty else { throw .notUp("no \(LabLimits.prefix)* namespace exists") }
        let parts = target.split(separator: "/", maxSplits: 1).map(String.init)
        let ns: String
        if parts.first == "public" {
            ns = LabTopology.publicNamespace
        } else {
            let n = parts.count == 2 ? parts[1] : "1"
            ns = "\(LabLimits.prefix)\(parts.first ?? "")-h\(n)"
        }
        guard existing.contains(ns) else {
            let sites = Set(existing.compactMap { name -> String? in
                guard name.hasSuffix("-h1") else { return nil }
                return String(name.dropFirst(LabLimits.prefix.count).dropLast(3))
            })
            throw .unknownTarget(target, sites.sorted() + ["public"])
        }
        return ns
    }
}
