import Crypto
import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwayCheckpoint

/// A scripted checkpoint for the client machine's tests, made of the real server-side crypto
/// (`ControlCookieJar`, `ControlHandshakeResponder`, `ControlCipher`): it answers hellos and opens
/// and seals session packets; the tests decide what to answer and when.
struct FakeCheckpoint {
    let key: SupernodeKey
    let host: String
    private var jar = ControlCookieJar(nowMillis: 0, secretSource: { [UInt8](repeating: 7, count: 32) })
    /// The endpoint the checkpoint "sees" the peer at.
    var observed = PeerEndpoint(ip: .v4(0xC633_6407), port: 40_000)
    var nextSessionID: UInt64 = 0x5E55_0001
    private(set) var session: Session?
    /// Cookies sent, and hellos answered with a session.
    private(set) var cookiesSent = 0

    struct Session {
        var id: UInt64
        var keys: ControlSessionKeys
        var counter: UInt64 = 0
        var replay = ReplayWindow()
    }

    init(seed: UInt8, host: String = "192.0.2.1") {
        key = try! SupernodeKey(seed: [UInt8](repeating: seed, count: 32))
        self.host = host
    }

    var address: SupernodeAddress { SupernodeAddress(publicKey: key.publicKey, host: host, port: 7400) }

    static func packet(_ bytes: ByteBuffer) -> ControlPacket {
        var copy = bytes
        return try! copy.readControlPacket()
    }

    /// Answers a hello: a cookie when it has none (or a wrong one), a hello reply opening a new
    /// session when its cookie verifies.
    mutating func answerHello(_ bytes: ByteBuffer) -> ByteBuffer {
        guard case .hello(let hello) = Self.packet(bytes) else {
            Issue.record("expected a hello, got \(Self.packet(bytes))")
            return ByteBuffer()
        }
        var out = ByteBuffer()
        if let cookie = hello.cookie, jar.verify(cookie, source: observed, ephemeral: hello.ephemeralKey, nowMillis: 0) {
            let welcome = Welcome(observed: observed, keepaliveSeconds: ControlLimits.defaultKeepaliveSeconds, serverTimeMillis: 1)
            let (reply, keys) = try! ControlHandshakeResponder.respond(to: hello, key: key, sessionID: nextSessionID, welcome: welcome)
            session = Session(id: nextSessionID, keys: keys)
            nextSessionID += 1
            out.writeControlPacket(.helloReply(reply))
        } else {
            let cookie = jar.cookie(for: observed, ephemeral: hello.ephemeralKey, nowMillis: 0)
            cookiesSent += 1
            out.writeControlPacket(.cookie(ControlCookie(echo: Array(hello.ephemeralKey.prefix(ControlLimits.cookieEchoBytes)), cookie: cookie)))
        }
        return out
    }

    /// Opens a sealed packet of the peer; `nil` (and a recorded issue) when it does not open.
    mutating func open(_ bytes: ByteBuffer, sourceLocation: SourceLocation = #_sourceLocation) -> ControlEnvelope? {
        guard case .sealed(let sealed) = Self.packet(bytes), var s = session, sealed.sessionID == s.id,
              s.replay.check(sealed.counter),
              var plain = try? ControlCipher.openPacket(sealed, key: s.keys.peerToCheckpoint) else {
            Issue.record("the checkpoint could not open \(Self.packet(bytes))", sourceLocation: sourceLocation)
            return nil
        }
        s.replay.record(sealed.counter)
        session = s
        return try? plain.readControlFrame()
    }

    /// The counter of a sealed packet of the peer.
    static func counter(_ bytes: ByteBuffer) -> UInt64? {
        guard case .sealed(let sealed) = packet(bytes) else { return nil }
        return sealed.counter
    }

    /// A sealed packet of the current session carrying `frame`.
    mutating func seal(_ frame: ControlFrame, id: UInt32) -> ByteBuffer {
        var plain = ByteBuffer()
        plain.writeControlFrame(frame, id: id)
        session!.counter += 1
        return ControlCipher.sealPacket(plain, sessionID: session!.id, counter: session!.counter, key: session!.keys.checkpointToPeer)
    }

    func sessionUnknown() -> ByteBuffer {
        var out = ByteBuffer()
        out.writeControlPacket(.sessionUnknown(sessionID: session!.id))
        return out
    }

    /// Forgets the session, as a restarted checkpoint would.
    mutating func restart() { session = nil }
}

/// Drives a `CheckpointClientMachine` under virtual time and records what it does.
struct ClientHarness {
    var machine: CheckpointClientMachine
    var checkpoints: [FakeCheckpoint]
    let identity: PeerIdentity
    /// Virtual time (starts at an arbitrary non-zero uptime).
    private(set) var now = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    let start: NIODeadline
    private(set) var wakeUpAt: NIODeadline?
    /// Datagrams sent and not yet taken, with the time they were sent.
    var sent: [(bytes: ByteBuffer, to: Int, at: NIODeadline)] = []
    var completions: [CheckpointRequestToken: Result<CheckpointClientResponse, CheckpointClientError>] = [:]
    var events: [CheckpointClientEvent] = []

    static let candidates = [PeerEndpoint(ip: .v4(0x0A00_0005), port: 5555)]

    init(supernodes: Int = 1, keepaliveSeconds: UInt16 = ControlLimits.defaultKeepaliveSeconds,
         metadata: [String: String] = ["name": "alice"]) {
        identity = try! PeerIdentity(seed: [UInt8](repeating: 42, count: 32))
        checkpoints = (0..<supernodes).map { FakeCheckpoint(seed: UInt8(1 + $0), host: "192.0.2.\(1 + $0)") }
        machine = CheckpointClientMachine(configuration: CheckpointClientConfiguration(
            identity: identity, supernodes: checkpoints.map(\.address), keepaliveSeconds: keepaliveSeconds,
            candidates: Self.candidates, metadata: try! PeerMetadata(metadata)))
        start = now
    }

    /// Seconds since the harness started, for readable timing assertions.
    var elapsed: TimeAmount { now - start }

    mutating func perform(_ actions: [CheckpointClientAction]) {
        for action in actions {
            switch action {
            case .send(let bytes, let to): sent.append((bytes, to, now))
            case .scheduleWakeUp(let at): wakeUpAt = at
            case .completed(let token, let result):
                #expect(completions[token] == nil, "\(token) completed twice")
                completions[token] = result
            case .event(let event): events.append(event)
            }
        }
    }

    mutating func startMachine() { perform(machine.start(now: now)) }

    /// Moves virtual time forward, waking the machine at each time it asked for.
    mutating func advance(by amount: TimeAmount) {
        let target = now + amount
        while let at = wakeUpAt, at <= target {
            now = max(now, at)
            wakeUpAt = nil
            perform(machine.wakeUp(now: now))
        }
        now = target
    }

    mutating func takeSent() -> [(bytes: ByteBuffer, to: Int, at: NIODeadline)] {
        defer { sent = [] }
        return sent
    }

    /// The one datagram sent since the last take (records an issue otherwise).
    mutating func takeOne(sourceLocation: SourceLocation = #_sourceLocation) -> (bytes: ByteBuffer, to: Int) {
        let all = takeSent()
        #expect(all.count == 1, "expected one datagram, got \(all.count): \(all.map { FakeCheckpoint.packet($0.bytes).kind })", sourceLocation: sourceLocation)
        guard let first = all.first else { return (ByteBuffer(), -1) }
        return (first.bytes, first.to)
    }

    mutating func deliver(_ bytes: ByteBuffer, from index: Int = 0) {
        perform(machine.datagramReceived(bytes, from: index, now: now))
    }

    /// The checkpoint `index` sends `frame` (sealed in its session).
    mutating func push(_ frame: ControlFrame, id: UInt32, from index: Int = 0) {
        let bytes = checkpoints[index].seal(frame, id: id)
        deliver(bytes, from: index)
    }

    /// Opens every sealed packet sent since the last take at checkpoint `index`.
    mutating func openSent(at index: Int = 0, sourceLocation: SourceLocation = #_sourceLocation) -> [ControlEnvelope] {
        takeSent().compactMap { sent in
            #expect(sent.to == index, sourceLocation: sourceLocation)
            return checkpoints[index].open(sent.bytes, sourceLocation: sourceLocation)
        }
    }

    /// Runs the handshake (hello, cookie, hello with cookie, reply) with checkpoint `index`
    /// from a hello the machine has just sent; returns the register envelope it then sent.
    mutating func handshake(with index: Int = 0, sourceLocation: SourceLocation = #_sourceLocation) -> ControlEnvelope? {
        let hello = takeOne(sourceLocation: sourceLocation)
        #expect(hello.to == index, sourceLocation: sourceLocation)
        deliver(checkpoints[index].answerHello(hello.bytes), from: index)
        let cookieHello = takeOne(sourceLocation: sourceLocation)
        deliver(checkpoints[index].answerHello(cookieHello.bytes), from: index)
        return openSent(at: index, sourceLocation: sourceLocation).first
    }

    /// The `registered` answer to a register envelope.
    mutating func confirm(_ register: ControlEnvelope, observed: PeerEndpoint? = nil, at index: Int = 0) {
        guard case .register(let request) = register.frame else {
            Issue.record("expected register, got \(register.frame)")
            return
        }
        push(.registered(Registered(peer: PeerID(digestOf: request.publicKey), observed: observed ?? checkpoints[index].observed,
                                    keepaliveSeconds: request.keepaliveSeconds, expiryMisses: ControlLimits.expiryMisses)),
             id: register.id, from: index)
    }

    /// Starts the machine and registers it with checkpoint 0.
    mutating func register(sourceLocation: SourceLocation = #_sourceLocation) {
        startMachine()
        guard let register = handshake(sourceLocation: sourceLocation) else { return }
        confirm(register)
        #expect(machine.registration != nil, sourceLocation: sourceLocation)
        events.removeAll()
    }

    /// A peer id for tests.
    static func peer(_ n: UInt8) -> PeerID { PeerID(high: UInt64(n), low: UInt64(n) << 8) }
}
