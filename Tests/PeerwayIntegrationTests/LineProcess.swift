import Foundation
import NIOConcurrencyHelpers

/// A child process driven line by line: commands on its stdin, lines of its stdout collected
/// by a reader thread so tests can wait for the one they expect.
final class LineProcess: @unchecked Sendable {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let lines = NIOLockedValueBox<[String]>([])

    init(_ path: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let handle = output.fileHandleForReading
        let thread = Thread { [lines] in
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let nl = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...nl)
                    lines.withLockedValue { $0.append(line) }
                }
            }
        }
        thread.start()
    }

    /// Writes one command line.
    func send(_ line: String) {
        input.fileHandleForWriting.write(Data((line + "\n").utf8))
    }

    /// Closes stdin (the session finishes what it started and quits).
    func closeInput() { try? input.fileHandleForWriting.close() }

    var allLines: [String] { lines.withLockedValue { $0 } }

    /// JSON objects printed so far.
    var objects: [[String: Any]] {
        allLines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }

    /// Waits for the first JSON line with `event` that satisfies `match`; nil after `timeout`.
    func waitFor(_ event: String, timeout: TimeInterval = 20, where match: @escaping ([String: Any]) -> Bool = { _ in true }) async -> [String: Any]? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let found = objects.first(where: { ($0["event"] as? String) == event && match($0) }) { return found }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    /// Waits for the process to exit (killed after `timeout`); returns its status.
    func waitForExit(timeout: TimeInterval = 15) async -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning { process.interrupt(); try? await Task.sleep(for: .milliseconds(500)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        return process.terminationStatus
    }

    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}
