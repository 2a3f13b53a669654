import Foundation
import PeerwayCheckpoint
import PeerwaySTUN
import PeerwayTunnel
#if canImport(Glibc)
import Glibc
#endif

/// A tunnel to another peer: the result of `Peer.connect` or `Peer.accept`.
///
/// `fileDescriptor` is an ordinary connected socket for the application: `SOCK_DGRAM` for a UDP
/// tunnel (one `send` is one datagram at the other end), `SOCK_STREAM` for a TCP tunnel. Use it
/// with any socket API (read/write, send/recv, poll, a NIO channel). When the tunnel is encrypted
/// (the default) it is one end of a socket pair and the library seals and opens every record on a
/// thread of its own; the network path under it can change without the application noticing.
/// When raw, it is the network socket itself (connected to the other peer, or to the relay).
///
/// Once made, a tunnel depends on nothing but the two NATs (or the relay): stopping the peer or
/// losing every supernode does not close it. `close()` does.
public final class Tunnel: @unchecked Sendable, CustomStringConvertible {
    /// The other peer.
    public let peer: PeerID
    public let transport: TunnelTransport
    /// From the call to `connect` (or `accept`) to the first verified path.
    public let setupTime: Duration
    /// Whether payload is end-to-end encrypted.
    public let isEncrypted: Bool
    /// Which side this is.
    public let role: TraversalRole
    /// The application's socket (see the type's comment).
    public let fileDescriptor: Int32
    /// The tunnel's path changes (relayed -> direct, direct -> relayed, a new address of the
    /// other side), newest kept when nobody reads them.
    public let pathEvents: AsyncStream<TunnelPathEvent>
    private let pathContinuation: AsyncStream<TunnelPathEvent>.Continuation
    private var pump: TunnelPump?
    private var udpPump: UDPTunnelPump?
    private let closed = NSLock()
    private var isClosed = false
    /// The router's port mapping this tunnel was reached through (deleted when it closes).
    private var portMap: PortMapSession?
    /// The current path (guarded by `closed`).
    private var current: (path: TunnelPath, method: TraversalMethod, remote: PeerEndpoint, rtt: Duration?)
    private var directAfter: Duration?
    private let started = ContinuousClock.now
    /// Relay first: the path and method the tunnel settled on (direct, or the relay given up on),
    /// and who wants to hear it (guarded by `closed`).
    private var settled: (TunnelPath, TraversalMethod)?
    private var settledListener: (@Sendable (TunnelPath, TraversalMethod) -> Void)?
    /// A relay-first tunnel still looking for its direct path (a `path` event follows: the move,
    /// or `directAbandoned`).
    public var isUpgrading: Bool {
        closed.lock()
        defer { closed.unlock() }
        return settled == nil
    }

    /// Calls `body` once the tunnel's first path decision is final: at once for a tunnel that
    /// started direct or decided once, later for a relay-first one.
    func whenSettled(_ body: @escaping @Sendable (TunnelPath, TraversalMethod) -> Void) {
        closed.lock()
        guard let settled else {
            settledListener = body
            closed.unlock()
            return
        }
        closed.unlock()
        body(settled.0, settled.1)
    }

    /// Direct between the two peers, or through a relay, now (a relay-first tunnel moves).
    public var path: TunnelPath { state.path }
    /// The technique that found the current path.
    public var method: TraversalMethod { state.method }
    /// Where this side's packets go now: the other peer's address, or the relay's.
    public var remote: PeerEndpoint { state.remote }
    /// The current path's measured round trip, when known.
    public var roundTrip: Duration? { state.rtt }
    /// From the call to `connect` (or `accept`) to the move onto a direct path, when it moved.
    public var timeToDirect: Duration? {
        closed.lock()
        defer { closed.unlock() }
        return directAfter
    }

    private var state: (path: TunnelPath, method: TraversalMethod, remote: PeerEndpoint, rtt: Duration?) {
        closed.lock()
        defer { closed.unlock() }
        return current
    }

    init(peer: PeerID, transport: TunnelTransport, path: TunnelPath, method: TraversalMethod, setupTime: Duration,
         isEncrypted: Bool, role: TraversalRole, remote: PeerEndpoint, fileDescriptor: Int32, pump: TunnelPump?) {
        self.peer = peer
        self.transport = transport
        self.setupTime = setupTime
        self.isEncrypted = isEncrypted
        self.role = role
        self.fileDescriptor = fileDescriptor
        self.pump = pump
        current = (path, method, remote, nil)
        settled = (path, method)
        (pathEvents, pathContinuation) = AsyncStream<TunnelPathEvent>.makeStream(bufferingPolicy: .bufferingNewest(Self.pathEventBuffer))
        if path == .direct { directAfter = setupTime }
    }

    /// Records the settled path and tells the listener (outside the lock, on its own task).
    private func settle(_ path: TunnelPath, _ method: TraversalMethod) {
        settled = (path, method)
        if let listener = settledListener {
            settledListener = nil
            Task { listener(path, method) }
        }
    }

    /// Datagrams the encrypted UDP tunnels of this process sent to the network so far (records,
    /// path checks, keepalives, relay binds): what tunnels cost when idle (`peerway bench tunnels`).
    public static var datagramsSent: Int { UDPTunnelPump.sentCount.withLockedValue { $0 } }

    /// Path events kept for an application that does not read them.
    public static let pathEventBuffer = 32

    /// The path machine moved the tunnel (on the pump's thread).
    private func moved(_ action: TunnelPathMachine.Action) {
        let event: TunnelPathEvent
        closed.lock()
        switch action {
        case .use(let pair, let path, let method, let rtt):
            let was = current
            if path == .direct && settled == nil { settle(path, method) }
            current = (path, method, pair.remote, rtt.map { .milliseconds($0) })
            let kind: TunnelPathEvent.Change = path == was.path ? .newAddress : (path == .direct ? .direct : .relayed)
            if path == .direct && directAfter == nil { directAfter = setupTime + (ContinuousClock.now - started) }
            event = TunnelPathEvent(change: kind, path: path, method: method, remote: pair.remote, roundTrip: current.rtt)
        case .directAbandoned(let why):
            if settled == nil { settle(current.path, current.method) }
            event = TunnelPathEvent(change: .directAbandoned(why), path: current.path, method: current.method,
                                    remote: current.remote, roundTrip: current.rtt)
        default:
            closed.unlock()
            return
        }
        closed.unlock()
        pathContinuation.yield(event)
    }

    deinit { close() }

    /// Milliseconds `setupTime` took.
    public var setupMilliseconds: Int {
        Int(setupTime.components.seconds * 1000 + setupTime.components.attoseconds / 1_000_000_000_000_000)
    }

    public var description: String {
        let now = state
        return "\(transport) tunnel to \(peer), \(now.path) by \(now.method), \(setupMilliseconds) ms, \(isEncrypted ? "encrypted" : "raw")"
    }

    /// Closes the application's socket and the network path (an encrypted tunnel tells the other
    /// side it closed). Idempotent.
    public func close() {
        closed.lock()
        defer { closed.unlock() }
        guard !isClosed else { return }
        isClosed = true
        portMap?.close()
        portMap = nil
        pump?.stop()
        udpPump?.stop()
        pathContinuation.finish()
        // Wakes every reader of this socket (also through a dup) before the number is freed.
        shutdown(fileDescriptor, Int32(SHUT_RDWR))
        Glibc.close(fileDescriptor)
    }

    /// Tells the other side another address of this side to probe (a port mapping made after the
    /// offer): encrypted UDP tunnels only; ignored by others.
    func advertise(_ address: PeerEndpoint) {
        closed.lock()
        defer { closed.unlock() }
        guard !isClosed else { return }
        udpPump?.advertise(address)
    }

    /// Keeps `session` (renewing its mapping) until the tunnel closes.
    func keep(_ session: PortMapSession) {
        closed.lock()
        defer { closed.unlock() }
        if isClosed { session.close() } else { portMap = session }
    }

    // MARK: making tunnels

    /// A UDP tunnel on the traversal's outcome. Encrypted, it runs on every socket of the
    /// traversal under a `TunnelPathMachine` (relay first: it moves to a direct path found later,
    /// and between paths whenever one stops); raw, it is the winning socket itself, connected.
    /// `stunServer`: where the tunnel learns its address anew after a network change.
    static func udp(outcome: UDPTraversal.Outcome, peer: PeerID, role: TraversalRole, keys: TunnelKeys, encrypted: Bool,
                    setupTime: Duration, stunServer: STUNAddress?) throws(PeerError) -> Tunnel {
        guard encrypted else {
            do { try outcome.socket.connect(to: outcome.remote) } catch { throw .traversalFailed("cannot connect the tunnel socket: \(error)") }
            outcome.socket.makeBlocking()
            return Tunnel(peer: peer, transport: .udp, path: outcome.path, method: outcome.method, setupTime: setupTime,
                          isEncrypted: false, role: role, remote: outcome.remote, fileDescriptor: outcome.socket.fd, pump: nil)
        }
        let (app, inner) = try socketPair(type: SOCK_DGRAM)
        let winner = outcome.sockets.firstIndex { $0.fd == outcome.socket.fd } ?? 0
        let machine = TunnelPathMachine(traversal: outcome.machine, established: .init(socket: winner, remote: outcome.remote),
                                        method: outcome.method, path: outcome.path, relayBound: outcome.machine.isRelayBound,
                                        nowMillis: DispatchTime.now().uptimeNanoseconds / 1_000_000, seed: UInt64.random(in: 1...UInt64.max))
        let tunnel = Tunnel(peer: peer, transport: .udp, path: outcome.path, method: outcome.method, setupTime: setupTime,
                            isEncrypted: true, role: role, remote: outcome.remote, fileDescriptor: app, pump: nil)
        if !outcome.machine.isFinished { tunnel.settled = nil }
        tunnel.current.rtt = outcome.machine.roundTripMillis(of: .init(socket: winner, remote: outcome.remote)).map { .milliseconds($0) }
        let pump = UDPTunnelPump(sockets: outcome.sockets, app: inner, keys: keys, machine: machine, relayToken: outcome.relayToken,
                                 stunServer: stunServer) {
            [weak tunnel] action in tunnel?.moved(action)
        }
        tunnel.udpPump = pump
        pump.start()
        return tunnel
    }

    /// A tunnel on a TCP connection (direct, or spliced by the relay). `datagrams`: a UDP tunnel
    /// carried over it, one length-prefixed record per datagram.
    static func tcp(socket: TunnelSocket, remote: PeerEndpoint, peer: PeerID, role: TraversalRole, keys: TunnelKeys, path: TunnelPath,
                    method: TraversalMethod, encrypted: Bool, datagrams: Bool, setupTime: Duration) throws(PeerError) -> Tunnel {
        let transport: TunnelTransport = datagrams ? .udp : .tcp
        if !encrypted && !datagrams {
            return Tunnel(peer: peer, transport: .tcp, path: path, method: method, setupTime: setupTime, isEncrypted: false,
                          role: role, remote: remote, fileDescriptor: socket.fd, pump: nil)
        }
        let (app, inner) = try socketPair(type: datagrams ? SOCK_DGRAM : SOCK_STREAM)
        let mode: TunnelPump.Mode = datagrams ? (encrypted ? .datagramsOverStream : .rawDatagramsOverStream) : .stream
        let pump = TunnelPump(mode: mode, network: socket, app: inner, keys: keys)
        pump.start()
        return Tunnel(peer: peer, transport: transport, path: path, method: method, setupTime: setupTime, isEncrypted: encrypted,
                      role: role, remote: remote, fileDescriptor: app, pump: pump)
    }

    private static func socketPair(type: __socket_type) throws(PeerError) -> (Int32, TunnelSocket) {
        var fds: [Int32] = [0, 0]
        let rc = fds.withUnsafeMutableBufferPointer { socketpair(AF_UNIX, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, $0.baseAddress) }
        guard rc == 0 else { throw .traversalFailed("socketpair failed: \(String(cString: strerror(errno)))") }
        // Room for bursts between the application and the pump.
        var size: Int32 = 4 << 20
        for fd in fds { setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        return (fds[0], TunnelSocket(fd: fds[1]))
    }
}
