import ArgumentParser
import Foundation
import PeerwayIndex

/// `peerway bench index`: loads N users with metadata into the INDEX's stores and reports load
/// rate, durable single writes/s and search latency p50/p99 per query shape.
struct IndexBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Load N users with metadata into the INDEX (SQLite, PostgreSQL); report writes/s and search latency p50/p99.",
        discussion: """
            Each user gets five metadata entries: handle=uN (unique), city=cK (1,000 values), age (0-99), \
            tier (bronze 60%, silver 25%, gold 10%, platinum 5%), lang=lK (20 values). Users are loaded in \
            transactions of --batch (importUsers) with one precomputed scrypt record (the KDF's cost is not \
            the store's), then --single-writes users are written one durable transaction each, then every \
            query shape runs --searches times with random parameters, 20 results a page.
              peerway bench index --users 1000000 --store sqlite
              peerway bench index --users 1000000 --store postgres --postgres postgres://postgres@127.0.0.1:5432/postgres
            Without --postgres, scripts/index-postgres (run from the repository) starts a throwaway server.
            """
    )

    @Option(name: .long, help: "Users to load (1-10,000,000).") var users = 1_000_000
    @Option(name: .long, help: "sqlite, postgres or both.") var store = "both"
    @Option(name: .long, help: "Users per load transaction (1-1000).") var batch = 1000
    @Option(name: .customLong("single-writes"), help: "Users written one durable transaction each after the load.") var singleWrites = 1000
    @Option(name: .long, help: "Runs of each query shape.") var searches = 500
    @Option(name: .long, help: "SQLite store's directory (default: a new temporary one, removed afterwards).") var directory: String?
    @Option(name: .long, help: "PostgreSQL URL of an empty database (default: a throwaway server from scripts/index-postgres).") var postgres: String?
    @Flag(name: .long, inversion: .prefixedNo, help: "Refresh planner statistics (ANALYZE) after the load (default: yes).") var analyze = true
    @Flag(name: .long, help: "One JSON object per store on stdout.") var json = false

    func validate() throws {
        guard (1...10_000_000).contains(users) else { throw ValidationError("--users must be 1-10000000") }
        guard (1...1000).contains(batch) else { throw ValidationError("--batch must be 1-1000") }
        guard (0...100_000).contains(singleWrites) else { throw ValidationError("--single-writes must be 0-100000") }
        guard (1...100_000).contains(searches) else { throw ValidationError("--searches must be 1-100000") }
        guard ["sqlite", "postgres", "both"].contains(store) else { throw ValidationError("--store must be sqlite, postgres or both") }
    }

    func run() async throws {
        if store != "postgres" {
            let dir = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("peerway-index-bench-\(UUID().uuidString)").path
            let sqlite = try SQLiteIndexStore(directory: dir, hasher: .testing)
            let report = try await IndexBenchRun(store: sqlite, label: "sqlite", options: self).run()
            await sqlite.close()
            if directory == nil { try? FileManager.default.removeItem(atPath: dir) }
            print(json ? report.json : report.text)
        }
        if store != "sqlite" {
            let url = try postgres ?? Self.startPostgres()
            let pg = try await PostgresIndexStore(url: url, hasher: .testing, maximumConnections: 4)
            let report = try await IndexBenchRun(store: pg, label: "postgres", options: self).run()
            await pg.close()
            print(json ? report.json : report.text)
        }
    }

    /// Starts a throwaway PostgreSQL with scripts/index-postgres (stopped when this process ends).
    static func startPostgres() throws -> String {
        let script = "scripts/index-postgres"
        guard FileManager.default.isExecutableFile(atPath: script) else {
            throw ValidationError("give --postgres URL, or run from the repository so that \(script) can start a server")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: script)
        process.arguments = ["--watch", String(ProcessInfo.processInfo.processIdentifier)]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let url = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationStatus == 0, url.hasPrefix("postgres://") else { throw ValidationError("\(script) failed") }
        return url
    }
}
