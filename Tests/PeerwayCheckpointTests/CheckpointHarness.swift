import Crypto
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

/// A checkpoint machine under virtual time, and peers that speak the real protocol to it.
struct CheckpointHarness {
    let key: SupernodeKey
    var machine: CheckpointMachine<InMemoryLiveDirectory>
    var now = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    /// Peers that receive what the checkpoint sends to their endpoint.
    var peers: [WirePeer] = []
    /// Actions other than datagrams (INDEX calls, presence), in order, until a test takes them.
    var handedOut: [CheckpointAction] = []

    init(seed: UInt8 = 7, configure: (inout CheckpointConfiguration) -> Void = { _ in }) {
        key = try! SupernodeKey(seed: Array(repeating: seed, count: 32))
        var c = CheckpointConfiguration(key: key)
        configure(&c)
        machine = CheckpointMachine(configuration: c, directory: InMemoryLiveDirectory(), now: now)
    }

    /// Feeds a datagram and returns what the checkpoint sent.
    mutating func deliver(_ datagram: ByteBuffer, from source: PeerEndpoint) -> [(ByteBuffer, PeerEndpoint)] {
        var out: [CheckpointAction] = []
        machine.receive(datagram, from: source, now: now, into: &out)
        return route(out)
    }

    /// Hands each datagram to the peer it is addressed to; returns them all.
    mutating func route(_ out: [CheckpointAction]) -> [(ByteBuffer, PeerEndpoint)] {
        let sent = out.compactMap { a -> (ByteBuffer, PeerEndpoint)? in
            if case .send(let b, let to) = a { return (b, to) }
            return nil
        }
        handedOut += out.filter { if case .send = $0 { return false }; return true }
        for p in peers { p.take(sent) }
        return sent
    }

    /// Moves virtual time forward in 100 ms ticks; returns everything sent meanwhile.
    mutating func advance(seconds: Double) -> [(ByteBuffer, PeerEndpoint)] {
        var sent: [(ByteBuffer, PeerEndpoint)] = []
        let steps = Int(seconds * 10)
        for _ in 0..<steps {
            now = now + .milliseconds(100)
            var out: [CheckpointAction] = []
            machine.tick(now: now, into: &out)
            sent += route(out)
        }
        return sent
    }
}

/// A peer on the wire: handshakes, registers, seals requests and opens what comes back.
final class WirePeer {
    let identity: PeerIdentity
    let endpoint: PeerEndpoint
    var keys: ControlSessionKeys!
    var sessionID: UInt64 = 0
    var sendCounter: UInt64 = 0
    var window = ReplayWindow()
    var nextTransaction: UInt32 = 1
    /// Frames received and not yet taken by a test.
    var inbox: [ControlEnvelope] = []

    init(_ n: UInt8, endpoint: PeerEndpoint? = nil) {
        identity = try! PeerIdentity(seed: Array(repeating: n, count: 32))
        self.endpoint = endpoint ?? PeerEndpoint(ip: .v4(0xC633_6400 | UInt32(n)), port: 40_000 + UInt16(n))
    }

    var id: PeerID { identity.peerID }

    /// Runs hello → cookie → hello(cookie) → reply.
    func handshake(_ h: inout CheckpointHarness) {
        if !h.peers.contains(where: { $0 === self }) { h.peers.append(self) }
        var initiator = ControlHandshakeInitiator(checkpointKey: h.key.publicKey)
        let first = h.deliver(encode(initiator.hello), from: endpoint)
        #expect(first.count == 1)
        guard case .cookie(let cookie) = try! decode(first[0].0) else { Issue.record("expected a cookie"); return }
        let accepted = initiator.accept(cookie)
        #expect(accepted)
        let second = h.deliver(encode(initiator.hello), from: endpoint)
        guard second.count == 1, case .helloReply(let reply) = try! decode(second[0].0) else { Issue.record("expected a hello reply"); return }
        let (keys, welcome) = try! initiator.complete(reply)
        #expect(welcome.observed == endpoint)
        self.keys = keys
        sessionID = reply.sessionID
        sendCounter = 0
        window = ReplayWindow()
    }

    func registerRequest(metadata: [String: String] = [:], signer: PeerIdentity? = nil, transcript: [UInt8]? = nil,
                         keepalive: UInt16 = 25) -> RegisterRequest {
        var r = RegisterRequest(publicKey: Array(identity.publicKey.rawRepresentation), keepaliveSeconds: keepalive,
                                candidates: [PeerEndpoint(ip: .v4(0x0A00_0001), port: 5000)],
                                metadata: try! PeerMetadata(metadata), signature: [])
        r.signature = try! (signer ?? identity).signature(for: r.signedBytes(transcript: transcript ?? keys.transcript))
        return r
    }

    /// Handshake and register; returns the `registered` answer.
    @discardableResult
    func join(_ h: inout CheckpointHarness, metadata: [String: String] = [:]) -> ControlFrame? {
        handshake(&h)
        return request(.register(registerRequest(metadata: metadata)), &h)
    }

    func seal(_ frame: ControlFrame, id: UInt32) -> ByteBuffer {
        sendCounter += 1
        var plain = ByteBuffer()
        plain.writeControlFrame(frame, id: id)
        return ControlCipher.sealPacket(plain, sessionID: sessionID, counter: sendCounter, key: keys.peerToCheckpoint)
    }

    /// Sends a request and returns the response with its id (other frames go to the inbox).
    func request(_ frame: ControlFrame, _ h: inout CheckpointHarness) -> ControlFrame? {
        let id = nextTransaction
        nextTransaction += 1
        _ = h.deliver(seal(frame, id: id), from: endpoint)
        if let i = inbox.firstIndex(where: { $0.id == id && !$0.frame.isPush }) { return inbox.remove(at: i).frame }
        return nil
    }

    /// Sends a raw sealed frame and files whatever comes back.
    func send(_ frame: ControlFrame, id: UInt32, _ h: inout CheckpointHarness) {
        _ = h.deliver(seal(frame, id: id), from: endpoint)
    }

    /// Opens every datagram addressed to this peer into the inbox.
    func take(_ sent: [(ByteBuffer, PeerEndpoint)]) {
        guard keys != nil else { return }
        for (bytes, to) in sent where to == endpoint {
            guard case .sealed(let s) = try? decode(bytes), s.sessionID == sessionID, window.check(s.counter),
                  var plain = try? ControlCipher.openPacket(s, key: keys.checkpointToPeer),
                  let env = try? plain.readControlFrame() else { continue }
            window.record(s.counter)
            inbox.append(env)
        }
    }

    /// Removes and returns the pushes in the inbox.
    func pushes() -> [ControlEnvelope] {
        let p = inbox.filter { $0.frame.isPush }
        inbox.removeAll { $0.frame.isPush }
        return p
    }

    @discardableResult
    func ack(_ push: ControlEnvelope, _ h: inout CheckpointHarness) -> [(ByteBuffer, PeerEndpoint)] {
        h.deliver(seal(.ack, id: push.id), from: endpoint)
    }
}

func encode(_ p: ControlPacket) -> ByteBuffer {
    var b = ByteBuffer()
    b.writeControlPacket(p)
    return b
}

func decode(_ b: ByteBuffer) throws -> ControlPacket {
    var c = b
    return try c.readControlPacket()
}

extension ControlFrame {
    var isPush: Bool {
        switch self {
        case .deliver, .status, .connectRequested, .connectAnswered, .messageStatus, .networkStatus: return true
        default: return false
        }
    }
}
