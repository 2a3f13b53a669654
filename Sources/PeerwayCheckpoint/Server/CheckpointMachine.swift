import Crypto
import NIOCore
import PeerwaySTUN

/// What the checkpoint wants done.
public enum CheckpointAction: Equatable, Sendable {
    /// Send a datagram.
    case send(ByteBuffer, to: PeerEndpoint)
    /// Run an INDEX operation and give its outcome to `answerIndex` (only with `configuration.index`).
    case index(IndexCallContext)
    /// A peer registered (online) or its registration ended (offline): the INDEX's presence.
    /// In a network of supernodes, peers of the other supernodes too.
    case presence(PeerID, online: Bool)
    /// Send a frame to another supernode of the network (`nil`: to every other one). Only with
    /// `configuration.clustered`. When it cannot be sent, tell the machine `clusterUnsent`.
    case cluster(ClusterFrame, to: ClusterNode?)
}

/// The CHECKPOINT service as a pure state machine: datagrams and the time in, datagrams out.
///
/// It owns the sessions (handshake, keys, replay windows), the registrations, watches, messages
/// in flight and connection negotiations; presence lives in the `LiveDirectory` it is given.
/// No socket, no clock, no EventLoop: the UDP service around it feeds `receive` and calls
/// `tick` about every `tickMillis`. See `ControlLimits` for the protocol's flow.
///
/// Security properties it keeps:
/// - Unauthenticated input (hellos, garbage, unknown sessions) never gets an answer larger than
///   itself (`counters.unauthenticatedBytesOut <= unauthenticatedBytesIn`), and state is created
///   only after a stateless cookie proved the source can receive.
/// - A registration is accepted only with a signature by the key the PeerID derives from, over
///   this session's transcript (no replay into another session); replayed packets are dropped.
/// - Bad input is counted and dropped or answered with an `error`; it never changes state.
public struct CheckpointMachine<Directory: LiveDirectory> {
    /// How often the owner should call `tick`.
    public static var tickMillis: UInt64 { 100 }

    public let configuration: CheckpointConfiguration
    public internal(set) var directory: Directory
    public internal(set) var counters = CheckpointCounters()

    var sessions = CheckpointSessionTable()
    var sessionByPeer: [PeerID: UInt64] = [:]
    var cookies: ControlCookieJar
    var helloLimiter: SourceRateLimiter
    var expiryWheel: [UInt64: [UInt64]] = [:]
    var wheelCursor: UInt64
    var pushes: [PushKey: PendingPush] = [:]
    var flightsBySender: [SenderMessageKey: PushKey] = [:]
    /// Final outcomes of finished messages, to answer their senders' retransmissions.
    var recentOutcomes = TimedMemory<SenderMessageKey, MessageOutcome.Outcome>(lifetimeMillis: CheckpointConfiguration.messageOutcomeMemoryMillis)
    var watchersOf: [PeerID: Set<PeerID>] = [:]
    var watching: [PeerID: Set<PeerID>] = [:]
    var negotiations: [NegotiationKey: Negotiation] = [:]
    var traversals: [NegotiationKey: PendingTraversal] = [:]
    var indexCalls = IndexCallTable()
    /// Peers of each other supernode in the directory (replicas), for when it goes down.
    var remotePeers: [ClusterNode: Set<PeerID>] = [:]
    /// Peers of supernodes declared out, still to be taken offline (`departuresPerTick` a tick).
    var departing: [ClusterNode: [PeerID]] = [:]
    /// Peers of a supernode whose snapshot is arriving (rows not in it are removed at its end).
    var snapshots: [ClusterNode: Set<PeerID>] = [:]
    /// Pushes handed to other supernodes, by id, until their outcome comes back.
    var remotePushes: [UInt64: RemotePush] = [:]
    var remoteFlightsBySender: [SenderMessageKey: UInt64] = [:]
    var nextRemotePushID: UInt64 = 1
    /// The other supernodes of the network, told to registering peers (ClusterFailover.swift).
    public internal(set) var networkSupernodes: [SupernodeAddress] = []
    /// Bumped each time `networkSupernodes` changes: a keepalive of a peer told an older list
    /// is answered with the new one.
    var networkSupernodesGeneration: UInt32 = 0
    /// Wall-clock milliseconds (Unix time), set by the owner before feeding events; versions the
    /// registrations of a network of supernodes (ClusterFrame.swift). Unused by a lone checkpoint.
    public var wallClockMillis: UInt64 = 0
    /// What the HANDSHAKE has done.
    public internal(set) var handshakeCounters = HandshakeCounters()
    var random = SystemRandomNumberGenerator()
    let publicKeyBytes: [UInt8]

    public init(configuration: CheckpointConfiguration, directory: Directory, now: NIODeadline) {
        self.configuration = configuration
        self.directory = directory
        let ms = Self.millis(now)
        cookies = ControlCookieJar(nowMillis: ms)
        helloLimiter = SourceRateLimiter(ratePerSecond: configuration.helloRatePerSecond, burst: configuration.helloBurst)
        wheelCursor = ms / 1000
        publicKeyBytes = Array(configuration.key.publicKey.rawRepresentation)
    }

    static func millis(_ t: NIODeadline) -> UInt64 { t.uptimeNanoseconds / 1_000_000 }

    /// Sessions held (handshaken, registered or not).
    public var sessionCount: Int { sessions.count }
    /// Peers registered here.
    public var registeredCount: Int { sessionByPeer.count }
    /// Pushes awaiting their ack.
    public var pendingPushes: Int { pushes.count }

    // MARK: - Input

    /// Handles one datagram from `source`.
    public mutating func receive(_ datagram: ByteBuffer, from source: PeerEndpoint, now: NIODeadline,
                                 into out: inout [CheckpointAction]) {
        counters.received += 1
        let ms = Self.millis(now)
        let size = datagram.readableBytes
        var buffer = datagram
        let packet: ControlPacket
        do { packet = try buffer.readControlPacket() } catch {
            counters.malformed += 1
            counters.unauthenticatedBytesIn += size
            return
        }
        switch packet {
        case .hello(let hello):
            counters.unauthenticatedBytesIn += size
            handleHello(hello, size: size, from: source, now: now, ms: ms, into: &out)
        case .sealed(let sealed):
            handleSealed(sealed, size: size, from: source, now: now, ms: ms, into: &out)
        case .cookie, .helloReply, .sessionUnknown:
            counters.malformed += 1
            counters.unauthenticatedBytesIn += size
        }
    }

    private mutating func sendUnauthenticated(_ packet: ControlPacket, to: PeerEndpoint, into out: inout [CheckpointAction]) {
        var b = ByteBuffer()
        b.writeControlPacket(packet)
        counters.unauthenticatedBytesOut += b.readableBytes
        counters.sent += 1
        out.append(.send(b, to: to))
    }

    private mutating func handleHello(_ hello: ControlHello, size: Int, from source: PeerEndpoint, now: NIODeadline,
                                      ms: UInt64, into out: inout [CheckpointAction]) {
        guard helloLimiter.admit(source.ip, now: now) else { counters.rateLimited += 1; return }
        guard let cookie = hello.cookie,
              cookies.verify(cookie, source: source, ephemeral: hello.ephemeralKey, nowMillis: ms) else {
            let c = cookies.cookie(for: source, ephemeral: hello.ephemeralKey, nowMillis: ms)
            counters.cookiesSent += 1
            sendUnauthenticated(.cookie(ControlCookie(echo: Array(hello.ephemeralKey.prefix(ControlLimits.cookieEchoBytes)), cookie: c)),
                                to: source, into: &out)
            return
        }
        guard sessions.count < configuration.maximumSessions else { counters.rateLimited += 1; return }
        let id = sessions.newID(using: &random)
        let welcome = Welcome(observed: source, keepaliveSeconds: configuration.keepaliveSeconds, serverTimeMillis: ms)
        guard let (reply, keys) = try? ControlHandshakeResponder.respond(to: hello, key: configuration.key,
                                                                          sessionID: id, welcome: welcome) else {
            sessions.release(id)
            counters.malformed += 1
            return
        }
        var session = CheckpointSession(
            id: id, receiveKey: keys.peerToCheckpoint, sendKey: keys.checkpointToPeer,
            transcript: ControlKey(bytes: keys.transcript), endpoint: source, lastHeardMillis: ms,
            keepaliveSeconds: configuration.keepaliveSeconds, tokens: Float(configuration.requestBurst), tokensAtMillis: ms)
        file(&session)
        sessions[id] = session
        counters.handshakes += 1
        sendUnauthenticated(.helloReply(reply), to: source, into: &out)
    }

    private mutating func handleSealed(_ sealed: ControlSealed, size: Int, from source: PeerEndpoint, now: NIODeadline,
                                       ms: UInt64, into out: inout [CheckpointAction]) {
        guard var session = sessions[sealed.sessionID] else {
            counters.unknownSessions += 1
            counters.unauthenticatedBytesIn += size
            // A hint that lets a peer whose supernode restarted re-handshake at once; smaller
            // than any sealed packet, and rate-limited like hellos.
            if helloLimiter.admit(source.ip, now: now) {
                sendUnauthenticated(.sessionUnknown(sessionID: sealed.sessionID), to: source, into: &out)
            }
            return
        }
        guard session.replay.check(sealed.counter) else {
            counters.replays += 1
            return
        }
        guard var plain = try? ControlCipher.openPacket(sealed, key: session.receiveKey) else {
            counters.authenticationFailures += 1
            counters.unauthenticatedBytesIn += size
            return
        }
        session.replay.record(sealed.counter)
        let envelope: ControlEnvelope
        do { envelope = try plain.readControlFrame() } catch {
            counters.malformed += 1
            sessions[session.id] = session
            return
        }
        let roamed = session.endpoint != source
        session.endpoint = source
        if case .ack = envelope.frame {
            sessions[session.id] = session
            handleAck(pushID: envelope.id, session: session.id, ms: ms, into: &out)
            return
        }
        // Request rate per session.
        let rate = Float(configuration.requestRatePerSecond)
        if rate > 0 {
            let elapsed = Float(ms &- session.tokensAtMillis) / 1000
            session.tokens = min(Float(configuration.requestBurst), session.tokens + elapsed * rate)
            session.tokensAtMillis = ms
            guard session.tokens >= 1 else {
                sessions[session.id] = session
                counters.rateLimited += 1
                respond(.error(ControlFailure(.rateLimited, "over \(configuration.requestRatePerSecond) requests per second; slow down")),
                        id: envelope.id, session: session.id, into: &out)
                return
            }
            session.tokens -= 1
        }
        counters.requests += 1
        if session.superseded {
            sessions[session.id] = session
            respond(.error(ControlFailure(.superseded, "this PeerID registered again from another session; this one is closed")),
                    id: envelope.id, session: session.id, into: &out)
            return
        }
        if session.peer != nil {
            session.lastHeardMillis = ms
            file(&session)
        }
        sessions[session.id] = session
        if roamed, let peer = session.peer, !session.superseded, var entry = directory.entry(for: peer), entry.home == nil {
            entry.observed = source
            directory.upsert(entry)
            publishToCluster(entry, into: &out)
        }
        handleRequest(envelope.frame, id: envelope.id, session: session.id, ms: ms, into: &out)
    }

    // MARK: - Output

    /// Seals `frame` for the session and queues it.
    mutating func respond(_ frame: ControlFrame, id: UInt32, session: UInt64, into out: inout [CheckpointAction]) {
        guard let s = sessions[session] else { return }
        let counter = s.sendCounter + 1
        sessions[session]!.sendCounter = counter
        var plain = ByteBuffer()
        plain.reserveCapacity(64)
        plain.writeControlFrame(frame, id: id)
        counters.sent += 1
        out.append(.send(ControlCipher.sealPacket(plain, sessionID: s.id, counter: counter, key: s.sendKey), to: s.endpoint))
    }

    /// Sends a push to `peer`'s session and keeps it until acknowledged; false when offline.
    /// A peer registered on another supernode gets it through that one (`pushRemote`).
    @discardableResult
    mutating func push(_ frame: ControlFrame, to peer: PeerID, flight: MessageFlight? = nil, origin: ClusterOrigin? = nil,
                       ms: UInt64, into out: inout [CheckpointAction]) -> Bool {
        guard let sid = sessionByPeer[peer], let s = sessions[sid] else {
            guard origin == nil, let home = directory.entry(for: peer)?.home else { return false }
            pushRemote(frame, to: peer, at: home, flight: flight, ms: ms, into: &out)
            return true
        }
        let pushID = s.nextPushID
        sessions[sid]!.nextPushID = pushID &+ 1 == 0 ? 1 : pushID &+ 1
        pushes[PushKey(session: sid, push: pushID)] = PendingPush(
            frame: frame, nextSendMillis: ms + CheckpointConfiguration.pushRetransmitMillis,
            gapMillis: CheckpointConfiguration.pushRetransmitMillis,
            giveUpMillis: ms + CheckpointConfiguration.pushLifetimeMillis, flight: flight, origin: origin)
        if let flight { flightsBySender[SenderMessageKey(session: flight.senderSession, messageID: flight.messageID)] = PushKey(session: sid, push: pushID) }
        respond(frame, id: pushID, session: sid, into: &out)
        return true
    }

    /// Removes the pushes waiting on session `sid`, in the order they were first sent.
    mutating func takePushes(of sid: UInt64) -> [PendingPush] {
        let keys = pushes.keys.filter { $0.session == sid }.sorted { $0.push < $1.push }
        return keys.compactMap { pushes.removeValue(forKey: $0) }
    }

    /// Marks session `sid` superseded (it answers `superseded` until it expires) and returns the
    /// pushes that were waiting on it.
    mutating func supersede(_ sid: UInt64) -> [PendingPush] {
        guard var session = sessions[sid] else { return [] }
        session.superseded = true
        file(&session)
        sessions[sid] = session
        return takePushes(of: sid)
    }

    /// Sends pushes taken from `peer`'s old session to wherever it is registered now, in order;
    /// one that cannot go (the peer is gone, or it was another supernode's and the peer moved
    /// away from here) ends `offline`.
    mutating func repush(_ stranded: [PendingPush], to peer: PeerID, ms: UInt64, into out: inout [CheckpointAction]) {
        for p in stranded {
            if let flight = p.flight { flightsBySender[SenderMessageKey(session: flight.senderSession, messageID: flight.messageID)] = nil }
            if !push(p.frame, to: peer, flight: p.flight, origin: p.origin, ms: ms, into: &out) {
                settle(p, .offline, ms: ms, into: &out)
            }
        }
    }

    /// A push ended (delivered, or never will be): its message's sender, or the supernode that
    /// asked for it, is told.
    mutating func settle(_ p: PendingPush, _ outcome: MessageOutcome.Outcome, ms: UInt64, into out: inout [CheckpointAction]) {
        if let flight = p.flight { finish(flight, outcome: outcome, ms: ms, into: &out) }
        if let origin = p.origin { out.append(.cluster(.pushOutcome(id: origin.id, outcome: outcome), to: origin.node)) }
    }

    // MARK: - Time

    /// Files the session in the expiry wheel under its current deadline.
    mutating func file(_ session: inout CheckpointSession) {
        let second = session.expiryMillis(misses: configuration.expiryMisses) / 1000 + 1
        guard second != session.expirySecond else { return }
        session.expirySecond = second
        expiryWheel[second, default: []].append(session.id)
    }

    /// Expires silent sessions, retransmits and gives up pushes, times out negotiations.
    public mutating func tick(now: NIODeadline, into out: inout [CheckpointAction]) {
        let ms = Self.millis(now)
        let second = ms / 1000
        if second > wheelCursor {
            let due: [UInt64]
            if second - wheelCursor > UInt64(expiryWheel.count) {
                due = expiryWheel.keys.filter { $0 <= second }.sorted()
            } else {
                due = Array((wheelCursor + 1)...second)
            }
            wheelCursor = second
            for s in due {
                guard let ids = expiryWheel.removeValue(forKey: s) else { continue }
                for id in ids {
                    guard let session = sessions[id], session.expirySecond == s else { continue }
                    if session.expiryMillis(misses: configuration.expiryMisses) > ms {
                        var refiled = session
                        file(&refiled)
                        sessions[id] = refiled
                        continue
                    }
                    endSession(id, change: .expired, ms: ms, into: &out)
                }
            }
        }
        retransmitPushes(ms: ms, into: &out)
        timeOutNegotiations(ms: ms, into: &out)
        timeOutTraversals(ms: ms, into: &out)
        timeOutRemotePushes(ms: ms, into: &out)
        if !departing.isEmpty { continueDepartures(ms: ms, into: &out) }
        indexCalls.forget(dueAt: ms)
        recentOutcomes.forget(dueAt: ms)
        helloLimiter.sweep(now: now)
    }

    private mutating func retransmitPushes(ms: UInt64, into out: inout [CheckpointAction]) {
        guard !pushes.isEmpty else { return }
        var due: [PushKey] = []
        for (key, p) in pushes where p.nextSendMillis <= ms { due.append(key) }
        for key in due {
            guard var p = pushes[key] else { continue }
            if ms >= p.giveUpMillis {
                pushes[key] = nil
                counters.pushesGivenUp += 1
                settle(p, .timedOut, ms: ms, into: &out)
                continue
            }
            p.gapMillis = min(p.gapMillis * 2, CheckpointConfiguration.pushRetransmitCapMillis)
            p.nextSendMillis = min(ms + p.gapMillis, p.giveUpMillis)
            pushes[key] = p
            respond(p.frame, id: key.push, session: key.session, into: &out)
        }
    }

    /// Ends a session: unregisters its peer (telling watchers `change`), fails what waits on it.
    mutating func endSession(_ id: UInt64, change: StatusEvent.Change, ms: UInt64, into out: inout [CheckpointAction]) {
        guard let session = sessions.removeValue(forKey: id) else { return }
        // Pushes to this session will never be acknowledged.
        for p in takePushes(of: id) { settle(p, .offline, ms: ms, into: &out) }
        indexCalls.removeSession(id)
        guard let peer = session.peer, !session.superseded, sessionByPeer[peer] == id else { return }
        out.append(.presence(peer, online: false))
        if change == .expired { counters.expirations += 1 } else { counters.unregistrations += 1 }
        sessionByPeer[peer] = nil
        directory.remove(peer)
        if configuration.clustered { out.append(.cluster(.peerDown(peer, change: change), to: nil)) }
        dropWatches(of: peer)
        notifyWatchers(of: peer, StatusEvent(peer: peer, change: change), ms: ms, into: &out)
        refuseNegotiations(involving: peer, ms: ms, into: &out)
    }
}
