import Foundation
import PeerwaySTUN

/// Tells whoever listens when this host's addresses change (an interface came up or went down,
/// a move to another network): one thread for the whole process, reading the interfaces every
/// `intervalMillis` while anyone listens. A tunnel recovers its paths at once on a change rather
/// than after its checks fail (`TunnelPathMachine.networkChanged`).
final class NetworkWatcher: @unchecked Sendable {
    /// Milliseconds between two reads of the host's interfaces.
    static let intervalMillis: UInt32 = 1_000

    static let shared = NetworkWatcher()

    private let lock = NSLock()
    private var listeners: [UInt64: @Sendable () -> Void] = [:]
    private var nextID: UInt64 = 1
    private var running = false

    /// Calls `changed` (on the watcher's thread) after every change until `stop` with the returned id.
    func listen(_ changed: @escaping @Sendable () -> Void) -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        let id = nextID
        nextID += 1
        listeners[id] = changed
        if !running {
            running = true
            let thread = Thread { [self] in watch() }
            thread.name = "peerway-network-watcher"
            thread.start()
        }
        return id
    }

    func stop(_ id: UInt64) {
        lock.lock()
        listeners[id] = nil
        lock.unlock()
    }

    /// The addresses that matter for paths: not loopback, not link-local.
    static func snapshot() -> Set<STUNAddress.IP> {
        Set(LocalAddresses.current().filter { !$0.isLoopback && !$0.isLinkLocal }.map(\.ip))
    }

    private func watch() {
        var last = Self.snapshot()
        while true {
            usleep(Self.intervalMillis * 1000)
            let now = Self.snapshot()
            lock.lock()
            if listeners.isEmpty {
                running = false
                lock.unlock()
                return
            }
            let notify = now != last ? Array(listeners.values) : []
            lock.unlock()
            last = now
            for changed in notify { changed() }
        }
    }
}
