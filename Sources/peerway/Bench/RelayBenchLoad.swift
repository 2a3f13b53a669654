#if canImport(Glibc)
import Glibc
#endif
import CPeerwayLinux
import Foundation
import PeerwaySTUN

/*
 The relay bench's load: one sender socket and one receiver socket on loopback, both relays
 measured the same way.

   sender thread:   sendmmsg batches of `batch` identical datagrams (the relay's framing plus the
                    payload) on a socket connected to the relay, as fast as the kernel takes them,
                    from t0 to t0 + duration
   receiver thread: recvmmsg on its socket from t0 to t0 + duration + drain, counting datagrams of
                    exactly the payload size (anything else is counted as corrupted)

 The rate is taken over the steady part, (t0 + warmup, t0 + duration]: packets counted at the end of
 the window minus those counted when the warm-up ended. The relay's CPU is read from /proc.
*/

/// One measurement's figures.
struct RelayBenchResult: Codable {
    var relay: String
    var payloadBytes: Int
    /// Bytes the sender puts in each datagram (the relay's framing plus the payload).
    var sentDatagramBytes: Int
    /// Bytes per datagram the relay path adds, as measured: sent datagram size minus received size.
    var addedBytesPerPacket: Int
    var sent = 0
    var received = 0
    var corrupted = 0
    var seconds = 0.0
    var packetsPerSecond = 0.0
    /// Payload bytes per second arriving at the receiver.
    var bytesPerSecond = 0.0
    var lossPercent = 0.0
    /// The relay process's CPU over the send window (100 = one core; user and system time of
    /// its threads, not the softirq time the kernel spends delivering its datagrams).
    var relayCPUPercent = 0.0
    /// Datagrams relayed per second of the relay's CPU: its efficiency, whatever else the
    /// machine runs.
    var packetsPerRelayCPUSecond = 0.0
    /// Datagrams the kernel dropped at the relay's socket (its receive queue was full) and at the
    /// receiver's, from /proc/net/udp: where the loss happened.
    var droppedAtRelay = 0
    var droppedAtReceiver = 0
}

/// The kernel's drop counters of the IPv4 UDP sockets bound to 127.0.0.1:`port`, from /proc/net/udp.
func udpDrops(port: UInt16) -> Int? {
    guard let table = try? String(contentsOfFile: "/proc/net/udp", encoding: .utf8) else { return nil }
    let local = String(format: "0100007F:%04X", port)
    // Several sockets may share the port (coturn's per-client sockets, SO_REUSEPORT): add them up.
    var total: Int?
    for line in table.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ")
        if fields.count > 12, fields[1] == local, let drops = Int(fields[fields.count - 1]) { total = (total ?? 0) + drops }
    }
    return total
}

/// Parameters of one measurement.
struct RelayBenchLoad {
    /// Longest send window, in seconds: every run stops by itself.
    static let maximumDuration = 60.0
    /// Datagrams per sendmmsg/recvmmsg call.
    static let batch = 64

    var duration = 3.0
    var warmup = 0.5
    var drain = 0.3
    /// CPU the sender and receiver threads are pinned to (-1: none).
    var cpu = -1
}

enum RelayBenchError: Error, CustomStringConvertible {
    case socket(String, Int32)
    case relay(String)
    case exited(String, Int32)

    var description: String {
        switch self {
        case .socket(let what, let e): return "relay bench: \(what) failed: \(String(cString: strerror(e)))"
        case .relay(let s): return "relay bench: \(s)"
        case .exited(let relay, let status): return "relay bench: \(relay) exited at start (status \(status))"
        }
    }
}

/// Loopback UDP sockets for the bench.
enum BenchUDP {
    /// Kernel buffers of the bench's sockets (forced when root), so the receiver is not the bottleneck.
    static let bufferBytes: Int32 = 32 << 20

    /// A UDP socket bound to 127.0.0.1:0, connected to `peer` when given.
    static func open(connectedTo peer: STUNAddress? = nil) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw RelayBenchError.socket("socket", errno) }
        var size = bufferBytes
        let intSize = socklen_t(MemoryLayout<Int32>.size)
        for option in [SO_RCVBUF, SO_SNDBUF, SO_RCVBUFFORCE, SO_SNDBUFFORCE] { setsockopt(fd, SOL_SOCKET, option, &size, intSize) }
        var local = socketAddress(STUNAddress(ip: .v4(0x7F00_0001), port: 0))
        guard withUnsafePointer(to: &local, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0 else {
            let e = errno
            close(fd)
            throw RelayBenchError.socket("bind", e)
        }
        if let peer { try connect(fd, to: peer) }
        return fd
    }

    static func connect(_ fd: Int32, to peer: STUNAddress) throws {
        var remote = socketAddress(peer)
        guard withUnsafePointer(to: &remote, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0 else {
            throw RelayBenchError.socket("connect \(peer)", errno)
        }
    }

    static func socketAddress(_ a: STUNAddress) -> sockaddr_in {
        guard case .v4(let ip) = a.ip else { preconditionFailure("the relay bench is IPv4 loopback only") }
        var s = sockaddr_in()
        s.sin_family = sa_family_t(AF_INET)
        s.sin_port = a.port.bigEndian
        s.sin_addr.s_addr = ip.bigEndian
        return s
    }

    static func localAddress(_ fd: Int32) -> STUNAddress {
        var s = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &s) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return STUNAddress(ip: .v4(UInt32(bigEndian: s.sin_addr.s_addr)), port: UInt16(bigEndian: s.sin_port))
    }

    /// Sends `request` on the connected `fd` every 200 ms until a datagram for which `accept`
    /// holds arrives (at most `attempts` times); returns it.
    static func exchange(_ fd: Int32, _ request: [UInt8], attempts: Int = 25, accept: ([UInt8]) -> Bool) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 2048)
        for _ in 0..<attempts {
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            let deadline = Date().addingTimeInterval(0.2)
            while Date() < deadline {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 200) > 0 else { break }
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0, accept(Array(buffer[0..<n])) { return Array(buffer[0..<n]) }
            }
        }
        return nil
    }
}

/// Seconds of CPU (user + system) a process used so far, from /proc/PID/stat.
func processCPUSeconds(_ pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Monotonic seconds.
private func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// A result box one thread fills and another reads after `wait()`.
private final class Joined<T>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    var value: T?
    func finish(_ v: T) { value = v; done.signal() }
    func wait() -> T { done.wait(); return value! }
}

/// Sends `datagram` from `sender` and counts what arrives at `receiver` (datagrams that are exactly
/// `payload`), as described at the top of this file. `relayPID` is sampled for CPU, and the drop
/// counters of the sockets on `relayPort` and of the receiver are read before and after.
func runRelayLoad(_ load: RelayBenchLoad, relay: String, sender: Int32, receiver: Int32, datagram: [UInt8],
                  payload: [UInt8], relayPID: Int32?, relayPort: UInt16) -> RelayBenchResult {
    let receiverPort = BenchUDP.localAddress(receiver).port
    let dropsBefore = (udpDrops(port: relayPort) ?? 0, udpDrops(port: receiverPort) ?? 0)
    let payloadBytes = payload.count
    let batch = RelayBenchLoad.batch
    let duration = min(load.duration, RelayBenchLoad.maximumDuration)
    let t0 = monotonicSeconds() + 0.05
    let sendEnd = t0 + duration
    let warmEnd = t0 + min(load.warmup, duration / 2)
    let receiveEnd = sendEnd + load.drain
    _ = fcntl(receiver, F_SETFL, fcntl(receiver, F_GETFL) | O_NONBLOCK)

    let received = Joined<(total: Int, atWarm: Int, atEnd: Int, corrupted: Int)>()
    let receiverThread = Thread {
        if load.cpu >= 0 { _ = cpeerway_pin_thread(Int32(load.cpu)) }
        let slot = 2048
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: batch * slot, alignment: 64)
        defer { buffer.deallocate() }
        var lengths = [UInt32](repeating: 0, count: batch)
        var total = 0, corrupted = 0
        var atWarm: Int?, atEnd: Int?
        var p = pollfd(fd: receiver, events: Int16(POLLIN), revents: 0)
        while true {
            let now = monotonicSeconds()
            if atWarm == nil, now >= warmEnd { atWarm = total }
            if atEnd == nil, now >= sendEnd { atEnd = total }
            if now >= receiveEnd { break }
            guard poll(&p, 1, 10) > 0 else { continue }
            // At most 16 batches between clock readings, so the window edges stay sharp.
            for _ in 0..<16 {
                let got = Int(lengths.withUnsafeMutableBufferPointer { cpeerway_receive_batch(receiver, buffer, slot, UInt32(batch), $0.baseAddress) })
                guard got > 0 else { break }
                for i in 0..<got where Int(lengths[i]) != payloadBytes { corrupted += 1 }
                // The first datagram of each batch is compared byte for byte with the payload.
                if lengths[0] == UInt32(payloadBytes), payload.withUnsafeBytes({ memcmp(buffer, $0.baseAddress!, payloadBytes) }) != 0 {
                    corrupted += 1
                }
                total += got
                if got < batch { break }
            }
        }
        received.finish((total, atWarm ?? total, atEnd ?? total, corrupted))
    }
    let sent = Joined<Int>()
    let senderThread = Thread {
        if load.cpu >= 0 { _ = cpeerway_pin_thread(Int32(load.cpu)) }
        let stride = (datagram.count + 63) & ~63
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: batch * stride, alignment: 64)
        defer { buffer.deallocate() }
        for i in 0..<batch { datagram.withUnsafeBytes { (buffer + i * stride).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        while monotonicSeconds() < t0 {}
        var count = 0
        var calls = 0
        while true {
            // The clock is read every 16 calls (about 1,000 datagrams).
            if calls & 15 == 0, monotonicSeconds() >= sendEnd { break }
            calls += 1
            let n = cpeerway_send_batch(sender, buffer, stride, datagram.count, UInt32(batch))
            if n > 0 { count += Int(n) }
        }
        sent.finish(count)
    }
    let cpuBefore = relayPID.flatMap(processCPUSeconds)
    receiverThread.start()
    senderThread.start()
    let sentCount = sent.wait()
    let cpuAfter = relayPID.flatMap(processCPUSeconds)
    let r = received.wait()

    var result = RelayBenchResult(relay: relay, payloadBytes: payloadBytes, sentDatagramBytes: datagram.count,
                                  addedBytesPerPacket: datagram.count - payloadBytes)
    result.sent = sentCount
    result.received = r.total
    result.corrupted = r.corrupted
    result.seconds = sendEnd - warmEnd
    result.packetsPerSecond = Double(r.atEnd - r.atWarm) / result.seconds
    result.bytesPerSecond = result.packetsPerSecond * Double(payloadBytes)
    result.lossPercent = sentCount > 0 ? 100 * Double(max(0, sentCount - r.total)) / Double(sentCount) : 0
    if let a = cpuBefore, let b = cpuAfter {
        result.relayCPUPercent = 100 * (b - a) / duration
        // Datagrams received over the whole send window (not only the steady part), per CPU second.
        if b > a { result.packetsPerRelayCPUSecond = Double(r.atEnd) / (b - a) }
    }
    result.droppedAtRelay = (udpDrops(port: relayPort) ?? 0) - dropsBefore.0
    result.droppedAtReceiver = (udpDrops(port: receiverPort) ?? 0) - dropsBefore.1
    return result
}
