import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

@Suite("CHECKPOINT machine: presence, search, messages, watch, negotiation")
struct CheckpointMachineTests {
    @Test("register, then lookup by another peer shows endpoints and metadata")
    func registerAndLookup() throws {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2)
        guard case .registered(let r) = a.join(&h, metadata: ["app": "chat"]) else { Issue.record("not registered"); return }
        #expect(r.peer == a.id)
        #expect(r.observed == a.endpoint)
        #expect(r.keepaliveSeconds == 25)
        b.join(&h)
        guard case .lookupResult(let l) = b.request(.lookup(a.id), &h) else { Issue.record("no lookup"); return }
        #expect(l.online)
        #expect(l.observed == a.endpoint)
        #expect(l.candidates == [PeerEndpoint(ip: .v4(0x0A00_0001), port: 5000)])
        #expect(l.metadata["app"] == "chat")
        guard case .lookupResult(let missing) = b.request(.lookup(WirePeer(9).id), &h) else { return }
        #expect(!missing.online)
    }

    @Test("keepalive interval is clamped and missed keepalives expire the peer, telling its watchers")
    func watchWithExpiry() {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h)
        guard case .watchResult(let s) = a.request(.watch([b.id]), &h) else { Issue.record("no watch result"); return }
        #expect(s == [PeerStatus(peer: b.id, online: false)])
        b.handshake(&h)
        _ = b.request(.register(b.registerRequest(metadata: ["v": "1"], keepalive: 5)), &h)
        var pushes = a.pushes()
        #expect(pushes.map(\.frame) == [.status(StatusEvent(peer: b.id, change: .online, metadata: try! PeerMetadata(["v": "1"])))])
        a.ack(pushes[0], &h)
        // A keeps its keepalives; B goes silent: expired after 3 x 5 s, not before.
        for _ in 0..<2 {
            _ = h.advance(seconds: 6)
            _ = a.request(.keepalive, &h)
        }
        #expect(h.machine.directory.entry(for: b.id) != nil)
        _ = h.advance(seconds: 5)
        _ = a.request(.keepalive, &h)
        #expect(h.machine.directory.entry(for: b.id) == nil)
        pushes = a.pushes()
        // Unacknowledged pushes are retransmitted with the same id: one distinct push.
        #expect(Set(pushes.map(\.id)).count == 1)
        #expect(pushes.first?.frame == .status(StatusEvent(peer: b.id, change: .expired)))
        #expect(h.machine.counters.expirations == 1)
        #expect(h.machine.directory.entry(for: a.id) != nil)
    }

    @Test("publish changes metadata, tells watchers, and refuses over-limit metadata without change")
    func publish() {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h, metadata: ["k": "1"])
        b.join(&h)
        _ = b.request(.watch([a.id]), &h)
        #expect(a.request(.publish(MetadataUpdate(replace: false, changes: [("k", "2"), ("x", "y")])), &h) == .ok)
        #expect(h.machine.directory.entry(for: a.id)?.metadata.dictionary == ["k": "2", "x": "y"])
        let p = b.pushes()
        #expect(p.count == 1)
        if case .status(let e) = p.first?.frame { #expect(e.change == .metadataChanged) }
        // Five 128-byte values: each entry is within its limits, together they exceed 512 bytes.
        let huge = (0..<5).map { (key: "k\($0)", value: Optional(String(repeating: "v", count: 128))) }
        guard case .error(let e) = a.request(.publish(MetadataUpdate(replace: false, changes: huge)), &h) else {
            Issue.record("over-limit metadata accepted"); return
        }
        #expect(e.code == .tooLarge)
        #expect(h.machine.directory.entry(for: a.id)?.metadata.dictionary == ["k": "2", "x": "y"])
        #expect(a.request(.publish(MetadataUpdate(replace: true, changes: [("only", "this")])), &h) == .ok)
        #expect(h.machine.directory.entry(for: a.id)?.metadata.dictionary == ["only": "this"])
    }

    @Test("search pages through matches in PeerID order; a bad query gets a clear error")
    func search() {
        var h = CheckpointHarness()
        var peers: [WirePeer] = []
        for i in 1...30 {
            let p = WirePeer(UInt8(i))
            p.join(&h, metadata: ["app": "chat", "n": "\(i)"])
            peers.append(p)
        }
        let asker = peers[0]
        var found: [PeerID] = []
        var after: PeerID?
        repeat {
            guard case .searchResult(let r) = asker.request(.search(SearchRequest(query: "app=chat AND n>10", limit: 7, after: after)), &h)
            else { Issue.record("no search result"); return }
            #expect(r.hits.count <= 7)
            found += r.hits.map(\.peer)
            after = r.next
        } while after != nil
        let expected = peers.filter { Int($0.identity.peerID.description.isEmpty ? "0" : "1")! > 0 }
            .enumerated().filter { $0.offset + 1 > 10 }.map { $0.element.id }.sorted()
        #expect(found == expected)
        guard case .error(let e) = asker.request(.search(SearchRequest(query: "app=", limit: 5, after: nil)), &h) else {
            Issue.record("bad query accepted"); return
        }
        #expect(e.code == .badQuery)
        #expect(e.text.contains("offset"))
    }

    @Test("a message is delivered once, and its sender learns delivered with the same transaction")
    func messageDelivered() {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h)
        b.join(&h)
        a.send(.sendMessage(OutgoingMessage(to: b.id, messageID: 1, text: "hello")), id: 500, &h)
        #expect(a.inbox.isEmpty) // answered only once delivered
        let pushes = b.pushes()
        #expect(pushes.map(\.frame) == [.deliver(IncomingMessage(from: a.id, messageID: 1, text: "hello"))])
        b.ack(pushes[0], &h)
        #expect(a.inbox == [ControlEnvelope(id: 500, frame: .messageOutcome(MessageOutcome(to: b.id, messageID: 1, outcome: .delivered)))])
        // A retransmission of the same request gets the same outcome, and B gets nothing new.
        a.inbox.removeAll()
        a.send(.sendMessage(OutgoingMessage(to: b.id, messageID: 1, text: "hello")), id: 500, &h)
        #expect(a.inbox.map(\.frame) == [.messageOutcome(MessageOutcome(to: b.id, messageID: 1, outcome: .delivered))])
        #expect(b.pushes().isEmpty)
        #expect(h.machine.counters.messagesDelivered == 1)
    }

    @Test("a retransmitted message is told queued, then gets its outcome as a push")
    func messageQueuedThenDelivered() {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h)
        b.join(&h)
        a.send(.sendMessage(OutgoingMessage(to: b.id, messageID: 7, text: "x")), id: 10, &h)
        a.send(.sendMessage(OutgoingMessage(to: b.id, messageID: 7, text: "x")), id: 10, &h)
        #expect(a.inbox.map(\.frame) == [.messageOutcome(MessageOutcome(to: b.id, messageID: 7, outcome: .queued))])
        a.inbox.removeAll()
        // B's first copy was lost; the checkpoint retransmits the push with the same id.
        let first = b.pushes()
        #expect(first.count == 1)
        _ = h.advance(seconds: 0.6)
        let again = b.pushes()
        #expect(again.map(\.id) == first.map(\.id))
        b.ack(again[0], &h)
        let status = a.pushes()
        #expect(status.map(\.frame) == [.messageStatus(MessageOutcome(to: b.id, messageID: 7, outcome: .delivered))])
    }

    @Test("a message to an offline peer fails at once; an unacknowledged one times out")
    func messageOfflineAndTimedOut() {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h)
        guard case .messageOutcome(let o) = a.request(.sendMessage(OutgoingMessage(to: b.id, messageID: 1, text: "x")), &h) else {
            Issue.record("no outcome"); return
        }
        #expect(o.outcome == .offline)
        b.join(&h)
        a.send(.sendMessage(OutgoingMessage(to: b.id, messageID: 2, text: "y")), id: 42, &h)
        // B never acks; keep B alive so it is not expired meanwhile.
        for _ in 0..<13 {
            _ = h.advance(seconds: 1)
            _ = b.request(.keepalive, &h)
        }
        #expect(a.inbox.map(\.frame) == [.messageOutcome(MessageOutcome(to: b.id, messageID: 2, outcome: .timedOut))])
        #expect(a.inbox.first?.id == 42)
    }

    @Test("connection negotiation: accepted, refused with a reason, and timed out")
    func negotiation() {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h)
        b.join(&h)
        #expect(a.request(.connect(ConnectRequest(to: b.id, requestID: 1, transport: .udp, note: "game")), &h) == .ok)
        var p = b.pushes()
        #expect(p.map(\.frame) == [.connectRequested(IncomingConnectRequest(from: a.id, requestID: 1, transport: .udp, note: "game"))])
        b.ack(p[0], &h)
        #expect(b.request(.answerConnect(ConnectDecision(peer: a.id, requestID: 1, accepted: true, reason: "")), &h) == .ok)
        p = a.pushes()
        #expect(p.map(\.frame) == [.connectAnswered(ConnectDecision(peer: b.id, requestID: 1, accepted: true, reason: ""))])
        a.ack(p[0], &h)
        // A retransmitted answer is fine; an answer to a request that never was is refused.
        #expect(b.request(.answerConnect(ConnectDecision(peer: a.id, requestID: 1, accepted: true, reason: "")), &h) == .ok)
        #expect(a.pushes().isEmpty)
        guard case .error(let e) = b.request(.answerConnect(ConnectDecision(peer: a.id, requestID: 99, accepted: true, reason: "")), &h) else {
            Issue.record("unknown request accepted"); return
        }
        #expect(e.code == .unknownRequest)
        // Refused.
        _ = a.request(.connect(ConnectRequest(to: b.id, requestID: 2, transport: .tcp, note: "")), &h)
        for x in b.pushes() { b.ack(x, &h) }
        _ = b.request(.answerConnect(ConnectDecision(peer: a.id, requestID: 2, accepted: false, reason: "busy")), &h)
        p = a.pushes()
        #expect(p.map(\.frame) == [.connectAnswered(ConnectDecision(peer: b.id, requestID: 2, accepted: false, reason: "busy"))])
        for x in p { a.ack(x, &h) }
        // Unanswered: refused after the timeout.
        _ = a.request(.connect(ConnectRequest(to: b.id, requestID: 3, transport: .udp, note: "")), &h)
        for x in b.pushes() { b.ack(x, &h) }
        for _ in 0..<7 {
            _ = h.advance(seconds: 10)
            _ = a.request(.keepalive, &h)
            _ = b.request(.keepalive, &h)
        }
        let timedOut = a.pushes().map(\.frame)
        #expect(timedOut.count >= 1)
        #expect(timedOut.allSatisfy {
            if case .connectAnswered(let d) = $0 { return !d.accepted && d.requestID == 3 && d.reason.contains("no answer") }
            return false
        })
        // To an offline peer: a clear error.
        guard case .error(let off) = a.request(.connect(ConnectRequest(to: WirePeer(9).id, requestID: 4, transport: .udp, note: "")), &h) else {
            Issue.record("offline peer accepted"); return
        }
        #expect(off.code == .peerOffline)
    }

    @Test("a message pending for a peer that restarts is delivered to its new session")
    func pendingMessageMovesToNewSession() {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h)
        b.join(&h)
        a.send(.sendMessage(OutgoingMessage(to: b.id, messageID: 9, text: "still there?")), id: 70, &h)
        #expect(b.pushes().count == 1) // B's process dies before acknowledging
        let b2 = WirePeer(2, endpoint: PeerEndpoint(ip: .v4(0xC633_6402), port: 777))
        b2.join(&h)
        let moved = b2.pushes()
        #expect(moved.map(\.frame) == [.deliver(IncomingMessage(from: a.id, messageID: 9, text: "still there?"))])
        b2.ack(moved[0], &h)
        #expect(a.inbox.map(\.frame) == [.messageOutcome(MessageOutcome(to: b.id, messageID: 9, outcome: .delivered))])
        #expect(a.inbox.first?.id == 70)
    }

    @Test("farewell: every registered peer is told its session is gone, in 12 bytes")
    func farewell() throws {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2), c = WirePeer(3)
        a.join(&h)
        b.join(&h)
        c.handshake(&h) // not registered: nothing to say
        var out: [CheckpointAction] = []
        h.machine.farewell(into: &out)
        let sent = out.compactMap { a -> (ByteBuffer, PeerEndpoint)? in if case .send(let b, let to) = a { return (b, to) }; return nil }
        #expect(Set(sent.map(\.1)) == [a.endpoint, b.endpoint])
        for (bytes, to) in sent {
            #expect(bytes.readableBytes == 12)
            guard case .sessionUnknown(let id) = try decode(bytes) else { Issue.record("not a goodbye"); continue }
            #expect(id == (to == a.endpoint ? a.sessionID : b.sessionID))
        }
    }

    @Test("unregister tells watchers offline; a new session for the same PeerID supersedes the old")
    func unregisterAndSupersede() {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h)
        b.join(&h)
        _ = a.request(.watch([b.id]), &h)
        #expect(b.request(.unregister, &h) == .ok)
        #expect(a.pushes().map(\.frame) == [.status(StatusEvent(peer: b.id, change: .offline))])
        #expect(h.machine.registeredCount == 1)
        // A restarts: its new session takes over; the old one is told superseded.
        let oldSession = a.sessionID, oldKeys = a.keys!, oldCounter = a.sendCounter
        let a2 = WirePeer(1, endpoint: PeerEndpoint(ip: .v4(0xC633_6401), port: 999))
        a2.join(&h)
        #expect(h.machine.registeredCount == 1)
        a.sessionID = oldSession; a.keys = oldKeys; a.sendCounter = oldCounter
        guard case .error(let e) = a.request(.keepalive, &h) else { Issue.record("old session still answered"); return }
        #expect(e.code == .superseded)
        #expect(h.machine.directory.entry(for: a.id)?.observed == a2.endpoint)
    }
}
