import Foundation
import PeerwaySupernode
import Testing

/// A PostgreSQL server of the test's own (started by scripts/index-postgres), which the test may
/// stop and start again: the shared test server must not be stopped under the other tests.
struct PrivatePostgres {
    let url: String
    /// The cluster directory scripts/index-postgres printed ("data: DIR"); the data is DIR/data.
    let directory: String
    let port: Int

    /// Starts one; nil (after saying why) when that is impossible outside CI.
    static func start() async throws -> PrivatePostgres? {
        let script = repositoryRoot.appendingPathComponent("scripts/index-postgres").path
        let result = await run(script, ["--watch", String(ProcessInfo.processInfo.processIdentifier)], capture: true)
        let url = result.out.trimmingCharacters(in: .whitespacesAndNewlines)
        let directory = result.err.split(separator: "\n").first { $0.hasPrefix("data: ") }.map { String($0.dropFirst(6)) }
        guard result.status == 0, url.hasPrefix("postgres://"), let directory,
              let port = URLComponents(string: url)?.port else {
            let unavailable = PostgresUnavailable(why: "scripts/index-postgres exited \(result.status): \(result.err)")
            if isCI { throw unavailable }
            print("skipping the PostgreSQL outage test: \(unavailable) (under CI=true this fails)")
            return nil
        }
        return PrivatePostgres(url: url, directory: directory, port: port)
    }

    /// The newest pg_ctl, as scripts/index-postgres picks its binaries.
    static func pgctl() throws -> String {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let newest = versions.compactMap(Int.init).max() else {
            throw PostgresUnavailable(why: "no /usr/lib/postgresql/*/bin/pg_ctl")
        }
        return "/usr/lib/postgresql/\(newest)/bin/pg_ctl"
    }

    /// pg_ctl as the data directory's owner (the `postgres` user when we are root), with every
    /// inherited descriptor but 0-2 closed first: the server it starts outlives it, and
    /// Foundation's Process learns of a child's end from a descriptor the child inherits, so
    /// a server holding it would make us wait for the server's end.
    private func pgctl(_ arguments: [String]) async throws {
        let pgctl = try Self.pgctl()
        let owner = getuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--", pgctl] : [pgctl]
        let closing = #"for fd in /proc/$$/fd/*; do fd=${fd##*/}; if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null; fi; done; exec "$@""#
        let result = await Self.run("/bin/bash", ["-c", closing, "pg_ctl"] + owner + arguments, capture: false)
        guard result.status == 0 else { throw PostgresUnavailable(why: "pg_ctl \(arguments.joined(separator: " ")) exited \(result.status)") }
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    func stop() async throws {
        try await pgctl(["-D", directory + "/data", "-m", "fast", "-w", "stop"])
    }

    /// Starts it again on the same port, with the options scripts/index-postgres gave it.
    func restart() async throws {
        try await pgctl(["-D", directory + "/data", "-l", directory + "/server.log", "-w", "-t", "60",
                         "-o", "-c listen_addresses=127.0.0.1 -p \(port) -k \(directory) -c max_connections=200", "start"])
    }

    /// Stops it for good and deletes its files.
    func remove() async {
        let script = repositoryRoot.appendingPathComponent("scripts/index-postgres").path
        _ = await Self.run(script, ["stop", directory], capture: false)
    }

    /// Runs a program to its end without blocking a thread of the concurrency pool. With
    /// `capture`, returns its stdout and stderr (the program must close them by its end: the
    /// script does; pg_ctl's server would not, hence no capture for it).
    static func run(_ path: String, _ arguments: [String], capture: Bool) async -> (status: Int32, out: String, err: String) {
        await withCheckedContinuation { continuation in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
            let out = Pipe()
            let err = Pipe()
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = capture ? out : FileHandle.nullDevice
            process.standardError = capture ? err : FileHandle.nullDevice
            do {
                try process.run()
            } catch {
                continuation.resume(returning: (-1, "", "cannot run \(path): \(error)"))
                return
            }
            Thread.detachNewThread {
                let output = capture ? out.fileHandleForReading.readDataToEndOfFile() : Data()
                let errors = capture ? err.fileHandleForReading.readDataToEndOfFile() : Data()
                process.waitUntilExit()
                continuation.resume(returning: (process.terminationStatus, String(decoding: output, as: UTF8.self),
                                                String(decoding: errors, as: UTF8.self)))
            }
        }
    }
}

func clusterMillis(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

@Suite("ClusterMembership outage and cost")
struct ClusterMembershipOutageTests {
    /// Calls while PostgreSQL is down fail with `.unreachable` within the call bound; once it is
    /// back, the same store works again at once.
    @Test func callsFailBoundedWhilePostgresIsDownAndRecoverAfterItsRestart() async throws {
        guard let server = try await PrivatePostgres.start() else { return }
        do {
            try await outageAndRestart(server)
        } catch {
            await server.remove()
            throw error
        }
        await server.remove()
    }

    private func outageAndRestart(_ server: PrivatePostgres) async throws {
        let store = try await ClusterMembershipStore(url: server.url, logger: clusterTestLogger)
        let member = clusterMember(4)
        try await store.join(member)
        #expect(try await store.heartbeat(key: member.key, peers: 1, relayAllocations: 0))

        try await server.stop()
        // Bounded by the call's deadline; twice it leaves room for a loaded machine (4.7 s was
        // seen under the full suite in CI against 3 s alone), while a call without a deadline
        // would wait out the pool's connection retries (over 20 s).
        let bound = Double(ClusterLimits.callTimeoutMillis) / 1000 * 2
        for attempt in 1...2 {
            let started = ContinuousClock.now
            await expectClusterError("unreachable", { if case .unreachable = $0 { true } else { false } }) {
                try await store.heartbeat(key: member.key, peers: 2, relayAllocations: 0)
            }
            let took = ContinuousClock.now - started
            print("cluster membership: heartbeat while PostgreSQL is down failed after \(took) (attempt \(attempt))")
            #expect(took < .seconds(bound), "attempt \(attempt) took \(took)")
        }
        let started = ContinuousClock.now
        await expectClusterError("unreachable", { if case .unreachable = $0 { true } else { false } }) {
            try await store.members()
        }
        #expect(ContinuousClock.now - started < .seconds(bound))

        try await server.restart()
        let back = ContinuousClock.now
        #expect(try await store.heartbeat(key: member.key, peers: 3, relayAllocations: 1))
        print("cluster membership: first heartbeat after the restart took \(ContinuousClock.now - back)")
        #expect(try await store.members().map(\.peers) == [3])
        await store.close()
    }

    /// Opening a store on a server that is not there fails with `.unreachable`, bounded.
    @Test func openingWithoutAServerFailsBounded() async throws {
        // A port nobody listens on: bind one, note it, close it.
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        close(socket)
        #expect(port != 0)

        let started = ContinuousClock.now
        await expectClusterError("unreachable", { if case .unreachable = $0 { true } else { false } }) {
            try await ClusterMembershipStore(url: "postgres://postgres@127.0.0.1:\(port)/postgres", logger: clusterTestLogger)
        }
        let took = ContinuousClock.now - started
        print("cluster membership: opening without a server failed after \(took)")
        // Bounded: the open's deadline plus the pool's shutdown; 18.3 s was seen on a loaded
        // machine (the full suite beside it), 10.0 s alone.
        #expect(took < .seconds(Double(ClusterLimits.openTimeoutMillis) / 1000 * 2 + 5))
    }

    /// Not a timed test: reports what one heartbeat costs (one UPDATE, one round trip).
    @Test func heartbeatCost() async throws {
        guard let url = try await freshClusterDatabase() else { return }
        let store = try await ClusterMembershipStore(url: url, logger: clusterTestLogger)
        let member = clusterMember(5)
        try await store.join(member)
        for n in 0..<50 { _ = try await store.heartbeat(key: member.key, peers: n, relayAllocations: 0) }  // warm up

        let count = 1_000
        var refreshed = 0
        let started = ContinuousClock.now
        for n in 0..<count where try await store.heartbeat(key: member.key, peers: n, relayAllocations: n % 7) {
            refreshed += 1
        }
        let took = ContinuousClock.now - started
        print("cluster membership: \(count) sequential heartbeats took \(took): \(String(format: "%.3f", clusterMillis(took) / Double(count))) ms per call")
        #expect(refreshed == count)

        let listed = ContinuousClock.now
        for _ in 0..<100 { _ = try await store.members() }
        print("cluster membership: members() of one member took \(String(format: "%.3f", clusterMillis(ContinuousClock.now - listed) / 100)) ms per call")
        await store.close()
    }
}
