#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PeerwayLab

/*
 The PostgreSQL of `peerway bench cluster`: a throwaway server from scripts/index-postgres (or
 the --cluster URL given), and what it costs, seen from outside:

   counters   pg_stat_database of the URL's database (commits, rows inserted/updated/deleted,
              rows read) and the WAL position, read with psql at the edges of each phase; a psql
              session counts in them too (a commit, catalog reads), so what one costs is measured
              first (`calibrate`) and taken out of every phase for each psql call made in it
   CPU        utime+stime of the postmaster and its children (/proc/PID/stat), plus what the
              postmaster reaped from children that exited; the postmaster's PID is the first
              line of DATA/postmaster.pid (only known for the throwaway server or --postgres-data)
*/

/// Why the cluster bench's database could not be used.
enum ClusterBenchDatabaseError: Error, CustomStringConvertible {
    case noScript(String)
    case scriptFailed(String, status: Int32, output: String)
    case noPsql
    case query(String, output: String)

    var description: String {
        switch self {
        case .noScript(let path):
            return "\(path) not found: run from the repository (scripts/index-postgres starts a throwaway PostgreSQL) or give --cluster postgres://..."
        case .scriptFailed(let path, let status, let output):
            return "\(path) exited \(status) without a URL (is PostgreSQL installed? apt-get install postgresql): \(output)"
        case .noPsql:
            return "psql is needed to read PostgreSQL's statistics (apt-get install postgresql-client)"
        case .query(let sql, let output):
            return "psql could not run \"\(sql)\": \(output)"
        }
    }
}

/// Cumulative counters of one database (pg_stat_database) and the server's WAL position.
struct PostgresCounters {
    var commits = 0, rollbacks = 0
    var inserted = 0, updated = 0, deleted = 0
    /// Rows returned by scans plus rows fetched by index look-ups.
    var read = 0
    var walBytes = 0

    /// Rows written (inserted + updated + deleted).
    var written: Int { inserted + updated + deleted }

    /// `self - other`, field by field.
    func minus(_ o: PostgresCounters) -> PostgresCounters {
        PostgresCounters(commits: commits - o.commits, rollbacks: rollbacks - o.rollbacks, inserted: inserted - o.inserted,
                         updated: updated - o.updated, deleted: deleted - o.deleted, read: read - o.read, walBytes: walBytes - o.walBytes)
    }

    /// Each field times `k`.
    func times(_ k: Int) -> PostgresCounters {
        PostgresCounters(commits: commits * k, rollbacks: rollbacks * k, inserted: inserted * k, updated: updated * k,
                         deleted: deleted * k, read: read * k, walBytes: walBytes * k)
    }
}

/// The database the supernodes of the bench share.
final class ClusterBenchDatabase {
    /// How long one psql call may take.
    static let queryTimeout = 10.0

    let url: String
    /// The throwaway server's directory (scripts/index-postgres's "data: DIR"), removed by `stop()`.
    let throwawayDirectory: String?
    /// The server's data directory (holds postmaster.pid), when known.
    let dataDirectory: String?
    private let script: String?
    private let psql: String
    /// psql calls made so far.
    private(set) var calls = 0
    /// What one psql call adds to the counters (`calibrate`).
    private(set) var perCall = PostgresCounters()

    /// The database at `url`; `dataDirectory` (the server's, with postmaster.pid) enables CPU figures.
    init(url: String, dataDirectory: String?) throws {
        guard let psql = LabRunner.path(of: "psql") else { throw ClusterBenchDatabaseError.noPsql }
        self.url = url
        self.psql = psql
        self.dataDirectory = dataDirectory
        throwawayDirectory = nil
        script = nil
    }

    private init(url: String, throwaway: String, script: String, psql: String) {
        self.url = url
        self.psql = psql
        throwawayDirectory = throwaway
        dataDirectory = throwaway + "/data"
        self.script = script
    }

    /// Starts a throwaway server with `script` (scripts/index-postgres), tied to this process's
    /// life (`--watch`): it stops by itself if the bench dies without `stop()`.
    static func startThrowaway(script: String) throws -> ClusterBenchDatabase {
        guard FileManager.default.isExecutableFile(atPath: script) else { throw ClusterBenchDatabaseError.noScript(script) }
        guard let psql = LabRunner.path(of: "psql") else { throw ClusterBenchDatabaseError.noPsql }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: script)
        process.arguments = ["--watch", String(getpid())]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let url = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let directory = errors.split(separator: "\n").first { $0.hasPrefix("data: ") }.map { String($0.dropFirst(6)) }
        guard process.terminationStatus == 0, url.hasPrefix("postgres://"), let directory else {
            throw ClusterBenchDatabaseError.scriptFailed(script, status: process.terminationStatus, output: errors)
        }
        return ClusterBenchDatabase(url: url, throwaway: directory, script: script, psql: psql)
    }

    /// Finds scripts/index-postgres: under the working directory, else above the binary.
    static func findScript() -> String {
        let relative = "scripts/index-postgres"
        if FileManager.default.isExecutableFile(atPath: relative) { return relative }
        var directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = directory.appendingPathComponent(relative).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return relative
    }

    /// Stops and removes the throwaway server (nothing for a given URL).
    func stop() {
        guard let script, let throwawayDirectory else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: script)
        process.arguments = ["stop", throwawayDirectory]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try? process.run()
        process.waitUntilExit()
    }

    // MARK: - Queries

    /// Measures what one psql call adds to the counters (its session's commit and catalog reads;
    /// they show once the session ended, so in the next reading): the smaller of two deltas.
    func calibrate() {
        guard let a = counters(), let b = counters(), let c = counters() else { return }
        let d1 = b.minus(a), d2 = c.minus(b)
        perCall = d1.read + d1.commits <= d2.read + d2.commits ? d1 : d2
        perCall.walBytes = 0
    }

    /// Runs `sql` with psql; the rows, fields separated by "|".
    func query(_ sql: String) throws -> [[String]] {
        calls += 1
        let process = Process()
        process.executableURL = URL(fileURLWithPath: psql)
        process.arguments = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        // Bounded: the connection and the statement each give up after queryTimeout.
        var environment = ProcessInfo.processInfo.environment
        environment["PGCONNECT_TIMEOUT"] = String(Int(Self.queryTimeout))
        environment["PGOPTIONS"] = "-c statement_timeout=\(Int(Self.queryTimeout * 1000))"
        process.environment = environment
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard process.terminationStatus == 0 else { throw ClusterBenchDatabaseError.query(sql, output: errors) }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
    }

    /// The database's counters now, or nil when psql fails.
    func counters() -> PostgresCounters? {
        let sql = """
            SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_returned + tup_fetched,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint
            FROM pg_stat_database WHERE datname = current_database()
            """
        guard let row = try? query(sql).first, row.count == 7 else { return nil }
        let v = row.map { Int($0) ?? 0 }
        return PostgresCounters(commits: v[0], rollbacks: v[1], inserted: v[2], updated: v[3], deleted: v[4], read: v[5], walBytes: v[6])
    }

    /// Members whose heartbeat is younger than `seconds` (0 when the table does not exist yet).
    func liveMembers(seconds: Int) -> Int {
        let sql = "SELECT count(*) FROM peerway_cluster_members WHERE heartbeat_at > now() - interval '\(seconds) seconds'"
        guard let row = try? query(sql).first, let n = row.first.flatMap({ Int($0) }) else { return 0 }
        return n
    }

    /// Each member's registered peers as of its last heartbeat, by CHECKPOINT address.
    func memberPeers() -> [String: Int] {
        guard let rows = try? query("SELECT address, peers FROM peerway_cluster_members") else { return [:] }
        var out: [String: Int] = [:]
        for row in rows where row.count == 2 { out[row[0]] = Int(row[1]) ?? 0 }
        return out
    }

    // MARK: - CPU

    /// CPU seconds of the server's processes so far, or nil when its postmaster is unknown.
    func cpuSeconds() -> Double? {
        guard let dataDirectory,
              let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
              let first = text.split(separator: "\n").first, let postmaster = Int32(first) else { return nil }
        guard let own = Self.stat(postmaster) else { return nil }
        var ticks = own.ticks + own.reapedTicks
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry), pid != postmaster, let s = Self.stat(pid), s.parent == postmaster else { continue }
            ticks += s.ticks
        }
        return ticks / ProcessSampler.ticksPerSecond
    }

    /// (parent PID, utime+stime, cutime+cstime) of /proc/PID/stat, in clock ticks.
    private static func stat(_ pid: Int32) -> (parent: Int32, ticks: Double, reapedTicks: Double)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // After "(comm)": state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
        let f = text[text.index(after: close)...].split(separator: " ")
        guard f.count > 14, let parent = Int32(f[1]), let u = Double(f[11]), let s = Double(f[12]),
              let cu = Double(f[13]), let cs = Double(f[14]) else { return nil }
        return (parent, u + s, cu + cs)
    }
}
