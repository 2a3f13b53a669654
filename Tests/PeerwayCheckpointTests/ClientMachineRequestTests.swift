import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwayCheckpoint

@Suite("Client machine: requests, pushes, replay")
struct ClientMachineRequestTests {
    @Test("a request is retransmitted from the measured timeout (here the 100 ms floor: answers came at once), doubling to 1 s, with the same id and new counters, then times out")
    func requestRetransmissionAndGiveUp() {
        var h = ClientHarness()
        h.register()
        let started = h.now
        let (token, actions) = h.machine.lookup(ClientHarness.peer(1), now: h.now)
        h.perform(actions)
        h.advance(by: CheckpointClientLimits.defaultRequestTimeout - .milliseconds(1))
        let sent = h.takeSent()
        #expect(sent.map { $0.at - started } == [0, 100, 300, 700, 1_500, 2_500, 3_500, 4_500, 5_500, 6_500, 7_500].map { TimeAmount.milliseconds($0) })
        let counters = sent.compactMap { FakeCheckpoint.counter($0.bytes) }
        #expect(counters == counters.sorted() && Set(counters).count == counters.count, "every send has a fresh counter")
        let ids = Set(sent.compactMap { h.checkpoints[0].open($0.bytes)?.id })
        #expect(ids.count == 1, "retransmissions keep the transaction id")
        #expect(h.completions[token] == nil)

        h.advance(by: .milliseconds(1))
        #expect(h.completions[token] == .failure(.timedOut))
        let taken1 = h.takeSent()
        #expect(taken1.isEmpty)
    }

    @Test("the retransmission timeout follows the round trip (RFC 6298): 500 ms before any sample, about srtt + 4 rttvar after, within 100-500 ms")
    func roundTripTimeout() {
        var rtt = ClientRoundTrip()
        #expect(rtt.timeout == .milliseconds(500))
        for _ in 0..<20 { rtt.add(.milliseconds(50)) }
        #expect(rtt.smoothed == .milliseconds(50))
        #expect(rtt.timeout >= .milliseconds(60) && rtt.timeout <= .milliseconds(150), "\(rtt.timeout)")
        // A jittery path: the variation term grows the timeout.
        var jittery = ClientRoundTrip()
        for i in 0..<40 { jittery.add(.milliseconds(i % 2 == 0 ? 30 : 170)) }
        #expect(jittery.timeout > rtt.timeout)
        // A slow path is capped; an instant one floored.
        var slow = ClientRoundTrip()
        slow.add(.seconds(2))
        #expect(slow.timeout == .milliseconds(500))
        var instant = ClientRoundTrip()
        instant.add(.zero)
        #expect(instant.timeout == .milliseconds(100))
    }

    @Test("responses are matched by transaction id; an error frame is a typed refusal")
    func responsesMatchedByID() throws {
        var h = ClientHarness()
        h.register()
        let a = h.machine.lookup(ClientHarness.peer(1), now: h.now)
        h.perform(a.actions)
        let b = h.machine.search("age>30", limit: 500, after: nil, now: h.now)
        h.perform(b.actions)
        let envelopes = h.openSent()
        #expect(envelopes.count == 2)
        let lookupID = try #require(envelopes.first { $0.frame.kind == .lookup }?.id)
        let search = try #require(envelopes.first { $0.frame.kind == .search })
        guard case .search(let request) = search.frame else { return }
        #expect(Int(request.limit) == ControlLimits.maximumSearchPage, "the page size is clamped")

        let failure = ControlFailure(.badQuery, "unexpected '>' at 4")
        h.push(.error(failure), id: search.id)
        #expect(h.completions[b.token] == .failure(.refused(failure)))
        #expect(h.completions[a.token] == nil)

        let result = LookupResult(peer: ClientHarness.peer(1), online: false, observed: nil, candidates: [], metadata: PeerMetadata())
        h.push(.lookupResult(result), id: lookupID)
        #expect(h.completions[a.token] == .success(.lookup(result)))

        // A duplicate response (to a retransmission) is dropped.
        h.push(.lookupResult(result), id: lookupID)
        #expect(h.machine.statistics.unexpected == 1)
    }

    @Test("pushes are acknowledged every time and delivered once")
    func pushAckAndDedup() throws {
        var h = ClientHarness()
        h.register()
        let message = IncomingMessage(from: ClientHarness.peer(2), messageID: 9, text: "hi")
        h.push(.deliver(message), id: 77)
        h.push(.deliver(message), id: 77)  // retransmitted by the checkpoint: new counter, same push id
        let acks = h.openSent()
        #expect(acks == [ControlEnvelope(id: 77, frame: .ack), ControlEnvelope(id: 77, frame: .ack)])
        #expect(h.events == [.message(message)])
        #expect(h.machine.statistics.duplicatePushes == 1)

        let status = StatusEvent(peer: ClientHarness.peer(3), change: .online, metadata: try PeerMetadata(["k": "v"]))
        let request = IncomingConnectRequest(from: ClientHarness.peer(4), requestID: 5, transport: .tcp, note: "game")
        h.push(.status(status), id: 78)
        h.push(.connectRequested(request), id: 79)
        let taken2 = h.openSent()
        #expect(taken2.map(\.id) == [78, 79])
        #expect(h.events.suffix(2) == [.status(status), .connectRequest(request)])
    }

    @Test("the push id memory is bounded: a very old id counts as new again")
    func pushMemoryBounded() {
        var recent = RecentPushIDs(capacity: 3)
        var answers: [Bool] = []
        for id: UInt32 in [1, 2, 3, 1, 4, 1, 4] { answers.append(recent.insert(id)) }
        // 1, 2, 3 are new; 1 again is known; 4 evicts 1; so 1 is new again and 4 known.
        #expect(answers == [true, true, true, false, true, true, false])
    }

    @Test("a replayed packet is dropped without an ack; a tampered one too")
    func replayedPacketDropped() {
        var h = ClientHarness()
        h.register()
        let bytes = h.checkpoints[0].seal(.deliver(IncomingMessage(from: ClientHarness.peer(2), messageID: 1, text: "once")), id: 5)
        h.deliver(bytes)
        let taken3 = h.takeSent()
        #expect(taken3.count == 1)
        h.deliver(bytes)
        let taken4 = h.takeSent()
        #expect(taken4.isEmpty, "a replay is not even acknowledged")
        #expect(h.machine.statistics.replayed == 1)
        #expect(h.events.count == 1)

        var tampered = h.checkpoints[0].seal(.deliver(IncomingMessage(from: ClientHarness.peer(2), messageID: 2, text: "evil")), id: 6)
        let last = tampered.writerIndex - 1
        tampered.setInteger(tampered.getInteger(at: last, as: UInt8.self)! ^ 1, at: last)
        h.deliver(tampered)
        let taken5 = h.takeSent()
        #expect(taken5.isEmpty)
        #expect(h.machine.statistics.unauthenticated == 1)
        #expect(h.events.count == 1)
    }

    @Test("connect completes with the pushed answer; a push overtaking the ok works too")
    func connectWaitsForAnswer() throws {
        var h = ClientHarness()
        h.register()
        let target = ClientHarness.peer(8)
        let call = h.machine.connect(to: target, transport: .udp, note: "hello", now: h.now)
        h.perform(call.actions)
        let taken6 = h.openSent()
        let request = try #require(taken6.first)
        guard case .connect(let asked) = request.frame else { Issue.record("no connect"); return }
        h.push(.ok, id: request.id)
        #expect(h.completions[call.token] == nil)
        let decision = ConnectDecision(peer: target, requestID: asked.requestID, accepted: false, reason: "busy")
        h.push(.connectAnswered(decision), id: 900)
        #expect(h.completions[call.token] == .success(.connectAnswer(decision)))

        let second = h.machine.connect(to: target, transport: .tcp, now: h.now)
        h.perform(second.actions)
        let taken7 = h.openSent()
        guard case .connect(let asked2) = try #require(taken7.first).frame else { return }
        let yes = ConnectDecision(peer: target, requestID: asked2.requestID, accepted: true, reason: "")
        h.push(.connectAnswered(yes), id: 901)
        #expect(h.completions[second.token] == .success(.connectAnswer(yes)))
    }

    @Test("connect fails after connectAnswerTimeout without an answer; a late answer becomes an event")
    func connectTimesOut() throws {
        var h = ClientHarness(keepaliveSeconds: 300)
        h.register()
        let call = h.machine.connect(to: ClientHarness.peer(8), transport: .udp, now: h.now)
        h.perform(call.actions)
        let taken8 = h.openSent()
        let request = try #require(taken8.first)
        h.push(.ok, id: request.id)
        h.advance(by: CheckpointClientLimits.defaultConnectAnswerTimeout)
        #expect(h.completions[call.token] == .failure(.timedOut))
        guard case .connect(let asked) = request.frame else { return }
        let late = ConnectDecision(peer: ClientHarness.peer(8), requestID: asked.requestID, accepted: true, reason: "")
        h.push(.connectAnswered(late), id: 5)
        #expect(h.events.last == .connectAnswer(late))
    }

    @Test("watch, unwatch and publish update the local state only once confirmed")
    func watchAndPublish() throws {
        var h = ClientHarness()
        h.register()
        let watch = h.machine.watch([ClientHarness.peer(1), ClientHarness.peer(2)], now: h.now)
        h.perform(watch.actions)
        let taken9 = h.openSent()
        let w = try #require(taken9.first)
        #expect(h.machine.watchedPeers.isEmpty)
        let statuses = [PeerStatus(peer: ClientHarness.peer(1), online: true), PeerStatus(peer: ClientHarness.peer(2), online: false)]
        h.push(.watchResult(statuses), id: w.id)
        #expect(h.completions[watch.token] == .success(.watched(statuses)))
        #expect(h.machine.watchedPeers == [ClientHarness.peer(1), ClientHarness.peer(2)])

        let unwatch = h.machine.unwatch([ClientHarness.peer(2)], now: h.now)
        h.perform(unwatch.actions)
        let taken10 = h.openSent()
        h.push(.ok, id: try #require(taken10.first).id)
        #expect(h.machine.watchedPeers == [ClientHarness.peer(1)])

        let publish = h.machine.publish(["city": "Paris", "name": nil], now: h.now)
        h.perform(publish.actions)
        let taken11 = h.openSent()
        let p = try #require(taken11.first)
        #expect(p.frame == .publish(MetadataUpdate(replace: false, changes: [("city", "Paris"), ("name", nil)])))
        h.push(.ok, id: p.id)
        #expect(h.machine.metadata == (try PeerMetadata(["city": "Paris"])))

        let bad = h.machine.publish(["Bad Key": "x"], now: h.now)
        h.perform(bad.actions)
        #expect(h.completions[bad.token] == .failure(.invalidMetadata(.badKey("Bad Key"))))
        let tooMany = h.machine.watch((0..<33).map { ClientHarness.peer(UInt8($0)) }, now: h.now)
        h.perform(tooMany.actions)
        guard case .failure(.invalidArgument) = h.completions[tooMany.token] else { Issue.record("33 peers accepted"); return }
    }

    @Test("stop sends unregister, fails unfinished calls, and reports stopped once answered")
    func stopUnregisters() throws {
        var h = ClientHarness()
        h.register()
        let lookup = h.machine.lookup(ClientHarness.peer(1), now: h.now)
        h.perform(lookup.actions)
        _ = h.takeSent()
        h.perform(h.machine.stop(now: h.now))
        #expect(h.completions[lookup.token] == .failure(.stopped))
        let taken12 = h.openSent()
        let unregister = try #require(taken12.first)
        #expect(unregister.frame == .unregister)
        #expect(h.events.isEmpty)
        h.push(.ok, id: unregister.id)
        #expect(h.events == [.stopped(.requested)])
        #expect(h.machine.isStopped)

        let after = h.machine.lookup(ClientHarness.peer(1), now: h.now)
        h.perform(after.actions)
        #expect(h.completions[after.token] == .failure(.stopped))
    }

    @Test("stop without an answer ends after unregisterTimeout")
    func stopTimesOut() {
        var h = ClientHarness()
        h.register()
        h.perform(h.machine.stop(now: h.now))
        h.advance(by: CheckpointClientLimits.unregisterTimeout)
        #expect(h.events == [.stopped(.requested)])
        #expect(h.wakeUpAt == nil || h.machine.isStopped)
    }

    @Test("superseded: the machine stops and every call fails")
    func superseded() throws {
        var h = ClientHarness()
        h.register()
        let a = h.machine.lookup(ClientHarness.peer(1), now: h.now)
        h.perform(a.actions)
        let b = h.machine.sendMessage("x", to: ClientHarness.peer(2), now: h.now)
        h.perform(b.actions)
        let taken13 = h.openSent()
        let lookupID = try #require(taken13.first?.id)
        let failure = ControlFailure(.superseded, "registered from another session")
        h.push(.error(failure), id: lookupID)
        #expect(h.events == [.stopped(.superseded(failure))])
        #expect(h.completions[a.token] == .failure(.stopped))
        #expect(h.completions[b.token] == .failure(.stopped))
        #expect(h.machine.isStopped)
    }
}
