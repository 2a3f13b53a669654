import Foundation
import NIOCore
import Peerway
import PeerwayCheckpoint
import PeerwaySTUN
import PeerwaySupernode
import Testing

/// Collects a peer's events so a test can wait for the one it expects.
actor EventLog {
    private(set) var events: [PeerEvent] = []

    /// Follows `peer.events` (the stream has one consumer: this log).
    init(_ peer: Peer) {
        let stream = peer.events
        Task { await self.follow(stream) }
    }

    private func follow(_ stream: AsyncStream<PeerEvent>) async {
        for await e in stream { events.append(e) }
    }

    /// Waits up to `timeout` for an event matching `match`.
    func waitFor(timeout: Duration = .seconds(20), _ match: @Sendable (PeerEvent) -> Bool) async -> PeerEvent? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let e = events.first(where: match) { return e }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }
}

/// Loopback integration: a real supernode (CHECKPOINT alone) and real `Peer`s in this process.
@Suite("CHECKPOINT loopback: real supernode and peers")
struct CheckpointPeerTests {
    /// A supernode with CHECKPOINT only (no STUN pair, no RELAY) on 127.0.0.1.
    static func supernode(key: SupernodeKey = SupernodeKey(), port: UInt16 = 0, expiryMisses: UInt8 = 3) async throws -> Supernode {
        try await Supernode.start(SupernodeConfiguration(key: key, listen: SupernodeConfiguration.loopback.with(port: port),
                                                         stun: nil, relay: nil, tuneCheckpoint: { $0.expiryMisses = expiryMisses }))
    }

    static func options(keepalive: UInt16 = 25) -> PeerOptions {
        var o = PeerOptions()
        o.bindHost = "127.0.0.1"
        o.keepaliveSeconds = keepalive
        return o
    }

    @Test("register, lookup, search, messages delivered and failed, negotiation accepted and refused")
    func conversation() async throws {
        let supernode = try await Self.supernode()
        let address = supernode.address
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [address], metadata: ["app": "chat", "age": "31"],
                                     options: Self.options())
        let b = try await Peer.start(identity: PeerIdentity(), supernodes: [address], metadata: ["app": "chat", "age": "25"],
                                     options: Self.options())
        let bLog = EventLog(b)
        let info = try await a.lookup(b.id)
        #expect(info.online)
        #expect(info.metadata["age"] == "25")
        #expect(info.observed?.isLoopback == true)
        let hits = try await a.search("app=chat and age<30")
        #expect(hits.map(\.peer) == [b.id])
        await #expect(throws: PeerError.self) { try await a.search("app=") }

        #expect(try await a.send("one", to: b.id) == .delivered)
        #expect(try await a.send("two", to: b.id) == .delivered)
        let texts = await bLog.waitFor { if case .message(_, "two") = $0 { return true }; return false }
        #expect(texts != nil)
        let received = await bLog.events.compactMap { e -> String? in if case .message(let f, let t) = e, f == a.id { return t }; return nil }
        #expect(received == ["one", "two"])
        #expect(try await a.send("anyone?", to: PeerIdentity().peerID) == .offline)
        await #expect(throws: PeerError.messageTooLarge(bytes: 1025)) {
            try await a.send(String(repeating: "x", count: 1025), to: b.id)
        }

        // B answers requests (seen in its event log): refuses UDP with a reason, accepts TCP.
        let answering = Task {
            for transport in [TunnelTransport.udp, .tcp] {
                let e = await bLog.waitFor { if case .connectRequest(let r) = $0 { return r.transport == transport }; return false }
                guard case .connectRequest(let r) = e else { return }
                try? await b.answer(r, accept: transport == .tcp, reason: transport == .tcp ? "" : "udp is off")
            }
        }
        #expect(try await a.requestConnection(to: b.id, transport: .udp, note: "hi") == .refused(reason: "udp is off"))
        guard case .accepted = try await a.requestConnection(to: b.id, transport: .tcp) else {
            Issue.record("tcp was not accepted"); return
        }
        await answering.value
        await a.stop()
        await b.stop()
        let stats = supernode.checkpoint.statistics()
        #expect(stats.counters.messagesDelivered == 2)
        // Real handshakes on real sockets: unauthenticated bytes out never exceed bytes in.
        let c = stats.counters
        #expect(c.unauthenticatedBytesIn > 0)
        #expect(c.unauthenticatedBytesOut <= c.unauthenticatedBytesIn)
        print("checkpoint amplification on loopback: \(c.unauthenticatedBytesIn) B in, \(c.unauthenticatedBytesOut) B out")
        #expect(stats.registered == 0)
        await supernode.stop()
    }

    @Test("a watched peer killed without unregistering is expired and its watcher told")
    func watchWithExpiry() async throws {
        let supernode = try await Self.supernode(expiryMisses: 2)
        let address = supernode.address
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [address], options: Self.options())
        let aLog = EventLog(a)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-exp-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try LineProcess(Tools.peerway, ["peer", "--supernode", address.description, "--identity", dir + "/c.key",
                                                "--keepalive", "5", "--json", "--stay"])
        defer { c.kill9() }
        let cText = try #require(await c.waitFor("registered")?["id"] as? String, "c: \(c.allLines)")
        let cID = try #require(PeerID(cText))
        #expect(try await a.watch([cID]) == [PeerStatus(peer: cID, online: true)])
        let killed = ContinuousClock.now
        c.kill9()
        let expired = await aLog.waitFor(timeout: .seconds(25)) {
            if case .status(let p, false, .expired, _) = $0 { return p == cID }
            return false
        }
        #expect(expired != nil)
        let after = ContinuousClock.now - killed
        #expect(after >= .seconds(5) && after <= .seconds(16), "expired after \(after), expected 2 x 5 s of silence")
        #expect(try await a.lookup(cID).online == false)
        await a.stop()
        await supernode.stop()
    }

    @Test("peers re-register by themselves when their supernode restarts, and messages flow again")
    func supernodeRestart() async throws {
        let key = SupernodeKey()
        let first = try await Self.supernode(key: key)
        let address = first.address
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [address], options: Self.options(keepalive: 5))
        let b = try await Peer.start(identity: PeerIdentity(), supernodes: [address], options: Self.options(keepalive: 5))
        let aLog = EventLog(a), bLog = EventLog(b)
        #expect(try await a.send("before", to: b.id) == .delivered)
        await first.stop()
        let second = try await Self.supernode(key: key, port: address.port)
        #expect(second.checkpoint.statistics().registered == 0)
        // Each notices at its next keepalive (5 s), is told its session is unknown, and registers again.
        #expect(await aLog.waitFor(timeout: .seconds(20)) { if case .reregistered = $0 { return true }; return false } != nil)
        #expect(await bLog.waitFor(timeout: .seconds(20)) { if case .reregistered = $0 { return true }; return false } != nil)
        #expect(try await a.send("after", to: b.id) == .delivered)
        #expect(second.checkpoint.statistics().registered == 2)
        await a.stop()
        await b.stop()
        await second.stop()
    }

    @Test("a peer fails over to its second supernode when the first does not answer")
    func failover() async throws {
        let dead = try await Self.supernode()
        let deadAddress = dead.address
        await dead.stop()
        let live = try await Self.supernode()
        let liveAddress = live.address
        let started = ContinuousClock.now
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [deadAddress, liveAddress], options: Self.options())
        // One handshake attempt (5 s) at the silent one, then the live one; slack for a loaded machine.
        let took = ContinuousClock.now - started
        print("failover took \(took)")
        #expect(took < .seconds(20))
        try await Task.sleep(for: .milliseconds(300)) // statistics are published after each pass
        #expect(live.checkpoint.statistics().registered == 1)
        await a.stop()
        await live.stop()
    }

    @Test("when its supernode stops, a peer fails over to the next one at once, not at its next keepalive")
    func failoverOnShutdown() async throws {
        let first = try await Self.supernode()
        let firstAddress = first.address
        let second = try await Self.supernode()
        let secondAddress = second.address
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [firstAddress, secondAddress], options: Self.options())
        let log = EventLog(a)
        let stopped = ContinuousClock.now
        await first.stop()
        let moved = await log.waitFor(timeout: .seconds(20)) {
            if case .reregistered(_, let supernode) = $0 { return supernode == secondAddress }
            return false
        }
        #expect(moved != nil)
        let took = ContinuousClock.now - stopped
        print("failover after shutdown took \(took)")
        // One handshake attempt at the stopped supernode (5 s), then the next; the keepalive
        // (25 s) plays no part.
        #expect(took < .seconds(15))
        await a.stop()
        await second.stop()
    }

    @Test("a supernode address with the wrong key never completes the handshake")
    func wrongKey() async throws {
        let supernode = try await Self.supernode()
        let real = supernode.address
        let forged = SupernodeAddress(publicKey: SupernodeKey().publicKey, host: real.host, port: real.port)
        var o = Self.options()
        o.startTimeout = .seconds(3)
        await #expect(throws: PeerError.self) {
            _ = try await Peer.start(identity: PeerIdentity(), supernodes: [forged], options: o)
        }
        #expect(supernode.checkpoint.statistics().registered == 0)
        await supernode.stop()
    }
}
