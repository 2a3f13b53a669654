import Foundation

// Shared by PeerwayIndexTests and PeerwayIntegrationTests (Tests/PeerwayIntegrationTests/
// PrivatePostgres.swift is a symbolic link to this file): self-contained, Foundation only.

/// A PostgreSQL server of the test's own (started by scripts/index-postgres), which the test may
/// stop and start again: the shared test server must not be stopped under the other tests.
struct PrivatePostgres {
    /// Why there is no private server (scripts/index-postgres or pg_ctl failed).
    struct Unavailable: Error, CustomStringConvertible {
        let why: String
        var description: String { "a private PostgreSQL is unavailable: \(why)" }
    }

    /// Whether this is CI, where a missing PostgreSQL fails the test instead of skipping it.
    static let isCI = ProcessInfo.processInfo.environment["CI"] == "true"
    /// The repository's root (this file is Tests/<target>/PrivatePostgres.swift).
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    let url: String
    /// The cluster directory scripts/index-postgres printed ("data: DIR"); the data is DIR/data.
    let directory: String
    let port: Int

    /// Starts one; nil (after saying why) when that is impossible outside CI.
    static func start() async throws -> PrivatePostgres? {
        let script = Self.repositoryRoot.appendingPathComponent("scripts/index-postgres").path
        let result = await run(script, ["--watch", String(ProcessInfo.processInfo.processIdentifier)], capture: true)
        let url = result.out.trimmingCharacters(in: .whitespacesAndNewlines)
        let directory = result.err.split(separator: "\n").first { $0.hasPrefix("data: ") }.map { String($0.dropFirst(6)) }
        guard result.status == 0, url.hasPrefix("postgres://"), let directory,
              let port = URLComponents(string: url)?.port else {
            let unavailable = Unavailable(why: "scripts/index-postgres exited \(result.status): \(result.err)")
            if Self.isCI { throw unavailable }
            print("skipping a PostgreSQL outage test: \(unavailable) (under CI=true this fails)")
            return nil
        }
        return PrivatePostgres(url: url, directory: directory, port: port)
    }

    /// The newest pg_ctl, as scripts/index-postgres picks its binaries.
    static func pgctl() throws -> String {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let newest = versions.compactMap(Int.init).max() else {
            throw Unavailable(why: "no /usr/lib/postgresql/*/bin/pg_ctl")
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
        guard result.status == 0 else { throw Unavailable(why: "pg_ctl \(arguments.joined(separator: " ")) exited \(result.status)") }
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
        let script = Self.repositoryRoot.appendingPathComponent("scripts/index-postgres").path
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
