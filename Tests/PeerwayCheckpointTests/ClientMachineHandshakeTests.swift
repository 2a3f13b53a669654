import Crypto
import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwayCheckpoint

@Suite("Client machine: handshake, registration, failover")
struct ClientMachineHandshakeTests {
    @Test("full handshake with a cookie, then a register whose signature verifies against the transcript")
    func handshakeWithCookie() throws {
        var h = ClientHarness()
        h.startMachine()
        let hello = h.takeOne()
        #expect(hello.to == 0)
        #expect(hello.bytes.readableBytes >= ControlLimits.minimumHelloBytes)
        guard case .hello(let first) = FakeCheckpoint.packet(hello.bytes) else { Issue.record("no hello"); return }
        #expect(first.cookie == nil)

        h.deliver(h.checkpoints[0].answerHello(hello.bytes))
        let cookieHello = h.takeOne()
        guard case .hello(let second) = FakeCheckpoint.packet(cookieHello.bytes) else { Issue.record("no second hello"); return }
        #expect(second.cookie != nil)
        #expect(second.ephemeralKey == first.ephemeralKey, "the cookie binds the same ephemeral key")
        #expect(cookieHello.bytes.readableBytes >= ControlLimits.minimumHelloBytes)

        h.deliver(h.checkpoints[0].answerHello(cookieHello.bytes))
        let taken1 = h.openSent()
        let register = try #require(taken1.first)
        guard case .register(let request) = register.frame else { Issue.record("expected register, got \(register.frame)"); return }
        #expect(h.machine.sessionID == h.checkpoints[0].session?.id)

        // The signature covers the label, this session's transcript and the body.
        let transcript = try #require(h.checkpoints[0].session?.keys.transcript)
        let publicKey = try Curve25519.Signing.PublicKey(rawRepresentation: request.publicKey)
        #expect(publicKey.isValidSignature(request.signature, for: request.signedBytes(transcript: transcript)))
        #expect(!publicKey.isValidSignature(request.signature, for: request.signedBytes(transcript: [UInt8](repeating: 0, count: 32))))
        #expect(PeerID(publicKey: publicKey) == h.identity.peerID)
        #expect(request.keepaliveSeconds == ControlLimits.defaultKeepaliveSeconds)
        #expect(request.candidates == ClientHarness.candidates)
        #expect(request.metadata["name"] == "alice")

        h.confirm(register)
        let expected = CheckpointRegistration(peer: h.identity.peerID, observed: h.checkpoints[0].observed,
                                              keepaliveSeconds: ControlLimits.defaultKeepaliveSeconds, supernode: 0)
        #expect(h.events == [.registered(expected)])
        #expect(h.machine.registration == expected)
        #expect(h.wakeUpAt == h.now + .seconds(25), "the next thing due is the keepalive")
    }

    @Test("hellos are retransmitted at 0, 0.5, 1.5, 3.5 s; each attempt uses a fresh ephemeral key")
    func helloRetransmission() {
        var h = ClientHarness()
        h.startMachine()
        h.advance(by: .milliseconds(4_999))
        let first = h.takeSent()
        #expect(first.map { $0.at - h.start } == [.zero, .milliseconds(500), .milliseconds(1_500), .milliseconds(3_500)])
        let keys = Set(first.compactMap { sent -> [UInt8]? in
            guard case .hello(let hello) = FakeCheckpoint.packet(sent.bytes) else { return nil }
            return hello.ephemeralKey
        })
        #expect(keys.count == 1, "retransmissions repeat the same hello")

        h.advance(by: .milliseconds(1))
        let second = h.takeOne()
        guard case .hello(let next) = FakeCheckpoint.packet(second.bytes) else { Issue.record("no hello"); return }
        #expect(!keys.contains(next.ephemeralKey), "a new attempt has a new ephemeral key")
        if CheckpointClientLimits.handshakeAttemptsPerSupernode > 1 {
            #expect(h.events.isEmpty, "one failed attempt is not yet a failover")
        } else {
            #expect(h.events == [.disconnected(.supernodeUnreachable(supernode: 0))],
                    "each failed attempt moves on (here, back to the only supernode) and says so")
        }
        #expect(h.machine.statistics.retransmissions == 3)
    }

    @Test("after the attempts at one supernode fail, the next one is used and registered with")
    func failover() throws {
        var h = ClientHarness(supernodes: 2)
        h.startMachine()
        h.advance(by: CheckpointClientLimits.helloAttemptTimeout * Int64(CheckpointClientLimits.handshakeAttemptsPerSupernode) - .milliseconds(1))
        let taken2 = h.takeSent()
        #expect(taken2.allSatisfy { $0.to == 0 })
        #expect(h.events.isEmpty)
        h.advance(by: .milliseconds(1))
        #expect(h.events == [.disconnected(.supernodeUnreachable(supernode: 0))])
        #expect(h.machine.currentSupernode == 1)

        let taken3 = h.handshake(with: 1)
        let register = try #require(taken3)
        h.confirm(register, at: 1)
        #expect(h.machine.registration?.supernode == 1)
        guard case .registered(let registration) = h.events.last else { Issue.record("not registered: \(h.events)"); return }
        #expect(registration.supernode == 1)

        // Datagrams from the supernode no longer in use are ignored.
        let before = h.machine.statistics.unexpected
        h.deliver(ByteBuffer(bytes: [1, 2, 3]), from: 0)
        #expect(h.machine.statistics.unexpected == before + 1)
    }

    @Test("round robin wraps around to the first supernode")
    func roundRobinWraps() {
        var h = ClientHarness(supernodes: 2)
        h.startMachine()
        let perSupernode = CheckpointClientLimits.helloAttemptTimeout * Int64(CheckpointClientLimits.handshakeAttemptsPerSupernode)
        h.advance(by: perSupernode * 2)
        #expect(h.events == [.disconnected(.supernodeUnreachable(supernode: 0)), .disconnected(.supernodeUnreachable(supernode: 1))])
        #expect(h.machine.currentSupernode == 0)
        let taken4 = h.takeSent()
        #expect(taken4.last?.to == 0)
    }

    @Test("a stale cookie (for another ephemeral key) and a forged hello reply are ignored")
    func staleCookieAndForgedReply() {
        var h = ClientHarness()
        h.startMachine()
        _ = h.takeOne()
        var stale = ByteBuffer()
        stale.writeControlPacket(.cookie(ControlCookie(echo: [UInt8](repeating: 9, count: 8), cookie: [UInt8](repeating: 1, count: 16))))
        h.deliver(stale)
        let taken5 = h.takeSent()
        #expect(taken5.isEmpty)
        #expect(h.machine.statistics.unexpected == 1)

        var forged = ByteBuffer()
        let bogusKey = Array(Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation)
        forged.writeControlPacket(.helloReply(ControlHelloReply(sessionID: 1, ephemeralKey: bogusKey, sealedWelcome: ByteBuffer(bytes: [UInt8](repeating: 0, count: 40)))))
        h.deliver(forged)
        #expect(h.machine.statistics.unauthenticated == 1)
        #expect(h.machine.sessionID == nil)
    }

    @Test("a register that goes unanswered fails the attempt and starts a new handshake")
    func registerTimeout() {
        var h = ClientHarness()
        h.startMachine()
        _ = h.handshake()
        h.advance(by: CheckpointClientLimits.defaultRequestTimeout - .milliseconds(1))
        let retransmitted = h.openSent()
        #expect(retransmitted.count == 8 && retransmitted.allSatisfy { $0.frame.kind == .register })
        h.advance(by: .milliseconds(1))
        guard case .hello = FakeCheckpoint.packet(h.takeOne().bytes) else { Issue.record("no new hello"); return }
        #expect(h.machine.sessionID == nil)
    }

    @Test("a registration refused for a bad signature stops the machine")
    func registrationRefused() throws {
        var h = ClientHarness()
        h.startMachine()
        let taken6 = h.handshake()
        let register = try #require(taken6)
        let failure = ControlFailure(.badSignature, "signature does not verify")
        h.push(.error(failure), id: register.id)
        #expect(h.events == [.stopped(.registrationRefused(failure))])
        #expect(h.machine.isStopped)
    }
}
