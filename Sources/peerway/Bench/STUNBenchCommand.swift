import ArgumentParser
import CPeerwayLinux
import Foundation
import PeerwayLab
import PeerwaySTUN

/// `peerway bench stun`: Binding-request load over loopback against one or more STUN servers,
/// optionally starting Peerway's and coturn's servers itself so both are measured in one run.
struct STUNBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stun",
        abstract: "Load a STUN server with Binding requests; report answers/s, loss and latency p50/p99.",
        discussion: """
            Measure Peerway's STUN pair against coturn in one run (both started here, loopback only):
              peerway bench stun --spawn peerway --spawn coturn --duration 5 --rounds 3
            Or load servers already running:
              peerway bench stun --target 127.0.0.1:3478
            """
    )

    /// Ports the spawned servers use (loopback).
    static let spawnedPeerwayPort: UInt16 = 34780
    static let spawnedCoturnPort: UInt16 = 34790
    /// How long a spawned server gets to start answering.
    static let spawnReadyTimeout = 15.0

    @Option(name: .long, help: "A running STUN server to load (loopback IP:PORT); repeatable.")
    var target: [String] = []

    @Option(name: .long, help: "Start this server here and load it: 'peerway' or 'coturn'; repeatable.")
    var spawn: [String] = []

    @Option(name: .long, help: "Client sockets.") var sockets = 64
    @Option(name: .long, help: "Requests per second overall; 0 = as fast as the window allows.") var rate = 0
    @Option(name: .long, help: "Requests in flight per socket (max mode).") var window = 8
    @Option(name: .long, help: "Seconds of load per round and server.") var duration = 5.0
    @Option(name: .long, help: "Rounds; servers alternate each round and the median round is reported.") var rounds = 1
    @Option(name: .long, help: "Worker threads of the spawned Peerway server (0: one per server CPU).") var peerwayWorkers = 0
    @Option(name: .long, help: "CPU the spawned servers are pinned to with taskset (-1: no pinning).") var serverCPU = 1
    @Option(name: .long, help: "CPU the load generator is pinned to (-1: no pinning).") var generatorCPU = 0
    @Flag(name: .long, help: "One JSON object per server on stdout.") var json = false

    func validate() throws {
        for s in spawn where s != "peerway" && s != "coturn" {
            throw ValidationError("--spawn \(s): expected 'peerway' or 'coturn'")
        }
        if target.isEmpty && spawn.isEmpty { throw ValidationError("give --target IP:PORT or --spawn peerway|coturn") }
        guard (1...20).contains(rounds) else { throw ValidationError("--rounds must be 1-20") }
    }

    func run() async throws {
        if generatorCPU >= 0, cpeerway_pin_thread(Int32(generatorCPU)) != 0 {
            throw ValidationError("cannot pin the generator to CPU \(generatorCPU)")
        }
        var servers: [(label: String, address: STUNAddress)] = []
        var processes: [Process] = []
        defer {
            // coturn does not stop on SIGTERM while its threads are busy: kill what we started.
            for p in processes where p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
            }
        }
        for t in target {
            guard let a = STUNAddress(parsing: t, defaultPort: STUN.defaultPort), a.isLoopback else {
                throw ValidationError("--target \(t): expected a loopback IP:PORT (load never leaves this machine)")
            }
            servers.append((t, a))
        }
        for s in spawn {
            let (process, address) = try startServer(s)
            processes.append(process)
            try waitUntilAnswering(address, name: s)
            servers.append((s, address))
        }
        var results: [String: [STUNLoadResult]] = [:]
        for round in 0..<rounds {
            let order = round % 2 == 0 ? servers : servers.reversed()
            for server in order {
                var config = STUNLoadConfiguration(target: server.address)
                config.sockets = sockets
                config.rate = rate
                config.window = window
                config.duration = duration
                var r = try runSTUNLoad(config)
                r.target = server.label
                results[server.label, default: []].append(r)
                if !json {
                    say(String(format: "round %d  %-10@ %10.0f answers/s  loss %.3f%%  p50 %.0f us  p99 %.0f us",
                                 round + 1, server.label as NSString, r.responsesPerSecond, r.lossPercent,
                                 r.p50Microseconds, r.p99Microseconds))
                }
            }
        }
        let medians = servers.map { s -> STUNLoadResult in
            let rs = results[s.label]!.sorted { $0.responsesPerSecond < $1.responsesPerSecond }
            return rs[rs.count / 2]
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            for m in medians { say(String(decoding: try encoder.encode(m), as: UTF8.self)) }
            return
        }
        say("")
        let pinning = serverCPU >= 0 ? "servers on CPU \(serverCPU), generator on CPU \(generatorCPU)" : "no pinning"
        say("server      answers/s       sent   answered   loss%    p50us    p99us   (median of \(rounds) round(s), \(sockets) sockets, \(rate == 0 ? "window \(window)" : "rate \(rate)/s"), \(duration)s, \(pinning))")
        for m in medians {
            say(String(format: "%-10@ %10.0f %10d %10d %7.3f %8.0f %8.0f", m.target as NSString, m.responsesPerSecond,
                         m.sent, m.answered, m.lossPercent, m.p50Microseconds, m.p99Microseconds))
        }
        if let ours = medians.first(where: { $0.target == "peerway" }), let theirs = medians.first(where: { $0.target == "coturn" }),
            theirs.responsesPerSecond > 0
        {
            say(String(format: "ratio peerway/coturn: %.2fx answers/s", ours.responsesPerSecond / theirs.responsesPerSecond))
        }
    }

    private func startServer(_ kind: String) throws -> (Process, STUNAddress) {
        let process = Process()
        let address: STUNAddress
        if kind == "peerway" {
            address = STUNAddress(ip: .v4(0x7F00_0001), port: Self.spawnedPeerwayPort)
            process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            process.arguments = [
                "stun", "--listen", address.description, "--alternate", "127.0.0.2:\(Self.spawnedPeerwayPort + 1)",
                "--rate-limit", "0", "--workers", "\(peerwayWorkers > 0 ? peerwayWorkers : (serverCPU >= 0 ? 1 : 0))",
            ]
        } else {
            address = STUNAddress(ip: .v4(0x7F00_0001), port: Self.spawnedCoturnPort)
            guard let path = LabRunner.path(of: "turnserver") else {
                throw ValidationError("coturn's turnserver is not installed (apt-get install coturn)")
            }
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = [
                "-n", "--stun-only", "--listening-ip", "127.0.0.1", "--listening-port", "\(Self.spawnedCoturnPort)",
                "--no-tls", "--no-dtls", "--no-cli", "--no-stdout-log", "--log-file", "/dev/null",
                "--pidfile", "/tmp/peerway-bench-turnserver.pid",
            ]
        }
        if serverCPU >= 0 {
            guard let taskset = LabRunner.path(of: "taskset") else { throw ValidationError("taskset (util-linux) is needed for --server-cpu") }
            process.arguments = ["-c", "\(serverCPU)", process.executableURL!.path] + (process.arguments ?? [])
            process.executableURL = URL(fileURLWithPath: taskset)
        }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return (process, address)
    }

    private func waitUntilAnswering(_ address: STUNAddress, name: String) throws {
        let deadline = Date().addingTimeInterval(Self.spawnReadyTimeout)
        while Date() < deadline {
            var probe = STUNLoadConfiguration(target: address)
            probe.sockets = 1
            probe.window = 1
            probe.duration = 0.2
            probe.drainTime = 0.2
            if let r = try? runSTUNLoad(probe), r.answered > 0 { return }
        }
        throw ValidationError("\(name) STUN server at \(address) did not answer within \(Self.spawnReadyTimeout) s")
    }
}

/// Prints a line at once (unbuffered), so a bench cut short still shows its rounds.
func say(_ line: String = "") {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
