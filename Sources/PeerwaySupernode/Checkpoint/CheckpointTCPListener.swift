#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPeerwayLinux
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN

/*
 CHECKPOINT's control channel over TCP, for peers that cannot use UDP (docs/traversal-protocol.md,
 "Control channel over TCP"). It lives on the checkpoint's own thread, in the same poll loop as
 the UDP socket, so the `CheckpointMachine` stays single-threaded:

     listener readable      -> accept (non-blocking, TCP_NODELAY), at most `maximumConnections`
     connection readable    -> first 4 bytes "PWRB"? hand the socket to `relayHandoff` (or close it)
                               otherwise frames `length(2) packet` -> machine.receive(packet, from: remote)
     machine sends to an address that is a connection's remote address
                            -> framed onto that connection's write queue (bounded), not the UDP socket
     connection writable    -> write the queue
     every tick             -> close connections silent for `idleTimeout` (or without a first frame
                               after `firstFrameTimeout`)

 A malformed frame (length 0 or over `maximumFrameBytes`) closes the connection (counted). A closed
 connection leaves nothing behind: its session expires as a UDP one would, or the peer reconnects
 and its next authenticated packet moves the session to the new connection. The machine sees each
 connection as the source address it came from, so the cookie exchange (never more bytes out than
 in before the source proved it can receive) and the per-source rate limits hold per connection as
 they do per UDP source. One caveat of routing by address: a UDP peer whose source is the same IP
 and port number as a TCP connection's remote end would have its answers sent over that connection
 (they fail to authenticate there, as any misdirected datagram would).
*/

/// Limits of the control channel over TCP.
public enum CheckpointTCPLimits {
    /// Connections held at once; a connection beyond it is accepted and closed at once.
    public static let maximumConnections = 1024
    /// Largest frame accepted (`ControlStreamFraming.maximumFrameBytes`).
    public static let maximumFrameBytes = ControlStreamFraming.maximumFrameBytes
    /// Bytes a connection's write queue may hold; a frame that would not fit is dropped (the
    /// machine retransmits, as after a lost datagram).
    public static let writeQueueLimitBytes = 64 * 1024
    /// A connection that delivered no frame this long is closed: longer than the longest
    /// keepalive interval times the misses before expiry, so its session would be gone anyway.
    public static let idleTimeout: TimeAmount = .seconds(Int64(ControlLimits.keepaliveSecondsRange.upperBound) * Int64(ControlLimits.expiryMisses))
    /// A connection that has not completed its first frame (or relay prefix) this long after it
    /// was accepted is closed, so idle sockets cannot hold the connection slots.
    public static let firstFrameTimeout: TimeAmount = .seconds(10)
    /// The listen backlog.
    static let listenBacklog: Int32 = 128
    /// Bytes read from a connection per readiness (the loop comes back for the rest).
    static let readChunkBytes = 4096
    /// Connections accepted per pass of the loop.
    static let acceptsPerPass = 64
}

/// What the control channel over TCP reports (part of `CheckpointStatistics`).
public struct CheckpointTCPStatistics: Sendable, Equatable {
    /// Connections accepted (including those refused over the limit and handed to the relay).
    public var accepted = 0
    /// Connections open now.
    public var open = 0
    /// Connections closed at once because `maximumConnections` were open.
    public var refused = 0
    /// Connections closed on a malformed frame.
    public var malformed = 0
    /// Connections closed for silence (`idleTimeout`, `firstFrameTimeout`).
    public var timedOut = 0
    /// Connections whose first bytes were a relay bind, handed to `relayHandoff` (or closed without one).
    public var relayHandoffs = 0
    /// Frames received and sent.
    public var framesIn = 0
    public var framesOut = 0
    /// Frames dropped because the connection's write queue was full.
    public var dropped = 0

    public init() {}
}

/// The TCP listener and its connections, used by the checkpoint's thread only.
final class CheckpointTCPConnections {
    typealias RelayHandoff = @Sendable (Int32, [UInt8]) -> Void

    private final class Connection {
        let fd: Int32
        let remote: STUNAddress
        let opened: NIODeadline
        var lastFrame: NIODeadline?
        /// The first bytes, until there are 4 of them and the connection is known to be control.
        var prefix: [UInt8] = []
        var isControl = false
        var deframer = ControlStreamDeframer()
        var output = ByteBuffer()
        /// Closed at the next reap (never closed while the loop may still hold its descriptor).
        var dead = false

        init(fd: Int32, remote: STUNAddress, opened: NIODeadline) {
            self.fd = fd
            self.remote = remote
            self.opened = opened
        }
    }

    let listener: Int32
    private let relayHandoff: RelayHandoff?
    private var connections: [Int32: Connection] = [:]
    private var byRemote: [STUNAddress: Connection] = [:]
    /// Descriptors of `pollDescriptors`' entries, in order, after the listener.
    private var polled: [Int32] = []
    private var scratch = [UInt8](repeating: 0, count: CheckpointTCPLimits.readChunkBytes)
    private(set) var statistics = CheckpointTCPStatistics()

    init(listener: Int32, relayHandoff: RelayHandoff?) {
        self.listener = listener
        self.relayHandoff = relayHandoff
    }

    /// Listens on `address`; port 0 on the UDP socket's IP takes the UDP port's number when it is
    /// free for TCP (so the address needs no `?tcp=`), else any free port.
    static func listen(_ address: STUNAddress, udp: STUNAddress) throws -> (fd: Int32, port: UInt16) {
        if address.port == 0, address.ip == udp.ip, let same = try? listen(address.with(port: udp.port)) { return same }
        return try listen(address)
    }

    /// Opens a non-blocking TCP socket listening on `address`; returns it and its port.
    static func listen(_ address: STUNAddress) throws -> (fd: Int32, port: UInt16) {
        switch TCPListenSocket.open(address, backlog: CheckpointTCPLimits.listenBacklog) {
        case .success(let listener): return listener
        case .failure(let error): throw CheckpointTCPError.listenFailed(address, errno: error.code.rawValue)
        }
    }

    // MARK: the loop's hooks

    /// Closes the connections marked dead, then appends the listener and every connection to
    /// `polls` (POLLOUT where a write queue is not empty).
    func pollDescriptors(into polls: inout [pollfd]) {
        reap()
        polls.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0))
        polled.removeAll(keepingCapacity: true)
        for (fd, connection) in connections {
            let events = connection.output.readableBytes > 0 ? POLLIN | POLLOUT : POLLIN
            polls.append(pollfd(fd: fd, events: Int16(events), revents: 0))
            polled.append(fd)
        }
    }

    /// Handles the readiness `poll` reported for the entries `pollDescriptors` appended (the
    /// listener first); each complete frame goes to `deliver` with the connection's remote address.
    func handle(_ polls: ArraySlice<pollfd>, now: NIODeadline, deliver: (ByteBuffer, STUNAddress) -> Void) {
        var entries = polls.dropFirst().makeIterator()
        for fd in polled {
            guard let entry = entries.next() else { break }
            guard entry.revents != 0, let connection = connections[fd], !connection.dead else { continue }
            if entry.revents & Int16(POLLOUT) != 0 { flush(connection) }
            if entry.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                read(connection, now: now, deliver: deliver)
            }
        }
        if let listening = polls.first, listening.revents != 0 { accept(now: now) }
        statistics.open = connections.count
    }

    /// Queues `bytes` framed on the connection whose remote address is `to`; false when there is
    /// none (the caller sends a datagram instead).
    func send(_ bytes: ByteBuffer, to: STUNAddress) -> Bool {
        guard let connection = byRemote[to] else { return false }
        guard !connection.dead else { return true }
        guard bytes.readableBytes > 0, bytes.readableBytes <= CheckpointTCPLimits.maximumFrameBytes,
              connection.output.readableBytes + ControlStreamFraming.lengthBytes + bytes.readableBytes
                <= CheckpointTCPLimits.writeQueueLimitBytes else {
            statistics.dropped += 1
            return true
        }
        ControlStreamFraming.write(bytes, into: &connection.output)
        statistics.framesOut += 1
        flush(connection)
        return true
    }

    /// Closes connections silent for too long.
    func expire(now: NIODeadline) {
        for connection in connections.values where !connection.dead {
            let silentSince = connection.lastFrame ?? connection.opened
            let limit = connection.lastFrame == nil ? CheckpointTCPLimits.firstFrameTimeout : CheckpointTCPLimits.idleTimeout
            if now - silentSince > limit {
                statistics.timedOut += 1
                retire(connection)
            }
        }
    }

    /// Writes what each connection still has queued (once, without waiting) and closes them all
    /// and the listener.
    func closeAll() {
        for connection in connections.values where !connection.dead { flush(connection) }
        for connection in connections.values { close(connection.fd) }
        connections.removeAll()
        byRemote.removeAll()
        statistics.open = 0
        close(listener)
    }

    // MARK: connections

    private func accept(now: NIODeadline) {
        for _ in 0..<CheckpointTCPLimits.acceptsPerPass {
            var slot = [UInt8](repeating: 0, count: Int(CPEERWAY_ADDRESS_SLOT))
            var length = socklen_t(CPEERWAY_ADDRESS_SLOT)
            let fd = slot.withUnsafeMutableBytes { raw -> Int32 in
                #if canImport(Glibc)
                Glibc.accept(listener, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
                #else
                Darwin.accept(listener, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
                #endif
            }
            guard fd >= 0 else { return }
            statistics.accepted += 1
            guard connections.count < CheckpointTCPLimits.maximumConnections, let remote = STUNSocket.read(slot) else {
                statistics.refused += 1
                close(fd)
                continue
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let connection = Connection(fd: fd, remote: remote, opened: now)
            connections[fd] = connection
            // A newer connection from the same address (a wildcard listener) takes its answers.
            byRemote[remote] = connection
        }
    }

    private func read(_ connection: Connection, now: NIODeadline, deliver: (ByteBuffer, STUNAddress) -> Void) {
        let fd = connection.fd
        // Until the kind of stream is known, read no further than its first 4 bytes: a relay bind
        // gets its socket with nothing else consumed.
        let want = connection.isControl ? scratch.count : ControlStreamFraming.relayBindPrefix.count - connection.prefix.count
        let got = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, want, 0) }
        if got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            retire(connection)
            return
        }
        guard got > 0 else { return }
        if !connection.isControl {
            connection.prefix += scratch[0..<got]
            guard connection.prefix.count == ControlStreamFraming.relayBindPrefix.count else { return }
            if connection.prefix == ControlStreamFraming.relayBindPrefix {
                handOff(connection)
                return
            }
            connection.isControl = true
            connection.prefix.withUnsafeBytes { connection.deframer.append($0) }
            connection.prefix = []
        } else {
            scratch.withUnsafeBytes { connection.deframer.append(UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
        }
        while !connection.dead {
            let frame: ByteBuffer?
            do { frame = try connection.deframer.next() } catch {
                statistics.malformed += 1
                retire(connection)
                return
            }
            guard let frame else { return }
            statistics.framesIn += 1
            connection.lastFrame = now
            deliver(frame, connection.remote)
        }
    }

    /// The connection is a relay bind: it leaves this table with its descriptor open.
    private func handOff(_ connection: Connection) {
        statistics.relayHandoffs += 1
        connections[connection.fd] = nil
        if byRemote[connection.remote] === connection { byRemote[connection.remote] = nil }
        if let relayHandoff {
            relayHandoff(connection.fd, connection.prefix)
        } else {
            close(connection.fd)
        }
    }

    /// Writes as much of the queue as the socket takes now.
    private func flush(_ connection: Connection) {
        while connection.output.readableBytes > 0 {
            let sent = connection.output.withUnsafeReadableBytes { raw -> Int in
                #if canImport(Glibc)
                Glibc.send(connection.fd, raw.baseAddress!, raw.count, Int32(MSG_NOSIGNAL))
                #else
                Darwin.send(connection.fd, raw.baseAddress!, raw.count, 0)
                #endif
            }
            if sent > 0 {
                connection.output.moveReaderIndex(forwardBy: sent)
                continue
            }
            if sent < 0, errno == EINTR { continue }
            if sent < 0, errno == EAGAIN || errno == EWOULDBLOCK { break }
            retire(connection)
            return
        }
        if connection.output.readableBytes == 0 { connection.output.clear() }
    }

    /// Marks the connection closed: no more answers go to it; its descriptor closes at the next reap.
    private func retire(_ connection: Connection) {
        guard !connection.dead else { return }
        connection.dead = true
        connection.output.clear()
        if byRemote[connection.remote] === connection { byRemote[connection.remote] = nil }
    }

    private func reap() {
        for (fd, connection) in connections where connection.dead {
            close(fd)
            connections[fd] = nil
        }
        statistics.open = connections.count
    }
}

/// Why the control channel over TCP could not start.
public enum CheckpointTCPError: Error, CustomStringConvertible {
    case listenFailed(STUNAddress, errno: Int32)

    public var description: String {
        switch self {
        case .listenFailed(let address, let e):
            return "cannot listen for the control channel over TCP on \(address): \(String(cString: strerror(e)))"
        }
    }
}
