import NIOCore
import NIOPosix
import PeerwayCheckpoint
import PeerwaySTUN

/// A peer on a Peerway network: registered with a supernode's CHECKPOINT, it can publish its
/// metadata, look up and search other peers, exchange instant messages, watch peers' status
/// and negotiate connections.
///
/// ```swift
/// let peer = try await Peer.start(identity: try .loadOrCreate(at: "peer.key"),
///                                 supernodes: [try SupernodeAddress(parsing: "peerway://…@example.org")])
/// Task { for await event in peer.events { print(event) } }
/// let outcome = try await peer.send("hello", to: friend)
/// await peer.stop()
/// ```
///
/// The peer owns one UDP socket and runs on one event loop; every method hops there and
/// suspends the caller without blocking its thread. Calls are not cancellable: each one ends
/// with its answer, its error or its timeout. The peer reconnects by itself when it loses its
/// supernode (trying the others in turn), renews its watches and reports it as events.
/// Types such as `PeerID`, `PeerIdentity` and `SupernodeAddress` come from `PeerwayCheckpoint`.
public final class Peer: Sendable {
    /// This peer's id (derived from its identity's public key).
    public let id: PeerID
    /// Everything that happens without being asked for, in order. Meant for a single consumer:
    /// iterating it from two tasks splits the events between them. Finishes after `.stopped`.
    public let events: AsyncStream<PeerEvent>
    let driver: PeerDriver
    let identity: PeerIdentity
    let options: PeerOptions
    /// The STUN server traversals ask for server-reflexive addresses (the first supernode's host).
    let stunServer: STUNAddress
    /// This host's NAT, as the netcheck started with the peer measures it.
    let nat: NATProfileCache

    private init(identity: PeerIdentity, events: AsyncStream<PeerEvent>, driver: PeerDriver, options: PeerOptions,
                 stunServer: STUNAddress) {
        self.id = identity.peerID
        self.identity = identity
        self.events = events
        self.driver = driver
        self.options = options
        self.stunServer = stunServer
        self.nat = NATProfileCache()
    }

    deinit {
        driver.close()
    }

    /// Starts a peer: resolves the supernodes, binds the socket, handshakes and registers.
    /// Returns once registered; what happened meanwhile (failovers, `.registered`) is in `events`.
    ///
    /// - Parameters:
    ///   - identity: the key pair that makes this peer's id.
    ///   - supernodes: where to register, in order of preference; the others are failovers.
    ///   - metadata: published at registration (keys `[a-z0-9_.-]`, limits in `PeerMetadata`).
    /// - Throws: `PeerError.noSupernodes`, `.invalidMetadata`, `.cannotResolve`, `.bindFailed`,
    ///   `.supernodeUnreachable` after `options.startTimeout`, `.registrationRefused`, `.superseded`.
    public static func start(identity: PeerIdentity, supernodes: [SupernodeAddress], metadata: [String: String] = [:],
                             options: PeerOptions = .init()) async throws(PeerError) -> Peer {
        guard !supernodes.isEmpty else { throw .noSupernodes }
        let initialMetadata: PeerMetadata
        do { initialMetadata = try PeerMetadata(metadata) } catch { throw .invalidMetadata(error) }

        var resolved = try await PeerNetwork.resolve(supernodes)
        let family: STUNAddress.Family
        if let host = options.bindHost, let ip = STUNAddress.parseIP(Substring(host)) {
            family = STUNAddress(ip: ip, port: 0).family
        } else {
            family = resolved[0].endpoint.family
        }
        // One socket speaks one address family: supernodes of the other one are left out.
        resolved = resolved.filter { $0.endpoint.family == family }
        guard !resolved.isEmpty else {
            throw .invalidArgument("no supernode has an address of the bound family (\(family)); bind another address")
        }

        let (stream, continuation) = AsyncStream<PeerEvent>.makeStream(bufferingPolicy: .bufferingNewest(max(1, options.eventBufferSize)))
        let eventLoop = options.eventLoopGroup.next()
        let bindHost = options.bindHost ?? PeerNetwork.wildcard(family)
        let driver: PeerDriver
        do {
            driver = try PeerDriver(supernodes: resolved, eventLoop: eventLoop, events: continuation,
                                    tcpFallbackDelay: options.tcpFallbackDelay, proxy: options.proxy, sendFaults: options.sendFaults)
        } catch {
            throw .invalidArgument("a supernode address cannot be used as a socket address: \(error)")
        }
        let local = try await driver.bind(host: bindHost, port: options.bindPort)
        let configuration = CheckpointClientConfiguration(
            identity: identity, supernodes: resolved.map(\.address), keepaliveSeconds: options.keepaliveSeconds,
            candidates: options.localCandidates ?? PeerNetwork.hostCandidates(bound: local),
            metadata: initialMetadata, requestTimeout: options.requestTimeout, messageTimeout: options.messageTimeout,
            connectAnswerTimeout: options.connectAnswerTimeout)
        let stun = options.stunServer ?? STUNAddress(ip: resolved[0].endpoint.ip, port: options.stunPort)
        let peer = Peer(identity: identity, events: stream, driver: driver, options: options, stunServer: stun)
        try await driver.start(CheckpointClientMachine(configuration: configuration), timeout: options.startTimeout)
        if options.measuresNAT { peer.nat.measure(server: stun, group: options.eventLoopGroup) }
        return peer
    }

    /// Changes this peer's metadata: keys with a value are set, keys with `nil` removed; with
    /// `replace`, every key not named is removed as well. Watchers see the change.
    public func publish(_ changes: [String: String?], replace: Bool = false) async throws(PeerError) {
        _ = try await run("publish") { $0.publish(changes, replace: replace, now: $1) }
    }

    /// Whether `peer` is online, where, and its metadata.
    public func lookup(_ peer: PeerID) async throws(PeerError) -> PeerInfo {
        let response = try await run("lookup") { $0.lookup(peer, now: $1) }
        guard case .lookup(let r) = response else {
            throw .protocolViolation("lookup answered with another result")
        }
        return PeerInfo(id: r.peer, online: r.online, observed: r.observed, candidates: r.candidates, metadata: r.metadata)
    }

    /// Online peers whose metadata matches `query` (e.g. `"city=paris and age>30"`), in PeerID
    /// order, at most `limit`; pages through the checkpoint's results as needed.
    public func search(_ query: String, limit: Int = 20) async throws(PeerError) -> [SearchHit] {
        var hits: [SearchHit] = []
        var after: PeerID?
        while hits.count < limit {
            let want = limit - hits.count
            let from = after
            let response = try await run("search") { $0.search(query, limit: want, after: from, now: $1) }
            guard case .search(let page) = response else {
                throw .protocolViolation("search answered with another result")
            }
            hits += page.hits.prefix(want)
            // Stop at the end, and on a page that would not move forward.
            guard let next = page.next, !page.hits.isEmpty, next != after else { break }
            after = next
        }
        return hits
    }

    /// Sends an instant message (at most `ControlLimits.maximumMessageBytes` of UTF-8). Messages
    /// to one peer arrive in the order sent. Returns `.delivered`, `.offline`, or `.timedOut`
    /// when no final outcome came in time (it may still have arrived).
    public func send(_ text: String, to peer: PeerID) async throws(PeerError) -> MessageOutcome.Outcome {
        let response = try await run("message") { $0.sendMessage(text, to: peer, now: $1) }
        guard case .messageOutcome(let outcome) = response else {
            throw .protocolViolation("message answered with another result")
        }
        return outcome
    }

    /// Subscribes to these peers' status; returns their state now. Changes then arrive as
    /// `.status` events, also across reconnections.
    public func watch(_ peers: [PeerID]) async throws(PeerError) -> [PeerStatus] {
        var statuses: [PeerStatus] = []
        for batch in Self.batches(peers) {
            let response = try await run("watch") { $0.watch(batch, now: $1) }
            guard case .watched(let some) = response else {
                throw .protocolViolation("watch answered with another result")
            }
            statuses += some
        }
        return statuses
    }

    /// Ends the subscriptions to these peers' status.
    public func unwatch(_ peers: [PeerID]) async throws(PeerError) {
        for batch in Self.batches(peers) {
            _ = try await run("unwatch") { $0.unwatch(batch, now: $1) }
        }
    }

    /// Asks `peer` for a tunnel and waits for its answer (the other side may ask a human:
    /// up to `CheckpointClientLimits.defaultConnectAnswerTimeout`).
    public func requestConnection(to peer: PeerID, transport: TunnelTransport, note: String = "") async throws(PeerError) -> ConnectionAnswer {
        let response = try await run("connection request") { $0.connect(to: peer, transport: transport, note: note, now: $1) }
        guard case .connectAnswer(let decision) = response else {
            throw .protocolViolation("connection request answered with another result")
        }
        return decision.accepted ? .accepted(requestID: decision.requestID) : .refused(reason: decision.reason)
    }

    /// Accepts or refuses a request received as `PeerEvent.connectRequest`.
    public func answer(_ request: IncomingConnectRequest, accept: Bool, reason: String = "") async throws(PeerError) {
        _ = try await run("connection answer") {
            $0.answerConnect(from: request.from, requestID: request.requestID, accept: accept, reason: reason, now: $1)
        }
    }

    /// Unregisters (best effort, at most `CheckpointClientLimits.unregisterTimeout`), fails the
    /// unfinished calls with `PeerError.stopped`, closes the socket and finishes `events`.
    public func stop() async {
        await driver.stop()
    }

    // MARK: internals

    func run(_ what: String, _ body: @escaping @Sendable (inout CheckpointClientMachine, NIODeadline)
        -> (token: CheckpointRequestToken, actions: [CheckpointClientAction])) async throws(PeerError) -> CheckpointClientResponse {
        switch await driver.call(body) {
        case .success(let response): return response
        case .failure(let error): throw PeerError(error, what: what)
        }
    }

    private static func batches(_ peers: [PeerID]) -> [[PeerID]] {
        stride(from: 0, to: peers.count, by: ControlLimits.maximumWatchBatch).map {
            Array(peers[$0..<min($0 + ControlLimits.maximumWatchBatch, peers.count)])
        }
    }
}
