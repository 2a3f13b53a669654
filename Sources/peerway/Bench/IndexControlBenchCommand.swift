import ArgumentParser
import Foundation
import Peerway
import PeerwayCheckpoint
import PeerwayIndex
import PeerwaySupernode

/// `peerway bench index-control`: the INDEX as peers use it, through the checkpoint on loopback:
/// latency of each operation, calls/s, and how soon a watcher hears a member go offline.
struct IndexControlBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index-control",
        abstract: "The INDEX through the control channel on loopback: per-operation latency p50/p99, calls/s, member status delay.",
        discussion: """
            Starts a checkpoint with an INDEX (SQLite in a temporary directory, or --postgres URL) on 127.0.0.1 \
            and N peers, each on its own 127.0.1.x address (sign-ups are limited per source address). Every peer \
            signs up (memory-hard password hash: --hasher interactive is what a supernode uses) and joins one \
            network, which peer 0 watches. Then --rounds of each operation from one peer at a time, then every \
            peer calling whoami back to back for --duration seconds, then peers leaving one by one while peer 0 \
            times their offline notices.
              peerway bench index-control --peers 50 --rounds 300 --duration 5
            """
    )

    @Option(name: .long, help: "Peers (2-250).") var peers = 50
    @Option(name: .long, help: "Runs of each operation.") var rounds = 300
    @Option(name: .long, help: "Seconds of the calls/s phase.") var duration = 5
    @Option(name: .long, help: "interactive (scrypt N=2^15, what a supernode uses) or testing (N=2^10).") var hasher = "interactive"
    @Option(name: .long, help: "PostgreSQL URL of an empty database (default: SQLite in a temporary directory).") var postgres: String?

    func validate() throws {
        guard (2...250).contains(peers) else { throw ValidationError("--peers must be 2-250") }
        guard (1...100_000).contains(rounds) else { throw ValidationError("--rounds must be 1-100000") }
        guard (1...600).contains(duration) else { throw ValidationError("--duration must be 1-600") }
        guard ["interactive", "testing"].contains(hasher) else { throw ValidationError("--hasher must be interactive or testing") }
    }

    func run() async throws {
        let hash: PasswordHasher = hasher == "interactive" ? .interactive : .testing
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peerway-index-control-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let index: SupernodeConfiguration.IndexStorage = postgres.map { .postgres(url: $0, hasher: hash) }
            ?? .sqlite(directory: directory, hasher: hash)
        // CHECKPOINT and its INDEX only: the peers measure no NAT and open no tunnel.
        let supernode = try await Supernode.start(SupernodeConfiguration(stun: nil, relay: nil, index: index))
        var bench = IndexControlBench(peersWanted: peers, rounds: rounds, duration: duration)
        do {
            try await bench.run(supernode.address)
        } catch {
            await bench.stop()
            await supernode.stop()
            throw error
        }
        await bench.stop()
        await supernode.stop()
        print("index-control: \(peers) peers, store \(postgres == nil ? "sqlite" : "postgres"), hasher \(hasher), \(rounds) rounds")
        for line in bench.lines { print(line) }
    }
}

/// The phases of `peerway bench index-control`.
struct IndexControlBench {
    let peersWanted: Int
    let rounds: Int
    let duration: Int
    var peers: [Peer] = []
    var lines: [String] = []

    init(peersWanted: Int, rounds: Int, duration: Int) {
        self.peersWanted = peersWanted
        self.rounds = rounds
        self.duration = duration
    }

    static func password(_ i: Int) -> String { "bench-password-\(i)" }

    mutating func run(_ address: SupernodeAddress) async throws {
        for i in 0..<peersWanted {
            var o = PeerOptions()
            o.bindHost = "127.0.1.\(i + 1)"
            o.measuresNAT = false
            peers.append(try await Peer.start(identity: PeerIdentity(), supernodes: [address], options: o))
        }
        let all = peers
        // Sign-ups, all at once.
        let started = ContinuousClock.now
        let signups = try await withThrowingTaskGroup(of: Duration.self) { group in
            for (i, p) in all.enumerated() {
                group.addTask {
                    let t = ContinuousClock.now
                    _ = try await p.signup(username: "user\(i)", password: Self.password(i), metadata: ["city": "c\(i % 10)", "n": "\(i)"])
                    return ContinuousClock.now - t
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let signupWall = ContinuousClock.now - started
        lines.append(Self.row("signup (concurrent)", signups) + String(format: "  %.0f/s", Double(all.count) / signupWall.seconds))
        _ = try await all[0].createNetwork("bench", metadata: ["topic": "bench"])
        for p in all.dropFirst() { _ = try await p.joinNetwork("bench") }
        _ = try await all[0].watchNetwork("bench")

        // One operation at a time, from peers in turn.
        lines.append(Self.row("whoami", try await timed(rounds) { i in _ = try await all[i % all.count].currentUser() }))
        lines.append(Self.row("members (\(all.count), live state)", try await timed(rounds) { i in _ = try await all[i % all.count].members(of: "bench") }))
        lines.append(Self.row("users search city=c1", try await timed(rounds) { i in _ = try await all[i % all.count].searchUsers("city=c1") }))
        lines.append(Self.row("update profile", try await timed(rounds) { i in _ = try await all[i % all.count].updateProfile(["seen": "\(i)"]) }))
        lines.append(Self.row("login (password hash)", try await timed(min(rounds, 50)) { i in
            let k = i % all.count
            _ = try await all[k].login(username: "user\(k)", password: Self.password(k))
        }))

        // Other calls while password hashes run: every other peer logs in at once while peer 0
        // calls whoami 100 times a second (hashes run on threads of their own, not the concurrency pool).
        let finished = BenchFlag()
        let burst = Task {
            defer { finished.set() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (k, p) in all.enumerated().dropFirst() {
                    group.addTask { _ = try await p.login(username: "user\(k)", password: Self.password(k)) }
                }
                try await group.waitForAll()
            }
        }
        var during: [Duration] = []
        while during.count < 10_000 {
            let t = ContinuousClock.now
            _ = try await all[0].currentUser()
            during.append(ContinuousClock.now - t)
            if during.count >= 20, finished.isSet { break }
            // 100 calls a second: under the checkpoint's per-session request rate.
            try await Task.sleep(for: .milliseconds(10))
        }
        try await burst.value
        lines.append(Self.row("whoami during \(all.count - 1) logins", during))

        // Calls/s: every peer back to back.
        let stop = ContinuousClock.now + .seconds(duration)
        let calls = try await withThrowingTaskGroup(of: Int.self) { group in
            for p in all {
                group.addTask {
                    var n = 0
                    while ContinuousClock.now < stop { _ = try await p.currentUser(); n += 1 }
                    return n
                }
            }
            return try await group.reduce(0, +)
        }
        lines.append(Self.pad("whoami, all peers") + String(format: "%.0f calls/s (%d peers back to back, %d s)",
                                                             Double(calls) / Double(duration), all.count, duration))

        // Member status: peers stop one by one; peer 0 times each offline notice.
        let watcher = all[0]
        let notices = NoticeLog(watcher)
        var delays: [Duration] = []
        for (i, p) in all.enumerated().dropFirst().prefix(20) {
            let t = ContinuousClock.now
            await p.stop()
            if await notices.waitFor(name: "user\(i)", timeout: .seconds(10)) { delays.append(ContinuousClock.now - t) }
        }
        lines.append(Self.row("offline notice (stop -> watcher)", delays) + "  \(delays.count) of \(min(all.count - 1, 20)) heard")
    }

    func timed(_ n: Int, _ body: (Int) async throws -> Void) async throws -> [Duration] {
        var out: [Duration] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            let t = ContinuousClock.now
            try await body(i)
            out.append(ContinuousClock.now - t)
        }
        return out
    }

    func stop() async {
        for p in peers { await p.stop() }
    }

    static func row(_ name: String, _ samples: [Duration]) -> String {
        let ms = samples.map { $0.seconds * 1000 }.sorted()
        guard !ms.isEmpty else { return pad(name) + "no samples" }
        func q(_ p: Double) -> Double { ms[min(ms.count - 1, Int(Double(ms.count) * p))] }
        return pad(name) + String(format: "p50 %7.2f ms  p99 %7.2f ms  (n=%d)", q(0.5), q(0.99), ms.count)
    }

    static func pad(_ name: String) -> String { name.padding(toLength: 36, withPad: " ", startingAt: 0) }
}

/// A flag set once, read from any task.
final class BenchFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}

/// Peer 0's member status events, to time offline notices.
actor NoticeLog {
    private var offline: Set<String> = []

    init(_ peer: Peer) {
        let events = peer.events
        Task { await self.follow(events) }
    }

    private func follow(_ events: AsyncStream<PeerEvent>) async {
        for await e in events {
            if case .networkStatus(let s) = e, !s.online { offline.insert(s.name) }
        }
    }

    func waitFor(name: String, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if offline.contains(name) { return true }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return false
    }
}
