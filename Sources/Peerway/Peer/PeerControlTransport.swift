import NIOCore
import NIOPosix
import PeerwayCheckpoint
import PeerwaySTUN

/*
 How a peer's control packets reach each supernode: UDP, or TCP when UDP gets no answer
 (docs/traversal-protocol.md, "Control channel over TCP"). The machine does not know: it sends to a
 supernode index and receives from one; this file picks the transport per supernode.

   a handshake begins (a hello without a cookie)   -> undecided: packets go over UDP
   undecided for `tcpFallbackDelay` without answer -> also open TCP to the supernode's TCP port and
                                                      send the packets framed there too (the latest
                                                      ones, queued meanwhile, are replayed on connect)
   the first answer, on either transport           -> that transport, for the rest of the session;
                                                      the other one is ignored (a losing TCP closes)
   TCP chosen and the connection drops             -> reconnect with backoff; packets meanwhile are
                                                      queued (bounded) and sent on reconnect
   a new handshake at that supernode               -> undecided again, an open TCP connection
                                                      racing UDP at once; at another supernode
                                                      (failover) -> the old one's TCP closes
 With an HTTP proxy for the supernode's address (`PeerOptions.proxy`), TCP goes to the proxy and
 `CONNECT`s to the supernode's TCP port first (`HTTPConnectHandler`); the connection counts as up
 once the proxy answered 2xx.
*/

extension PeerOptions {
    /// Default `tcpFallbackDelay`: a second without any answer over UDP.
    public static let defaultTCPFallbackDelay: TimeAmount = .seconds(1)
}

/// Limits of the control channel's TCP fallback.
enum PeerControlLimits {
    /// First wait before reconnecting a dropped (or refused) TCP connection; doubled per failure.
    static let tcpReconnectInitialDelay: TimeAmount = .milliseconds(500)
    /// Longest wait between reconnection attempts.
    static let tcpReconnectMaximumDelay: TimeAmount = .seconds(8)
    /// A TCP connection attempt fails after this long.
    static let tcpConnectTimeout: TimeAmount = .seconds(5)
    /// Packets kept for a TCP connection that is not up yet (the oldest go first).
    static let maximumQueuedPackets = 8
}

/// The per-supernode choice between UDP and TCP (see the top of this file). Used on the driver's
/// event loop only, which makes the `@unchecked Sendable` sound.
final class PeerControlTransport: @unchecked Sendable {
    enum Path: Equatable {
        case undecided, udp, tcp
    }

    private final class Link {
        let tcpAddress: SocketAddress
        /// The proxy TCP goes through, nil for none.
        let proxy: HTTPProxy?
        var path: Path = .undecided
        /// Set once TCP is wanted (the fallback fired, or TCP won): keep a connection up.
        var wantsTCP = false
        var channel: (any Channel)?
        var connecting = false
        /// Tells callbacks of an old connection from the current one's.
        var generation = 0
        var queue: [ByteBuffer] = []
        var fallbackTimer: Scheduled<Void>?
        var reconnectTimer: Scheduled<Void>?
        var reconnectDelay = PeerControlLimits.tcpReconnectInitialDelay

        init(tcpAddress: SocketAddress, proxy: ProxySetting) {
            self.tcpAddress = tcpAddress
            self.proxy = proxy.proxy(for: tcpAddress.ipAddress ?? "")
        }

        /// `IP:PORT` of the supernode's TCP port, as `CONNECT` names it.
        var target: String { STUNAddress.hostPort(tcpAddress.ipAddress ?? "", tcpAddress.port ?? 0) }
    }

    private let eventLoop: any EventLoop
    private let fallbackDelay: TimeAmount?
    private let proxy: ProxySetting
    private var links: [Link]
    private var closed = false
    /// Sends a datagram and takes what arrives over TCP; weak, the driver owns this.
    weak var driver: PeerDriver?
    /// TCP connections opened so far (tests, diagnostics).
    private(set) var tcpConnectionsOpened = 0

    /// - Parameters:
    ///   - fallbackDelay: `nil`: UDP only.
    ///   - proxy: the HTTP proxy TCP connections go through (per supernode address).
    init(eventLoop: any EventLoop, tcpAddresses: [SocketAddress], fallbackDelay: TimeAmount?, proxy: ProxySetting = .none) {
        self.eventLoop = eventLoop
        self.fallbackDelay = fallbackDelay
        self.proxy = proxy
        self.links = tcpAddresses.map { Link(tcpAddress: $0, proxy: proxy) }
    }

    /// Adds a supernode (learned from a registration): it gets the next index.
    func addSupernode(tcpAddress: SocketAddress) {
        eventLoop.assertInEventLoop()
        links.append(Link(tcpAddress: tcpAddress, proxy: proxy))
    }

    /// The transport chosen for supernode `index`.
    func path(_ index: Int) -> Path { links[index].path }

    /// Sends a packet of the machine to supernode `index`.
    func send(_ bytes: ByteBuffer, to index: Int) {
        eventLoop.assertInEventLoop()
        guard !closed else { return }
        let link = links[index]
        if Self.startsHandshake(bytes) { handshakeBegins(at: index) }
        switch link.path {
        case .udp:
            driver?.sendDatagram(bytes, to: index)
        case .tcp:
            write(bytes, on: link)
        case .undecided:
            driver?.sendDatagram(bytes, to: index)
            if link.wantsTCP || fallbackDelay != nil { write(bytes, on: link) }
            if !link.wantsTCP, link.fallbackTimer == nil, let delay = fallbackDelay {
                link.fallbackTimer = eventLoop.scheduleTask(in: delay) { [self] in
                    let link = links[index]
                    link.fallbackTimer = nil
                    guard !closed, link.path == .undecided, !link.wantsTCP else { return }
                    link.wantsTCP = true
                    connect(index)
                }
            }
        }
    }

    /// A datagram came over UDP from supernode `index`: whether to hand it to the machine.
    func datagramArrived(from index: Int) -> Bool {
        eventLoop.assertInEventLoop()
        let link = links[index]
        switch link.path {
        case .udp: return true
        case .tcp: return false
        case .undecided:
            link.path = .udp
            link.wantsTCP = false
            stopTCP(link)
            return true
        }
    }

    /// Closes every TCP connection and stops the timers.
    func close() {
        eventLoop.assertInEventLoop()
        guard !closed else { return }
        closed = true
        for link in links {
            link.wantsTCP = false
            stopTCP(link)
        }
    }

    // MARK: TCP

    /// A hello without a cookie opens a handshake.
    static func startsHandshake(_ bytes: ByteBuffer) -> Bool {
        guard let header = bytes.getBytes(at: bytes.readerIndex, length: ControlLimits.headerBytes) else { return false }
        return header[0] == ControlLimits.version && header[1] == ControlPacket.Kind.hello.rawValue && header[2] & 1 == 0
    }

    private func handshakeBegins(at index: Int) {
        for (other, link) in links.enumerated() where other != index {
            // The machine talks to one supernode at a time: the others are let go.
            link.path = .undecided
            link.wantsTCP = false
            stopTCP(link)
        }
        let link = links[index]
        // Earlier handshake packets are stale: only the newest hello is replayed on a connect.
        link.queue.removeAll()
        if link.path != .undecided {
            // A new session races both transports again; TCP at once if it carried the last one.
            link.path = .undecided
        }
    }

    private func write(_ bytes: ByteBuffer, on link: Link) {
        guard let channel = link.channel else {
            if link.queue.count >= PeerControlLimits.maximumQueuedPackets { link.queue.removeFirst() }
            link.queue.append(bytes)
            return
        }
        guard bytes.readableBytes > 0, bytes.readableBytes <= ControlStreamFraming.maximumFrameBytes else { return }
        // A lost write is a lost packet: the machine retransmits.
        channel.writeAndFlush(ControlStreamFraming.framed(bytes), promise: nil)
    }

    private func connect(_ index: Int) {
        let link = links[index]
        guard !closed, link.wantsTCP, link.channel == nil, !link.connecting else { return }
        link.reconnectTimer?.cancel()
        link.reconnectTimer = nil
        link.connecting = true
        link.generation += 1
        let generation = link.generation
        tcpConnectionsOpened += 1
        let proxy = link.proxy, target = link.target
        let established = eventLoop.makePromise(of: Void.self)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(PeerControlLimits.tcpConnectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let proxy {
                        try channel.pipeline.syncOperations.addHandler(HTTPConnectHandler(target: target, proxy: proxy, established: established))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        PeerControlStreamHandler(transport: self, index: index, generation: generation))
                }
            }
        let connected = proxy.map { bootstrap.connect(host: $0.host, port: Int($0.port)) } ?? bootstrap.connect(to: link.tcpAddress)
        // Through a proxy the connection is up once it answered CONNECT.
        connected
            .flatMap { channel in
                if proxy == nil { established.succeed(()) }
                return established.futureResult.map { channel }.flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
            .whenComplete { [self] result in
                if case .failure(let error) = result { established.fail(error) }
                let link = links[index]
                guard generation == link.generation, !closed, link.wantsTCP else {
                    if case .success(let channel) = result { channel.close(promise: nil) }
                    return
                }
                link.connecting = false
                switch result {
                case .success(let channel):
                    link.channel = channel
                    link.reconnectDelay = PeerControlLimits.tcpReconnectInitialDelay
                    let queued = link.queue
                    link.queue.removeAll()
                    for bytes in queued { write(bytes, on: link) }
                case .failure:
                    reconnectLater(index)
                }
            }
    }

    private func reconnectLater(_ index: Int) {
        let link = links[index]
        guard !closed, link.wantsTCP, link.reconnectTimer == nil else { return }
        let delay = link.reconnectDelay
        link.reconnectDelay = min(link.reconnectDelay * 2, PeerControlLimits.tcpReconnectMaximumDelay)
        link.reconnectTimer = eventLoop.scheduleTask(in: delay) { [self] in
            links[index].reconnectTimer = nil
            connect(index)
        }
    }

    private func stopTCP(_ link: Link) {
        link.fallbackTimer?.cancel()
        link.fallbackTimer = nil
        link.reconnectTimer?.cancel()
        link.reconnectTimer = nil
        link.reconnectDelay = PeerControlLimits.tcpReconnectInitialDelay
        link.queue.removeAll()
        link.generation += 1
        link.connecting = false
        link.channel?.close(promise: nil)
        link.channel = nil
    }

    // MARK: from the connection's handler

    fileprivate func frameArrived(_ frame: ByteBuffer, from index: Int, generation: Int) {
        eventLoop.assertInEventLoop()
        let link = links[index]
        guard !closed, generation == link.generation else { return }
        switch link.path {
        case .udp: return
        case .undecided:
            link.path = .tcp
            link.fallbackTimer?.cancel()
            link.fallbackTimer = nil
        case .tcp: break
        }
        driver?.controlReceived(frame, from: index)
    }

    fileprivate func connectionClosed(_ index: Int, generation: Int) {
        eventLoop.assertInEventLoop()
        let link = links[index]
        guard generation == link.generation else { return }
        link.channel = nil
        link.connecting = false
        reconnectLater(index)
    }
}

/// Splits a control stream from a supernode into packets for the transport.
final class PeerControlStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let transport: PeerControlTransport
    private let index: Int
    private let generation: Int
    private var deframer = ControlStreamDeframer()

    init(transport: PeerControlTransport, index: Int, generation: Int) {
        self.transport = transport
        self.index = index
        self.generation = generation
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deframer.append(unwrapInboundIn(data))
        do {
            while let frame = try deframer.next() {
                transport.frameArrived(frame, from: index, generation: generation)
            }
        } catch {
            // The framing is lost: drop the connection (the transport reconnects).
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        transport.connectionClosed(index, generation: generation)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
