#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Crypto
import Foundation
import Logging
import PeerwayLab
import PeerwayRelay
import PeerwaySTUN
import PeerwaySupernode

/// `peerway bench relay`: relayed UDP throughput of Peerway's raw RELAY against coturn's TURN
/// server, both started here on loopback and measured in the same run under the same sender.
struct RelayBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Relayed UDP throughput (bytes/s, packets/s) and bytes added per packet: Peerway's RELAY vs coturn.",
        discussion: """
            Starts both relays on loopback (our relay in a child process, coturn's turnserver with its own \
            flags: no config file, no TLS/DTLS, static user, loopback peers allowed), then for each payload \
            size sends datagrams one way, sender -> relay -> receiver, as fast as sendmmsg goes for --duration \
            seconds and counts what arrives. Ours: bind with minted tokens, then raw datagrams. TURN: Allocate \
            (long-term credentials), CreatePermission, ChannelBind, then ChannelData.
              peerway bench relay --duration 3 --rounds 3
            """
    )

    /// Loopback ports of the spawned relays.
    static let peerwayPort: UInt16 = 34_810
    static let coturnPort: UInt16 = 34_820
    static let coturnRelayPorts: ClosedRange<UInt16> = 34_830...34_929
    /// Seconds a spawned relay gets to start answering.
    static let readyTimeout = 15.0
    /// Starts of a relay that exits at once (its port still taken) before the bench gives up.
    static let startAttempts = 4
    /// Longest life of the relay child (it also leaves when its parent is gone).
    static let serveLimitSeconds = 900
    static let keyVariable = "PEERWAY_BENCH_RELAY_KEY"
    static let turnUser = "u"
    static let turnPassword = "p"
    static let turnRealm = "peerway"

    @Option(name: .long, help: "Payload sizes in bytes, comma-separated.") var sizes = "100,1200"
    @Option(name: .long, help: "Seconds of sending per relay, size and round (at most 60).") var duration = 3.0
    @Option(name: .long, help: "Rounds; the relays alternate each round and the median round is reported.") var rounds = 3
    @Option(name: .long, help: "Relays to measure, comma-separated: peerway, coturn.") var relays = "peerway,coturn"
    @Option(name: .long, help: "CPU the relays are pinned to with taskset (-1: no pinning).") var serverCPU = 1
    @Option(name: .long, help: "CPU the sender and receiver threads are pinned to (-1: no pinning).") var generatorCPU = 0
    @Flag(name: .long, help: "One JSON object per relay and size on stdout.") var json = false
    @Flag(name: .customLong("no-gso"), help: "Our relay without segmentation offload (UDP_SEGMENT): every datagram through sendmmsg.")
    var noGSO = false
    @Option(name: .customLong("serve"), help: ArgumentHelp("Run our relay on 127.0.0.1:PORT (the bench's child).", visibility: .private))
    var serve: UInt16?

    func validate() throws {
        guard duration > 0, duration <= RelayBenchLoad.maximumDuration else { throw ValidationError("--duration must be in (0, 60]") }
        guard (1...20).contains(rounds) else { throw ValidationError("--rounds must be 1-20") }
        guard !payloadSizes.isEmpty, payloadSizes.allSatisfy({ (1...RelayServer.Limits.maximumDatagramBytes - 4).contains($0) }) else {
            throw ValidationError("--sizes: comma-separated sizes of 1-\(RelayServer.Limits.maximumDatagramBytes - 4) bytes")
        }
        for r in relayList where r != "peerway" && r != "coturn" { throw ValidationError("--relays \(r): expected peerway or coturn") }
    }

    var payloadSizes: [Int] { sizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
    var relayList: [String] { relays.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        if let port = serve {
            try await serveRelay(port: port)
            return
        }
        let key = SymmetricKey(size: .bits256)
        var processes: [String: Process] = [:]
        defer {
            // coturn does not always stop on SIGTERM while busy: kill what we started.
            // Under `timeout`, the relay is its child: kill it first, then `timeout` itself.
            for p in processes.values where p.isRunning {
                let relay = Self.relayProcess(p.processIdentifier)
                if relay != p.processIdentifier { kill(relay, SIGKILL) }
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
            }
        }
        let minter = RelayTokenMinter(key: key)
        for relay in relayList {
            // A relay left over by a bench that was just killed may hold the port a moment longer.
            for attempt in 1...Self.startAttempts {
                let process = try spawn(relay, key: key)
                processes[relay] = process
                do {
                    try waitUntilReady(relay, minter: minter, process: process)
                    break
                } catch RelayBenchError.exited where attempt < Self.startAttempts {
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
        }
        var load = RelayBenchLoad()
        load.duration = duration
        load.cpu = generatorCPU
        var results: [String: [RelayBenchResult]] = [:]
        for round in 0..<rounds {
            for size in payloadSizes {
                let order = round % 2 == 0 ? relayList : relayList.reversed()
                for relay in order {
                    let pid = Self.relayProcess(processes[relay]!.processIdentifier)
                    let r = relay == "peerway"
                        ? try measurePeerway(load, size: size, minter: minter, pid: pid)
                        : try measureCoturn(load, size: size, pid: pid)
                    results["\(relay)/\(size)", default: []].append(r)
                    if !json {
                        say(String(format: "round %d  %-8@ %5d B  %10.0f pkt/s  %8.1f MB/s  +%d B/pkt  loss %5.1f%% (relay %d, receiver %d)  relay CPU %3.0f%%",
                                   round + 1, relay as NSString, size, r.packetsPerSecond, r.bytesPerSecond / 1e6,
                                   r.addedBytesPerPacket, r.lossPercent, r.droppedAtRelay, r.droppedAtReceiver, r.relayCPUPercent))
                    }
                }
            }
        }
        let medians: [RelayBenchResult] = payloadSizes.flatMap { size in
            relayList.map { relay -> RelayBenchResult in
                let rs = results["\(relay)/\(size)"]!.sorted { $0.packetsPerSecond < $1.packetsPerSecond }
                return rs[rs.count / 2]
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            for m in medians { say(String(decoding: try encoder.encode(m), as: UTF8.self)) }
            return
        }
        say("")
        let pinning = serverCPU >= 0 ? "relays on CPU \(serverCPU), sender and receiver on CPU \(generatorCPU)" : "no pinning"
        say("relay     payload      pkt/s       MB/s  added B/pkt   sent/s    loss%  relay CPU%  pkt/CPU-s  corrupted   (median of \(rounds) round(s), \(duration) s each, \(pinning))")
        for m in medians {
            say(String(format: "%-8@ %6d B %10.0f %10.1f %12d %8.0f %8.1f %11.0f %10.0f %10d", m.relay as NSString, m.payloadBytes,
                       m.packetsPerSecond, m.bytesPerSecond / 1e6, m.addedBytesPerPacket,
                       Double(m.sent) / duration, m.lossPercent, m.relayCPUPercent, m.packetsPerRelayCPUSecond, m.corrupted))
        }
        for size in payloadSizes {
            if let ours = medians.first(where: { $0.relay == "peerway" && $0.payloadBytes == size }),
               let theirs = medians.first(where: { $0.relay == "coturn" && $0.payloadBytes == size }), theirs.packetsPerSecond > 0 {
                say(String(format: "ratio peerway/coturn at %d B: %.2fx throughput, %.2fx datagrams per relay CPU second", size,
                           ours.packetsPerSecond / theirs.packetsPerSecond,
                           theirs.packetsPerRelayCPUSecond > 0 ? ours.packetsPerRelayCPUSecond / theirs.packetsPerRelayCPUSecond : 0))
            }
        }
    }

    // MARK: the relays

    private func spawn(_ relay: String, key: SymmetricKey) throws -> Process {
        let process = Process()
        if relay == "peerway" {
            process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            process.arguments = ["bench", "relay", "--serve", "\(Self.peerwayPort)"] + (noGSO ? ["--no-gso"] : [])
            var environment = ProcessInfo.processInfo.environment
            environment[Self.keyVariable] = key.withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }
            process.environment = environment
        } else {
            guard let path = LabRunner.path(of: "turnserver") else {
                throw ValidationError("coturn's turnserver is not installed (apt-get install coturn)")
            }
            // coturn outlives its parent and ignores SIGTERM when busy: `timeout` kills it after
            // the longest this bench can run, even if the bench itself is killed.
            guard let timeout = LabRunner.path(of: "timeout") else { throw ValidationError("timeout (coreutils) is needed") }
            process.executableURL = URL(fileURLWithPath: timeout)
            process.arguments = ["-s", "KILL", "\(maximumRunSeconds)", path,
                "-n", "--listening-ip", "127.0.0.1", "--listening-port", "\(Self.coturnPort)", "--relay-ip", "127.0.0.1",
                "--min-port", "\(Self.coturnRelayPorts.lowerBound)", "--max-port", "\(Self.coturnRelayPorts.upperBound)",
                "--no-tls", "--no-dtls", "--no-tcp-relay", "--lt-cred-mech", "--user", "\(Self.turnUser):\(Self.turnPassword)",
                "--realm", Self.turnRealm, "--allow-loopback-peers", "--no-cli", "--no-stdout-log", "--log-file", "/dev/null",
                "--simple-log", "--pidfile", "/tmp/peerway-bench-relay-turnserver.pid", "--userdb", "/tmp/peerway-bench-relay-turndb",
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
        return process
    }

    /// The longest this bench can run: every measurement plus set-up, with a margin.
    var maximumRunSeconds: Int {
        Int(Double(rounds * payloadSizes.count * relayList.count) * (duration + 5) + 2 * Self.readyTimeout + 30)
    }

    /// The relay's own process: `pid` itself, or the child `timeout` started.
    static func relayProcess(_ pid: Int32) -> Int32 {
        guard let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
              comm.trimmingCharacters(in: .whitespacesAndNewlines) == "timeout",
              let children = try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8),
              let child = children.split(separator: " ").first.flatMap({ Int32($0) }) else { return pid }
        return child
    }

    private func waitUntilReady(_ relay: String, minter: RelayTokenMinter, process: Process) throws {
        let deadline = Date().addingTimeInterval(Self.readyTimeout)
        while Date() < deadline {
            guard process.isRunning else { throw RelayBenchError.exited(relay, process.terminationStatus) }
            if relay == "peerway" {
                let fd = try BenchUDP.open(connectedTo: STUNAddress(ip: .v4(0x7F00_0001), port: Self.peerwayPort))
                defer { close(fd) }
                let token = minter.mint(allocation: UInt64.random(in: 1...UInt64.max), expires: UInt32(Date().timeIntervalSince1970) + 60,
                                        side: 0, transport: .udp)
                if BenchUDP.exchange(fd, RelayMessage.bind(token), attempts: 2, accept: { $0 == RelayMessage.answer(token) }) != nil { return }
            } else {
                let fd = try BenchUDP.open(connectedTo: STUNAddress(ip: .v4(0x7F00_0001), port: Self.coturnPort))
                defer { close(fd) }
                let request = STUNMessage(type: .bindingRequest)
                let id = request.transactionID
                if BenchUDP.exchange(fd, request.encodedBytes(), attempts: 2, accept: { (try? STUNMessage(bytes: $0))?.transactionID == id }) != nil {
                    return
                }
            }
        }
        throw RelayBenchError.relay("\(relay) did not answer within \(Self.readyTimeout) s")
    }

    // MARK: measurements

    private static func payload(_ size: Int) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 151 &+ 7) } }

    /// Ours: the sender binds side 0, the receiver side 1, then the sender's raw datagrams are relayed.
    private func measurePeerway(_ load: RelayBenchLoad, size: Int, minter: RelayTokenMinter, pid: Int32) throws -> RelayBenchResult {
        let relay = STUNAddress(ip: .v4(0x7F00_0001), port: Self.peerwayPort)
        let sender = try BenchUDP.open(connectedTo: relay)
        defer { close(sender) }
        let receiver = try BenchUDP.open(connectedTo: relay)
        defer { close(receiver) }
        let (a, b) = minter.mintPair(allocation: UInt64.random(in: 1...UInt64.max), expires: UInt32(Date().timeIntervalSince1970) + 600,
                                     transport: .udp)
        for (fd, token) in [(sender, a), (receiver, b)] {
            guard BenchUDP.exchange(fd, RelayMessage.bind(token), accept: { $0 == RelayMessage.answer(token) }) != nil else {
                throw RelayBenchError.relay("peerway relay did not answer a bind")
            }
        }
        let payload = Self.payload(size)
        return runRelayLoad(load, relay: "peerway", sender: sender, receiver: receiver, datagram: payload, payload: payload, relayPID: pid,
                            relayPort: Self.peerwayPort)
    }

    /// coturn: the sender allocates, permits the receiver, binds a channel to it, and sends ChannelData.
    private func measureCoturn(_ load: RelayBenchLoad, size: Int, pid: Int32) throws -> RelayBenchResult {
        let server = STUNAddress(ip: .v4(0x7F00_0001), port: Self.coturnPort)
        let sender = try BenchUDP.open(connectedTo: server)
        defer { close(sender) }
        let receiver = try BenchUDP.open()
        defer { close(receiver) }
        var client = TURNClient(fd: sender, username: Self.turnUser, password: Self.turnPassword)
        let relayed = try client.allocate()
        let peer = BenchUDP.localAddress(receiver)
        try client.createPermission(peer: peer)
        try client.channelBind(TURN.firstChannel, peer: peer)
        try BenchUDP.connect(receiver, to: relayed)
        let payload = Self.payload(size)
        let datagram = TURN.channelDataHeader(channel: TURN.firstChannel, length: size) + payload
            + [UInt8](repeating: 0, count: (4 - size % 4) % 4)  // ChannelData is padded to 4 bytes
        return runRelayLoad(load, relay: "coturn", sender: sender, receiver: receiver, datagram: datagram, payload: payload, relayPID: pid,
                            relayPort: Self.coturnPort)
    }

    // MARK: the child

    /// Runs our relay on 127.0.0.1:`port` with the key from the environment until the parent is
    /// gone or `serveLimitSeconds` pass.
    private func serveRelay(port: UInt16) async throws {
        guard let hex = ProcessInfo.processInfo.environment[Self.keyVariable], hex.count == 64 else {
            throw ValidationError("--serve needs \(Self.keyVariable) (64 hex digits)")
        }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let b = UInt8(hex[index..<next], radix: 16) else { throw ValidationError("\(Self.keyVariable): not hex") }
            bytes.append(b)
            index = next
        }
        let parent = getppid()
        let server = RelayServer(configuration: .init(udp: STUNAddress(ip: .v4(0x7F00_0001), port: port), key: SymmetricKey(data: bytes),
                                                      segmentationOffload: !noGSO),
                                 logger: Logger(label: "peerway.bench.relay"))
        try server.start()
        for _ in 0..<(Self.serveLimitSeconds * 5) where getppid() == parent {
            try await Task.sleep(for: .milliseconds(200))
        }
        await server.stop()
    }
}
