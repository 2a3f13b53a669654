#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PeerwayCheckpoint
import PeerwayLab
import PeerwaySTUN

/*
 The supernodes of `peerway bench cluster`: one `peerway supernode` child process each (this
 binary), so that each one's CPU and memory can be read from /proc and one can be killed with
 SIGKILL:

   peerway supernode --no-stun --no-relay --listen 127.0.10.N:0 --cluster-listen 127.0.10.N:0
                     --cluster URL --data-dir WORK/sN (--no-index | --index URL --no-admin)

 Each writes its address to WORK/sN/address and its log to WORK/sN.log. Every child is killed
 (SIGKILL) by `stopAll()`, and by the signal handler if the bench is interrupted.
*/

/// Why the bench's supernodes could not be started.
enum ClusterBenchNodeError: Error, CustomStringConvertible {
    case exited(node: Int, status: Int32, log: String)
    case noAddress(node: Int, seconds: Double, log: String)
    case notLoopback(node: Int, address: String)
    case noNetwork(members: Int, expected: Int, seconds: Double)

    var description: String {
        switch self {
        case .exited(let node, let status, let log):
            return "supernode \(node) exited with status \(status) while starting; the end of its log:\n\(log)"
        case .noAddress(let node, let seconds, let log):
            return "supernode \(node) wrote no address within \(seconds) s; the end of its log:\n\(log)"
        case .notLoopback(let node, let address):
            return "supernode \(node) listens on \(address), not an IPv4 loopback address: the bench only loads loopback"
        case .noNetwork(let members, let expected, let seconds):
            return "only \(members) of \(expected) supernodes heartbeat in the membership table after \(seconds) s: see the logs in the work directory"
        }
    }
}

/// One supernode process of the bench.
final class ClusterBenchNode {
    let index: Int
    let process = Process()
    let dataDirectory: String
    let logPath: String
    let listenIP: String
    private(set) var address: SupernodeAddress?
    private(set) var killed = false

    var pid: Int32 { process.processIdentifier }
    var sampler: ProcessSampler { ProcessSampler(pid: pid) }
    var endpoint: STUNAddress? { address?.endpoint }

    init(index: Int, binary: String, arguments: [String], dataDirectory: String, logPath: String, listenIP: String) throws {
        self.index = index
        self.dataDirectory = dataDirectory
        self.logPath = logPath
        self.listenIP = listenIP
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)
        // setpriv (util-linux) execs the supernode with a parent-death signal, so a bench killed
        // outright (SIGKILL, a crash) does not leave supernodes behind; the PID stays the same.
        if let setpriv = LabRunner.path(of: "setpriv") {
            process.executableURL = URL(fileURLWithPath: setpriv)
            process.arguments = ["--pdeathsig", "KILL", binary] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
        }
        process.standardOutput = log ?? FileHandle.nullDevice
        process.standardError = log ?? FileHandle.nullDevice
        try process.run()
        try? log?.close()
        ClusterBenchChildren.add(process.processIdentifier)
    }

    /// The last `bytes` of the log.
    func logTail(_ bytes: Int = 2000) -> String {
        guard let data = FileManager.default.contents(atPath: logPath) else { return "(no log)" }
        return String(decoding: data.suffix(bytes), as: UTF8.self)
    }

    /// Waits for DATA_DIR/address (or the process's end).
    func waitForAddress(seconds: Double) throws -> SupernodeAddress {
        let deadline = Date().addingTimeInterval(seconds)
        let path = dataDirectory + "/address"
        while Date() < deadline {
            if !process.isRunning { throw ClusterBenchNodeError.exited(node: index, status: process.terminationStatus, log: logTail()) }
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
               let a = try? SupernodeAddress(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                guard let e = a.endpoint, e.isLoopback, e.family == .ipv4 else {
                    throw ClusterBenchNodeError.notLoopback(node: index, address: a.description)
                }
                address = a
                return a
            }
            usleep(50_000)
        }
        throw ClusterBenchNodeError.noAddress(node: index, seconds: seconds, log: logTail())
    }

    /// kill -9, and reaps it.
    func kill9() {
        guard !killed else { return }
        killed = true
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
        ClusterBenchChildren.remove(pid)
    }
}

/// The bench's supernodes.
final class ClusterBenchNodes {
    /// How long a supernode gets to write its address.
    static let readyTimeout = 30.0
    /// How long the network gets until every supernode heartbeats in the membership table.
    static let joinTimeout = 30.0
    /// Supernode i listens on 127.0.10.(i+1).
    static let firstListenIP: UInt32 = 0x7F00_0A01

    let nodes: [ClusterBenchNode]

    /// Starts `count` supernodes sharing `database`; the INDEX in the same database with `withIndex`.
    init(count: Int, binary: String, database: String, withIndex: Bool, workDirectory: String) throws {
        ClusterBenchChildren.installSignalHandlers()
        var started: [ClusterBenchNode] = []
        do {
            for i in 0..<count {
                let ip = STUNAddress(ip: .v4(Self.firstListenIP + UInt32(i)), port: 0).ipString
                let data = workDirectory + "/s\(i)"
                var arguments = ["supernode", "--no-stun", "--no-relay", "--listen", "\(ip):0", "--cluster-listen", "\(ip):0",
                                 "--cluster", database, "--data-dir", data]
                arguments += withIndex ? ["--index", database, "--no-admin"] : ["--no-index"]
                started.append(try ClusterBenchNode(index: i, binary: binary, arguments: arguments, dataDirectory: data,
                                                    logPath: workDirectory + "/s\(i).log", listenIP: ip))
            }
            for node in started { _ = try node.waitForAddress(seconds: Self.readyTimeout) }
        } catch {
            for node in started { node.kill9() }
            throw error
        }
        nodes = started
    }

    var addresses: [SupernodeAddress] { nodes.compactMap(\.address) }

    /// Waits until every supernode heartbeats in `database`'s membership table, then `settle`
    /// seconds more for the mesh links (members dial each other at their next heartbeat).
    func waitForNetwork(_ database: ClusterBenchDatabase, settle: Double) throws {
        let deadline = Date().addingTimeInterval(Self.joinTimeout)
        var live = 0
        while Date() < deadline {
            live = database.liveMembers(seconds: 8)
            if live >= nodes.count { break }
            for node in nodes where !node.process.isRunning {
                throw ClusterBenchNodeError.exited(node: node.index, status: node.process.terminationStatus, log: node.logTail())
            }
            usleep(200_000)
        }
        guard live >= nodes.count else { throw ClusterBenchNodeError.noNetwork(members: live, expected: nodes.count, seconds: Self.joinTimeout) }
        usleep(UInt32(settle * 1e6))
    }

    /// Kills every supernode still running.
    func stopAll() {
        for node in nodes { node.kill9() }
    }
}

/// The bench's child processes, for the signal handler: interrupted or terminated, the bench
/// takes its supernodes with it (the throwaway PostgreSQL stops by itself, `--watch`).
enum ClusterBenchChildren {
    static let capacity = 64
    nonisolated(unsafe) static var pids = [Int32](repeating: 0, count: capacity)
    private static let lock = NSLock()

    static func add(_ pid: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if let free = pids.firstIndex(of: 0) { pids[free] = pid }
    }

    static func remove(_ pid: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if let i = pids.firstIndex(of: pid) { pids[i] = 0 }
    }

    static func installSignalHandlers() {
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig) { s in
                for i in 0..<ClusterBenchChildren.capacity where ClusterBenchChildren.pids[i] > 0 {
                    kill(ClusterBenchChildren.pids[i], SIGKILL)
                }
                _exit(128 + s)
            }
        }
    }
}
