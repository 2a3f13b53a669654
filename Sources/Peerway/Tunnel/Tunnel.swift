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
    /// Direct between the two peers, or through a relay.
    public let path: TunnelPath
    /// The technique that found the path.
    public let method: TraversalMethod
    /// From the call to `connect` (or `accept`) to the verified path.
    public let setupTime: Duration
    /// Whether payload is end-to-end encrypted.
    public let isEncrypted: Bool
    /// Which side this is.
    public let role: TraversalRole
    /// Where this side's packets go: the other peer's address, or the relay's.
    public let remote: PeerEndpoint
    /// The application's socket (see the type's comment).
    public let fileDescriptor: Int32
    private let pump: TunnelPump?
    private let closed = NSLock()
    private var isClosed = false
    /// The router's port mapping this tunnel was reached through (deleted when it closes).
    private var portMap: PortMapSession?

    init(peer: PeerID, transport: TunnelTransport, path: TunnelPath, method: TraversalMethod, setupTime: Duration,
         isEncrypted: Bool, role: TraversalRole, remote: PeerEndpoint, fileDescriptor: Int32, pump: TunnelPump?) {
        self.peer = peer
        self.transport = transport
        self.path = path
        self.method = method
        self.setupTime = setupTime
        self.isEncrypted = isEncrypted
        self.role = role
        self.remote = remote
        self.fileDescriptor = fileDescriptor
        self.pump = pump
    }

    deinit { close() }

    /// Milliseconds `setupTime` took.
    public var setupMilliseconds: Int {
        Int(setupTime.components.seconds * 1000 + setupTime.components.attoseconds / 1_000_000_000_000_000)
    }

    public var description: String {
        "\(transport) tunnel to \(peer), \(path) by \(method), \(setupMilliseconds) ms, \(isEncrypted ? "encrypted" : "raw")"
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
        if let pump {
            pump.stop()
        }
        // Wakes every reader of this socket (also through a dup) before the number is freed.
        shutdown(fileDescriptor, Int32(SHUT_RDWR))
        Glibc.close(fileDescriptor)
    }

    /// Keeps `session` (renewing its mapping) until the tunnel closes.
    func keep(_ session: PortMapSession) {
        closed.lock()
        defer { closed.unlock() }
        if isClosed { session.close() } else { portMap = session }
    }

    // MARK: making tunnels

    /// A UDP tunnel on the socket that won the traversal.
    static func udp(outcome: UDPTraversal.Outcome, peer: PeerID, role: TraversalRole, keys: TunnelKeys, encrypted: Bool,
                    setupTime: Duration) throws(PeerError) -> Tunnel {
        do { try outcome.socket.connect(to: outcome.remote) } catch { throw .traversalFailed("cannot connect the tunnel socket: \(error)") }
        guard encrypted else {
            outcome.socket.makeBlocking()
            return Tunnel(peer: peer, transport: .udp, path: outcome.path, method: outcome.method, setupTime: setupTime,
                          isEncrypted: false, role: role, remote: outcome.remote, fileDescriptor: outcome.socket.fd, pump: nil)
        }
        let (app, inner) = try socketPair(type: SOCK_DGRAM)
        let pump = TunnelPump(mode: .datagram, network: outcome.socket, app: inner, keys: keys)
        pump.start()
        return Tunnel(peer: peer, transport: .udp, path: outcome.path, method: outcome.method, setupTime: setupTime,
                      isEncrypted: true, role: role, remote: outcome.remote, fileDescriptor: app, pump: pump)
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
