#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPeerwayLinux
import NIOConcurrencyHelpers
import PeerwayRelay
import PeerwaySTUN

/// The relay's UDP thread: its socket, its table, its buffers (see RelayServer.swift).
final class RelayUDPWorker: @unchecked Sendable {
    private let fd: Int32
    private let thread: ServiceThread
    private var table: RelayTable<STUNAddress>
    private let published = NIOLockedValueBox(RelayWorkerStatistics())
    private var segmentationOffload: Bool

    init(fd: Int32, table: RelayTable<STUNAddress>, segmentationOffload: Bool) throws {
        self.fd = fd
        self.table = table
        #if os(Linux)
        self.segmentationOffload = segmentationOffload
        #else
        self.segmentationOffload = false
        #endif
        thread = try ServiceThread()
    }

    /// UDP_SEGMENT (linux/udp.h) at level SOL_UDP: the size of each datagram of a GSO send.
    private static let udpSegment: Int32 = 103
    private static let solUDP: Int32 = 17
    /// CMSG_SPACE(sizeof(UInt16)) and CMSG_LEN(sizeof(UInt16)) on 64-bit Linux.
    private static let controlSpace = 24
    private static let controlLength = 18

    var statistics: RelayWorkerStatistics { published.withLockedValue { $0 } }

    func start() {
        thread.start(name: "peerway-relay-udp") { [self] in self.loop() }
    }

    func stop() async {
        await thread.stop()
        close(fd)
    }

    private func loop() {
        typealias Limits = RelayServer.Limits
        let batch = Limits.batch
        // One slot per datagram: the largest relayed datagram plus one (so oversize is detected),
        // rounded up to 64 bytes.
        let slot = (Limits.maximumDatagramBytes + 1 + 63) & ~63
        let addressSlot = Int(CPEERWAY_ADDRESS_SLOT)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: batch * slot, alignment: 64)
        let sources = UnsafeMutableRawPointer.allocate(byteCount: batch * addressSlot, alignment: 16)
        let destinations = UnsafeMutableRawPointer.allocate(byteCount: batch * addressSlot, alignment: 16)
        defer {
            buffer.deallocate()
            sources.deallocate()
            destinations.deallocate()
        }
        var lengths = [UInt32](repeating: 0, count: batch)
        var truncated = [UInt8](repeating: 0, count: batch)
        var sendLengths = [UInt32](repeating: 0, count: batch)
        var sendFailures = 0, oversize = 0, segmentedSends = 0, segmentedDatagrams = 0
        // Where each datagram of the batch goes (compared to find runs for segmented sends).
        var targets = [STUNAddress](repeating: STUNAddress(ip: .v4(0), port: 0), count: batch)
        let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: batch)
        let control = UnsafeMutableRawPointer.allocate(byteCount: Self.controlSpace, alignment: 8)
        control.initializeMemory(as: UInt8.self, repeating: 0, count: Self.controlSpace)
        defer {
            iovecs.deallocate()
            control.deallocate()
        }
        var polls = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                     pollfd(fd: thread.stopDescriptor, events: Int16(POLLIN), revents: 0)]
        var nextTick = RelayServer.now().millis + Limits.tickMillis
        var lastTick = RelayServer.now().millis
        var bytesAtLastTick: UInt64 = 0
        var bytesPerSecond = 0.0

        func publish() {
            let snapshot = RelayWorkerStatistics(counters: table.counters, allocations: table.count,
                                                 sendFailures: sendFailures, oversize: oversize, segmentedDatagrams: segmentedDatagrams,
                                                 segmentedSends: segmentedSends, bytesPerSecond: bytesPerSecond)
            published.withLockedValue { $0 = snapshot }
        }
        /// sendmmsg of slots `start..<end`; it stops at the first datagram the kernel refuses:
        /// count that one and go on with the rest.
        func sendEach(_ start: Int, _ end: Int) {
            var offset = start
            var attempts = 0
            while offset < end, attempts < end - start {
                attempts += 1
                let sent = Int(sendLengths.withUnsafeBufferPointer { l in
                    cpeerway_send_to_batch(fd, buffer + offset * slot, slot, l.baseAddress! + offset,
                                           destinations + offset * addressSlot, UInt32(end - offset))
                })
                if sent > 0 { offset += sent } else { sendFailures += 1; offset += 1 }
            }
        }
        /// One UDP_SEGMENT sendmsg of slots `start..<end` (same destination, all `sendLengths[start]`
        /// bytes but the last, which may be shorter). False when the kernel refuses the option.
        func sendSegmented(_ start: Int, _ end: Int) -> Bool {
            for k in start..<end {
                iovecs[k - start] = iovec(iov_base: buffer + k * slot, iov_len: Int(sendLengths[k]))
            }
            control.storeBytes(of: Self.controlLength, toByteOffset: 0, as: Int.self)
            control.storeBytes(of: Self.solUDP, toByteOffset: 8, as: Int32.self)
            control.storeBytes(of: Self.udpSegment, toByteOffset: 12, as: Int32.self)
            control.storeBytes(of: UInt16(sendLengths[start]), toByteOffset: 16, as: UInt16.self)
            let name = destinations + start * addressSlot
            let v6 = name.load(as: UInt16.self) == UInt16(AF_INET6)
            var message = msghdr()
            message.msg_name = name
            message.msg_namelen = socklen_t(v6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
            message.msg_iov = iovecs
            message.msg_iovlen = numericCast(end - start)
            message.msg_control = control
            message.msg_controllen = numericCast(Self.controlSpace)
            if sendmsg(fd, &message, 0) >= 0 {
                segmentedSends += 1
                segmentedDatagrams += end - start
                return true
            }
            switch errno {
            case EIO, EINVAL, EOPNOTSUPP, ENOPROTOOPT:
                segmentationOffload = false  // this kernel or route cannot: sendmmsg from now on
                return false
            default:
                sendFailures += end - start
                return true
            }
        }
        /// Sends slots `0..<count`: runs of same-size datagrams to one destination as one
        /// segmented send, the rest through sendmmsg, in order per destination.
        func send(_ count: Int) {
            guard segmentationOffload else {
                sendEach(0, count)
                return
            }
            var singles = 0, i = 0
            while i < count {
                let length = sendLengths[i]
                var j = i + 1
                var bytes = Int(length)
                while j < count, j - i < Limits.maximumSegments, sendLengths[j] <= length,
                      bytes + Int(sendLengths[j]) <= Limits.maximumSegmentedBytes, targets[j] == targets[i] {
                    bytes += Int(sendLengths[j])
                    j += 1
                    if sendLengths[j - 1] < length { break }  // only the last may be shorter
                }
                if j - i >= 2 {
                    sendEach(singles, i)
                    if !sendSegmented(i, j) { sendEach(i, j) }
                    singles = j
                }
                i = j
            }
            sendEach(singles, count)
        }

        publish()
        while true {
            let now = RelayServer.now().millis
            let wait = nextTick > now ? Int32(clamping: nextTick - now) : 0
            let ready = poll(&polls, nfds_t(polls.count), wait)
            if ready < 0, errno != EINTR { break }
            if polls[1].revents != 0 { break }
            if ready > 0, polls[0].revents != 0 {
                for _ in 0..<Limits.batchesPerPass {
                    let got = Int(lengths.withUnsafeMutableBufferPointer { l in
                        truncated.withUnsafeMutableBufferPointer { t in
                            cpeerway_receive_from_batch(fd, buffer, slot, UInt32(batch), l.baseAddress, sources, t.baseAddress)
                        }
                    })
                    guard got > 0 else { break }
                    let now = RelayServer.now()
                    var out = 0
                    for i in 0..<got {
                        let length = Int(lengths[i])
                        if truncated[i] != 0 || length > Limits.maximumDatagramBytes {
                            oversize += 1
                            continue
                        }
                        guard let source = STUNSocket.read(sources + i * addressSlot) else { continue }
                        let datagram = buffer + i * slot
                        let destination: STUNAddress
                        switch table.receive(UnsafeRawBufferPointer(start: datagram, count: length), from: source, now: now) {
                        case .forward(let to):
                            destination = to
                        case .answer:
                            RelayMessage.makeAnswer(inPlace: UnsafeMutableRawBufferPointer(start: datagram, count: length))
                            destination = source
                        case .drop:
                            continue
                        }
                        // Datagrams leave from the slots they arrived in, moved down over dropped ones.
                        if out != i { (buffer + out * slot).copyMemory(from: datagram, byteCount: length) }
                        sendLengths[out] = UInt32(length)
                        STUNSocket.write(destination, into: destinations + out * addressSlot)
                        targets[out] = destination
                        out += 1
                    }
                    // Published before the datagrams leave, so whoever receives one sees figures that count it.
                    publish()
                    if out > 0 { send(out) }
                    if got < batch { break }
                }
                publish()
            }
            let after = RelayServer.now().millis
            if after >= nextTick {
                table.tick(now: RelayTime(millis: after))
                let forwarded = table.counters.forwardedBytes
                let elapsed = Double(max(1, after - lastTick)) / 1000
                bytesPerSecond = Double(forwarded - bytesAtLastTick) / elapsed
                bytesAtLastTick = forwarded
                lastTick = after
                nextTick = after + Limits.tickMillis
                publish()
            }
        }
    }
}
