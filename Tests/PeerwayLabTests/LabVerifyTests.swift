import Foundation
import PeerwayLab
import Testing

/// Runs `peerway lab verify` for real: needs root, `ip` and `nft`. Skipped on a developer machine
/// without them; under CI (CI=true) their absence is a failure, as scripts/test installs them.
@Suite("NAT lab: every preset behaves as named (root)", .serialized)
struct LabVerifyTests {
    /// Scheduling niceness of the lab's processes in this test.
    static let niceness = 10
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

    /// Runs `peerway ARGS...` (interrupted after `verifyTimeout`): exit status and output.
    static func peerway(_ arguments: [String], timeout: TimeInterval = verifyTimeout) throws -> (status: Int32, output: String) {
        let process = Process()
        // Niced: building a lab spawns a few hundred ip/nft processes in seconds, which must not
        // starve timing-sensitive tests running beside this one (the STUN rate limit test).
        if let nice = LabRunner.path(of: "nice") {
            process.executableURL = URL(fileURLWithPath: nice)
            process.arguments = ["-n", String(Self.niceness), Self.peerway] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: Self.peerway)
            process.arguments = arguments
        }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let killer = DispatchWorkItem { if process.isRunning { process.interrupt() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        killer.cancel()
        return (process.terminationStatus, output)
    }

    /// False (after recording a failure in CI, or printing a skip) when the lab cannot run here.
    static func canRun(_ extra: [String: String] = [:]) -> Bool {
        var missing = Self.missingPrerequisite
        for (tool, package) in extra where missing == nil && LabRunner.path(of: tool) == nil {
            missing = "\(tool) missing (apt-get install \(package))"
        }
        guard let missing else { return true }
        if Self.inCI {
            Issue.record("the NAT lab cannot run: \(missing); scripts/test installs the tools when run as root")
        } else {
            print("skipping the NAT lab: \(missing)")
        }
        return false
    }

    @Test("lab verify: every row passes, and nothing is left behind", .timeLimit(.minutes(5)))
    func verify() throws {
        guard Self.canRun([LabProxy.tool: LabProxy.package, LabPortMap.tool: LabPortMap.package]) else { return }
        let (status, output) = try Self.peerway(["lab", "verify"])

        // Table rows end in their result; the summary line says "N/M rows pass".
        let rows = output.split(separator: "\n").filter { ($0.hasSuffix(" pass") || $0.hasSuffix(" FAIL")) && !$0.contains("rows pass") }
        let expectedRows = LabVerify.sites.reduce(0) { $0 + $1.hosts }
        #expect(status == 0, "peerway lab verify failed:\n\(output)")
        #expect(rows.count == expectedRows, "expected \(expectedRows) rows:\n\(output)")
        #expect(rows.allSatisfy { $0.contains("pass") }, "\(output)")
        #expect(output.contains("\(expectedRows)/\(expectedRows) rows pass"), "\(output)")

        let left = LabRunner.existingNamespaces()
        #expect(left.isEmpty, "lab namespaces left behind: \(left)")
    }

    @Test("lab up --delay: netcheck behind a delayed site measures the added round trip", .timeLimit(.minutes(2)))
    func delay() throws {
        guard Self.canRun(["iptables": "iptables"]) else { return }
        defer { _ = try? Self.peerway(["lab", "down"]) }
        let up = try Self.peerway(["lab", "up", "--site", "home=port-restricted", "--delay", String(Self.delayMilliseconds)])
        try #require(up.status == 0, "lab up failed:\n\(up.output)")
        let check = try Self.peerway(["lab", "exec", "home", "--", Self.peerway, "netcheck", "--stun", LabLimits.stunPrimary, "--json"])
        let m = LabMeasurement.parse(check.output)
        #expect(m.error == nil, "\(check.output)")
        #expect(m.mappingBehavior == "endpointIndependent", "\(check.output)")
        let rtt = try #require(m.rttMilliseconds, "\(check.output)")
        // Delay each way on the site's WAN link: the round trip grows by twice that, and not much more.
        #expect(rtt >= Double(2 * Self.delayMilliseconds), "\(check.output)")
        #expect(rtt < Double(2 * Self.delayMilliseconds) + Self.delaySlackMilliseconds, "\(check.output)")
        _ = try Self.peerway(["lab", "down"])
        #expect(LabRunner.existingNamespaces().isEmpty)
    }

    /// The one-way delay the delay test asks for, and how far above twice that the RTT may be.
    static let delayMilliseconds = 20
    static let delaySlackMilliseconds = 100.0
}
