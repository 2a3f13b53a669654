import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwayCheckpoint

@Suite("Client machine: keepalive, re-registration, reconnection")
struct ClientMachineSessionTests {
    @Test("keepalives go every keepaliveSeconds while answered")
    func keepaliveSchedule() throws {
        var h = ClientHarness(keepaliveSeconds: 10)
        h.register()
        let registered = h.now
        for round in 1...3 {
            h.advance(by: .seconds(10) - .milliseconds(1))
            let taken1 = h.takeSent()
            #expect(taken1.isEmpty)
            h.advance(by: .milliseconds(1))
            #expect(h.now - registered == .seconds(10 * Int64(round)))
            let taken2 = h.openSent()
            let keepalive = try #require(taken2.first)
            #expect(keepalive.frame == .keepalive)
            h.push(.keepaliveAck(observed: h.checkpoints[0].observed), id: keepalive.id)
            let taken3 = h.takeSent()
            #expect(taken3.isEmpty, "same address: no re-registration")
        }
        #expect(h.events.isEmpty)
    }

    @Test("the keepalive interval is the one the checkpoint confirmed, clamped to the protocol range")
    func keepaliveClamped() {
        var h = ClientHarness(keepaliveSeconds: 1)
        h.startMachine()
        guard let register = h.handshake(), case .register(let request) = register.frame else { Issue.record("no register"); return }
        #expect(request.keepaliveSeconds == ControlLimits.keepaliveSecondsRange.lowerBound)
    }

    @Test("a new observed endpoint in a keepalive answer triggers a re-registration on the same session")
    func observedAddressChange() throws {
        var h = ClientHarness()
        h.register()
        let session = h.machine.sessionID
        let old = h.checkpoints[0].observed
        let moved = PeerEndpoint(ip: .v4(0xC633_6408), port: 41_000)
        h.advance(by: .seconds(25))
        let taken4 = h.openSent()
        let keepalive = try #require(taken4.first)
        h.push(.keepaliveAck(observed: moved), id: keepalive.id)
        let taken5 = h.openSent()
        let register = try #require(taken5.first)
        guard case .register = register.frame else { Issue.record("expected register, got \(register.frame)"); return }
        h.confirm(register, observed: moved)
        #expect(h.machine.sessionID == session)
        #expect(h.machine.registration?.observed == moved)
        guard case .reregistered(let registration, let cause) = h.events.last else { Issue.record("no reregistered: \(h.events)"); return }
        #expect(registration.observed == moved)
        #expect(cause == .addressChanged(from: old))
    }

    @Test("a network change sends the keepalive at once: a roamed peer's registration follows within a round trip")
    func networkChangeKeepalive() throws {
        var h = ClientHarness(keepaliveSeconds: 25)
        h.register()
        h.advance(by: .seconds(3))
        #expect(h.takeSent().isEmpty)
        h.perform(h.machine.networkChanged(now: h.now))
        let sent = h.openSent()
        let keepalive = try #require(sent.first)
        #expect(keepalive.frame == .keepalive)
        // The answer shows the new address: the machine registers again on the same session.
        let moved = PeerEndpoint(ip: .v4(0xC633_6409), port: 42_000)
        h.push(.keepaliveAck(observed: moved), id: keepalive.id)
        guard case .register? = h.openSent().first?.frame else { Issue.record("no re-registration"); return }
        // Before a registration, a network change is harmless.
        var fresh = ClientHarness()
        fresh.perform(fresh.machine.networkChanged(now: fresh.now))
        #expect(fresh.takeSent().isEmpty)
    }

    @Test("a new port on the same IP at a keepalive (the NAT forgot the mapping) halves the keepalive interval")
    func natTimeoutShortensKeepalive() throws {
        var h = ClientHarness()
        h.register()
        let old = h.checkpoints[0].observed
        var intervals: [UInt16] = []
        for port in [old.port &+ 1, old.port &+ 2, old.port &+ 3, old.port &+ 4] {
            h.advance(by: .seconds(Int64(h.machine.keepaliveSeconds)))
            let keepalive = try #require(h.openSent().first)
            guard case .keepalive = keepalive.frame else { Issue.record("expected a keepalive, got \(keepalive.frame)"); return }
            h.push(.keepaliveAck(observed: old.with(port: port)), id: keepalive.id)
            let register = try #require(h.openSent().first)
            guard case .register(let request) = register.frame else { Issue.record("expected register"); return }
            intervals.append(request.keepaliveSeconds)
            h.confirm(register, observed: old.with(port: port))
        }
        // 25 -> 12 -> 6 -> 5 (the smallest allowed), then it stays.
        #expect(intervals == [12, 6, 5, 5])
        #expect(h.machine.statistics.keepaliveShortened == 3)
    }

    @Test("a re-registration refused for a passing reason keeps the working session")
    func reregistrationRefusedKeepsSession() {
        var h = ClientHarness()
        h.register()
        let registered = h.machine.registration
        h.advance(by: .seconds(25))
        let keepalives = h.openSent()
        guard let keepalive = keepalives.first else { Issue.record("no keepalive"); return }
        h.push(.keepaliveAck(observed: PeerEndpoint(ip: .v4(0xC633_6409), port: 1)), id: keepalive.id)
        let registers = h.openSent()
        guard let register = registers.first else { Issue.record("no register"); return }
        h.push(.error(ControlFailure(.rateLimited, "slow down")), id: register.id)
        #expect(h.events.isEmpty)
        #expect(h.machine.registration == registered)
        #expect(h.takeSent().isEmpty)
    }

    @Test("sessionUnknown: new handshake, re-register, watch list and pending calls sent again")
    func rehandshakeAfterSessionUnknown() throws {
        var h = ClientHarness()
        h.register()
        let friend = ClientHarness.peer(5)
        let watch = h.machine.watch([friend], now: h.now)
        h.perform(watch.actions)
        let taken6 = h.openSent()
        let w = try #require(taken6.first)
        h.push(.watchResult([PeerStatus(peer: friend, online: true)]), id: w.id)
        _ = h.takeSent()

        let lookup = h.machine.lookup(ClientHarness.peer(6), now: h.now)
        h.perform(lookup.actions)
        let taken7 = h.openSent()
        let lookupID = try #require(taken7.first?.id)

        let oldSession = h.machine.sessionID
        let unknown = h.checkpoints[0].sessionUnknown()
        h.checkpoints[0].restart()
        h.deliver(unknown)
        #expect(h.events == [.disconnected(.sessionUnknown)])
        #expect(h.machine.registration == nil)

        let taken8 = h.handshake()
        let register = try #require(taken8)
        #expect(h.machine.sessionID != oldSession)
        h.confirm(register)
        guard case .reregistered(_, .sessionRestarted) = h.events.last else { Issue.record("no reregistered: \(h.events)"); return }
        let resent = h.openSent()
        #expect(resent.contains { $0.frame == .watch([friend]) })
        let again = try #require(resent.first { $0.frame.kind == .lookup })
        #expect(again.id == lookupID, "the held request keeps its transaction id")
        let result = LookupResult(peer: ClientHarness.peer(6), online: false, observed: nil, candidates: [], metadata: PeerMetadata())
        h.push(.lookupResult(result), id: again.id)
        #expect(h.completions[lookup.token] == .success(.lookup(result)))
    }

    @Test("a sessionUnknown for another session id is ignored")
    func foreignSessionUnknown() {
        var h = ClientHarness()
        h.register()
        var bytes = ByteBuffer()
        bytes.writeControlPacket(.sessionUnknown(sessionID: 12345))
        h.deliver(bytes)
        #expect(h.events.isEmpty)
        #expect(h.machine.registration != nil)
    }

    @Test("unanswered keepalives end the session: disconnected, then a new handshake")
    func rehandshakeAfterKeepaliveTimeout() throws {
        var h = ClientHarness()
        h.register()
        h.advance(by: .seconds(25))
        let keepalive = h.openSent()
        #expect(keepalive.map(\.frame) == [.keepalive])
        h.advance(by: CheckpointClientLimits.defaultRequestTimeout - .milliseconds(1))
        let taken9 = h.takeSent()
        #expect(taken9.count == 10, "the keepalive is retransmitted like any request (0.1, 0.3, 0.7, 1.5, 2.5, ... 7.5 s: answers came at once)")
        #expect(h.events.isEmpty)
        h.advance(by: .milliseconds(1))
        #expect(h.events == [.disconnected(.keepaliveTimedOut)])
        guard case .hello = FakeCheckpoint.packet(h.takeOne().bytes) else { Issue.record("no hello"); return }
        h.checkpoints[0].restart()
        // The supernode answers again: registered anew.
        h.sent = []
        h.advance(by: .milliseconds(500))
        let taken10 = h.handshake()
        let register = try #require(taken10)
        h.confirm(register)
        guard case .reregistered(_, .sessionRestarted) = h.events.last else { Issue.record("no reregistered: \(h.events)"); return }
    }

    @Test("error notRegistered: the session restarts and the refused request is sent again")
    func notRegisteredRestarts() throws {
        var h = ClientHarness()
        h.register()
        let lookup = h.machine.lookup(ClientHarness.peer(6), now: h.now)
        h.perform(lookup.actions)
        let taken11 = h.openSent()
        let request = try #require(taken11.first)
        h.push(.error(ControlFailure(.notRegistered, "expired")), id: request.id)
        #expect(h.events == [.disconnected(.notRegistered)])
        #expect(h.completions[lookup.token] == nil)
        let taken12 = h.handshake()
        let register = try #require(taken12)
        h.confirm(register)
        let resent = h.openSent()
        #expect(resent.map(\.id) == [request.id])
    }

    @Test("the next supernode is tried when the session is lost and its supernode stays silent")
    func failoverAfterSessionLoss() throws {
        var h = ClientHarness(supernodes: 2)
        h.register()
        h.deliver(h.checkpoints[0].sessionUnknown())
        #expect(h.events == [.disconnected(.sessionUnknown)])
        let perSupernode = CheckpointClientLimits.helloAttemptTimeout * Int64(CheckpointClientLimits.handshakeAttemptsPerSupernode)
        h.advance(by: perSupernode - .milliseconds(1))
        _ = h.takeSent()
        h.advance(by: .milliseconds(1))
        #expect(h.events.last == .disconnected(.supernodeUnreachable(supernode: 0)))
        let taken13 = h.handshake(with: 1)
        let register = try #require(taken13)
        h.confirm(register, at: 1)
        guard case .reregistered(let registration, .sessionRestarted) = h.events.last else { Issue.record("no reregistered: \(h.events)"); return }
        #expect(registration.supernode == 1)
    }
}
