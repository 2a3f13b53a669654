import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How a pump thread is told to stop: a flag under a lock and a pipe its `poll` watches. Once the
/// thread has ended (`exit`), `stop` touches nothing: the pipe's numbers may be another tunnel's.
final class PumpWake: @unchecked Sendable {
    private let lock = NSLock()
    private var requested = false
    private var exited = false
    private let pipeEnds: (read: Int32, write: Int32)
    /// Extra state the pump's thread and others share, under the same lock.
    private var flags: Set<String> = []

    init() {
        var fds: [Int32] = [0, 0]
        _ = fds.withUnsafeMutableBufferPointer { pipe($0.baseAddress) }
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        pipeEnds = (fds[0], fds[1])
    }

    /// The descriptor to poll: readable once a stop was asked for.
    var descriptor: Int32 { pipeEnds.read }

    /// Asks the thread to stop (any thread; harmless after it ended).
    func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !exited else { return }
        requested = true
        var one: UInt8 = 1
        _ = Glibc.write(pipeEnds.write, &one, 1)
    }

    var stopRequested: Bool { lock.withLock { requested } }

    /// Raises `flag` (e.g. "the network changed") for the pump to take.
    func raise(_ flag: String) { lock.withLock { _ = flags.insert(flag) } }

    /// Whether `flag` was raised since the last take (and lowers it).
    func take(_ flag: String) -> Bool { lock.withLock { flags.remove(flag) != nil } }

    /// The thread ended: the pipe closes.
    func exit() {
        lock.lock()
        defer { lock.unlock() }
        exited = true
        Glibc.close(pipeEnds.read)
        Glibc.close(pipeEnds.write)
    }
}
