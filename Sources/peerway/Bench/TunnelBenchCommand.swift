#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import Peerway
import PeerwaySupernode

/// `peerway bench tunnels`: many encrypted UDP tunnels in one process (memory, threads, idle
/// datagrams, CPU per GB moved) and one tunnel's throughput beside a plain UDP socket, on loopback.
struct TunnelBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tunnels",
        abstract: "Concurrent tunnels in one process: memory, threads, idle datagrams, CPU per GB; one tunnel vs a plain socket.",
        discussion: """
            Starts a supernode and two peers in this process on loopback, opens --count encrypted UDP tunnels \
            from one peer to the other (both ends in this process: two pump threads per tunnel), then:
            idle: --idle seconds with nothing sent; the datagrams the tunnels sent meanwhile (keepalives on \
            the direct path and on the relay kept ready) are counted and scaled to one tunnel end and one hour;
            load: --megabytes of 1,200-byte datagrams spread over every tunnel; delivered bytes and the \
            process's CPU time per GB moved;
            single: --megabytes through one tunnel, then the same through a plain connected UDP socket pair.
              peerway bench tunnels --count 1000 --idle 60 --megabytes 500
            """
    )

    /// Largest `--count`: two threads per tunnel in one process.
    static let maximumCount = 2_000
    /// Largest `--idle`, seconds.
    static let maximumIdleSeconds = 600.0
    /// Largest `--megabytes`.
    static let maximumMegabytes = 10_000
    /// Tunnels opened at once.
    static let concurrency = 8
    /// Connects started per second at most (the checkpoint refuses a peer's requests over 200 a
    /// second, and a connect takes about three).
    static let connectsPerSecond = 50
    /// Payload bytes of each datagram sent in the load phases.
    static let datagramBytes = 1_200

    @Option(name: .long, help: "Tunnels to open (1-\(maximumCount)).") var count = 1_000
    @Option(name: .long, help: "Seconds of idling to count keepalives (0: skip).") var idle = 60.0
    @Option(name: .long, help: "Megabytes moved in each load phase (0: skip).") var megabytes = 500

    func validate() throws {
        guard (1...Self.maximumCount).contains(count) else { throw ValidationError("--count must be 1-\(Self.maximumCount)") }
        guard (0...Self.maximumIdleSeconds).contains(idle) else { throw ValidationError("--idle must be 0-\(Int(Self.maximumIdleSeconds))") }
        guard (0...Self.maximumMegabytes).contains(megabytes) else { throw ValidationError("--megabytes must be 0-\(Self.maximumMegabytes)") }
    }

    func run() async throws {
        let supernode = try await Supernode.start(SupernodeConfiguration())
        var options = PeerOptions()
        options.bindHost = "127.0.0.1"
        options.stunServer = supernode.stunLayout?.primary
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: options)
        let b = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: options)
        let tunnelOptions = TunnelOptions(bindHost: "127.0.0.1")
        let before = ProcessFigures.now()

        // B accepts every request; its ends are collected here.
        let accepted = TunnelBox()
        let acceptor = Task {
            for await event in b.events {
                guard case .connectRequest(let request) = event else { continue }
                Task { if let t = try? await b.accept(request, options: tunnelOptions) { accepted.add(t) } }
            }
        }
        let started = ContinuousClock.now
        var mine: [Tunnel] = []
        var failures = 0
        while mine.count + failures < count {
            let batchStarted = ContinuousClock.now
            let batch = min(Self.concurrency, count - mine.count - failures)
            let made = await withTaskGroup(of: Tunnel?.self) { group in
                for _ in 0..<batch {
                    group.addTask {
                        do { return try await a.connect(to: b.id, transport: .udp, options: tunnelOptions) } catch {
                            FileHandle.standardError.write(Data("connect failed: \(error)\n".utf8))
                            return nil
                        }
                    }
                }
                var out: [Tunnel?] = []
                for await t in group { out.append(t) }
                return out
            }
            mine += made.compactMap { $0 }
            failures += made.filter { $0 == nil }.count
            // A connect costs the peer about three control requests; the checkpoint takes 200 a second.
            let pace = Duration.milliseconds(Int64(1000 * Self.concurrency / Self.connectsPerSecond))
            if ContinuousClock.now - batchStarted < pace { try await Task.sleep(until: batchStarted + pace) }
        }
        while accepted.count < mine.count && ContinuousClock.now - started < .seconds(Int64(count) + 60) {
            try await Task.sleep(for: .milliseconds(50))
        }
        let setup = ContinuousClock.now - started
        let open = ProcessFigures.now()
        print("tunnels: \(mine.count) of \(count) opened (\(failures) failed) in \(Self.seconds(setup)) s; "
              + "\(accepted.count) accepted; paths: \(Dictionary(grouping: mine, by: { "\($0.path)" }).mapValues(\.count))")
        print("memory: \((open.rssKiB - before.rssKiB) / 1024) MiB more resident (\((open.rssKiB - before.rssKiB) / max(1, mine.count)) KiB per tunnel, both ends); "
              + "threads: \(before.threads) -> \(open.threads)")

        if idle > 0 {
            let sentBefore = Tunnel.datagramsSent
            try await Task.sleep(for: .milliseconds(Int64(idle * 1000)))
            let sent = Tunnel.datagramsSent - sentBefore
            let ends = Double(mine.count + accepted.count)
            let perHour = Double(sent) / ends * 3600 / idle
            print("idle: \(sent) datagrams in \(Int(idle)) s from \(Int(ends)) tunnel ends: \(String(format: "%.0f", perHour)) per tunnel end per hour")
        }
        if megabytes > 0 {
            let bytes = megabytes * 1_000_000
            let many = DatagramLoad.run(senders: mine.map(\.fileDescriptor), receivers: accepted.all.map(\.fileDescriptor), bytes: bytes)
            print("load over \(mine.count) tunnels: \(many)")
            if let one = mine.first {
                let single = DatagramLoad.run(senders: [one.fileDescriptor], receivers: accepted.all.map(\.fileDescriptor), bytes: bytes)
                print("one tunnel: \(single)")
            }
            let plain = DatagramLoad.plain(bytes: bytes)
            print("plain UDP socket pair: \(plain)")
        }
        acceptor.cancel()
        for t in mine { t.close() }
        for t in accepted.all { t.close() }
        await a.stop()
        await b.stop()
        await supernode.stop()
    }

    static func seconds(_ d: Duration) -> String {
        String(format: "%.1f", Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
    }
}

/// Tunnels accepted on the other peer (from its tasks).
final class TunnelBox: @unchecked Sendable {
    private let lock = NSLock()
    private var tunnels: [Tunnel] = []
    func add(_ t: Tunnel) { lock.withLock { tunnels.append(t) } }
    var count: Int { lock.withLock { tunnels.count } }
    var all: [Tunnel] { lock.withLock { tunnels } }
}

/// Resident memory, threads and CPU time of this process (Linux `/proc/self/status`, `getrusage`).
struct ProcessFigures {
    var rssKiB: Int
    var threads: Int
    var cpuSeconds: Double

    static func now() -> ProcessFigures {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int {
            for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
                return Int(line.dropFirst(name.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? 0
            }
            return 0
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        return ProcessFigures(rssKiB: field("VmRSS"), threads: field("Threads"), cpuSeconds: cpu)
    }
}
