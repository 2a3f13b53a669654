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

    init(fd: Int32, table: RelayTable<STUNAddress>) throws {
        self.fd = fd
        self.table = table
        thread = try ServiceThread()
    }

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
        var sendFailures = 0, oversize = 0
        var polls = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                     pollfd(fd: thread.stopDescriptor, events: Int16(POLLIN), revents: 0)]
        var nextTick = RelayServer.now().millis + Limits.tickMillis
        var lastTick = RelayServer.now().millis
        var bytesAtLastTick: UInt64 = 0
        var bytesPerSecond = 0.0

        func publish() {
            let snapshot = RelayWorkerStatistics(counters: table.counters, allocations: table.count,
                                                 sendFailures: sendFailures, oversize: oversize, bytesPerSecond: bytesPerSecond)
            published.withLockedValue { $0 = snapshot }
        }
        func send(_ count: Int) {
            // sendmmsg stops at the first datagram the kernel refuses: count it, go on with the rest.
            var offset = 0
            var attempts = 0
            while offset < count, attempts < count {
                attempts += 1
                let sent = Int(sendLengths.withUnsafeBufferPointer { l in
                    cpeerway_send_to_batch(fd, buffer + offset * slot, slot, l.baseAddress! + offset,
                                           destinations + offset * addressSlot, UInt32(count - offset))
                })
                if sent > 0 { offset += sent } else { sendFailures += 1; offset += 1 }
            }
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
                        out += 1
                    }
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
