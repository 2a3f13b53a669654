import Foundation
import PeerwayLab
import Testing

/// Runs `peerway lab verify` for real: needs root, `ip` and `nft`. Skipped on a developer machine
/// without them; under CI (CI=true) their absence is a failure, as scripts/test installs them.
@Suite("NAT lab: every preset behaves as named (root)")
struct LabVerifyTests {
    /// The whole verify run may take this long before the test kills it, seconds.
    static let verifyTimeout: TimeInterval = 180

    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"].map { $0 == "true" || $0 == "1" } ?? false }

    /// The `peerway` executable built beside the test bundle.
    static var peerway: String {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("peerway").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return ".build/debug/peerway"
    }

    /// Nil when the lab can run here; otherwise why not (a failure in CI, a skip elsewhere).
    static var missingPrerequisite: String? {
        if geteuid() != 0 { return "not root" }
        for (tool, package) in LabRunner.tools where LabRunner.path(of: tool) == nil {
            return "\(tool) missing (apt-get install \(package))"
        }
        return nil
    }

    @Test("lab verify: every row passes, and nothing is left behind", .timeLimit(.minutes(5)))
    func verify() throws {
        if let missing = Self.missingPrerequisite {
            if Self.inCI {
                Issue.record("the NAT lab cannot run: \(missing); scripts/test installs the tools when run as root")
            } else {
                print("skipping the NAT lab: \(missing)")
            }
            return
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.peerway)
        process.arguments = ["lab", "verify"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let killer = DispatchWorkItem { if process.isRunning { process.interrupt() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + Self.verifyTimeout, execute: killer)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        killer.cancel()

        // Table rows end in their result; the summary line says "N/M rows pass".
        let rows = output.split(separator: "\n").filter { ($0.hasSuffix(" pass") || $0.hasSuffix(" FAIL")) && !$0.contains("rows pass") }
        let expectedRows = LabVerify.sites.reduce(0) { $0 + $1.hosts }
        #expect(process.terminationStatus == 0, "peerway lab verify failed:\n\(output)")
        #expect(rows.count == expectedRows, "expected \(expectedRows) rows:\n\(output)")
        #expect(rows.allSatisfy { $0.contains("pass") }, "\(output)")
        #expect(output.contains("\(expectedRows)/\(expectedRows) rows pass"), "\(output)")

        let left = LabRunner.existingNamespaces()
        #expect(left.isEmpty, "lab namespaces left behind: \(left)")
    }
}
