import Crypto
import NIOCore
import PeerwayCheckpoint
import PeerwayPortMap
import PeerwaySTUN
import PeerwayTunnel

/// How a tunnel is made and what it carries.
public struct TunnelOptions: Sendable {
    /// End-to-end encryption (ChaCha20-Poly1305 under keys bound to both PeerIDs). Turning it off
    /// asks for a raw tunnel, which the application gets as the network socket itself: payload in
    /// clear, only the path's setup authenticated. A tunnel is raw only when both sides ask.
    public var encrypted: Bool
    /// The HANDSHAKE's plan must arrive within this long after the offer.
    public var planTimeout: TimeAmount
    /// The local IP tunnel sockets bind (`nil`: the wildcard of the STUN server's family).
    public var bindHost: String?
    /// Try direct paths. `false`: relay only, and the other peer never learns this host's
    /// addresses (none are offered), at the cost of the relay's latency and capacity.
    public var directPaths: Bool
    /// Ask the router (the IPv4 default gateway) for a port mapping with PCP, NAT-PMP or
    /// UPnP-IGD and offer it (UDP tunnels with direct paths only): a peer behind a symmetric NAT
    /// that maps a port is reached directly. Skipped when the STUN server is on loopback (a test
    /// on one host) or the host has no NAT; a router that speaks none of them costs at most
    /// `PortMapLimits.discoveryTimeoutMillis`. The mapping is deleted when the tunnel closes.
    public var portMapping = true
    /// The HTTP proxy the relay's TCP splice goes through; `nil`: the peer's (`PeerOptions.proxy`).
    public var proxy: ProxySetting?
    /// When the tunnel is handed over: relay first (the default) or after the direct window.
    /// Either way an encrypted UDP tunnel's paths are watched and it moves between them.
    public var start: TunnelStart = .relayFirst

    public init(encrypted: Bool = true, planTimeout: TimeAmount = TunnelOptions.defaultPlanTimeout, bindHost: String? = nil,
                directPaths: Bool = true) {
        self.encrypted = encrypted
        self.planTimeout = planTimeout
        self.bindHost = bindHost
        self.directPaths = directPaths
    }

    /// Default `planTimeout`: longer than the HANDSHAKE waits for the other side's offer (whose
    /// offer may itself have needed a retry on a lossy path).
    public static let defaultPlanTimeout: TimeAmount = .seconds(25)
    /// Times a traversal offer is sent (each waits the peer's request timeout) before giving up.
    public static let offerAttempts = 3
    /// How long a traversal waits for the NAT measurement started with the peer.
    public static let natProfileWait: TimeAmount = .seconds(8)
    /// How long a traversal waits for the port mapping (discovery, then up to one IGD exchange).
    public static let portMapWaitMillis: UInt64 = PortMapLimits.discoveryTimeoutMillis + PortMapLimits.httpTimeoutMillis
    /// How long the offer waits for the port mapping: a router that speaks PCP or NAT-PMP answers
    /// within a LAN round trip. A mapping made later is sent to the other side over the tunnel (a
    /// `candidate`), so a slow or silent router does not delay the first byte.
    public static let portMapOfferWaitMillis: UInt64 = 250
    /// How long a traversal asks the STUN server for its reflexive address (retrying every 250 ms).
    public static let stunTimeoutMillis = 1_500
    /// The same where the peer's measurement at its start got no STUN answer (UDP blocked).
    public static let blockedSTUNTimeoutMillis = 300
}

extension Peer {
    /// Asks `peer` for a tunnel and makes it: direct whenever the two NATs allow it, relayed
    /// otherwise. Returns once the path is verified both ways (authenticated probes bound to both
    /// PeerIDs); the tunnel says how it was made.
    ///
    /// - Throws: `PeerError.connectionRefused` (with the other side's reason), `.traversalFailed`,
    ///   `.tunnelAuthenticationFailed`, `.timedOut`, and the errors of `requestConnection`.
    public func connect(to peer: PeerID, transport: TunnelTransport = .udp, options: TunnelOptions = TunnelOptions(),
                        note: String = "") async throws(PeerError) -> Tunnel {
        let started = ContinuousClock.now
        switch try await requestConnection(to: peer, transport: transport, note: note) {
        case .refused(let reason):
            throw .connectionRefused(reason)
        case .accepted(let requestID):
            return try await traverse(role: .initiator, other: peer, requestID: requestID, transport: transport,
                                      options: options, started: started)
        }
    }

    /// Makes the tunnel for a connection request `peer` already accepted (`requestConnection`
    /// answered `.accepted(requestID)`): for callers that show the answer before the tunnel.
    public func openTunnel(to peer: PeerID, requestID: UInt64, transport: TunnelTransport,
                           options: TunnelOptions = TunnelOptions()) async throws(PeerError) -> Tunnel {
        try await traverse(role: .initiator, other: peer, requestID: requestID, transport: transport, options: options,
                           started: ContinuousClock.now)
    }

    /// Accepts a connection request (from `PeerEvent.connectRequest`) and makes the tunnel.
    public func accept(_ request: IncomingConnectRequest, options: TunnelOptions = TunnelOptions()) async throws(PeerError) -> Tunnel {
        let started = ContinuousClock.now
        try await answer(request, accept: true)
        return try await traverse(role: .acceptor, other: request.from, requestID: request.requestID,
                                  transport: request.transport, options: options, started: started)
    }

    private func traverse(role: TraversalRole, other: PeerID, requestID: UInt64, transport: TunnelTransport,
                          options: TunnelOptions, started: ContinuousClock.Instant) async throws(PeerError) -> Tunnel {
        let initiator = role == .initiator ? id : other
        let acceptor = role == .initiator ? other : id
        let debug = TraversalDebug(role: role, started: started)
        let bindIP: STUNAddress.IP
        if let host = options.bindHost {
            guard let ip = STUNAddress.parseIP(Substring(host)) else { throw .invalidArgument("tunnel bind host '\(host)' is not an IP address") }
            bindIP = ip
        } else {
            bindIP = stunServer.family == .ipv4 ? .v4(0) : .v6(high: 0, low: 0)
        }
        let bindAddress = STUNAddress(ip: bindIP, port: 0)
        let udp: TunnelSocket
        do { udp = try TunnelSocket.udp(bound: bindAddress) } catch { throw .bindFailed(host: "\(bindIP)", port: 0, reason: "\(error)") }
        var keep: TunnelSocket? = nil
        var tcpListener: TunnelSocket? = nil
        defer {
            if keep?.fd != udp.fd { udp.close() }
            if let tcpListener, keep?.fd != tcpListener.fd { tcpListener.close() }
        }
        // The router's port mapping, asked beside the STUN query and the NAT measurement.
        let gateway = PortMapSession.defaultGateway()?.gateway
        let portMap = transport == .udp && options.directPaths && options.portMapping && !stunServer.isLoopback && stunServer.family == .ipv4
            && !(gateway.map { PortMapMemory.shared.knownAbsent(gateway: $0) } ?? false)
            ? PortMapSession.start(internalPort: (udp.localAddress ?? bindAddress).port) : nil
        var keepPortMap = false
        defer { if !keepPortMap { portMap?.close() } }
        let stun = stunServer
        // Where the peer's own measurement found UDP blocked, the query is short: the relay's
        // TCP path is what will carry the tunnel.
        let stunTimeout = nat.measuredUDPBlocked ? TunnelOptions.blockedSTUNTimeoutMillis : TunnelOptions.stunTimeoutMillis
        let reflexive = await runOnOwnThread(name: "peerway-stun") {
            UDPTraversal.reflexiveAddress(socket: udp, server: stun, timeoutMillis: stunTimeout)
        }
        // No STUN answer: UDP does not get out; the NAT measurement would only time out too.
        debug.note("reflexive address \(reflexive.map(\.description) ?? "none")")
        var profile = reflexive == nil ? NATProfile.unknown : await nat.profile(waitingAtMost: TunnelOptions.natProfileWait)
        profile.udpBlocked = reflexive == nil
        debug.note("NAT profile")

        let local = udp.localAddress ?? bindAddress
        var candidates = PeerNetwork.hostCandidates(bound: local).prefix(6).map {
            TraversalCandidate(kind: .host, transport: .udp, endpoint: $0)
        }
        if let reflexive { candidates.append(TraversalCandidate(kind: .serverReflexive, transport: .udp, endpoint: reflexive)) }
        // A mapping is offered when it leads to the address the STUN pair saw: one on an inner
        // router of a double NAT would be a private address nobody outside can reach.
        if let portMap, let reflexive, !candidates.contains(where: { $0.kind == .host && $0.endpoint.ip == reflexive.ip }),
           let mapping = await portMap.firstReport(timeoutMillis: TunnelOptions.portMapOfferWaitMillis)?.mapping,
           mapping.external.ip == reflexive.ip {
            candidates.append(TraversalCandidate(kind: .mapped, transport: .udp, endpoint: mapping.external))
        }
        debug.note("port mapping")
        if transport == .tcp {
            do { tcpListener = try TunnelSocket.tcp(bound: bindAddress) } catch { throw .bindFailed(host: "\(bindIP)", port: 0, reason: "\(error)") }
            let tcpLocal = tcpListener!.localAddress ?? bindAddress
            candidates += PeerNetwork.hostCandidates(bound: tcpLocal).prefix(6).map {
                TraversalCandidate(kind: .host, transport: .tcp, endpoint: $0)
            }
            // The NAT's TCP mapping is not measured: offer the reflexive address with the local
            // port (right for the many NATs that keep ports).
            if let reflexive {
                candidates.append(TraversalCandidate(kind: .serverReflexive, transport: .tcp,
                                                     endpoint: STUNAddress(ip: reflexive.ip, port: tcpLocal.port)))
            }
        }

        let context = TunnelContext(requestID: requestID, initiator: initiator, acceptor: acceptor,
                                    role: role == .initiator ? .initiator : .acceptor, transport: transport)
        let (share, ephemeral) = TunnelKeyShare.make(identity: identity, context: context)
        if !options.directPaths { candidates = [] }
        let offer = TraversalOffer(initiator: initiator, acceptor: acceptor, requestID: requestID, transport: transport, role: role,
                                   candidates: Array(candidates.prefix(ControlLimits.maximumTraversalCandidates)),
                                   profile: profile, keyShare: share.bytes, rawTunnel: !options.encrypted)
        // The HANDSHAKE takes a repeated offer as the same one: on a very lossy path, try again
        // rather than give up after one request's timeout.
        for attempt in 1...TunnelOptions.offerAttempts {
            do {
                _ = try await run("traversal offer") { $0.offerTraversal(offer, now: $1) }
                break
            } catch .timedOut(let what) where attempt < TunnelOptions.offerAttempts {
                _ = what
            }
        }
        let key = TraversalRegistry.Key(initiator: initiator, acceptor: acceptor, requestID: requestID)
        debug.note("offer sent")
        guard var plan = await driver.traversals.wait(for: key, timeout: options.planTimeout) else {
            throw .timedOut("the HANDSHAKE's traversal plan")
        }
        debug.note("plan")
        if !options.directPaths {
            plan.targets = []
            plan.spray = nil
            plan.localSockets = 1
            plan.directWindowMillis = 0
        }
        guard plan.failure.isEmpty else { throw .traversalFailed(plan.failure) }
        guard let theirs = TunnelKeyShare(bytes: plan.remoteKeyShare) else {
            throw .tunnelAuthenticationFailed("the other side's key share is malformed")
        }
        let keys: TunnelKeys
        do {
            try theirs.verify(expectedPeer: other, context: context)
            keys = try TunnelKeys.derive(ephemeralPrivateKey: ephemeral, theirShare: theirs, context: context)
        } catch {
            throw .tunnelAuthenticationFailed("\(error)")
        }

        // Raw only when both sides asked for it; otherwise both encrypt.
        var options = options
        options.encrypted = !plan.rawTunnel
        options.proxy = options.proxy ?? self.options.proxy
        let tunnel: Tunnel
        let finalPlan = plan
        switch transport {
        case .udp where plan.relay?.udp == nil && plan.relay?.tcp != nil && plan.targets.isEmpty:
            // One side cannot use UDP: datagrams go through the relay's TCP splice, framed.
            tunnel = try await TCPTraversal.relayed(plan: plan, role: role, keys: keys, peer: other, datagrams: true,
                                                    options: options, started: started)
        case .udp:
            let relayFirst = options.encrypted && options.start == .relayFirst
            let result = await runOnOwnThread(name: "peerway-traversal") {
                UDPTraversal.run(plan: finalPlan, role: role, keys: keys, first: udp, bindAddress: bindAddress, relayFirst: relayFirst)
            }
            switch result {
            case .success(let outcome):
                keep = outcome.sockets.contains { $0.fd == udp.fd } ? udp : outcome.socket
                do {
                    tunnel = try Tunnel.udp(outcome: outcome, peer: other, role: role, keys: keys, encrypted: options.encrypted,
                                            setupTime: ContinuousClock.now - started, stunServer: stun)
                } catch {
                    outcome.socket.close()
                    throw error
                }
            case .failure where finalPlan.relay?.udp == nil && finalPlan.relay?.tcp != nil:
                // The relay takes TCP only (a side cannot use UDP): both sides come here when
                // the shared direct window ends.
                tunnel = try await TCPTraversal.relayed(plan: finalPlan, role: role, keys: keys, peer: other, datagrams: true,
                                                        options: options, started: started)
            case .failure(let e):
                report(plan, role: role, path: .failed, method: plan.method, started: started)
                throw e
            }
        case .tcp:
            let listener = tcpListener!
            do {
                tunnel = try await TCPTraversal.run(plan: plan, role: role, keys: keys, peer: other, listener: listener,
                                                    options: options, started: started)
            } catch {
                report(plan, role: role, path: .failed, method: plan.method, started: started)
                throw error
            }
        }
        debug.note("tunnel \(tunnel.path) by \(tunnel.method)")
        // A relay-first tunnel is reported once it settled (moved to direct, or gave direct up).
        tunnel.whenSettled { [weak self] path, method in self?.report(finalPlan, role: role, path: path, method: method, started: started) }
        if let portMap, tunnel.path == .direct || tunnel.isUpgrading, candidates.contains(where: { $0.kind == .mapped }) {
            // Kept (and renewed) while the tunnel lives; deleted when it closes.
            tunnel.keep(portMap)
            keepPortMap = true
        } else if let portMap, let reflexive, !candidates.contains(where: { $0.kind == .mapped }), tunnel.isEncrypted, transport == .udp {
            // The mapping was not ready for the offer: when it comes, the other side learns it
            // over the tunnel and probes it (the tunnel keeps it while it lives).
            keepPortMap = true
            Self.advertiseLater(portMap, gateway: gateway, reflexive: reflexive, on: tunnel)
        }
        return tunnel
    }

    /// Waits for `portMap`'s first report; a mapping that leads to the reflexive address goes to
    /// the other side as a candidate and is kept with the tunnel; nothing closes the session.
    private static func advertiseLater(_ portMap: PortMapSession, gateway: UInt32?, reflexive: STUNAddress, on tunnel: Tunnel) {
        Task { [weak tunnel] in
            let report = await portMap.firstReport(timeoutMillis: TunnelOptions.portMapWaitMillis)
            if let report, let gateway { PortMapMemory.shared.remember(report, gateway: gateway) }
            guard let tunnel, let mapping = report?.mapping, mapping.external.ip == reflexive.ip else {
                portMap.close()
                return
            }
            tunnel.keep(portMap)
            tunnel.advertise(mapping.external)
        }
    }

    /// Tells the HANDSHAKE how the traversal came out (best effort, in the background).
    private func report(_ plan: TraversalPlan, role: TraversalRole, path: TunnelPath, method: TraversalMethod,
                        started: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - started
        let ms = UInt32(clamping: elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
        let result = TraversalResult(initiator: plan.initiator, acceptor: plan.acceptor, requestID: plan.requestID, role: role,
                                     path: path, method: method, millis: ms)
        Task { _ = try? await self.run("traversal result") { $0.reportTraversal(result, now: $1) } }
    }
}
