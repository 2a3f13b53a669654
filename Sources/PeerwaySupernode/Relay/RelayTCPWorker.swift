#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPeerwayLinux
import Foundation
import NIOConcurrencyHelpers
import PeerwayRelay
import PeerwaySTUN

/// The relay's TCP thread: binds over TCP and splices the two connections of each allocation
/// (see RelayServer.swift). Plain non-blocking reads and writes under one `poll`.
final class RelayTCPWorker: @unchecked Sendable {
    private typealias Limits = RelayServer.Limits

    /// One TCP connection: binding, waiting for its partner, or spliced to it.
    private final class Connection {
        let id: Int
        let fd: Int32
        let bindDeadline: UInt64
        /// Bytes of the bind read so far (at most 37).
        var bind: [UInt8] = []
        var bound = false
        var partner: Connection?
        /// Bytes read from this side before its partner was there (after the bind, adopted sockets only).
        var early: [UInt8] = []
        /// Bytes waiting to be written to this connection (the bind's answer, then the partner's data).
        var outbound: [UInt8] = []
        var outboundOffset = 0
        /// This side sent its FIN.
        var readClosed = false
        /// Its partner's FIN is to be passed on once `outbound` is written.
        var shutdownPending = false
        var writeShut = false

        init(id: Int, fd: Int32, bindDeadline: UInt64) {
            self.id = id
            self.fd = fd
            self.bindDeadline = bindDeadline
        }

        var hasOutbound: Bool { outboundOffset < outbound.count }
    }

    private let listener: Int32?
    private let thread: ServiceThread
    /// Rung when a connection was queued for the thread.
    private let doorbell: Doorbell
    private let inbox = NIOLockedValueBox<(open: Bool, queue: [(fd: Int32, firstBytes: [UInt8])])>((true, []))
    private var table: RelayTable<Int>
    private var connections: [Int: Connection] = [:]
    private var nextID = 1
    private var stats = RelayWorkerStatistics()
    private let published = NIOLockedValueBox(RelayWorkerStatistics())
    private var scratch = [UInt8](repeating: 0, count: RelayServer.Limits.tcpChunkBytes)

    init(listener: Int32?, table: RelayTable<Int>) throws {
        self.listener = listener
        self.table = table
        doorbell = try Doorbell()
        thread = try ServiceThread()
    }

    var statistics: RelayWorkerStatistics { published.withLockedValue { $0 } }

    func start() {
        thread.start(name: "peerway-relay-tcp") { [self] in self.loop() }
    }

    /// Stops the thread and closes the listener, every connection and the wake pipe.
    func stop() async {
        let leftovers = inbox.withLockedValue { s -> [(fd: Int32, firstBytes: [UInt8])] in
            s.open = false
            defer { s.queue = [] }
            return s.queue
        }
        for l in leftovers { close(l.fd) }
        await thread.stop()
        if let l = listener { close(l) }
        doorbell.close()
    }

    /// Queues an accepted connection for the thread (any thread may call it).
    func adopt(fd: Int32, firstBytes: [UInt8]) {
        let queued = inbox.withLockedValue { s -> Bool in
            guard s.open else { return false }
            s.queue.append((fd, firstBytes))
            return true
        }
        guard queued else {
            close(fd)
            return
        }
        doorbell.ring()
    }

    /// A non-blocking listening TCP socket on `address`; returns it and its port.
    static func listen(_ address: STUNAddress) throws -> (fd: Int32, port: UInt16) {
        try TCPListenSocket.open(address, backlog: Limits.listenBacklog).get()
    }

    // MARK: the loop

    private func loop() {
        var nextTick = RelayServer.now().millis + Limits.tickMillis
        var lastTick = RelayServer.now().millis
        var bytesAtLastTick: UInt64 = 0
        var polls: [pollfd] = []
        var polled: [Connection?] = []
        let fixed = listener == nil ? 2 : 3
        publish()
        while true {
            polls.removeAll(keepingCapacity: true)
            polled.removeAll(keepingCapacity: true)
            polls.append(pollfd(fd: thread.stopDescriptor, events: Int16(POLLIN), revents: 0))
            polls.append(pollfd(fd: doorbell.descriptor, events: Int16(POLLIN), revents: 0))
            if let l = listener { polls.append(pollfd(fd: l, events: Int16(POLLIN), revents: 0)) }
            for c in connections.values {
                var events: Int32 = 0
                if !c.bound {
                    events |= Int32(POLLIN)
                } else if let p = c.partner, !c.readClosed, !p.hasOutbound {
                    events |= Int32(POLLIN)
                }
                if c.hasOutbound { events |= Int32(POLLOUT) }
                // A spliced side that waits for its partner to drain is left out (a negative fd is
                // ignored), so that its hang-up does not wake the loop over and over.
                polls.append(pollfd(fd: events == 0 && c.partner != nil ? -1 : c.fd, events: Int16(events), revents: 0))
                polled.append(c)
            }
            let now = RelayServer.now().millis
            let wait = nextTick > now ? Int32(clamping: nextTick - now) : 0
            let ready = poll(&polls, nfds_t(polls.count), wait)
            if ready < 0, errno != EINTR { break }
            if polls[0].revents != 0 { break }
            if ready > 0 {
                if polls[1].revents != 0 { takeAdopted() }
                if listener != nil, polls[2].revents != 0 { acceptAll() }
                for (i, c) in polled.enumerated() {
                    let revents = Int32(polls[fixed + i].revents)
                    guard let c, revents != 0, connections[c.id] === c else { continue }
                    if revents & Int32(POLLOUT) != 0 { flush(c) }
                    guard connections[c.id] === c else { continue }
                    if revents & Int32(POLLIN | POLLHUP | POLLERR) != 0 {
                        if c.bound { splice(from: c) } else { readBind(c) }
                    }
                }
            }
            let after = RelayServer.now().millis
            if after >= nextTick {
                tick(now: after)
                let forwarded = table.counters.forwardedBytes
                stats.bytesPerSecond = Double(forwarded - bytesAtLastTick) / (Double(max(1, after - lastTick)) / 1000)
                bytesAtLastTick = forwarded
                lastTick = after
                nextTick = after + Limits.tickMillis
            }
            publish()
        }
        for c in connections.values { close(c.fd) }
        connections.removeAll()
        publish()
    }

    private func publish() {
        stats.counters = table.counters
        stats.allocations = table.count
        stats.connections = connections.count
        let snapshot = stats
        published.withLockedValue { $0 = snapshot }
    }

    private func tick(now: UInt64) {
        for c in connections.values where !c.bound && now >= c.bindDeadline {
            stats.failedBinds += 1
            drop(c)
        }
        for id in table.tick(now: RelayTime(millis: now)) {
            if let c = connections[id] { dropPair(c) }
        }
    }

    // MARK: connections

    private func takeAdopted() {
        doorbell.silence()
        let adopted = inbox.withLockedValue { s -> [(fd: Int32, firstBytes: [UInt8])] in
            defer { s.queue = [] }
            return s.queue
        }
        for a in adopted { add(fd: a.fd, firstBytes: a.firstBytes) }
    }

    private func acceptAll() {
        guard let listener else { return }
        for _ in 0..<64 {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            add(fd: fd, firstBytes: [])
        }
    }

    private func add(fd: Int32, firstBytes: [UInt8]) {
        guard connections.count < Limits.maximumTCPConnections else {
            stats.refusedConnections += 1
            close(fd)
            return
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let c = Connection(id: nextID, fd: fd, bindDeadline: RelayServer.now().millis + Limits.tcpBindTimeoutSeconds * 1000)
        nextID += 1
        connections[c.id] = c
        let head = firstBytes.prefix(RelayLimits.bindBytes)
        c.bind = Array(head)
        c.early = Array(firstBytes.dropFirst(head.count))
        if c.bind.count == RelayLimits.bindBytes { completeBind(c) }
    }

    /// Reads what is missing of the bind (never more, so no payload is read before the partner is there).
    private func readBind(_ c: Connection) {
        let missing = RelayLimits.bindBytes - c.bind.count
        let n = scratch.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, missing, Int32(MSG_DONTWAIT)) }
        if n < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
        guard n > 0 else {
            stats.failedBinds += 1
            drop(c)
            return
        }
        c.bind += scratch[0..<n]
        if c.bind.count == RelayLimits.bindBytes { completeBind(c) }
    }

    private func completeBind(_ c: Connection) {
        let valid = c.bind.withUnsafeBytes { RelayMessage.isBind($0) }
        guard valid else {
            stats.failedBinds += 1
            drop(c)
            return
        }
        let binding: RelayBinding<Int>
        do {
            binding = try table.bind(Array(c.bind[5...]), from: c.id, now: RelayServer.now())
        } catch {
            stats.failedBinds += 1
            drop(c)
            return
        }
        c.bound = true
        var answer = c.bind
        answer.withUnsafeMutableBytes { RelayMessage.makeAnswer(inPlace: $0) }
        c.outbound = answer
        c.outboundOffset = 0
        if let pid = binding.partner, let p = connections[pid] {
            c.partner = p
            p.partner = c
            // Bytes either side sent with its bind go out after the other's answer.
            for (from, to) in [(c, p), (p, c)] where !from.early.isEmpty {
                if case .forward = table.account(from.early.count, from: from.id, now: RelayServer.now()) {
                    to.outbound += from.early
                }
                from.early = []
            }
            flush(p)
        }
        if connections[c.id] === c { flush(c) }
    }

    /// Reads one chunk from `c` and passes it to its partner (whose outbound is empty: `c` is only
    /// polled for input then).
    private func splice(from c: Connection) {
        guard let p = c.partner else {
            // Bound, partner not there yet: it is polled for nothing, so a hang-up or an error
            // brought us here.
            dropPair(c)
            return
        }
        guard !c.readClosed, !p.hasOutbound else { return }
        let n = scratch.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
            dropPair(c)
            return
        }
        if n == 0 {
            // Half-close: pass the FIN on once what is queued for the partner is written.
            c.readClosed = true
            p.shutdownPending = true
            flush(p)
            finishIfDone(c)
            return
        }
        switch table.account(n, from: c.id, now: RelayServer.now()) {
        case .forward:
            p.outbound.removeAll(keepingCapacity: true)
            p.outbound.append(contentsOf: scratch[0..<n])
            p.outboundOffset = 0
            flush(p)
        case .answer, .drop:
            dropPair(c)  // the allocation ended (bytes, lifetime)
        }
    }

    /// Writes what is queued for `c`; passes on a pending FIN once all is written. Statistics are
    /// published first, so a peer that got the bytes sees figures that count them.
    private func flush(_ c: Connection) {
        if c.hasOutbound { publish() }
        while c.hasOutbound {
            let n = c.outbound.withUnsafeBytes { raw in
                send(c.fd, raw.baseAddress! + c.outboundOffset, raw.count - c.outboundOffset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
                dropPair(c)
                return
            }
            c.outboundOffset += n
        }
        c.outbound.removeAll(keepingCapacity: true)
        c.outboundOffset = 0
        if c.shutdownPending, !c.writeShut {
            c.writeShut = true
            shutdown(c.fd, Int32(SHUT_WR))
        }
        finishIfDone(c)
    }

    /// Closes a spliced pair once both sides sent their FIN and everything was written.
    private func finishIfDone(_ c: Connection) {
        guard let p = c.partner, c.readClosed, p.readClosed, !c.hasOutbound, !p.hasOutbound else { return }
        dropPair(c)
    }

    /// Closes `c` and ends its allocation.
    private func drop(_ c: Connection) {
        guard connections.removeValue(forKey: c.id) != nil else { return }
        if c.bound { table.close(c.id) }
        publish()  // before the peer can see the close
        close(c.fd)
        c.partner = nil
    }

    /// Closes `c`, its partner (bound, maybe not spliced yet) and their allocation.
    private func dropPair(_ c: Connection) {
        let partner = c.partner ?? table.partner(of: c.id).flatMap { connections[$0] }
        drop(c)
        if let partner {
            partner.partner = nil
            drop(partner)
        }
    }
}
