import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

@Suite("CHECKPOINT machine: INDEX requests, presence and member status pushes")
struct CheckpointIndexTests {
    static func calls(_ h: inout CheckpointHarness) -> [IndexCallContext] {
        defer { h.handedOut.removeAll { if case .index = $0 { return true }; return false } }
        return h.handedOut.compactMap { if case .index(let c) = $0 { return c }; return nil }
    }

    static func presence(_ h: inout CheckpointHarness) -> [CheckpointAction] {
        defer { h.handedOut.removeAll { if case .presence = $0 { return true }; return false } }
        return h.handedOut.filter { if case .presence = $0 { return true }; return false }
    }

    @Test("a request is handed out once with the peer, session and source; its answer goes back; a retransmission gets the same answer and runs nothing")
    func handOutAndAnswer() {
        var h = CheckpointHarness { $0.index = true }
        let a = WirePeer(1)
        a.join(&h)
        let call = IndexCall.login(username: "alice", password: "correct horse")
        a.send(.indexRequest(call), id: 77, &h)
        var handed = Self.calls(&h)
        #expect(handed.count == 1)
        #expect(handed.first?.peer == a.id)
        #expect(handed.first?.source == a.endpoint)
        #expect(handed.first?.call == call)
        #expect(a.inbox.isEmpty)
        // Retransmitted while the store works: dropped.
        a.send(.indexRequest(call), id: 77, &h)
        #expect(Self.calls(&h).isEmpty)
        #expect(a.inbox.isEmpty)

        let user = IndexUserEntry(id: 5, name: "alice", metadata: PeerMetadata())
        var out: [CheckpointAction] = []
        h.machine.answerIndex(handed[0], with: .success(.user(user)), now: h.now, into: &out)
        _ = h.route(out)
        #expect(a.inbox.map(\.frame) == [.indexResult(.user(user))])
        #expect(a.inbox.map(\.id) == [77])
        a.inbox.removeAll()
        // Retransmitted after the answer (the answer was lost): the same answer, nothing runs.
        a.send(.indexRequest(call), id: 77, &h)
        #expect(Self.calls(&h).isEmpty)
        #expect(a.inbox.map(\.frame) == [.indexResult(.user(user))])
        #expect(h.machine.counters.indexCalls == 1)
        #expect(h.machine.counters.indexAnswers == 1)
        // After the memory time, the same id is a new request.
        _ = h.advance(seconds: Double(CheckpointConfiguration.indexAnswerMemoryMillis) / 1000 + 0.5)
        a.inbox.removeAll()
        _ = a.request(.keepalive, &h)
        a.send(.indexRequest(call), id: 77, &h)
        handed = Self.calls(&h)
        #expect(handed.count == 1)
    }

    @Test("refusals: no INDEX configured, not registered, too many in flight")
    func refusals() {
        var plain = CheckpointHarness()
        let a = WirePeer(1)
        a.join(&plain)
        guard case .error(let f) = a.request(.indexRequest(.whoami), &plain) else { Issue.record("no error"); return }
        #expect(f.code == .unavailable)
        #expect(Self.calls(&plain).isEmpty)

        var h = CheckpointHarness { $0.index = true }
        let b = WirePeer(2)
        b.handshake(&h)
        guard case .error(let g) = b.request(.indexRequest(.whoami), &h) else { Issue.record("no error"); return }
        #expect(g.code == .notRegistered)
        _ = b.request(.register(b.registerRequest()), &h)
        for i in 0..<CheckpointConfiguration.maximumIndexCallsInFlight {
            b.send(.indexRequest(.whoami), id: UInt32(100 + i), &h)
        }
        #expect(Self.calls(&h).count == CheckpointConfiguration.maximumIndexCallsInFlight)
        guard case .error(let tooMany) = b.request(.indexRequest(.whoami), &h) else { Issue.record("not refused"); return }
        #expect(tooMany.code == .rateLimited)
        #expect(Self.calls(&h).isEmpty)
    }

    @Test("an answer too large for a frame becomes a tooLarge error; an answer for an ended session is dropped")
    func oversizedAndStale() throws {
        var h = CheckpointHarness { $0.index = true }
        let a = WirePeer(1)
        a.join(&h)
        a.send(.indexRequest(.searchUsers(query: "x=1", page: IndexPageRequest())), id: 9, &h)
        let context = try #require(Self.calls(&h).first)
        let big = try PeerMetadata(Dictionary(uniqueKeysWithValues: (0..<4).map { ("k\($0)", String(repeating: "v", count: 120)) }))
        let users = (0..<3).map { IndexUserEntry(id: Int64($0), name: "user\($0)", metadata: big) }
        var out: [CheckpointAction] = []
        h.machine.answerIndex(context, with: .success(.users(IndexEntryPage(items: users, next: nil))), now: h.now, into: &out)
        _ = h.route(out)
        guard case .error(let f) = a.inbox.first?.frame else { Issue.record("expected an error"); return }
        #expect(f.code == .tooLarge)

        a.send(.indexRequest(.whoami), id: 10, &h)
        let stale = try #require(Self.calls(&h).first)
        _ = a.request(.unregister, &h)
        a.inbox.removeAll()
        out = []
        h.machine.answerIndex(stale, with: .success(.done), now: h.now, into: &out)
        #expect(out.isEmpty)
    }

    @Test("presence: registered, unregistered and expired peers are handed out once each; a re-registration from a new session is not a change")
    func presenceChanges() {
        var h = CheckpointHarness { $0.index = true }
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h)
        #expect(Self.presence(&h) == [.presence(a.id, online: true)])
        a.join(&h) // a new session for the same PeerID supersedes the old one
        #expect(Self.presence(&h).isEmpty)
        _ = a.request(.unregister, &h)
        #expect(Self.presence(&h) == [.presence(a.id, online: false)])
        b.handshake(&h)
        _ = b.request(.register(b.registerRequest(keepalive: 5)), &h)
        #expect(Self.presence(&h) == [.presence(b.id, online: true)])
        _ = h.advance(seconds: 16)
        #expect(Self.presence(&h) == [.presence(b.id, online: false)])
    }

    @Test("a network status push is retransmitted until acknowledged, and not sent to a peer that is not registered")
    func statusPush() {
        var h = CheckpointHarness { $0.index = true }
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h)
        let status = NetworkMemberStatus(network: "lab", user: 2, name: "bob", peer: b.id, online: true)
        var out: [CheckpointAction] = []
        #expect(h.machine.pushNetworkStatus(status, to: a.id, now: h.now, into: &out))
        _ = h.route(out)
        var pushes = a.pushes()
        #expect(pushes.map(\.frame) == [.networkStatus(status)])
        _ = h.advance(seconds: 1)
        pushes += a.pushes()
        #expect(pushes.count >= 2)
        #expect(Set(pushes.map(\.id)).count == 1)
        a.ack(pushes[0], &h)
        _ = h.advance(seconds: 5)
        #expect(a.pushes().isEmpty)
        #expect(h.machine.pendingPushes == 0)
        out = []
        #expect(!h.machine.pushNetworkStatus(status, to: b.id, now: h.now, into: &out))
        #expect(out.isEmpty)
    }
}
