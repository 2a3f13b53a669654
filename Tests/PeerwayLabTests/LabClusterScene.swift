import Foundation
import PeerwayLab
import Testing

/// A lab with a network of supernodes on its public host: a throwaway PostgreSQL inside the public
/// host (the membership and the INDEX), then supernode n on the host's address n, each a member of
/// the network, and the `peerway peer --json --echo --stay` processes a test starts behind its
/// sites, each given one supernode. `tearDown` stops them all, removes PostgreSQL and the lab
/// (idempotent).
///
/// Every supernode answers STUN on port 3478 of its own address, as peers measure their NAT there:
/// `lab up`'s STUN pair covers the first two addresses (its primary and its alternate address),
/// and the third supernode runs its own pair on the third and fourth.
final class LabClusterScene: @unchecked Sendable {
    /// How many supernodes the network has.
    static let supernodeCount = 3
    /// CHECKPOINT's port (UDP and TCP) on each supernode's address; RELAY and the mesh link take
    /// the defaults beside it (7401 and 7402).
    static let checkpointPort = 7400
    /// The third supernode's own STUN pair: primary on its address, alternate on the fourth.
    static let stunPort = 3478
    static let stunAlternatePort = 3479
    /// How long a supernode gets to write its address, and the network to link every pair.
    static let startTimeout: TimeInterval = 30
    static let linkTimeout: TimeInterval = 30
    /// What a supernode logs once per link to another member that comes up.
    static let linkUpLog = "cluster link up"

    let directory: String
    let postgres: LabPostgres
    let supernodes: [LabProcess]
    /// The supernodes' `peerway://` addresses, in the order of `LabTopology.publicAddresses`.
    let addresses: [String]
    private var peers: [LabLineProcess] = []
    private let lock = NSLock()
    private var down = false

    private init(directory: String, postgres: LabPostgres, supernodes: [LabProcess], addresses: [String]) {
        self.directory = directory
        self.postgres = postgres
        self.supernodes = supernodes
        self.addresses = addresses
    }

    /// The address of supernode `n` on the public host.
    static func host(_ n: Int) -> String { LabTopology.publicAddresses[n] }

    /// `peerway supernode` arguments of supernode `n`: every service, the INDEX and the membership
    /// in `database`, no management API (three would want the same port).
    static func supernodeArguments(_ n: Int, database: String, dataDirectory: String) -> [String] {
        var arguments = ["supernode", "--listen", "\(host(n)):\(checkpointPort)", "--data-dir", dataDirectory,
                         "--index", database, "--cluster", database, "--no-admin"]
        // The STUN pair of `lab up` answers on 3478 of the first two addresses already.
        if n < 2 {
            arguments.append("--no-stun")
        } else {
            arguments += ["--stun-listen", "\(host(n)):\(stunPort)", "--stun-alternate", "\(host(n + 1)):\(stunAlternatePort)",
                          "--stun-rate-limit", "0"]
        }
        return arguments
    }

    /// `peerway lab up ARGS`, PostgreSQL in the public host, then the supernodes; returns once
    /// each is linked to every other one. Whatever was started is removed when a step fails.
    static func start(_ labArguments: [String]) async throws -> LabClusterScene {
        let up = try LabVerifyTests.peerway(["lab", "up"] + labArguments)
        guard up.status == 0 else {
            _ = try? LabVerifyTests.peerway(["lab", "down"])
            throw LabSceneError(text: "lab up failed:\n\(up.output)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pw-lab-cluster-\(UUID().uuidString)").path
        var postgres: LabPostgres?
        var supernodes: [LabProcess] = []
        func abandon(_ why: String) -> LabSceneError {
            supernodes.forEach { $0.stop() }
            postgres?.remove()
            _ = try? LabVerifyTests.peerway(["lab", "down"])
            try? FileManager.default.removeItem(atPath: directory)
            return LabSceneError(text: why)
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            postgres = try await LabPostgres.start(log: directory + "/postgres.log")
        } catch {
            throw abandon("PostgreSQL in \(LabTopology.publicNamespace): \(error)")
        }
        let peerway = LabVerifyTests.peerway
        var addresses: [String] = []
        for n in 0..<supernodeCount {
            let data = directory + "/sn\(n)"
            let process: LabProcess
            do {
                process = try LabProcess(peerway, ["lab", "exec", "public", "--", peerway]
                                             + supernodeArguments(n, database: postgres!.url, dataDirectory: data),
                                         output: directory + "/sn\(n).log")
            } catch {
                throw abandon("supernode \(n) did not start: \(error)")
            }
            supernodes.append(process)
            guard let address = await LabProcess.waitForFile(data + "/address", timeout: startTimeout) else {
                throw abandon("supernode \(n) wrote no address: \(process.text)")
            }
            addresses.append(address)
        }
        // Each supernode logs one link up per other member (both ends of a link log it).
        let deadline = Date().addingTimeInterval(linkTimeout)
        func linked(_ p: LabProcess) -> Bool { p.text.components(separatedBy: linkUpLog).count - 1 >= supernodeCount - 1 }
        while Date() < deadline, !supernodes.allSatisfy(linked) { try? await Task.sleep(for: .milliseconds(100)) }
        guard supernodes.allSatisfy(linked) else {
            throw abandon("the supernodes did not link within \(Int(linkTimeout)) s:\n"
                          + supernodes.enumerated().map { "supernode \($0):\n\($1.text)" }.joined(separator: "\n"))
        }
        return LabClusterScene(directory: directory, postgres: postgres!, supernodes: supernodes, addresses: addresses)
    }

    /// Starts `peerway peer --json --echo --stay` named `name` behind `site`, given supernode `n` only.
    func peer(_ name: String, at site: String, supernode n: Int, _ extra: [String] = []) throws -> LabLineProcess {
        let peerway = LabVerifyTests.peerway
        let p = try LabLineProcess(name: name, executable: peerway,
                                   arguments: ["lab", "exec", site, "--", peerway, "peer", "--supernode", addresses[n],
                                               "--identity", directory + "/\(name).key", "--json", "--echo", "--stay"] + extra,
                                   log: directory + "/\(name).log")
        lock.withLock { peers.append(p) }
        return p
    }

    /// Every log of the scene (supernodes, PostgreSQL's start, peers), for a failure's message.
    var logs: String {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0.hasSuffix(".log") }.sorted() ?? []
        return names.map { "--- \($0)\n" + ((try? String(contentsOfFile: directory + "/" + $0, encoding: .utf8)) ?? "") }
            .joined(separator: "\n")
    }

    func tearDown() {
        let first = lock.withLock { () -> Bool in
            defer { down = true }
            return !down
        }
        guard first else { return }
        lock.withLock { peers }.forEach { $0.stop() }
        supernodes.forEach { $0.stop() }
        postgres.remove()
        _ = try? LabVerifyTests.peerway(["lab", "down"])
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A throwaway PostgreSQL inside the lab's public host: `scripts/index-postgres` run there, so it
/// listens on that namespace's own loopback, which the supernodes beside it reach and nothing
/// outside the lab's namespaces does. It stops by itself once this test process has ended
/// (`--watch`); `remove` stops it at once and deletes its files.
struct LabPostgres: Sendable {
    let url: String
    /// The directory the script made (its data directory is DIR/data).
    let directory: String
    /// How long the script may take (initdb and the first start, on a loaded machine).
    static let startTimeout: TimeInterval = 120

    /// The repository's scripts/index-postgres (this file is Tests/PeerwayLabTests/LabClusterScene.swift).
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/index-postgres").path

    /// Nil when the server can be started; otherwise which package is missing.
    static var missingPrerequisite: String? {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard versions.contains(where: { FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\($0)/bin/postgres") }) else {
            return "no PostgreSQL server in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
        }
        for (tool, package) in ["python3": "python3", "runuser": "util-linux"] where LabRunner.path(of: tool) == nil {
            return "\(tool) missing (apt-get install \(package))"
        }
        return nil
    }

    /// Runs the script in the public host (`peerway lab exec public --`); its stderr goes to `log`.
    static func start(log: String) async throws -> LabPostgres {
        let peerway = LabVerifyTests.peerway
        let arguments = ["lab", "exec", "public", "--", script, "--watch", String(ProcessInfo.processInfo.processIdentifier)]
        let (status, output) = try await LabThread.run {
            try runToEnd(peerway, arguments, errors: log, timeout: startTimeout)
        }
        let errors = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let url = output.trimmingCharacters(in: .whitespacesAndNewlines)
        let directory = errors.split(separator: "\n").first { $0.hasPrefix("data: ") }.map { String($0.dropFirst("data: ".count)) }
        guard status == 0, url.hasPrefix("postgres://"), let directory else {
            throw LabSceneError(text: "\(script) exited \(status): \(output)\(errors)")
        }
        return LabPostgres(url: url, directory: directory)
    }

    /// Stops the server (immediate shutdown) and deletes its directory.
    func remove() {
        _ = try? Self.runToEnd(Self.script, ["stop", directory], errors: nil, timeout: Self.stopTimeout)
    }

    /// How long `remove` waits for the script.
    static let stopTimeout: TimeInterval = 30

    /// Runs `executable arguments...` to its end (interrupted after `timeout`): its status and
    /// stdout; stderr goes to the file `errors` (created), or nowhere.
    static func runToEnd(_ executable: String, _ arguments: [String], errors: String?, timeout: TimeInterval) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        if let errors {
            _ = FileManager.default.createFile(atPath: errors, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: errors)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        let killer = DispatchWorkItem { if process.isRunning { process.interrupt() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        killer.cancel()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Runs blocking work (a child process, `LabLineBuffer.wait`) on a thread of its own, so that it
/// holds none of the concurrency pool's few threads, which the tests running beside it need.
enum LabThread {
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
        }
    }
}
