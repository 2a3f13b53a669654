import Crypto
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

@Suite("CHECKPOINT machine: handshake and security")
struct CheckpointMachineSecurityTests {
    @Test("a new source gets a cookie no larger than its hello, and state only after returning it")
    func cookieBeforeState() throws {
        var h = CheckpointHarness()
        let a = WirePeer(1)
        let initiator = ControlHandshakeInitiator(checkpointKey: h.key.publicKey)
        let hello = encode(initiator.hello)
        let answer = h.deliver(hello, from: a.endpoint)
        #expect(answer.count == 1)
        #expect(answer[0].0.readableBytes <= hello.readableBytes)
        guard case .cookie = try decode(answer[0].0) else { Issue.record("not a cookie"); return }
        #expect(h.machine.sessionCount == 0)
        // The cookie does not work from another address (a spoofer never sees it).
        var withCookie = initiator
        guard case .cookie(let c) = try decode(answer[0].0) else { return }
        let accepted = withCookie.accept(c)
        #expect(accepted)
        let elsewhere = h.deliver(encode(withCookie.hello), from: PeerEndpoint(ip: .v4(0x0808_0808), port: 1))
        guard case .cookie = try decode(elsewhere[0].0) else { Issue.record("a moved cookie was accepted"); return }
        #expect(h.machine.sessionCount == 0)
        let reply = h.deliver(encode(withCookie.hello), from: a.endpoint)
        guard case .helloReply(let r) = try decode(reply[0].0) else { Issue.record("no hello reply"); return }
        #expect(reply[0].0.readableBytes <= hello.readableBytes)
        #expect(h.machine.sessionCount == 1)
        let (keys, welcome) = try withCookie.complete(r)
        #expect(welcome.observed == a.endpoint)
        #expect(keys.transcript.count == 32)
    }

    @Test("amplification: unauthenticated input of every kind never gets more bytes back than it sent")
    func amplificationAtMostOne() throws {
        var h = CheckpointHarness()
        var rng = STUNSeededRandom(seed: 9)
        var bytesIn = 0, bytesOut = 0
        for i in 0..<2_000 {
            let source = PeerEndpoint(ip: .v4(0x0A00_0000 | UInt32(i % 200)), port: UInt16(1000 + i))
            var datagram = ByteBuffer()
            switch i % 4 {
            case 0: // hellos without cookie
                datagram.writeControlPacket(ControlHandshakeInitiator(checkpointKey: h.key.publicKey).hello)
            case 1: // sealed packets for sessions that do not exist
                datagram.writeControlPacket(.sealed(ControlSealed(sessionID: rng.next(), counter: 1,
                                                                  ciphertext: ByteBuffer(bytes: [UInt8](repeating: 1, count: 16)))))
            case 2: // hellos with forged cookies
                datagram.writeControlPacket(.hello(ControlHello(ephemeralKey: Array(Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation),
                                                                cookie: (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) })))
            default: // garbage
                datagram.writeBytes((0..<Int(rng.next() % 1200)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            }
            bytesIn += datagram.readableBytes
            for (answer, to) in h.deliver(datagram, from: source) {
                #expect(to == source)
                #expect(answer.readableBytes <= datagram.readableBytes)
                bytesOut += answer.readableBytes
            }
        }
        let factor = Double(bytesOut) / Double(bytesIn)
        #expect(factor <= 1.0)
        #expect(h.machine.counters.unauthenticatedBytesOut <= h.machine.counters.unauthenticatedBytesIn)
        #expect(h.machine.sessionCount == 0)
        print("amplification: \(bytesIn) bytes in, \(bytesOut) bytes out, factor \(factor)")
    }

    @Test("a registration signed by another key is refused and changes nothing")
    func spoofedRegistration() throws {
        var h = CheckpointHarness()
        let victim = WirePeer(1)
        let attacker = WirePeer(2)
        attacker.handshake(&h)
        // The attacker claims the victim's public key but can only sign with its own.
        var forged = attacker.registerRequest()
        forged.publicKey = Array(victim.identity.publicKey.rawRepresentation)
        forged.signature = try attacker.identity.signature(for: forged.signedBytes(transcript: attacker.keys.transcript))
        let answer = attacker.request(.register(forged), &h)
        guard case .error(let e) = answer else { Issue.record("expected an error, got \(String(describing: answer))"); return }
        #expect(e.code == .badSignature)
        #expect(h.machine.registeredCount == 0)
        #expect(h.machine.directory.entry(for: victim.id) == nil)
    }

    @Test("a registration captured from one session is refused in another")
    func registrationReplayedIntoAnotherSession() throws {
        var h = CheckpointHarness()
        let a = WirePeer(1)
        a.handshake(&h)
        let captured = a.registerRequest()
        let eve = WirePeer(3)
        eve.handshake(&h)
        let answer = eve.request(.register(captured), &h)
        guard case .error(let e) = answer else { Issue.record("expected badSignature"); return }
        #expect(e.code == .badSignature)
        #expect(h.machine.registeredCount == 0)
    }

    @Test("a replayed packet is dropped without an answer")
    func replayedPacket() throws {
        var h = CheckpointHarness()
        let a = WirePeer(1)
        a.join(&h)
        let packet = a.seal(.lookup(a.id), id: 99)
        #expect(h.deliver(packet, from: a.endpoint).count == 1)
        #expect(h.deliver(packet, from: a.endpoint).isEmpty)
        #expect(h.machine.counters.replays == 1)
    }

    @Test("tampered and unauthenticated packets are dropped; unknown sessions get a 12-byte hint")
    func unauthenticatedPackets() throws {
        var h = CheckpointHarness()
        let a = WirePeer(1)
        a.join(&h)
        var packet = a.seal(.keepalive, id: 5)
        let last = packet.writerIndex - 1
        packet.setInteger(packet.getInteger(at: last, as: UInt8.self)! ^ 1, at: last)
        #expect(h.deliver(packet, from: a.endpoint).isEmpty)
        #expect(h.machine.counters.authenticationFailures == 1)
        // A packet for a session that does not exist.
        let stranger = ControlCipher.sealPacket(ByteBuffer(bytes: [0x11, 0, 0, 0, 1]), sessionID: 12345, counter: 1,
                                                key: ControlKey(bytes: [UInt8](repeating: 0, count: 32)))
        let hint = h.deliver(stranger, from: a.endpoint)
        #expect(hint.count == 1)
        #expect(hint[0].0.readableBytes == 12)
        guard case .sessionUnknown(let id) = try decode(hint[0].0) else { Issue.record("no hint"); return }
        #expect(id == 12345)
        #expect(h.machine.registeredCount == 1)
    }

    @Test("a message over 1 KiB is refused by the decoder and never reaches its recipient")
    func oversizedMessage() throws {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h)
        b.join(&h)
        // Hand-made frame: sendMessage with a 1025-byte text (the encoder refuses to make one).
        var plain = ByteBuffer()
        plain.writeInteger(ControlFrame.Kind.sendMessage.rawValue)
        plain.writeInteger(UInt32(3))
        plain.writeBytes(b.id.bytes)
        plain.writeInteger(UInt64(1))
        plain.writeInteger(UInt16(1025))
        plain.writeBytes([UInt8](repeating: 0x61, count: 1025))
        a.sendCounter += 1
        let packet = ControlCipher.sealPacket(plain, sessionID: a.sessionID, counter: a.sendCounter, key: a.keys.peerToCheckpoint)
        #expect(h.deliver(packet, from: a.endpoint).isEmpty)
        #expect(h.machine.counters.malformed == 1)
        #expect(b.pushes().isEmpty)
        // Exactly 1 KiB goes through.
        a.send(.sendMessage(OutgoingMessage(to: b.id, messageID: 2, text: String(repeating: "a", count: 1024))), id: 4, &h)
        #expect(b.pushes().count == 1)
    }

    @Test("requests before registering are refused with notRegistered")
    func notRegistered() {
        var h = CheckpointHarness()
        let a = WirePeer(1)
        a.handshake(&h)
        guard case .error(let e) = a.request(.lookup(a.id), &h) else { Issue.record("expected an error"); return }
        #expect(e.code == .notRegistered)
    }

    @Test("a session over its request rate gets rateLimited answers")
    func requestRate() {
        var h = CheckpointHarness { $0.requestRatePerSecond = 10; $0.requestBurst = 5 }
        let a = WirePeer(1)
        a.join(&h)
        var limited = 0
        for _ in 0..<20 {
            if case .error(let e) = a.request(.keepalive, &h), e.code == .rateLimited { limited += 1 }
        }
        #expect(limited >= 14)
        _ = h.advance(seconds: 1)
        guard case .keepaliveAck = a.request(.keepalive, &h) else { Issue.record("not refilled"); return }
    }

    @Test("hellos over the per-source rate are dropped")
    func helloRate() {
        var h = CheckpointHarness { $0.helloRatePerSecond = 5; $0.helloBurst = 5 }
        let source = PeerEndpoint(ip: .v4(0x0A00_0001), port: 9)
        var answered = 0
        for _ in 0..<50 {
            answered += h.deliver(encode(ControlHandshakeInitiator(checkpointKey: h.key.publicKey).hello), from: source).count
        }
        #expect(answered == 5)
        #expect(h.machine.counters.rateLimited == 45)
    }

    @Test("a packet from a new address of the same session moves the peer (NAT rebinding)")
    func roaming() {
        var h = CheckpointHarness()
        let a = WirePeer(1)
        a.join(&h)
        let moved = PeerEndpoint(ip: .v4(0xC633_6499), port: 5555)
        let sent = h.deliver(a.seal(.keepalive, id: 77), from: moved)
        #expect(sent.count == 1)
        #expect(sent[0].1 == moved)
        #expect(h.machine.directory.entry(for: a.id)?.observed == moved)
    }
}
