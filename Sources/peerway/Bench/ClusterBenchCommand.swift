#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import PeerwayCheckpoint

/// `peerway bench cluster`: a network of supernodes on loopback sharing one PostgreSQL, N load
/// peers spread over them; reports registration, each supernode's CPU and memory, lookups and
/// searches across the network, same-node vs cross-node messages, failover after kill -9 and
/// what the directory costs PostgreSQL.
struct ClusterBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Load a network of supernodes: registration, lookups and searches across it, same- vs cross-node messages, failover, PostgreSQL's cost.",
        discussion: """
            Starts --supernodes `peerway supernode --cluster URL` processes on 127.0.10.x (the database: \
            --cluster URL, or a throwaway one from scripts/index-postgres) and spreads --peers simulated peers \
            (the checkpoint bench's load generator) over them. Phases: registering; --duration seconds of \
            keepalives only; --lookups peers of the whole network looked up on every supernode; --searches \
            searches on every supernode; same-node and cross-node messages, paced at --message-rate then \
            unpaced; then --failover-peers real client peers on supernode 0, which is killed with SIGKILL, \
            timed until they are registered elsewhere. Each phase reports every supernode's CPU, the \
            generator's, and PostgreSQL's CPU, commits, rows written and WAL.
              peerway bench cluster --peers 30000
              peerway bench cluster --peers 1000000 --register-timeout 1500
            """
    )

    static let maximumSupernodes = 16

    @Option(name: .long, help: "Supernodes in the network (2-\(maximumSupernodes)).") var supernodes = 3
    @Option(name: .long, help: "Simulated peers, spread evenly over the supernodes.") var peers = 30_000
    @Option(name: .long, help: "Keepalive interval of the simulated peers, in seconds (5-300).") var keepalive = 25
    @Option(name: .long, help: "PostgreSQL URL holding the membership (default: a throwaway server from scripts/index-postgres).") var cluster: String?
    @Option(name: .customLong("postgres-data"), help: "With --cluster: the server's data directory (holds postmaster.pid), for its CPU figures.") var postgresData: String?
    @Flag(name: .customLong("with-index"), help: "Supernodes also keep the INDEX in the same database (default: --no-index).") var withIndex = false
    @Option(name: .long, help: "Client sockets of the load generator, each on its own 127.2.x.y (default: min(peers, 1023), a multiple of the supernodes).") var sockets: Int?
    @Option(name: .long, help: "Seconds of the keepalive-only phase.") var duration = 20.0
    @Option(name: .long, help: "Peers looked up on each supernode (capped at --peers; 0: none).") var lookups = 20_000
    @Option(name: .long, help: "Searches on each supernode (half name=peer-K, half a name prefix; 0: none).") var searches = 2_000
    @Option(name: .customLong("message-pairs"), help: "Pairs of each message phase (same-node and cross-node).") var messagePairs = 999
    @Option(name: .customLong("message-rate"), help: "Messages per second of the paced (latency) phases.") var messageRate = 1_000
    @Option(name: .customLong("message-duration"), help: "Seconds of each message phase (4 phases; 0: none).") var messageDuration = 10.0
    @Option(name: .customLong("failover-peers"), help: "Real client peers timed through the kill of supernode 0 (0: no failover phase).") var failoverPeers = 1_000
    @Option(name: .customLong("failover-keepalive"), help: "Keepalive interval of the failover peers, in seconds.") var failoverKeepalive: UInt16 = 15
    @Flag(name: .customLong("failover-all-addresses"), help: "Give the failover peers every supernode's address (default: supernode 0's only; they learn the others when they register).") var failoverAllAddresses = false
    @Flag(name: .customLong("failover-load"), inversion: .prefixedNo, help: "The victim's load peers re-register on the survivors too, each socket when a client with their keepalive would notice (default), or stop with it.") var failoverLoad = true
    @Option(name: .customLong("register-timeout"), help: "Longest registering phase, in seconds.") var registerTimeout = 900.0
    @Option(name: .long, help: "Overall deadline in seconds (default: register timeout + 600 + the phases).") var deadline: Double?
    @Flag(name: .customLong("keep-logs"), help: "Keep the work directory (supernode logs) after the run.") var keepLogs = false
    @Flag(name: .long, help: "One JSON object on stdout (progress goes to stderr).") var json = false

    var socketCount: Int {
        if let sockets { return sockets }
        let s = min(peers, 1023)
        return max(supernodes, s - s % supernodes)
    }

    func validate() throws {
        guard (2...Self.maximumSupernodes).contains(supernodes) else { throw ValidationError("--supernodes must be 2-\(Self.maximumSupernodes)") }
        guard (supernodes...CheckpointLoadConfiguration.maximumPeers).contains(peers) else {
            throw ValidationError("--peers must be \(supernodes)-\(CheckpointLoadConfiguration.maximumPeers)")
        }
        guard (supernodes...CheckpointLoadConfiguration.maximumSockets).contains(socketCount) else {
            throw ValidationError("--sockets must be \(supernodes)-\(CheckpointLoadConfiguration.maximumSockets)")
        }
        guard ControlLimits.keepaliveSecondsRange.contains(UInt16(clamping: keepalive)),
              ControlLimits.keepaliveSecondsRange.contains(failoverKeepalive) else {
            throw ValidationError("--keepalive and --failover-keepalive must be within \(ControlLimits.keepaliveSecondsRange) seconds")
        }
        guard duration > 0, duration <= 3600, messageDuration >= 0, messageDuration <= 600 else {
            throw ValidationError("--duration must be within (0, 3600] and --message-duration within [0, 600] seconds")
        }
        guard lookups >= 0, searches >= 0, messagePairs >= 0, messageRate > 0 else {
            throw ValidationError("--lookups, --searches and --message-pairs must be >= 0, --message-rate > 0")
        }
        guard (0...FailoverPopulation.maximumPeers).contains(failoverPeers) else {
            throw ValidationError("--failover-peers must be 0-\(FailoverPopulation.maximumPeers)")
        }
        guard registerTimeout > 0, registerTimeout <= 7200 else { throw ValidationError("--register-timeout must be within (0, 7200] seconds") }
        if let cluster, !(cluster.hasPrefix("postgres://") || cluster.hasPrefix("postgresql://")) {
            throw ValidationError("--cluster \(cluster): expected postgres://user@host:port/db")
        }
    }

    func run() async throws {
        try raiseOpenFileLimit(to: socketCount + failoverPeers + 256)
        let note: (String) -> Void = json ? { FileHandle.standardError.write(Data(($0 + "\n").utf8)) } : { say($0) }
        let work = NSTemporaryDirectory() + "peerway-bench-cluster-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var failed = true
        defer { if !keepLogs && !failed { try? FileManager.default.removeItem(atPath: work) } }

        let database: ClusterBenchDatabase
        if let cluster {
            database = try ClusterBenchDatabase(url: cluster, dataDirectory: postgresData)
        } else {
            database = try ClusterBenchDatabase.startThrowaway(script: ClusterBenchDatabase.findScript())
            note("PostgreSQL: throwaway server \(database.url) (data in \(database.throwawayDirectory ?? "?"))")
        }
        defer { database.stop() }
        database.calibrate()
        note("PostgreSQL: one psql call of the bench counts \(database.perCall.commits) commits and \(database.perCall.read) rows read (taken out of the figures)")

        let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let nodes = try ClusterBenchNodes(count: supernodes, binary: binary, database: database.url, withIndex: withIndex, workDirectory: work)
        defer { nodes.stopAll() }
        for node in nodes.nodes { note("supernode \(node.index): \(node.address!) (PID \(node.pid), log \(node.logPath))") }
        try nodes.waitForNetwork(database, settle: 3)
        note("all \(supernodes) supernodes heartbeat in the membership table")

        let targets = nodes.nodes.map { CheckpointLoadTarget(address: $0.address!, endpoint: $0.endpoint!) }
        var config = CheckpointLoadConfiguration(server: targets[0].address, endpoint: targets[0].endpoint)
        config.otherTargets = Array(targets.dropFirst())
        config.peers = peers
        config.sockets = socketCount
        config.handshakesInFlight = min(socketCount, 2000)
        config.keepaliveSeconds = keepalive
        config.metadata = true
        config.messagePairs = 0
        config.window = 1
        config.registerTimeout = registerTimeout

        var plan = ClusterBenchPlan()
        plan.registerTimeout = registerTimeout
        plan.duration = duration
        plan.lookups = lookups
        plan.searches = searches
        plan.messagePairs = messagePairs
        plan.messageRate = messageRate
        plan.messageDuration = messageDuration
        plan.failoverPeers = failoverPeers
        plan.failoverKeepalive = failoverKeepalive
        plan.failoverGiveAll = failoverAllAddresses
        plan.failoverLoad = failoverLoad
        let phases = duration + 4 * (messageDuration + 16) + 3 * Double(failoverKeepalive) + 2 * Double(keepalive) + 350
        plan.deadline = monotonicNow() + UInt64((deadline ?? (registerTimeout + 600 + phases)) * 1e9)

        let meter = ClusterBenchMeter(nodes: nodes, database: database, progressSeconds: 5, note: note)
        var load = try CheckpointLoad(config)
        defer { load.close() }
        var result = load.runCluster(plan, meter: meter)
        result.database = Self.redacted(database.url)
        result.withIndex = withIndex
        failed = result.stoppedEarly != nil
        if failed { note("the work directory (supernode logs) stays: \(work)") }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            say(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else {
            say(result.text)
        }
    }

    /// The URL without its password.
    static func redacted(_ url: String) -> String {
        guard var c = URLComponents(string: url) else { return "postgres://…" }
        if c.password != nil { c.password = "…" }
        return c.string ?? "postgres://…"
    }
}
