#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOConcurrencyHelpers

/// A dedicated thread running one datagram loop, stopped through a pipe the loop polls.
///
/// The services that own their sockets (the STUN engine, CHECKPOINT) run a blocking `poll` loop on
/// a thread of their own rather than on the cooperative pool. The loop polls `stopDescriptor`
/// beside its sockets and returns when it becomes readable; `stop()` makes it so and waits.
final class ServiceThread: @unchecked Sendable {
    /// Rung by `stop()`: the loop polls it and returns.
    private let stopBell: Doorbell
    /// Readable once `stop()` was called: the loop polls it and returns.
    var stopDescriptor: Int32 { stopBell.descriptor }
    private let finished = NIOLockedValueBox<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    init() throws {
        stopBell = try Doorbell()
    }

    /// Starts the thread running `loop`.
    func start(name: String, _ loop: @escaping @Sendable () -> Void) {
        let thread = Thread { [finished] in
            loop()
            let waiters = finished.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
                s.done = true
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in waiters { w.resume() }
        }
        thread.name = name
        thread.start()
    }

    /// Tells the loop to return, waits until it has, and closes the pipe.
    func stop() async {
        stopBell.ring()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = finished.withLockedValue { s -> Bool in
                if !s.done { s.waiters.append(c) }
                return s.done
            }
            if done { c.resume() }
        }
        stopBell.close()
    }
}
