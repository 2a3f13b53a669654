import Foundation
import Peerway
#if canImport(Glibc)
import Glibc
#endif

/// What `peerway peer` does on tunnel sockets: echo everything (`--echo`), print what arrives,
/// and `send-bytes` (send N bytes, check the echo, measure the throughput). Blocking socket I/O,
/// each on a thread of its own.
enum PeerTunnelIO {
    /// Payload bytes per datagram that `send-bytes` sends on a UDP tunnel (after its 8-byte sequence number).
    static let datagramPayload = 1_192
    /// Datagrams `send-bytes` keeps unanswered at once on a UDP tunnel.
    static let window = 64
    /// Milliseconds after which an unanswered datagram is sent again.
    static let retransmitMillis = 250
    /// `send-bytes` gives up after this many seconds.
    static let timeoutSeconds = 30.0
    /// Most bytes `send-bytes` may send at once.
    static let maximumBytes = 1 << 30

    /// Echoes everything that arrives back to the sender until the tunnel closes.
    static func echo(_ tunnel: Tunnel) {
        // A descriptor of its own: the tunnel's number may be reused once it is closed.
        let fd = dup(tunnel.fileDescriptor)
        guard fd >= 0 else { return }
        let datagrams = tunnel.transport == .udp
        Thread.detachNewThread {
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && datagrams && errno == ECONNREFUSED { continue }
                if n <= 0 { return }
                var offset = 0
                while offset < n {
                    let w = buffer.withUnsafeBytes { send(fd, $0.baseAddress! + offset, n - offset, Int32(MSG_NOSIGNAL)) }
                    if w < 0 { if errno == EINTR { continue }; return }
                    offset += w
                    if datagrams { break }
                }
            }
        }
    }

    /// Reports every chunk that arrives (without `--echo`), until the tunnel closes.
    static func read(_ tunnel: Tunnel, _ report: @escaping @Sendable (Int, String?) -> Void) {
        let fd = dup(tunnel.fileDescriptor)
        guard fd >= 0 else { return }
        Thread.detachNewThread {
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 && (errno == EINTR || errno == ECONNREFUSED) { continue }
                if n <= 0 { return }
                report(n, String(bytes: buffer[0..<min(n, 256)], encoding: .utf8))
            }
        }
    }

    /// The outcome of `send-bytes`.
    struct Result: Sendable {
        var ok: Bool
        var bytes: Int
        var seconds: Double
        var error: String?
        var retransmissions = 0
        var megabitsPerSecond: Double { seconds > 0 ? Double(bytes) * 8 / seconds / 1e6 : 0 }
    }

    /// Sends `count` bytes over the tunnel and checks that the echo brings back the same bytes.
    /// UDP tunnels: numbered datagrams with a window and retransmission (loss is expected);
    /// TCP tunnels: a byte stream read back in full.
    static func sendBytes(_ tunnel: Tunnel, count: Int) async -> Result {
        let fd = tunnel.fileDescriptor
        let udp = tunnel.transport == .udp
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(returning: udp ? sendDatagrams(fd: fd, count: count) : sendStream(fd: fd, count: count))
            }
        }
    }

    private static func pattern(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i &* 31 &+ 7) }

    private static func sendStream(fd: Int32, count: Int) -> Result {
        let start = Date()
        var sent = 0, received = 0
        var out = [UInt8](repeating: 0, count: 16_384)
        var input = [UInt8](repeating: 0, count: 65_536)
        while received < count {
            if Date().timeIntervalSince(start) > timeoutSeconds {
                return Result(ok: false, bytes: received, seconds: Date().timeIntervalSince(start), error: "timed out after \(received) of \(count) bytes echoed")
            }
            var entries = [pollfd(fd: fd, events: Int16(POLLIN) | (sent < count ? Int16(POLLOUT) : 0), revents: 0)]
            _ = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, 1, 200) }
            if entries[0].revents & Int16(POLLOUT) != 0 && sent < count {
                let n = min(out.count, count - sent)
                for i in 0..<n { out[i] = pattern(sent + i) }
                let w = out.withUnsafeBytes { send(fd, $0.baseAddress, n, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                if w > 0 { sent += w }
            }
            if entries[0].revents & Int16(POLLIN | POLLHUP) != 0 {
                let n = input.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n == 0 { return Result(ok: false, bytes: received, seconds: Date().timeIntervalSince(start), error: "the tunnel closed") }
                if n > 0 {
                    for i in 0..<n where input[i] != pattern(received + i) {
                        return Result(ok: false, bytes: received + i, seconds: Date().timeIntervalSince(start), error: "echo differs at byte \(received + i)")
                    }
                    received += n
                }
            }
        }
        return Result(ok: true, bytes: count, seconds: Date().timeIntervalSince(start))
    }

    private static func sendDatagrams(fd: Int32, count: Int) -> Result {
        let start = Date()
        let total = (count + datagramPayload - 1) / datagramPayload
        var nextToSend = 0
        var sentAt: [Int: Date] = [:]
        var acked = Set<Int>()
        var retransmissions = 0
        var datagram = [UInt8](repeating: 0, count: 8 + datagramPayload)
        var input = [UInt8](repeating: 0, count: 65_536)
        func fill(_ seq: Int) -> Int {
            let length = min(datagramPayload, count - seq * datagramPayload)
            for i in 0..<8 { datagram[i] = UInt8(truncatingIfNeeded: seq >> (56 - 8 * i)) }
            for i in 0..<length { datagram[8 + i] = pattern(seq * datagramPayload + i) }
            return 8 + length
        }
        func transmit(_ seq: Int) {
            let n = fill(seq)
            _ = datagram.withUnsafeBytes { send(fd, $0.baseAddress, n, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            sentAt[seq] = Date()
        }
        while acked.count < total {
            let now = Date()
            if now.timeIntervalSince(start) > timeoutSeconds {
                return Result(ok: false, bytes: acked.count * datagramPayload, seconds: now.timeIntervalSince(start),
                              error: "timed out with \(acked.count) of \(total) datagrams echoed", retransmissions: retransmissions)
            }
            while sentAt.count < window && nextToSend < total {
                transmit(nextToSend)
                nextToSend += 1
            }
            for (seq, at) in sentAt where now.timeIntervalSince(at) * 1000 >= Double(retransmitMillis) {
                transmit(seq)
                retransmissions += 1
            }
            var entries = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            _ = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, 1, 20) }
            while true {
                let n = input.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n < 8 { break }
                let seq = input[0..<8].reduce(0) { $0 << 8 | Int($1) }
                guard seq >= 0, seq < total, sentAt[seq] != nil else { continue }
                let length = min(datagramPayload, count - seq * datagramPayload)
                guard n == 8 + length else {
                    return Result(ok: false, bytes: acked.count * datagramPayload, seconds: Date().timeIntervalSince(start),
                                  error: "echo of datagram \(seq) has \(n - 8) bytes, not \(length)")
                }
                for i in 0..<length where input[8 + i] != pattern(seq * datagramPayload + i) {
                    return Result(ok: false, bytes: acked.count * datagramPayload, seconds: Date().timeIntervalSince(start),
                                  error: "echo of datagram \(seq) differs at byte \(i)")
                }
                acked.insert(seq)
                sentAt[seq] = nil
            }
        }
        return Result(ok: true, bytes: count, seconds: Date().timeIntervalSince(start), retransmissions: retransmissions)
    }
}
