#if canImport(Glibc)
import Glibc
#endif
import CPeerwayLinux
import PeerwaySTUN

/*
 The STUN load generator: one thread, raw non-blocking UDP sockets, batched syscalls
 (sendmmsg/recvmmsg) so that the generator is cheaper per request than the server it measures.

 Each of `sockets` connected sockets keeps up to `window` Binding requests in flight ("max" mode),
 or the whole generator paces requests to `rate` per second across the sockets ("rate" mode).
 A request's transaction id carries its socket and sequence number; the answer's id finds the send
 time. Requests unanswered after `requestTimeout` are counted lost and free their window slot.
 After `duration` no new request is sent; the generator drains answers for `drainTime` and counts
 what is still missing as lost.
*/

/// Parameters of one load run.
struct STUNLoadConfiguration {
    /// Most sockets a run may open.
    static let maximumSockets = 4096
    /// Longest run, in seconds: every load run stops by itself.
    static let maximumDuration = 600.0
    /// Slots of send times kept per socket; bounds the window.
    static let ringSize = 1024
    /// Datagrams per sendmmsg/recvmmsg call.
    static let batch = 64

    var target: STUNAddress
    var sockets = 64
    /// Requests per second overall; 0 sends as fast as the window allows.
    var rate = 0
    /// Requests in flight per socket in max mode.
    var window = 8
    var duration = 5.0
    var requestTimeout = 1.0
    var drainTime = 0.5
}

/// Figures of one load run.
struct STUNLoadResult: Codable {
    var target: String
    var sent = 0
    var answered = 0
    var lost = 0
    var otherReplies = 0
    var seconds = 0.0
    var responsesPerSecond: Double { seconds > 0 ? Double(answered) / seconds : 0 }
    var lossPercent: Double { sent > 0 ? 100 * Double(lost) / Double(sent) : 0 }
    var p50Microseconds = 0.0
    var p99Microseconds = 0.0
    var maxMicroseconds = 0.0
}

enum STUNLoadError: Error, CustomStringConvertible {
    case socket(String, Int32)
    case badConfiguration(String)
    var description: String {
        switch self {
        case .socket(let what, let e): return "load generator: \(what) failed: \(String(cString: strerror(e)))"
        case .badConfiguration(let s): return "load generator: \(s)"
        }
    }
}

/// Runs the load described by `configuration` and returns its figures.
func runSTUNLoad(_ configuration: STUNLoadConfiguration) throws -> STUNLoadResult {
    let c = configuration
    guard (1...STUNLoadConfiguration.maximumSockets).contains(c.sockets) else {
        throw STUNLoadError.badConfiguration("sockets must be 1-\(STUNLoadConfiguration.maximumSockets)")
    }
    guard c.duration > 0, c.duration <= STUNLoadConfiguration.maximumDuration else {
        throw STUNLoadError.badConfiguration("duration must be in (0, \(STUNLoadConfiguration.maximumDuration)] seconds")
    }
    let window = max(1, min(c.window, STUNLoadConfiguration.ringSize / 2))
    let targetAddress = try c.target.socketAddress()
    var fds: [Int32] = []
    defer { for fd in fds { close(fd) } }
    let epfd = cpeerway_epoll_create()
    guard epfd >= 0 else { throw STUNLoadError.socket("epoll_create1", errno) }
    defer { close(epfd) }
    let family = c.target.family == .ipv4 ? AF_INET : AF_INET6
    for i in 0..<c.sockets {
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw STUNLoadError.socket("socket", errno) }
        fds.append(fd)
        var size: Int32 = 1 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        let rc = targetAddress.withSockAddr { sa, len in connect(fd, sa, socklen_t(len)) }
        guard rc == 0 else { throw STUNLoadError.socket("connect to \(c.target)", errno) }
        guard cpeerway_epoll_add(epfd, fd, UInt32(i)) == 0 else { throw STUNLoadError.socket("epoll_ctl", errno) }
    }

    let ring = STUNLoadConfiguration.ringSize
    // Per socket: send time (0 = free) and sequence for each ring slot.
    var sendTime = [UInt64](repeating: 0, count: c.sockets * ring)
    var slotSeq = [UInt64](repeating: 0, count: c.sockets * ring)
    var nextSeq = [UInt64](repeating: 0, count: c.sockets)
    var oldest = [UInt64](repeating: 0, count: c.sockets)
    var inFlight = [Int](repeating: 0, count: c.sockets)
    var latencies: [UInt32] = []
    latencies.reserveCapacity(1 << 20)
    var result = STUNLoadResult(target: c.target.description)

    let batch = STUNLoadConfiguration.batch
    let packetSize = STUN.headerSize
    let slotSize = 1500
    let sendBuffers = UnsafeMutableRawPointer.allocate(byteCount: batch * packetSize, alignment: 8)
    let recvBuffers = UnsafeMutableRawPointer.allocate(byteCount: batch * slotSize, alignment: 8)
    var recvLengths = [UInt32](repeating: 0, count: batch)
    defer {
        sendBuffers.deallocate()
        recvBuffers.deallocate()
    }
    let timeoutNanos = UInt64(c.requestTimeout * 1e9)

    func expireOld(_ s: Int, now: UInt64) {
        while oldest[s] < nextSeq[s] {
            let slot = s * ring + Int(oldest[s] % UInt64(ring))
            if sendTime[slot] == 0 || slotSeq[slot] != oldest[s] {
                oldest[s] += 1
                continue
            }
            guard now - sendTime[slot] > timeoutNanos || nextSeq[s] - oldest[s] >= UInt64(ring) else { break }
            sendTime[slot] = 0
            inFlight[s] -= 1
            result.lost += 1
            oldest[s] += 1
        }
    }

    func send(_ s: Int, count: Int, now: UInt64) {
        let n = min(count, batch)
        guard n > 0 else { return }
        for k in 0..<n {
            let seq = nextSeq[s] + UInt64(k)
            let p = sendBuffers + k * packetSize
            p.storeBytes(of: UInt16(0x0001).bigEndian, toByteOffset: 0, as: UInt16.self)
            p.storeBytes(of: UInt16(0).bigEndian, toByteOffset: 2, as: UInt16.self)
            p.storeBytes(of: STUN.magicCookie.bigEndian, toByteOffset: 4, as: UInt32.self)
            p.storeBytes(of: UInt32(s).bigEndian, toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: seq.bigEndian, toByteOffset: 12, as: UInt64.self)
        }
        let sent = Int(cpeerway_send_batch(fds[s], sendBuffers, packetSize, packetSize, UInt32(n)))
        guard sent > 0 else { return }
        for k in 0..<sent {
            let seq = nextSeq[s] + UInt64(k)
            let slot = s * ring + Int(seq % UInt64(ring))
            if sendTime[slot] != 0 {  // overwritten before an answer or expiry: lost
                result.lost += 1
                inFlight[s] -= 1
            }
            sendTime[slot] = now
            slotSeq[slot] = seq
        }
        nextSeq[s] += UInt64(sent)
        inFlight[s] += sent
        result.sent += sent
    }

    func receive(_ s: Int) {
        while true {
            let got = Int(cpeerway_receive_batch(fds[s], recvBuffers, slotSize, UInt32(batch), &recvLengths))
            guard got > 0 else { return }
            let now = monotonicNow()
            for k in 0..<got {
                let p = UnsafeRawPointer(recvBuffers + k * slotSize)
                let length = Int(recvLengths[k])
                guard length >= STUN.headerSize,
                    UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt16.self)) == 0x0101,
                    UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) == UInt32(s)
                else {
                    result.otherReplies += 1
                    continue
                }
                let seq = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt64.self))
                let index = s * ring + Int(seq % UInt64(ring))
                guard sendTime[index] != 0, slotSeq[index] == seq else {
                    result.otherReplies += 1  // late answer to a request already counted lost
                    continue
                }
                latencies.append(UInt32(min(UInt64(UInt32.max), (now - sendTime[index]) / 1000)))
                sendTime[index] = 0
                inFlight[s] -= 1
                result.answered += 1
            }
            if got < batch { return }
        }
    }

    let start = monotonicNow()
    let end = start + UInt64(c.duration * 1e9)
    let drainEnd = end + UInt64(c.drainTime * 1e9)
    var readyTags = [UInt32](repeating: 0, count: 256)
    var paced = 0
    var cursor = 0
    while true {
        let now = monotonicNow()
        if now >= drainEnd { break }
        let sending = now < end
        if sending {
            if c.rate == 0 {
                for s in 0..<c.sockets {
                    expireOld(s, now: now)
                    if inFlight[s] < window { send(s, count: window - inFlight[s], now: now) }
                }
            } else {
                let due = Int(Double(now - start) / 1e9 * Double(c.rate)) - paced
                var left = min(due, batch * 4)
                while left > 0 {
                    let s = cursor % c.sockets
                    cursor += 1
                    expireOld(s, now: now)
                    let n = min(left, max(1, left / c.sockets + 1))
                    let before = result.sent
                    send(s, count: n, now: now)
                    let sent = result.sent - before
                    paced += sent
                    left -= max(sent, 1)
                }
            }
        } else if result.sent == result.answered + result.lost {
            break
        }
        let timeout: Int32 = sending ? 0 : 5
        let n = cpeerway_epoll_wait_tags(epfd, &readyTags, Int32(readyTags.count), timeout)
        if n > 0 {
            for i in 0..<Int(n) { receive(Int(readyTags[i])) }
        } else if sending && c.rate > 0 {
            // Pace without spinning hard: sleep until the next request is due.
            usleep(50)
        }
    }
    let finished = monotonicNow()
    result.seconds = Double(min(finished, end) - start) / 1e9
    result.lost += result.sent - result.answered - result.lost
    latencies.sort()
    if !latencies.isEmpty {
        result.p50Microseconds = Double(latencies[latencies.count / 2])
        result.p99Microseconds = Double(latencies[min(latencies.count - 1, latencies.count * 99 / 100)])
        result.maxMicroseconds = Double(latencies[latencies.count - 1])
    }
    return result
}
