import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A child process the matrix talks to line by line (`peerway peer`, an aioice agent, the
/// supernode): stdin a pipe, stdout read by a thread of its own into `output` (and copied to a
/// log file with stderr), so no wait ever blocks on a read.
public final class LabLineProcess: LabLineLink, @unchecked Sendable {
    public let output = LabLineBuffer()
    public let name: String
    private let process = Process()
    private let input = Pipe()
    private let lock = NSLock()
    private var inputOpen = true
    /// How long `stop` waits for the process to go after SIGKILL.
    static let stopTimeout: TimeInterval = 5

    /// Starts `executable arguments...`; its stdout and stderr also go to `log` (appended).
    public init(name: String, executable: String, arguments: [String], log: String) throws(LabError) {
        self.name = name
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let logHandle = FileHandle(forWritingAtPath: log)
        _ = try? logHandle?.seekToEnd()
        let stdout = Pipe()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = input
        process.standardOutput = stdout
        process.standardError = logHandle ?? FileHandle.nullDevice
        do { try process.run() } catch {
            throw .commandFailed(command: ([executable] + arguments).joined(separator: " "), status: -1, output: "\(error)")
        }
        let buffer = output
        let reader = Thread {
            var pending = Data()
            let handle = stdout.fileHandleForReading
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                logHandle?.write(chunk)
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    buffer.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                    pending.removeSubrange(pending.startIndex...newline)
                }
            }
            if !pending.isEmpty { buffer.append(String(decoding: pending, as: UTF8.self)) }
            buffer.end()
        }
        reader.name = "peerway-lab-\(name)"
        reader.start()
    }

    public var isRunning: Bool { process.isRunning }
    public var processIdentifier: Int32 { process.processIdentifier }

    /// Writes `line` and a newline to the process's stdin (dropped once it has exited).
    public func send(_ line: String) {
        lock.lock()
        defer { lock.unlock() }
        guard inputOpen, process.isRunning else { return }
        // A write to a pipe whose reader is gone raises SIGPIPE: ignored for the whole process.
        signal(SIGPIPE, SIG_IGN)
        do { try input.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8)) } catch { inputOpen = false }
    }

    /// Kills the process (SIGKILL) and waits for it, at most `stopTimeout`.
    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        let deadline = Date().addingTimeInterval(Self.stopTimeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        lock.lock()
        if inputOpen { try? input.fileHandleForWriting.close() }
        inputOpen = false
        lock.unlock()
    }
}
