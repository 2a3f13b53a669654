#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CPeerwayLinux
import Foundation
import PeerwayCheckpoint
import PeerwaySTUN

/// `peerway bench checkpoint`: N simulated peers register with a real checkpoint, keep alive and
/// exchange messages; reports registration rate, keepalives/s, messages/s with latency, the
/// server's CPU and its memory per registered peer.
struct CheckpointBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Load a CHECKPOINT with N simulated peers; report registrations/s, keepalives/s, messages/s, CPU and memory per peer.",
        discussion: """
            Starts a supernode (CHECKPOINT only, loopback) and drives it with --peers simulated peers speaking \
            the real protocol (hello, cookie, hello reply, signed register, keepalives, sendMessage/deliver/ack) \
            from --sockets sockets, each on its own address 127.2.x.y. Phases: registering (progress every few \
            seconds), --duration seconds of keepalives only (one per peer every --keepalive seconds, spread \
            uniformly), then --message-duration seconds of messages between --message-pairs pairs.
              peerway bench checkpoint --peers 100000 --keepalive 25 --duration 30
            Against a running supernode (its PID gives CPU and memory figures):
              peerway bench checkpoint --no-spawn --supernode peerway://KEY@127.0.0.1:7400 --server-pid PID
            """
    )

    @Option(name: .long, help: "Simulated peers.") var peers = 10_000
    @Option(name: .long, help: "Keepalive interval each peer registers and keeps, in seconds (5-300).") var keepalive = 25
    @Option(name: .long, help: "Seconds of the steady phase (keepalives only).") var duration = 20.0
    @Option(name: .long, help: "Client sockets, each bound to its own 127.2.x.y (default: min(peers, 1024)).") var sockets: Int?
    @Option(name: .long, help: "Registrations in flight at once, at most one per socket (default: min(sockets, 2000)).") var handshakes: Int?
    @Option(name: .customLong("message-pairs"), help: "Sender/recipient pairs of the message phase (0: no message phase).") var messagePairs = 1000
    @Option(name: .long, help: "Messages in flight per pair (the client library keeps 1 per recipient).") var window = 1
    @Option(name: .customLong("message-rate"), help: "Messages per second overall; 0 = as fast as outcomes come back.") var messageRate = 0
    @Option(name: .customLong("message-duration"), help: "Seconds of the message phase.") var messageDuration = 10.0
    @Option(name: .customLong("message-bytes"), help: "Bytes of text per message.") var messageBytes = 64
    @Flag(name: .long, help: "Register one metadata entry per peer (name=peer-N) instead of none.") var metadata = false
    @Option(name: .customLong("handshake-timeout"), help: "Seconds before a hello or register is sent again (at least 4x the smoothed answer time).") var handshakeTimeout = 2.0
    @Option(name: .customLong("register-timeout"), help: "Longest registering phase, in seconds.") var registerTimeout = 600.0
    @Option(name: .long, help: "Overall deadline in seconds (default: register timeout + phases + 60).") var deadline: Double?
    @Flag(name: .customLong("spawn"), inversion: .prefixedNo, help: "Start the supernode here (default) or use --supernode.") var spawn = true
    @Option(name: .long, help: "A running supernode's address (peerway://KEY@127.x.y.z:PORT) with --no-spawn.") var supernode: String?
    @Option(name: .customLong("server-pid"), help: "PID of the running supernode, for its CPU and memory figures.") var serverPID: Int32?
    @Option(name: .customLong("server-cpu"), help: "CPU the spawned supernode is pinned to with taskset (-1: no pinning).") var serverCPU = -1
    @Option(name: .customLong("generator-cpu"), help: "CPU the load generator is pinned to (-1: no pinning).") var generatorCPU = -1
    @Flag(name: .long, help: "One JSON object on stdout (progress goes to stderr).") var json = false

    var socketCount: Int { sockets ?? min(peers, 1024) }

    func validate() throws {
        guard (1...CheckpointLoadConfiguration.maximumPeers).contains(peers) else {
            throw ValidationError("--peers must be 1-\(CheckpointLoadConfiguration.maximumPeers)")
        }
        guard (1...CheckpointLoadConfiguration.maximumSockets).contains(socketCount) else {
            throw ValidationError("--sockets must be 1-\(CheckpointLoadConfiguration.maximumSockets)")
        }
        guard ControlLimits.keepaliveSecondsRange.contains(UInt16(clamping: keepalive)) else {
            throw ValidationError("--keepalive must be within \(ControlLimits.keepaliveSecondsRange) seconds")
        }
        guard duration > 0, duration <= 3600, messageDuration >= 0, messageDuration <= 3600 else {
            throw ValidationError("--duration and --message-duration must be within 0-3600 seconds")
        }
        guard (1...256).contains(window) else { throw ValidationError("--window must be 1-256 (the checkpoint allows 256 per sender)") }
        guard messagePairs >= 0, messageRate >= 0, (0...ControlLimits.maximumMessageBytes).contains(messageBytes) else {
            throw ValidationError("--message-pairs, --message-rate must be >= 0, --message-bytes 0-\(ControlLimits.maximumMessageBytes)")
        }
        guard handshakeTimeout >= 0.1, handshakeTimeout <= 60 else { throw ValidationError("--handshake-timeout must be within 0.1-60 seconds") }
        guard registerTimeout > 0, registerTimeout <= 7200 else { throw ValidationError("--register-timeout must be within (0, 7200] seconds") }
        if !spawn && supernode == nil { throw ValidationError("--no-spawn needs --supernode peerway://KEY@HOST:PORT") }
    }

    func run() async throws {
        if generatorCPU >= 0, cpeerway_pin_thread(Int32(generatorCPU)) != 0 {
            throw ValidationError("cannot pin the generator to CPU \(generatorCPU)")
        }
        try raiseOpenFileLimit(to: socketCount + 64)
        let note: (String) -> Void = json ? { FileHandle.standardError.write(Data(($0 + "\n").utf8)) } : { say($0) }
        var spawned: SpawnedCheckpoint?
        defer { spawned?.stop() }
        let address: SupernodeAddress
        var pid = serverPID
        if spawn {
            let server = try SpawnedCheckpoint(cpu: serverCPU)
            spawned = server
            address = try server.waitForAddress()
            pid = server.pid
            usleep(500_000)  // let it settle before the baseline memory figure
            note("spawned supernode \(address) (PID \(server.pid)\(serverCPU >= 0 ? ", CPU \(serverCPU)" : ""))")
        } else {
            address = try SupernodeAddress(parsing: supernode!)
        }
        guard let endpoint = address.endpoint, endpoint.isLoopback, endpoint.family == .ipv4 else {
            throw ValidationError("\(address): expected an IPv4 loopback address (load never leaves this machine)")
        }
        var config = CheckpointLoadConfiguration(server: address, endpoint: endpoint)
        config.serverPID = pid
        config.peers = peers
        config.sockets = socketCount
        config.handshakesInFlight = handshakes ?? min(socketCount, 2000)
        config.keepaliveSeconds = keepalive
        config.duration = duration
        config.messagePairs = messagePairs
        config.window = window
        config.messageRate = messageRate
        config.messageDuration = messageDuration
        config.messageBytes = messageBytes
        config.metadata = metadata
        config.registerTimeout = registerTimeout
        config.handshakeTimeout = handshakeTimeout
        config.deadline = deadline ?? (registerTimeout + duration + messageDuration + 60)
        config.progress = note
        var load = try CheckpointLoad(config)
        defer { load.close() }
        let r = load.run()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            say(String(decoding: try encoder.encode(r), as: UTF8.self))
            return
        }
        summarize(r)
    }

    private func summarize(_ r: CheckpointBenchResult) {
        func cpu(_ v: Double) -> String { v >= 0 ? String(format: "%.0f%%", v) : "n/a" }
        say("")
        say("CHECKPOINT \(r.server): \(r.peers) peers over \(r.sockets) sockets, keepalive \(r.keepaliveSeconds) s"
            + (serverCPU >= 0 ? " (server on CPU \(serverCPU), generator on CPU \(generatorCPU))" : " (no pinning)"))
        say(String(format: "registration   %d/%d registered in %.1f s = %.0f peers/s   (retransmits: %d hello, %d register; %d restarts)   CPU server %@ generator %@",
                   r.registered, r.peers, r.registerSeconds, r.registrationsPerSecond, r.handshakeRetransmits, r.registerRetransmits,
                   r.handshakeRestarts, cpu(r.registerServerCPUPercent) as NSString, cpu(r.registerGeneratorCPUPercent) as NSString))
        say(String(format: "keepalives     %.0f acks/s over %.0f s (expected %.0f/s; sent %d, acked %d)   p50 %.0f us  p99 %.0f us   CPU server %@ generator %@",
                   r.keepaliveAcksPerSecond, r.steadySeconds, r.keepalivesExpectedPerSecond, r.keepalivesSent, r.keepaliveAcks,
                   r.keepaliveP50Microseconds, r.keepaliveP99Microseconds, cpu(r.steadyServerCPUPercent) as NSString, cpu(r.steadyGeneratorCPUPercent) as NSString))
        if r.messageSeconds > 0 {
            say(String(format: "messages       %.0f delivered/s over %.0f s (%d pairs, %@)   p50 %.0f us  p99 %.0f us   sent %d delivered %d failed %d timed out %d refused %d   keepalive acks meanwhile %.0f/s   CPU server %@ generator %@",
                       r.messagesPerSecond, r.messageSeconds, r.messagePairs,
                       (r.messageRate > 0 ? "\(r.messageRate)/s paced" : "window \(r.messageWindow), unpaced") as NSString,
                       r.messageP50Microseconds, r.messageP99Microseconds, r.messagesSent, r.messagesDelivered, r.messagesFailed,
                       r.messagesTimedOut, r.messagesRefused, r.messageKeepaliveAcksPerSecond,
                       cpu(r.messageServerCPUPercent) as NSString, cpu(r.messageGeneratorCPUPercent) as NSString))
        }
        if r.serverRSSBeforeKiB >= 0 {
            say(String(format: "server memory  RSS %.1f MiB before, %.1f MiB after registration = %.0f bytes per peer;  VmHWM %.1f MiB",
                       Double(r.serverRSSBeforeKiB) / 1024, Double(r.serverRSSAfterKiB) / 1024, r.serverBytesPerPeer,
                       Double(r.serverHWMKiB) / 1024))
        }
        let anomalies = r.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            + [("session unknown", r.sessionUnknown), ("auth failures", r.authenticationFailures), ("replays", r.replays),
               ("unknown-session packets", r.unknownSessionPackets), ("send failures", r.sendFailures),
               ("keepalives unanswered", r.keepalivesUnanswered)].filter { $0.1 > 0 }.map { "\($0.0) \($0.1)" }
        if !anomalies.isEmpty { say("anomalies      " + anomalies.joined(separator: ", ")) }
        if r.stoppedByDeadline { say("stopped by the overall deadline: figures of unfinished phases are missing") }
    }
}
