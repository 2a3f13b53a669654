#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Sends datagrams on some sockets and counts what arrives on others: `peerway bench tunnels`.
enum DatagramLoad {
    /// Milliseconds without anything arriving, once the sender is done, that end a load.
    static let quietMillis: Int32 = 1_000
    /// Longest a load runs, seconds.
    static let maximumSeconds = 120.0

    struct Result: CustomStringConvertible {
        var sent: Int
        var delivered: Int
        var seconds: Double
        var cpuSeconds: Double

        var description: String {
            let mbps = Double(delivered) * 8 / max(seconds, 1e-9) / 1e6
            let loss = sent == 0 ? 0 : Double(sent - delivered) / Double(sent) * 100
            let perGB = cpuSeconds / max(Double(delivered) / 1e9, 1e-9)
            return String(format: "%d MB sent, %d MB delivered (%.2f%% lost) in %.2f s: %.0f Mbit/s; %.2f CPU s per GB delivered (this process, both ends)",
                          sent / 1_000_000, delivered / 1_000_000, loss, seconds, mbps, perGB)
        }
    }

    /// Sends `bytes` in `TunnelBenchCommand.datagramBytes` datagrams round-robin over `senders`
    /// (blocking sends: the tunnels' socket pairs push back) while a thread reads `receivers`.
    static func run(senders: [Int32], receivers: [Int32], bytes: Int) -> Result {
        let before = ProcessFigures.now()
        let start = Date()
        let receiving = Counter()
        let reader = Thread {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            var entries = receivers.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            var quietSince: Date?
            while Date().timeIntervalSince(start) < maximumSeconds {
                for i in entries.indices { entries[i].revents = 0 }
                let rc = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), 100) }
                if rc <= 0 {
                    if receiving.senderDone {
                        if let q = quietSince, Date().timeIntervalSince(q) * 1000 >= Double(quietMillis) { break }
                        if quietSince == nil { quietSince = Date() }
                    }
                    continue
                }
                quietSince = nil
                for e in entries where e.revents != 0 {
                    while true {
                        let n = buffer.withUnsafeMutableBytes { recv(e.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                        if n <= 0 { break }
                        receiving.add(n)
                    }
                }
            }
            receiving.finish()
        }
        reader.start()
        let payload = [UInt8](repeating: 0x5A, count: TunnelBenchCommand.datagramBytes)
        var sent = 0, i = 0
        while sent < bytes && Date().timeIntervalSince(start) < maximumSeconds {
            let fd = senders[i % senders.count]
            i += 1
            let n = payload.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n }
        }
        let sendEnded = Date()
        receiving.markSenderDone()
        receiving.waitFinished()
        let after = ProcessFigures.now()
        // The quiet period after the last datagram is not transfer time.
        let seconds = max(sendEnded.timeIntervalSince(start), receiving.lastArrival.map { $0.timeIntervalSince(start) } ?? 0)
        return Result(sent: sent, delivered: receiving.total, seconds: seconds, cpuSeconds: after.cpuSeconds - before.cpuSeconds)
    }

    /// The same over a plain connected pair of UDP sockets on loopback (no tunnel, no crypto).
    static func plain(bytes: Int) -> Result {
        func socket() -> (Int32, UInt16) {
            let fd = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var size: Int32 = 4 << 20
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
            _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
            return (fd, UInt16(bigEndian: address.sin_port))
        }
        func connect(_ fd: Int32, _ port: UInt16) {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = port.bigEndian
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        let (a, portA) = socket(), (b, portB) = socket()
        connect(a, portB)
        connect(b, portA)
        defer { close(a); close(b) }
        return run(senders: [a], receivers: [b], bytes: bytes)
    }

    /// Bytes received so far, and the end of a load (shared by the sender and the reader thread).
    final class Counter: @unchecked Sendable {
        private let condition = NSCondition()
        private(set) var total = 0
        private(set) var lastArrival: Date?
        private var done = false
        private var sending = true

        func add(_ n: Int) { condition.withLock { total += n; lastArrival = Date() } }
        var senderDone: Bool { condition.withLock { !sending } }
        func markSenderDone() { condition.withLock { sending = false } }
        func finish() { condition.withLock { done = true; condition.broadcast() } }
        func waitFinished() {
            condition.lock()
            while !done { condition.wait() }
            condition.unlock()
        }
    }
}
