#if canImport(Glibc)
import Glibc
#endif
import Foundation

/*
 What `peerway bench cluster` reads around its phases: each supernode's CPU and memory and the
 generator's CPU (/proc), and PostgreSQL's CPU and counters (ClusterBenchDatabase). A `mark` is
 taken where a phase begins and `cost(since:)` where it ends; PostgreSQL's counters are read with
 psql (tens of milliseconds), so only at phase edges, never inside the load's loop.
*/

/// Everything measured at one instant.
struct ClusterBenchMark {
    var wall: UInt64
    var nodeCPU: [Double?]
    var generatorCPU: Double?
    var postgresCPU: Double?
    var postgres: PostgresCounters?
    /// psql calls made before this mark's own.
    var psqlCalls: Int
    /// The whole machine's busy CPU time (all cores, every process), seconds.
    var machineBusy: Double?
}

/// The whole machine's busy CPU seconds (all cores) from /proc/stat's first line.
func machineBusySeconds() -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
          let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
    // user nice system idle iowait irq softirq steal ...
    let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard v.count >= 5 else { return nil }
    let total = v.prefix(8).reduce(0, +)
    return (total - v[3] - v[4]) / ProcessSampler.ticksPerSecond
}

/// The 1-minute load average (/proc/loadavg), or -1.
func loadAverage() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8),
          let first = text.split(separator: " ").first, let v = Double(first) else { return -1 }
    return v
}

/// Reads the processes of a cluster bench and prints its progress.
final class ClusterBenchMeter {
    let nodes: ClusterBenchNodes
    let database: ClusterBenchDatabase
    let generator = ProcessSampler(pid: getpid())
    let note: (String) -> Void
    /// Seconds between progress lines.
    let progressSeconds: Double
    private var nextProgress: UInt64 = 0
    private var last: (phase: String, wall: UInt64, nodeCPU: [Double?], registered: Int, acks: Int, delivered: Int, queries: Int)?

    init(nodes: ClusterBenchNodes, database: ClusterBenchDatabase, progressSeconds: Double, note: @escaping (String) -> Void) {
        self.nodes = nodes
        self.database = database
        self.progressSeconds = progressSeconds
        self.note = note
    }

    /// The figures now; PostgreSQL's counters only with `counters` (a psql call).
    func mark(counters: Bool = true) -> ClusterBenchMark {
        let calls = database.calls
        return ClusterBenchMark(wall: monotonicNow(), nodeCPU: nodes.nodes.map { $0.killed ? nil : $0.sampler.cpuSeconds() },
                                generatorCPU: generator.cpuSeconds(), postgresCPU: database.cpuSeconds(),
                                postgres: counters ? database.counters() : nil, psqlCalls: calls, machineBusy: machineBusySeconds())
    }

    /// What happened since `start`: CPU percentages, PostgreSQL's rates, supernode CPU per operation.
    func cost(_ name: String, since start: ClusterBenchMark, operations: Int) -> ClusterBenchPhaseCost {
        let end = mark()
        let seconds = max(1e-9, Double(end.wall &- start.wall) / 1e9)
        var c = ClusterBenchPhaseCost()
        c.name = name
        c.seconds = seconds
        var nodeSeconds = 0.0
        c.nodeCPUPercent = zip(start.nodeCPU, end.nodeCPU).map { a, b in
            guard let a, let b else { return -1 }
            nodeSeconds += b - a
            return 100 * (b - a) / seconds
        }
        if let a = start.generatorCPU, let b = end.generatorCPU { c.generatorCPUPercent = 100 * (b - a) / seconds }
        if let a = start.postgresCPU, let b = end.postgresCPU { c.postgresCPUPercent = 100 * (b - a) / seconds }
        if let a = start.postgres, var b = end.postgres {
            // The bench's own psql sessions in the interval are not the supernodes' cost.
            b = b.minus(database.perCall.times(max(0, end.psqlCalls - start.psqlCalls)))
            c.postgresCommitsPerSecond = Double(b.commits - a.commits) / seconds
            c.postgresRowsWrittenPerSecond = Double(b.written - a.written) / seconds
            c.postgresRowsReadPerSecond = Double(b.read - a.read) / seconds
            c.postgresWALBytesPerSecond = Double(b.walBytes - a.walBytes) / seconds
        }
        if let a = start.machineBusy, let b = end.machineBusy {
            c.machineCPUPercent = 100 * (b - a) / seconds
            let ours = c.nodeCPUPercent.filter { $0 >= 0 }.reduce(0, +) + max(0, c.generatorCPUPercent) + max(0, c.postgresCPUPercent)
            c.otherCPUPercent = max(0, c.machineCPUPercent - ours)
        }
        c.loadAverage = loadAverage()
        c.operations = operations
        if operations > 0 { c.nodeCPUMicrosPerOperation = nodeSeconds * 1e6 / Double(operations) }
        return c
    }

    /// Prints a progress line when one is due.
    func tick(now: UInt64, phase: String, registered: Int, total: Int, acks: Int, delivered: Int, queries: Int) {
        guard now >= nextProgress else { return }
        nextProgress = now + UInt64(progressSeconds * 1e9)
        let cpu = nodes.nodes.map { $0.killed ? nil : $0.sampler.cpuSeconds() }
        defer { last = (phase, now, cpu, registered, acks, delivered, queries) }
        // Rates need a baseline from the same phase (message counters restart with each).
        guard let last, last.phase == phase else { return }
        let seconds = Double(now &- last.wall) / 1e9
        guard seconds > 0 else { return }
        let nodeText = zip(last.nodeCPU, cpu).map { a, b in
            guard let a, let b else { return "-" }
            return String(format: "%.0f%%", 100 * (b - a) / seconds)
        }.joined(separator: " ")
        let rss = nodes.nodes.map { n in n.killed ? "-" : (n.sampler.memoryKiB().map { String(format: "%.0f", Double($0.rss) / 1024) } ?? "-") }
            .joined(separator: "/")
        note(String(format: "  %@: registered %d/%d (%.0f/s)  keepalive acks %.0f/s  messages %.0f/s  queries %.0f/s  supernode CPU %@  RSS %@ MiB",
                    phase as NSString, registered, total, Double(registered - last.registered) / seconds,
                    Double(acks - last.acks) / seconds, Double(delivered - last.delivered) / seconds,
                    Double(queries - last.queries) / seconds, nodeText as NSString, rss as NSString))
    }

    /// Each supernode's (RSS, VmHWM) in MiB (-1 when gone).
    func memory() -> [(rss: Double, hwm: Double)] {
        nodes.nodes.map { n in
            guard !n.killed, let m = n.sampler.memoryKiB() else { return (-1, -1) }
            return (Double(m.rss) / 1024, Double(m.hwm) / 1024)
        }
    }
}
