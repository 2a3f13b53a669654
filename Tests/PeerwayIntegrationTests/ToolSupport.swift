import Foundation
import Testing

/// Finding and running external programs from tests.
///
/// A test that needs a tool from a Debian package (stun-client, coturn) skips when it is missing on
/// a developer machine, but fails under CI (CI=true), where scripts/test must have installed it.
enum Tools {
    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"].map { $0 == "true" || $0 == "1" } ?? false }

    static func path(of name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// The tool's path; in CI a missing tool is a test failure, elsewhere a skip.
    static func require(_ name: String, package: String) throws -> String? {
        if let p = path(of: name) { return p }
        if inCI {
            Issue.record("\(name) (Debian package \(package)) is missing: scripts/test installs it when run as root")
            throw ToolMissing(name: name)
        }
        print("skipping: \(name) not installed (apt-get install \(package))")
        return nil
    }

    struct ToolMissing: Error { let name: String }

    /// The `peerway` executable built beside the test bundle.
    static var peerway: String {
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = runner.deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("peerway").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return ".build/debug/peerway"
    }

    /// Runs a program to completion (killed after `timeout` seconds); returns exit status and output.
    /// Runs blocking work (a child process waited for) on a thread of its own: a cooperative
    /// thread held for seconds starves every other suite of the run (there are as many as cores).
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    static func run(_ path: String, _ arguments: [String], timeout: TimeInterval = 30) throws -> (status: Int32, output: String) {
        let (process, pipe) = try start(path, arguments)
        let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        killer.cancel()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Starts a long-running program; the caller terminates it.
    static func start(_ path: String, _ arguments: [String]) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        return (process, pipe)
    }

    /// Two free UDP ports on 127.0.0.1 and 127.0.0.2 (p and p+1), found by probing.
    static func freePortPair() -> UInt16 {
        for _ in 0..<200 {
            let p = UInt16.random(in: 20000...59000)
            if isFree(p) && isFree(p + 1) { return p }
        }
        return 45678
    }

    private static func isFree(_ port: UInt16) -> Bool {
        for ip in ["127.0.0.1", "127.0.0.2"] {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            inet_pton(AF_INET, ip, &addr.sin_addr)
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if rc != 0 { return false }
        }
        return true
    }
}
