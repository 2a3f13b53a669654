#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOConcurrencyHelpers

/// A pipe a `poll` loop watches beside its sockets: any thread `ring`s it, the loop sees
/// `descriptor` readable and `silence`s it before taking whatever was queued for it.
///
/// Both ends are non-blocking: when the pipe is full the loop is already woken, so a ring never
/// waits. Closing is idempotent and a ring after it does nothing (the descriptor numbers may
/// already belong to someone else).
final class Doorbell: @unchecked Sendable {
    /// The end the loop polls for readability.
    let descriptor: Int32
    private let writer: Int32
    private let closed = NIOLockedValueBox(false)

    init() throws {
        var p: [Int32] = [0, 0]
        guard pipe(&p) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        _ = fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK)
        _ = fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK)
        descriptor = p[0]
        writer = p[1]
    }

    deinit { close() }

    /// Wakes the loop (any thread).
    func ring() {
        closed.withLockedValue { closed in
            guard !closed else { return }
            var byte: UInt8 = 1
            _ = write(writer, &byte, 1)
        }
    }

    /// Empties the pipe, so that the next `poll` waits for the next ring (the loop's thread).
    func silence() {
        var scratch = [UInt8](repeating: 0, count: 256)
        while read(descriptor, &scratch, scratch.count) > 0 {}
    }

    /// Closes both ends (once the loop no longer polls them).
    func close() {
        closed.withLockedValue { closed in
            guard !closed else { return }
            closed = true
            #if canImport(Glibc)
            _ = Glibc.close(descriptor)
            _ = Glibc.close(writer)
            #else
            _ = Darwin.close(descriptor)
            _ = Darwin.close(writer)
            #endif
        }
    }
}
