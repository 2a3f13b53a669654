#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPeerwayLinux
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PeerwaySTUN

/*
 The STUN pair's datagram engine: one thread per worker, each owning one socket per role of the pair
 (A:p, A:p2, B:p, B:p2), all bound with SO_REUSEPORT so the kernel spreads clients over workers.

     poll(role sockets + stop pipe)
       -> recvmmsg up to `batch` datagrams from each readable socket
       -> STUNResponder decides each answer (pure), written into one reused buffer
       -> the answer is queued on the socket of the role it must leave from
       -> sendmmsg every queue once per pass

 No allocation per datagram beyond the responder's attribute list, two system calls per batch rather
 than two per datagram, and an answer from a sibling socket (CHANGE-REQUEST) never crosses threads.
*/

/// Limits of the datagram engine.
enum STUNEngineLimits {
    /// Datagrams moved per recvmmsg/sendmmsg call.
    static let batch = 64
    /// Kernel receive and send buffer per socket, so a burst is queued rather than dropped.
    static let socketBufferBytes: Int32 = 4 << 20
    /// Bytes per send slot: the largest answer (echoed PADDING plus every address attribute).
    static let sendSlotSize = STUNResponder.maximumEchoedPadding + 512
    /// Bytes per receive slot: the largest datagram read plus one, so oversize is detected.
    static let receiveSlotSize = STUNLimits.maximumDatagramSize + 1
}

/// Opening and binding the engine's UDP sockets.
enum STUNSocket {
    /// Opens a non-blocking UDP socket bound to `address` with SO_REUSEPORT; returns it and its port.
    /// `reusePort` lets several worker sockets share the address (the STUN pair's workers); a
    /// single-socket service passes false so that a second server on the same port fails to bind.
    static func bind(_ address: STUNAddress, bufferBytes: Int32 = STUNEngineLimits.socketBufferBytes,
                     reusePort: Bool = true) throws -> (fd: Int32, port: UInt16) {
        let family = address.family == .ipv4 ? AF_INET : AF_INET6
        #if canImport(Glibc)
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue), 0)
        #else
        let fd = socket(family, SOCK_DGRAM, 0)
        #endif
        guard fd >= 0 else { throw STUNPairServerError.bindFailed(address, underlying: POSIXErrorCode(rawValue: errno).map { POSIXError($0) } ?? POSIXError(.EIO)) }
        var one: Int32 = 1
        var size = bufferBytes
        let intSize = socklen_t(MemoryLayout<Int32>.size)
        if reusePort {
            // For UDP on Linux both let several sockets share one address.
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, intSize)
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, intSize)
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, intSize)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, intSize)
        if family == AF_INET6 { setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, intSize) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var slot = [UInt8](repeating: 0, count: Int(CPEERWAY_ADDRESS_SLOT))
        write(address, into: &slot)
        let length = socklen_t(family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
        let rc = slot.withUnsafeBytes { bindSocket(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length) }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw STUNPairServerError.bindFailed(address, underlying: POSIXError(POSIXErrorCode(rawValue: e) ?? .EIO))
        }
        var bound = [UInt8](repeating: 0, count: Int(CPEERWAY_ADDRESS_SLOT))
        var boundLength = socklen_t(CPEERWAY_ADDRESS_SLOT)
        _ = bound.withUnsafeMutableBytes { getsockname(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &boundLength) }
        return (fd, read(bound)?.port ?? address.port)
    }

    private static func bindSocket(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
        #if canImport(Glibc)
        return Glibc.bind(fd, address, length)
        #else
        return Darwin.bind(fd, address, length)
        #endif
    }

    /// Writes `address` into a sockaddr slot of CPEERWAY_ADDRESS_SLOT bytes.
    static func write(_ address: STUNAddress, into slot: UnsafeMutableRawPointer) {
        var ip = (UInt64(0), UInt64(0))
        switch address.ip {
        case .v4(let a):
            ip.0 = UInt64(a.bigEndian)
            withUnsafeBytes(of: &ip) { cpeerway_write_address(slot, 4, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), address.port) }
        case .v6(let hi, let lo):
            ip = (hi.bigEndian, lo.bigEndian)
            withUnsafeBytes(of: &ip) { cpeerway_write_address(slot, 6, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), address.port) }
        }
    }

    static func write(_ address: STUNAddress, into slot: inout [UInt8]) {
        slot.withUnsafeMutableBytes { write(address, into: $0.baseAddress!) }
    }

    /// Reads a sockaddr slot; nil for families other than IPv4 and IPv6.
    static func read(_ slot: UnsafeRawPointer) -> STUNAddress? {
        var ip = (UInt64(0), UInt64(0))
        var port: UInt16 = 0
        let family = withUnsafeMutableBytes(of: &ip) {
            cpeerway_read_address(slot, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), &port)
        }
        switch family {
        case 4: return STUNAddress(ip: .v4(UInt32(bigEndian: UInt32(truncatingIfNeeded: ip.0))), port: port)
        case 6: return STUNAddress(ip: .v6(high: UInt64(bigEndian: ip.0), low: UInt64(bigEndian: ip.1)), port: port)
        default: return nil
        }
    }

    static func read(_ slot: [UInt8]) -> STUNAddress? {
        slot.withUnsafeBytes { read($0.baseAddress!) }
    }
}

/// One engine thread: its sockets (one per role), buffers and counters.
final class STUNDatagramWorker: @unchecked Sendable {
    /// Socket per role index (0-3); -1 where the layout has no such role.
    private let fds: [Int32]
    private let responder: STUNResponder
    private let limiter: NIOLockedValueBox<SourceRateLimiter>?
    private let thread: ServiceThread
    private let published = NIOLockedValueBox(STUNServerCounters())

    init(fds: [Int32], responder: STUNResponder, limiter: NIOLockedValueBox<SourceRateLimiter>?) throws {
        self.fds = fds
        self.responder = responder
        self.limiter = limiter
        thread = try ServiceThread()
    }

    var counters: STUNServerCounters { published.withLockedValue { $0 } }

    /// Starts the worker's thread.
    func start(name: String) {
        thread.start(name: name) { [self] in self.loop() }
    }

    /// Asks the thread to stop, waits for it, and closes every socket.
    func stop() async {
        await thread.stop()
        for fd in fds where fd >= 0 { close(fd) }
    }

    private func loop() {
        let batch = STUNEngineLimits.batch
        let roles = STUNSocketRole.allCases
        let recvSlot = STUNEngineLimits.receiveSlotSize
        let sendSlot = STUNEngineLimits.sendSlotSize
        let addressSlot = Int(CPEERWAY_ADDRESS_SLOT)
        let recvBuffer = UnsafeMutableRawPointer.allocate(byteCount: batch * recvSlot, alignment: 16)
        let recvAddresses = UnsafeMutableRawPointer.allocate(byteCount: batch * addressSlot, alignment: 16)
        let sendBuffers = UnsafeMutableRawPointer.allocate(byteCount: 4 * batch * sendSlot, alignment: 16)
        let sendAddresses = UnsafeMutableRawPointer.allocate(byteCount: 4 * batch * addressSlot, alignment: 16)
        defer {
            recvBuffer.deallocate()
            recvAddresses.deallocate()
            sendBuffers.deallocate()
            sendAddresses.deallocate()
        }
        var recvLengths = [UInt32](repeating: 0, count: batch)
        var truncated = [UInt8](repeating: 0, count: batch)
        var sendLengths = [[UInt32]](repeating: [UInt32](repeating: 0, count: batch), count: 4)
        var pending = [Int](repeating: 0, count: 4)
        var counters = STUNServerCounters()
        var request = ByteBuffer()
        request.reserveCapacity(recvSlot)
        var answer = ByteBuffer()
        answer.reserveCapacity(sendSlot)

        var polls = fds.filter { $0 >= 0 }.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let roleOfPoll = fds.indices.filter { fds[$0] >= 0 }
        polls.append(pollfd(fd: thread.stopDescriptor, events: Int16(POLLIN), revents: 0))

        func flush(_ r: Int) {
            guard pending[r] > 0 else { return }
            let sent = sendLengths[r].withUnsafeBufferPointer { lengths in
                cpeerway_send_to_batch(fds[r], sendBuffers + r * batch * sendSlot, sendSlot, lengths.baseAddress,
                                       sendAddresses + r * batch * addressSlot, UInt32(pending[r]))
            }
            if sent < pending[r] { counters.sendFailures += pending[r] - max(0, Int(sent)) }
            pending[r] = 0
        }

        while true {
            let ready = poll(&polls, nfds_t(polls.count), -1)
            if ready < 0 { if errno == EINTR { continue } else { break } }
            if polls[polls.count - 1].revents != 0 { break }
            for (p, r) in roleOfPoll.enumerated() where polls[p].revents != 0 {
                let role = roles[r]
                while true {
                    let got = Int(recvLengths.withUnsafeMutableBufferPointer { lengths in
                        truncated.withUnsafeMutableBufferPointer { trunc in
                            cpeerway_receive_from_batch(fds[r], recvBuffer, recvSlot, UInt32(batch), lengths.baseAddress,
                                                        recvAddresses, trunc.baseAddress)
                        }
                    })
                    guard got > 0 else { break }
                    counters.received += got
                    let now = limiter == nil ? NIODeadline.uptimeNanoseconds(0) : NIODeadline.now()
                    for i in 0..<got {
                        guard let source = STUNSocket.read(recvAddresses + i * addressSlot) else { continue }
                        if truncated[i] != 0 {
                            counters.oversize += 1
                            continue
                        }
                        if let limiter, !limiter.withLockedValue({ $0.admit(source.ip, now: now) }) {
                            counters.rateLimited += 1
                            continue
                        }
                        request.clear()
                        request.writeBytes(UnsafeRawBufferPointer(start: recvBuffer + i * recvSlot, count: Int(recvLengths[i])))
                        answer.clear()
                        switch responder.respond(to: request, from: source, on: role, into: &answer) {
                        case .drop(.malformed): counters.malformed += 1
                        case .drop(.oversize): counters.oversize += 1
                        case .drop(.notARequest): counters.notARequest += 1
                        case .drop(.rateLimited): counters.rateLimited += 1
                        case .reply(let from, let to):
                            let out = from.index
                            guard fds[out] >= 0, answer.readableBytes <= sendSlot else {
                                counters.sendFailures += 1
                                continue
                            }
                            if answer.getInteger(at: answer.readerIndex, as: UInt16.self).map({ $0 & 0x0110 == 0x0110 }) == true {
                                counters.errors += 1
                            } else {
                                counters.answered += 1
                            }
                            let k = pending[out]
                            let slot = sendBuffers + (out * batch + k) * sendSlot
                            answer.withUnsafeReadableBytes { slot.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                            sendLengths[out][k] = UInt32(answer.readableBytes)
                            STUNSocket.write(to, into: sendAddresses + (out * batch + k) * addressSlot)
                            pending[out] = k + 1
                            if pending[out] == batch { flush(out) }
                        }
                    }
                    if got < batch { break }
                }
            }
            for r in 0..<4 { flush(r) }
            let snapshot = counters
            published.withLockedValue { $0 = snapshot }
        }
    }
}
