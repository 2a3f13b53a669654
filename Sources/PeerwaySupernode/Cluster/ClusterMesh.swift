import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PeerwayCheckpoint
import PeerwaySTUN

/*
 The cluster mesh: one authenticated TCP link (`ClusterLink`, see ClusterLinkLimits for the
 protocol) between every pair of supernodes listed as members of the network.

     setMembers(list)      -> for each member whose key is greater than ours (lexicographically):
                              dial it unless a link or a dial exists (exactly one link per pair:
                              the smaller key dials, the greater accepts)
                           -> a member whose address changed and has no up link is dialed at once
                           -> links and dials to keys no longer listed are closed
     inbound connection    -> allowed only from a listed key smaller than ours (checked from the
                              hello, before any key agreement, and again once established)
     handshake completed   -> onLinkChange(peer, up: true); a previous link to the same key (a
                              restarted peer whose old connection is not yet noticed dead) is
                              reported down first and closed
     link closed (any cause) -> onLinkChange(peer, up: false) once; the dialer redials while the
                              member is listed, after ClusterLinkLimits.redialInitialDelay doubling
                              up to redialMaximumDelay (back to the initial delay once a link is up)

 Every connection lives on the mesh's one event loop, so the state below is touched by that loop
 and, briefly under its lock, by the public methods called from any thread.
*/

/// The mesh of authenticated TCP links between the supernodes of one network (issue 12).
///
/// Members come from the membership table (`setMembers`); only listed keys may open a link, so
/// only members can inject traffic. Payloads are delivered in order per link through `onReceive`.
public final class ClusterMesh: Sendable {
    /// This supernode's static key; its public half identifies it to the other members.
    public let key: SupernodeKey
    /// Our static public key (32 bytes).
    public let localKey: [UInt8]
    private let listen: STUNAddress
    private let logger: Logger
    private let loop: any EventLoop
    private let onReceive: @Sendable ([UInt8], ByteBuffer) -> Void
    private let onLinkChange: @Sendable ([UInt8], Bool) -> Void
    private let onStranger: (@Sendable ([UInt8]) -> Void)?
    private let state = NIOLockedValueBox(State())

    private struct Dial {
        var address: String
        var delay = ClusterLinkLimits.redialInitialDelay
        var timer: Scheduled<Void>?
        /// A connect or a connection to this member is under way (or up).
        var inFlight = false
        /// Counts attempts, so the outcome of an abandoned one is ignored.
        var generation = 0
        var connection: ClusterMeshConnection?
    }

    private struct State {
        var started = false
        var stopped = false
        var server: (any Channel)?
        /// Listed members (not us): key -> "host:port".
        var members: [[UInt8]: String] = [:]
        /// Established links.
        var up: [[UInt8]: ClusterMeshConnection] = [:]
        /// Members we dial (keys greater than ours).
        var dials: [[UInt8]: Dial] = [:]
        /// Every open connection, up or not.
        var open: [ObjectIdentifier: ClusterMeshConnection] = [:]
    }

    /// A mesh listening on `listen` (port 0 picks a free one).
    ///
    /// - Parameters:
    ///   - onReceive: each payload from a peer (its static key), in order per link, on the mesh's
    ///     event loop: hand off quickly.
    ///   - onLinkChange: `true` once a link's handshake completed, `false` once when an up link
    ///     closed for any reason (also on `stop()`).
    ///   - onStranger: a supernode not (yet) listed dialed in and was refused: the owner may read
    ///     the membership again at once rather than at its next refresh (a member that just
    ///     joined is then linked on the dialer's next attempt, not a refresh period later).
    ///   - group: where the mesh's event loop comes from.
    public init(key: SupernodeKey, listen: STUNAddress, logger: Logger,
                onReceive: @escaping @Sendable (_ from: [UInt8], _ payload: ByteBuffer) -> Void,
                onLinkChange: @escaping @Sendable (_ peer: [UInt8], _ up: Bool) -> Void,
                onStranger: (@Sendable (_ peer: [UInt8]) -> Void)? = nil,
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.key = key
        localKey = Array(key.publicKey.rawRepresentation)
        self.listen = listen
        var logger = logger
        logger[metadataKey: "cluster.self"] = "\(localKey.clusterMeshHex)"
        self.logger = logger
        self.onReceive = onReceive
        self.onLinkChange = onLinkChange
        self.onStranger = onStranger
        loop = group.next()
    }

    /// Opens the listener and starts dialing the members already set; returns the bound address.
    ///
    /// - Throws: ``ClusterMeshError/bindFailed(address:cause:)``, ``ClusterMeshError/alreadyStarted``.
    public func start() async throws -> STUNAddress {
        let first = state.withLockedValue { s -> Bool in
            guard !s.started, !s.stopped else { return false }
            s.started = true
            return true
        }
        guard first else { throw ClusterMeshError.alreadyStarted }
        let server: any Channel
        do {
            server = try await ServerBootstrap(group: loop)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.backlog, value: 128)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture { try install(on: channel, dialing: nil) }
                }
                .bind(to: try listen.socketAddress())
                .get()
        } catch {
            throw ClusterMeshError.bindFailed(address: "\(listen)", cause: "\(error)")
        }
        let stopped = state.withLockedValue { s -> Bool in
            if !s.stopped { s.server = server }
            return s.stopped
        }
        if stopped { try? await server.close() }
        guard let local = server.localAddress.flatMap(STUNAddress.init) else {
            throw ClusterMeshError.bindFailed(address: "\(listen)", cause: "no local address")
        }
        logger.info("cluster mesh listening", metadata: ["cluster.listen": "\(local)"])
        loop.execute { [self] in reconcile() }
        return local
    }

    /// The members of the network (static key + "host:port" of their mesh listener), self
    /// included or not (ignored). Dials every member whose key is lexicographically greater than
    /// ours (exactly one link per pair), redials with capped exponential backoff while listed,
    /// closes links to keys no longer listed, and accepts inbound links only from listed keys.
    /// A member whose address changed is dialed at once unless its link is up. Any thread.
    public func setMembers(_ members: [(key: [UInt8], link: String)]) {
        var map: [[UInt8]: String] = [:]
        for member in members where member.key.count == ClusterLinkLimits.keyBytes && member.key != localKey {
            map[member.key] = member.link
        }
        state.withLockedValue { $0.members = map }
        loop.execute { [self] in reconcile() }
    }

    /// Sends `payload` (at most ``ClusterLinkLimits/maximumRecordPayloadBytes``) on the up link to
    /// `key`; false when there is none, the payload is too large, or the link's queue overflowed
    /// (the link is then closed and reported down).
    @discardableResult
    public func send(_ payload: ByteBuffer, to key: [UInt8]) -> Bool {
        guard let connection = state.withLockedValue({ $0.up[key] }) else { return false }
        return enqueue(payload, on: connection)
    }

    /// Sends `payload` on every up link; returns how many links took it.
    @discardableResult
    public func broadcast(_ payload: ByteBuffer) -> Int {
        let connections = state.withLockedValue { Array($0.up.values) }
        return connections.reduce(0) { $0 + (enqueue(payload, on: $1) ? 1 : 0) }
    }

    /// The static keys of the members with an up link now, sorted.
    public var connectedPeers: [[UInt8]] {
        state.withLockedValue { Array($0.up.keys) }.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// Closes the listener and every link (each up link reported down) and stops dialing.
    public func stop() async {
        let (server, connections, timers) = state.withLockedValue { s in
            s.stopped = true
            let timers = s.dials.values.compactMap(\.timer)
            s.dials.removeAll()
            defer { s.server = nil }
            return (s.server, Array(s.open.values), timers)
        }
        for timer in timers { timer.cancel() }
        try? await server?.close()
        for connection in connections { connection.channel.close(promise: nil) }
        for connection in connections { try? await connection.channel.closeFuture.get() }
        logger.info("cluster mesh stopped")
    }

    // MARK: - sending

    private func enqueue(_ payload: ByteBuffer, on connection: ClusterMeshConnection) -> Bool {
        guard payload.readableBytes <= ClusterLinkLimits.maximumRecordPayloadBytes else {
            logger.error("cluster payload not sent", metadata: [
                "cluster.reason": "\(ClusterLinkError.payloadTooLarge(payload.readableBytes))"])
            return false
        }
        switch connection.enqueue(payload) {
        case .success: return true
        case .failure: return false
        }
    }

    // MARK: - from the handlers (on the loop)

    func deliver(_ payload: ByteBuffer, from peer: [UInt8]) {
        onReceive(peer, payload)
    }

    /// A handshake completed; false when the link must be refused (not listed, wrong direction, stopped).
    func linkEstablished(_ connection: ClusterMeshConnection, peer: [UInt8]) -> Bool {
        var replaced: ClusterMeshConnection?
        let accepted = state.withLockedValue { s -> Bool in
            guard !s.stopped, s.members[peer] != nil else { return false }
            if let dialed = connection.dialed {
                // Only the current attempt counts (not one abandoned for a new address).
                guard s.dials[dialed]?.connection === connection else { return false }
                s.dials[dialed]?.delay = ClusterLinkLimits.redialInitialDelay
            } else if !peer.lexicographicallyPrecedes(localKey) {
                return false
            }
            if let old = s.up[peer], old !== connection { replaced = old }
            s.up[peer] = connection
            return true
        }
        guard accepted else { return false }
        if let replaced {
            onLinkChange(peer, false)
            replaced.channel.pipeline.fireUserInboundEventTriggered(ClusterMeshHandler.Close(reason: .superseded))
        }
        logger.info("cluster link up", metadata: ["cluster.peer": "\(peer.clusterMeshHex)",
                                                  "cluster.role": "\(connection.dialed == nil ? "acceptor" : "dialer")"])
        onLinkChange(peer, true)
        return true
    }

    /// Whether an inbound hello from `peer` may proceed: a listed key that dials us (smaller than ours).
    private func admits(_ peer: [UInt8]) -> Bool {
        let (admitted, stranger) = state.withLockedValue { s -> (Bool, Bool) in
            guard !s.stopped else { return (false, false) }
            let listed = s.members[peer] != nil
            return (listed && peer.lexicographicallyPrecedes(localKey), !listed)
        }
        if stranger { onStranger?(peer) }
        return admitted
    }

    /// Builds a connection's pipeline (in the channel initializer, on the loop).
    private func install(on channel: any Channel, dialing peer: [UInt8]?, generation: Int = 0) throws {
        let connection = ClusterMeshConnection(channel: channel, dialed: peer)
        let registered = state.withLockedValue { s -> Bool in
            guard !s.stopped else { return false }
            if let peer {
                guard s.dials[peer]?.generation == generation, s.dials[peer]?.inFlight == true else { return false }
                s.dials[peer]?.connection = connection
            }
            s.open[ObjectIdentifier(connection)] = connection
            return true
        }
        guard registered else { throw ChannelError.ioOnClosedChannel }
        let link: ClusterLink
        if let peer {
            link = try ClusterLink(dialing: peer, key: key)
        } else {
            link = ClusterLink(accepting: key, isAllowed: { [weak self] in self?.admits($0) ?? false })
        }
        var logger = self.logger
        if let remote = channel.remoteAddress { logger[metadataKey: "cluster.remote"] = "\(remote)" }
        try channel.pipeline.syncOperations.addHandler(
            ClusterMeshHandler(mesh: self, connection: connection, link: link, logger: logger))
        channel.closeFuture.whenComplete { [self] _ in connectionClosed(connection) }
    }

    private func connectionClosed(_ connection: ClusterMeshConnection) {
        let down = state.withLockedValue { s -> [UInt8]? in
            s.open[ObjectIdentifier(connection)] = nil
            var down: [UInt8]?
            if let peer = s.up.first(where: { $0.value === connection })?.key {
                s.up[peer] = nil
                down = peer
            }
            if let peer = connection.dialed, let dial = s.dials[peer], dial.connection === connection {
                s.dials[peer]?.connection = nil
                redialLater(peer, generation: dial.generation, in: &s)
            }
            return down
        }
        if let down {
            logger.info("cluster link down", metadata: ["cluster.peer": "\(down.clusterMeshHex)"])
            onLinkChange(down, false)
        }
    }

    // MARK: - dialing (on the loop)

    private func reconcile() {
        var close: [ClusterMeshConnection] = []
        var dialNow: [[UInt8]] = []
        state.withLockedValue { s in
            guard s.started, !s.stopped else { return }
            for (peer, connection) in s.up where s.members[peer] == nil { close.append(connection) }
            for (peer, dial) in s.dials where s.members[peer] == nil {
                dial.timer?.cancel()
                if let connection = dial.connection { close.append(connection) }
                s.dials[peer] = nil
            }
            for (peer, address) in s.members where localKey.lexicographicallyPrecedes(peer) {
                guard var dial = s.dials[peer] else {
                    s.dials[peer] = Dial(address: address)
                    dialNow.append(peer)
                    continue
                }
                guard dial.address != address else { continue }
                dial.address = address
                dial.delay = ClusterLinkLimits.redialInitialDelay
                let isUp = dial.connection.map { c in s.up[peer] === c } ?? false
                if !isUp {
                    // Abandon the wait or the attempt on the old address; dial the new one now.
                    dial.timer?.cancel()
                    dial.timer = nil
                    if let connection = dial.connection { close.append(connection) }
                    dial.connection = nil
                    dial.inFlight = false
                    dial.generation += 1
                    dialNow.append(peer)
                }
                s.dials[peer] = dial
            }
        }
        for connection in close { connection.channel.close(promise: nil) }
        for peer in dialNow { dial(peer) }
    }

    private func dial(_ peer: [UInt8]) {
        let attempt = state.withLockedValue { s -> (address: String, generation: Int)? in
            guard !s.stopped, var dial = s.dials[peer], !dial.inFlight, s.up[peer] == nil else { return nil }
            dial.timer?.cancel()
            dial.timer = nil
            dial.inFlight = true
            dial.generation += 1
            s.dials[peer] = dial
            return (dial.address, dial.generation)
        }
        guard let attempt else { return }
        guard let (host, port) = Self.parse(attempt.address) else {
            logger.error("cluster member not dialed", metadata: [
                "cluster.peer": "\(peer.clusterMeshHex)", "cluster.reason": "\(ClusterMeshError.badAddress(attempt.address))"])
            dialEnded(peer, generation: attempt.generation)
            return
        }
        ClientBootstrap(group: loop)
            .connectTimeout(ClusterLinkLimits.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try install(on: channel, dialing: peer, generation: attempt.generation) }
            }
            .connect(host: host, port: port)
            .whenComplete { [self] result in
                guard case .failure(let error) = result else { return }
                logger.debug("cluster member not reached", metadata: [
                    "cluster.peer": "\(peer.clusterMeshHex)",
                    "cluster.reason": "\(ClusterMeshError.connectFailed(address: attempt.address, cause: "\(error)"))"])
                dialEnded(peer, generation: attempt.generation)
            }
    }

    /// A dial attempt ended without a connection (or its connection closed): try again later.
    private func dialEnded(_ peer: [UInt8], generation: Int) {
        state.withLockedValue { s in
            guard let dial = s.dials[peer], dial.generation == generation, dial.inFlight else { return }
            s.dials[peer]?.connection = nil
            redialLater(peer, generation: generation, in: &s)
        }
    }

    /// Schedules the next dial of `peer` (still listed) after its current delay, and doubles it.
    private func redialLater(_ peer: [UInt8], generation: Int, in s: inout State) {
        guard var dial = s.dials[peer], dial.generation == generation else { return }
        dial.inFlight = false
        dial.timer?.cancel()
        if !s.stopped, s.members[peer] != nil {
            let delay = dial.delay
            dial.delay = min(dial.delay * 2, ClusterLinkLimits.redialMaximumDelay)
            dial.timer = loop.scheduleTask(in: delay) { [weak self] in self?.dial(peer) }
        }
        s.dials[peer] = dial
    }

    /// Splits "host:port", "[v6]:port" into host and port.
    static func parse(_ text: String) -> (host: String, port: Int)? {
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            guard !host.contains(":") else { return nil }
            portText = text[text.index(after: colon)...]
        }
        host = host.drop { $0 == " " }
        guard !host.isEmpty, let port = Int(portText), (1...65535).contains(port) else { return nil }
        return (String(host), port)
    }
}
