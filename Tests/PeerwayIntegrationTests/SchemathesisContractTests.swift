import Foundation
import NIOConcurrencyHelpers
import PeerwayIndexAPI
import Testing

/// The management API's contract, checked by schemathesis (PyPI) against a real supernode on
/// loopback: every check (`--checks all`: no 5xx, status codes, headers and bodies as the
/// document says, schema-valid requests accepted, schema-invalid ones refused, undeclared methods
/// answered 405 with `Allow`, ...), in all its phases, with a bounded number of examples per
/// operation and a fixed seed. `scripts/schemathesis/peerway_hooks.py` teaches it the query
/// format and the byte rules JSON Schema cannot state.
///
/// schemathesis missing: a failure under CI (CI=true; scripts/test installs it with pip), a skip
/// elsewhere. Another seed: `PEERWAY_SCHEMATHESIS_SEED=N swift test --filter SchemathesisContract`.
@Suite("Management API contract: schemathesis against a live supernode", .serialized)
struct SchemathesisContractTests {
    /// Examples per operation and phase: enough for every check to see each operation several
    /// times, few enough that the run stays well under a minute on two cores.
    static let examplesPerOperation = 20
    /// The seed of the run (the same cases each time); `PEERWAY_SCHEMATHESIS_SEED` overrides it.
    static let seed = "20261208"
    /// Longest the run may take before it is stopped and the test fails.
    static let timeoutSeconds: TimeInterval = 150
    /// Longest one request may take.
    static let requestTimeoutSeconds = 10

    /// The schemathesis command: its console script, else none.
    static func schemathesis() -> String? {
        Tools.path(of: "schemathesis") ?? Tools.path(of: "st").flatMap { st in
            (try? Tools.run(st, ["--version"], timeout: 30))?.output.contains("schemathesis") == true ? st : nil
        }
    }

    /// The folder of the hooks (scripts/schemathesis), from this file's place in the repository.
    static var hooksDirectory: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/schemathesis").path
    }

    @Test("schemathesis run --checks all finds no failure", .timeLimit(.minutes(4)))
    func contract() async throws {
        guard let schemathesis = Self.schemathesis() else {
            if Tools.inCI {
                Issue.record("schemathesis (PyPI) is missing: scripts/test installs it (pip install 'schemathesis>=4,<5')")
                throw Tools.ToolMissing(name: "schemathesis")
            }
            print("skipping: schemathesis not installed (pip install 'schemathesis>=4,<5')")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-schemathesis-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = dir + "/sn"
        let (supernode, url) = try await startSupernode(data)
        defer { supernode.kill9() }
        #expect(url.hasPrefix("http://127.0.0.1:"), "the management API must be on loopback: \(url)")
        let token = try String(contentsOfFile: data + "/admin-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)

        let seed = ProcessInfo.processInfo.environment["PEERWAY_SCHEMATHESIS_SEED"] ?? Self.seed
        let arguments = [
            "run", url + "/openapi.json", "--checks", "all",
            "--header", "Authorization: Bearer \(token)",
            "--max-examples", String(Self.examplesPerOperation), "--seed", seed,
            "--request-timeout", String(Self.requestTimeoutSeconds), "--generation-database", "none",
            "--no-color", "--output-sanitize", "true",
        ]
        let started = Date()
        let environment = [
            "PYTHONPATH": Self.hooksDirectory,
            "SCHEMATHESIS_HOOKS": "peerway_hooks",
            "PEERWAY_QUERY_MAXIMUM_BYTES": String(IndexAPILimits.maximumQueryBytes),
        ]
        let run = try await Tools.offPool { try Self.run(schemathesis, arguments, directory: dir, environment: environment) }
        let seconds = Date().timeIntervalSince(started)
        print("schemathesis: \(run.output.split(separator: "\n").last ?? "") (\(Int(seconds)) s)")
        #expect(!run.timedOut, "schemathesis ran longer than \(Int(Self.timeoutSeconds)) s")
        #expect(run.status == 0, "schemathesis found failures (seed \(seed)):\n\(run.output.suffix(12_000))")
        #expect(run.output.contains("Tested: "), "schemathesis tested nothing:\n\(run.output.suffix(4_000))")
    }

    /// Starts a supernode on loopback (free ports) with its management API, and waits for its URL.
    func startSupernode(_ dataDirectory: String) async throws -> (LineProcess, String) {
        let supernode = try LineProcess(Tools.peerway, ["supernode", "--data-dir", dataDirectory, "--listen", "127.0.0.1:0",
                                                        "--no-stun", "--no-relay"])
        for _ in 0..<400 {
            if let url = try? String(contentsOfFile: dataDirectory + "/admin-url", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines), !url.isEmpty {
                return (supernode, url)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        supernode.kill9()
        Issue.record("the supernode wrote no admin-url: \(supernode.allLines.joined(separator: "\n"))")
        throw Tools.ToolMissing(name: "supernode")
    }

    /// Runs a program with extra environment in `directory`, killed after `timeoutSeconds`.
    static func run(_ path: String, _ arguments: [String], directory: String,
                    environment: [String: String]) throws -> (status: Int32, output: String, timedOut: Bool) {
        let process = Process()
        // Niced, like the headless browser: the suites beside it keep their CPU.
        process.executableURL = URL(fileURLWithPath: HeadlessChromium.nice)
        process.arguments = ["-n", HeadlessChromium.niceness, path] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let timedOut = NIOLockedValueBox(false)
        let killer = DispatchWorkItem {
            if process.isRunning {
                timedOut.withLockedValue { $0 = true }
                process.terminate()
            }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeoutSeconds, execute: killer)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        killer.cancel()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self), timedOut.withLockedValue { $0 })
    }
}
