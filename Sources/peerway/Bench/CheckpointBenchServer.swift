#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import PeerwayCheckpoint
import PeerwayLab
import PeerwaySTUN

/*
 The checkpoint under test, seen from outside: the process the bench spawned (or was given with
 --server-pid) and its figures from /proc: CPU time (utime + stime of /proc/PID/stat) and memory
 (VmRSS, VmHWM of /proc/PID/status).
*/

/// Reads a process's CPU time and memory from /proc.
struct ProcessSampler {
    let pid: Int32
    /// Clock ticks per second of /proc/PID/stat's times.
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// utime + stime in seconds, or nil when the process is gone.
    func cpuSeconds() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": state(3) ... utime(14) stime(15), so indexes 11 and 12 here.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Self.ticksPerSecond
    }

    /// (VmRSS, VmHWM) in KiB, or nil when the process is gone.
    func memoryKiB() -> (rss: Int, hwm: Int)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        var rss = -1, hwm = -1
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2 else { continue }
            if parts[0] == "VmRSS:" { rss = Int(parts[1]) ?? -1 }
            if parts[0] == "VmHWM:" { hwm = Int(parts[1]) ?? -1 }
        }
        return rss >= 0 && hwm >= 0 ? (rss, hwm) : nil
    }
}

/// CPU use of a process between two samples, in percent of one core.
struct CPUMeter {
    let sampler: ProcessSampler?
    private var lastCPU: Double
    private var lastWall: UInt64

    init(_ sampler: ProcessSampler?) {
        self.sampler = sampler
        lastCPU = sampler?.cpuSeconds() ?? 0
        lastWall = monotonicNow()
    }

    /// Percent of one core since the previous call (or creation); -1 when unknown.
    mutating func percent() -> Double {
        guard let sampler, let cpu = sampler.cpuSeconds() else { return -1 }
        let wall = monotonicNow()
        defer { (lastCPU, lastWall) = (cpu, wall) }
        let seconds = Double(wall - lastWall) / 1e9
        return seconds > 0 ? 100 * (cpu - lastCPU) / seconds : 0
    }
}

/// Nanoseconds of CLOCK_MONOTONIC.
func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A checkpoint the bench started: `peerway supernode --no-stun --listen 127.0.0.1:0` in a
/// temporary data directory, optionally pinned with taskset; killed by `stop()`.
final class SpawnedCheckpoint {
    /// How long the spawned supernode gets to write its address.
    static let readyTimeout = 20.0

    let process = Process()
    let dataDirectory: String
    private(set) var address: SupernodeAddress?

    init(cpu: Int) throws {
        dataDirectory = NSTemporaryDirectory() + "peerway-bench-checkpoint-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var arguments = ["supernode", "--no-stun", "--listen", "127.0.0.1:0", "--data-dir", dataDirectory]
        if cpu >= 0 {
            guard let taskset = LabRunner.path(of: "taskset") else {
                throw ValidationError("taskset (util-linux) is needed for --server-cpu")
            }
            // taskset execs the supernode, so the child's PID is the server's.
            arguments = ["-c", "\(cpu)", binary] + arguments
            process.executableURL = URL(fileURLWithPath: taskset)
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
        }
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        spawnedCheckpointPID = process.processIdentifier
        // Interrupted or terminated, the bench takes its server with it.
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig) { s in
                if spawnedCheckpointPID > 0 { kill(spawnedCheckpointPID, SIGKILL) }
                _exit(128 + s)
            }
        }
    }

    var pid: Int32 { process.processIdentifier }

    /// Waits for DATA_DIR/address and parses it.
    func waitForAddress() throws -> SupernodeAddress {
        let deadline = Date().addingTimeInterval(Self.readyTimeout)
        let path = dataDirectory + "/address"
        while Date() < deadline {
            if !process.isRunning { throw ValidationError("the spawned supernode exited (status \(process.terminationStatus))") }
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
               let a = try? SupernodeAddress(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                address = a
                return a
            }
            usleep(50_000)
        }
        throw ValidationError("the spawned supernode wrote no address to \(path) within \(Self.readyTimeout) s")
    }

    /// Kills the server and removes its data directory.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        spawnedCheckpointPID = 0
        try? FileManager.default.removeItem(atPath: dataDirectory)
    }
}

/// The spawned supernode's PID, for the signal handler (0: none).
nonisolated(unsafe) var spawnedCheckpointPID: Int32 = 0

/// Raises the soft limit of open files to what `needed` asks (within the hard limit).
func raiseOpenFileLimit(to needed: Int) throws {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
    guard limit.rlim_cur < rlim_t(needed) else { return }
    guard limit.rlim_max >= rlim_t(needed) else {
        throw ValidationError("\(needed) open files are needed but the hard limit is \(limit.rlim_max): use fewer --sockets or ulimit -Hn")
    }
    limit.rlim_cur = rlim_t(needed)
    guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
        throw ValidationError("cannot raise the open-file limit to \(needed): \(String(cString: strerror(errno)))")
    }
}
