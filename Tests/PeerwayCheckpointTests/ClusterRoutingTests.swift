import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwayCheckpoint

/// Checkpoint machines of one network under virtual time, linked as the mesh would link them:
/// every `.cluster` action is encoded, decoded and handed to its target machine(s).
struct ClusterHarness {
    var nodes: [CheckpointHarness]
    /// Links that are down: frames to them are handed back as `clusterUnsent`.
    var down: Set<Int> = []
    /// Every frame that crossed, for tests that count them.
    var crossed: [(from: Int, to: Int, frame: ClusterFrame)] = []

    init(count: Int = 3, relays: FakeRelays? = nil) {
        nodes = (0..<count).map { i in
            CheckpointHarness(seed: UInt8(7 + i)) { c in
                c.clustered = true
                if let relays { c.relays = relays }
            }
        }
        for i in nodes.indices { nodes[i].machine.wallClockMillis = 1_000_000 }
    }

    func node(_ i: Int) -> ClusterNode { ClusterNode(key: Array(nodes[i].key.publicKey.rawRepresentation)) }

    func index(of node: ClusterNode) -> Int { nodes.indices.first { self.node($0) == node }! }

    /// Moves cluster frames until none is left.
    mutating func pump() {
        var rounds = 0
        while rounds < 100 {
            rounds += 1
            var moved = false
            for i in nodes.indices {
                let actions = nodes[i].handedOut
                nodes[i].handedOut = actions.filter { if case .cluster = $0 { return false }; return true }
                for case .cluster(let frame, let to) in actions {
                    moved = true
                    var bytes = ByteBuffer()
                    bytes.writeClusterFrame(frame)
                    let decoded = try! bytes.readClusterFrame()
                    #expect(decoded == frame)
                    let targets = to.map { [index(of: $0)] } ?? nodes.indices.filter { $0 != i }
                    for t in targets {
                        var out: [CheckpointAction] = []
                        if down.contains(t) || down.contains(i) {
                            if to != nil { nodes[i].machine.clusterUnsent(frame, to: node(t), now: nodes[i].now, into: &out) }
                            _ = nodes[i].route(out)
                            continue
                        }
                        crossed.append((i, t, decoded))
                        nodes[t].machine.clusterReceive(decoded, from: node(i), now: nodes[t].now, into: &out)
                        _ = nodes[t].route(out)
                    }
                }
            }
            if !moved { return }
        }
        Issue.record("cluster frames still moving after 100 rounds")
    }

    /// Links `a` and `b` as the mesh does when their link comes up.
    mutating func linkUp(_ a: Int, _ b: Int) {
        var out: [CheckpointAction] = []
        nodes[a].machine.clusterNodeUp(node(b), now: nodes[a].now, into: &out)
        _ = nodes[a].route(out)
        out = []
        nodes[b].machine.clusterNodeUp(node(a), now: nodes[b].now, into: &out)
        _ = nodes[b].route(out)
        pump()
    }

    /// Every node but `dead` hears that `dead` is out of the network.
    mutating func nodeDown(_ dead: Int) {
        down.insert(dead)
        for i in nodes.indices where i != dead {
            var out: [CheckpointAction] = []
            nodes[i].machine.clusterNodeDown(node(dead), now: nodes[i].now, into: &out)
            _ = nodes[i].route(out)
        }
        pump()
    }

    /// Sends a request of `peer` to node `i`, pumps, returns the answer to it.
    mutating func request(_ peer: WirePeer, _ frame: ControlFrame, at i: Int) -> ControlFrame? {
        let id = peer.nextTransaction
        peer.nextTransaction += 1
        _ = nodes[i].deliver(peer.seal(frame, id: id), from: peer.endpoint)
        pump()
        guard let k = peer.inbox.firstIndex(where: { $0.id == id && !$0.frame.isPush && $0.frame.kind != .traversalPlan }) else { return nil }
        return peer.inbox.remove(at: k).frame
    }

    /// Acknowledges every push in `peer`'s inbox at node `i` and pumps; returns them.
    @discardableResult
    mutating func ackAll(_ peer: WirePeer, at i: Int) -> [ControlEnvelope] {
        let pushed = peer.inbox.filter { $0.frame.isPush || $0.frame.kind == .traversalPlan }
        peer.inbox.removeAll { $0.frame.isPush || $0.frame.kind == .traversalPlan }
        for p in pushed { peer.ack(p, &nodes[i]) }
        pump()
        return pushed
    }
}

@Suite("CHECKPOINT in a network of supernodes")
struct ClusterRoutingTests {
    /// Three linked nodes with peer n registered on node n-1.
    static func network(relays: FakeRelays? = nil, metadata: [[String: String]] = [["n": "1"], ["n": "2"], ["n": "3"]])
        -> (ClusterHarness, [WirePeer]) {
        var c = ClusterHarness(relays: relays)
        c.linkUp(0, 1)
        c.linkUp(0, 2)
        c.linkUp(1, 2)
        var peers: [WirePeer] = []
        for i in 0..<3 {
            let p = WirePeer(UInt8(i + 1))
            #expect(p.join(&c.nodes[i], metadata: metadata[i]) != nil)
            c.pump()
            peers.append(p)
        }
        return (c, peers)
    }

    @Test("lookup and search on any node see the peers of every node, in PeerID order")
    func lookupAndSearch() {
        var (c, p) = Self.network()
        for i in 0..<3 {
            #expect(c.nodes[i].machine.directory.count == 3)
            guard case .lookupResult(let r)? = c.request(p[i], .lookup(p[(i + 1) % 3].id), at: i) else {
                Issue.record("no lookup result"); return
            }
            #expect(r.online)
            #expect(r.observed == p[(i + 1) % 3].endpoint)
            #expect(r.metadata["n"] == "\((i + 1) % 3 + 1)")
        }
        guard case .searchResult(let all)? = c.request(p[0], .search(SearchRequest(query: "n?", limit: 10, after: nil)), at: 0) else {
            Issue.record("no search result"); return
        }
        #expect(all.hits.map(\.peer) == p.map(\.id).sorted())
        guard case .searchResult(let page)? = c.request(p[1], .search(SearchRequest(query: "n>=2", limit: 1, after: nil)), at: 1) else {
            Issue.record("no search result"); return
        }
        #expect(page.hits.count == 1)
        #expect(page.next != nil)
    }

    @Test("a message to a peer on another node is delivered once and its sender hears delivered")
    func crossNodeMessage() {
        var (c, p) = Self.network()
        let id = p[0].nextTransaction
        p[0].nextTransaction += 1
        _ = c.nodes[0].deliver(p[0].seal(.sendMessage(OutgoingMessage(to: p[2].id, messageID: 9, text: "hi")), id: id), from: p[0].endpoint)
        c.pump()
        let delivered = c.ackAll(p[2], at: 2)
        #expect(delivered.map(\.frame) == [.deliver(IncomingMessage(from: p[0].id, messageID: 9, text: "hi"))])
        let answer = p[0].inbox.first { $0.id == id }?.frame
        #expect(answer == .messageOutcome(MessageOutcome(to: p[2].id, messageID: 9, outcome: .delivered)))
        #expect(c.nodes[0].machine.counters.messagesDelivered == 1)
    }

    @Test("a retransmitted cross-node message is answered queued, then its outcome is pushed")
    func crossNodeRetransmission() {
        var (c, p) = Self.network()
        let message = ControlFrame.sendMessage(OutgoingMessage(to: p[1].id, messageID: 4, text: "x"))
        p[0].send(message, id: 50, &c.nodes[0])
        c.pump()
        p[0].send(message, id: 50, &c.nodes[0])
        c.pump()
        #expect(p[0].inbox.contains { $0.id == 50 && $0.frame == .messageOutcome(MessageOutcome(to: p[1].id, messageID: 4, outcome: .queued)) })
        _ = c.ackAll(p[1], at: 1)
        #expect(p[0].pushes().map(\.frame) == [.messageStatus(MessageOutcome(to: p[1].id, messageID: 4, outcome: .delivered))])
    }

    @Test("messages to a peer whose node is unreachable or out of the network end timedOut, never silently")
    func unreachableNode() {
        var (c, p) = Self.network()
        c.down = [2]  // the link is down; the node is not yet declared out
        guard case .messageOutcome(let o)? = c.request(p[0], .sendMessage(OutgoingMessage(to: p[2].id, messageID: 1, text: "a")), at: 0) else {
            Issue.record("no outcome"); return
        }
        #expect(o.outcome == .timedOut)
        c.down = []
        p[0].send(.sendMessage(OutgoingMessage(to: p[2].id, messageID: 2, text: "b")), id: 77, &c.nodes[0])
        // Node 2 dies holding the push: the sender hears timedOut when node 2 is declared out.
        var out: [CheckpointAction] = []
        let pending = c.nodes[0].handedOut
        c.nodes[0].handedOut = []
        #expect(pending.contains { if case .cluster(.push, _) = $0 { return true }; return false })
        c.nodes[0].machine.clusterNodeDown(c.node(2), now: c.nodes[0].now, into: &out)
        _ = c.nodes[0].route(out)
        #expect(p[0].inbox.contains { $0.id == 77 && $0.frame == .messageOutcome(MessageOutcome(to: p[2].id, messageID: 2, outcome: .timedOut)) })
        guard case .messageOutcome(let after)? = c.request(p[0], .sendMessage(OutgoingMessage(to: p[2].id, messageID: 3, text: "c")), at: 0) else {
            Issue.record("no outcome"); return
        }
        #expect(after.outcome == .offline)
    }

    @Test("watchers on other nodes see online, metadata changes, offline, and expired when a node goes down")
    func watchAcrossNodes() {
        var (c, p) = Self.network()
        guard case .watchResult(let statuses)? = c.request(p[0], .watch([p[1].id, p[2].id]), at: 0) else {
            Issue.record("no watch result"); return
        }
        #expect(statuses.allSatisfy { $0.online })
        #expect(c.request(p[1], .publish(MetadataUpdate(replace: false, changes: [(key: "mood", value: "ok")])), at: 1) == .ok)
        #expect(c.request(p[1], .unregister, at: 1) == .ok)
        let changes = c.ackAll(p[0], at: 0).compactMap { env -> StatusEvent.Change? in
            if case .status(let e) = env.frame { return e.change }
            return nil
        }
        #expect(changes == [.metadataChanged, .offline])
        c.nodeDown(2)
        let expired = c.ackAll(p[0], at: 0).compactMap { env -> StatusEvent? in
            if case .status(let e) = env.frame { return e }
            return nil
        }
        #expect(expired == [StatusEvent(peer: p[2].id, change: .expired)])
        #expect(c.nodes[0].machine.directory.count == 1)
        // Peer 3 registers again on node 0: its watcher sees it online.
        let moved = WirePeer(3, endpoint: PeerEndpoint(ip: .v4(0xC633_6463), port: 41_003))
        #expect(moved.join(&c.nodes[0]) != nil)
        c.pump()
        let back = c.ackAll(p[0], at: 0).compactMap { env -> StatusEvent.Change? in
            if case .status(let e) = env.frame, e.peer == p[2].id { return e.change }
            return nil
        }
        #expect(back == [.online])
        #expect(c.nodes[1].machine.directory.entry(for: p[2].id)?.home == c.node(0))
    }

    @Test("a peer that moves to another node is routed there; its old session is superseded without an offline notice")
    func peerMoves() {
        var (c, p) = Self.network()
        _ = c.request(p[0], .watch([p[1].id]), at: 0)
        c.nodes[1].machine.wallClockMillis += 5_000
        // Peer 2 (on node 1) registers on node 2 with a new session.
        let again = WirePeer(2, endpoint: PeerEndpoint(ip: .v4(0xC633_6402), port: 42_002))
        #expect(again.join(&c.nodes[2], metadata: ["n": "2"]) != nil)
        c.pump()
        for i in 0..<3 { #expect(c.nodes[i].machine.directory.entry(for: p[1].id)?.home == (i == 2 ? nil : c.node(2))) }
        #expect(c.ackAll(p[0], at: 0).isEmpty, "a move is not an offline-online pair")
        #expect(c.nodes[1].machine.registeredCount == 0)
        // The old session is told it is superseded.
        if case .error(let f)? = c.request(p[1], .keepalive, at: 1) { #expect(f.code == .superseded) } else { Issue.record("no superseded error") }
        // A message now reaches it on node 2.
        p[0].send(.sendMessage(OutgoingMessage(to: p[1].id, messageID: 1, text: "where")), id: 90, &c.nodes[0])
        c.pump()
        #expect(c.ackAll(again, at: 2).count == 1)
        #expect(p[0].inbox.contains { $0.id == 90 && $0.frame == .messageOutcome(MessageOutcome(to: p[1].id, messageID: 1, outcome: .delivered)) })
    }

    @Test("another node's push follows its peer to a new session on the same node, and that node still hears the outcome")
    func remotePushSurvivesNewSession() {
        var (c, p) = Self.network()
        p[0].send(.sendMessage(OutgoingMessage(to: p[1].id, messageID: 3, text: "still there?")), id: 60, &c.nodes[0])
        c.pump()
        _ = p[1].pushes()  // the first session got it but never acknowledges
        let again = WirePeer(2, endpoint: PeerEndpoint(ip: .v4(0xC633_6402), port: 43_002))
        #expect(again.join(&c.nodes[1], metadata: ["n": "2"]) != nil)
        c.pump()
        let moved = c.ackAll(again, at: 1)
        #expect(moved.map(\.frame) == [.deliver(IncomingMessage(from: p[0].id, messageID: 3, text: "still there?"))])
        #expect(p[0].inbox.contains { $0.id == 60 && $0.frame == .messageOutcome(MessageOutcome(to: p[1].id, messageID: 3, outcome: .delivered)) })
        #expect(c.nodes[0].machine.remotePushes.isEmpty)
    }

    @Test("a push whose frame was lost with a link that came back ends timedOut after remotePushLifetimeMillis")
    func lostRemotePushTimesOut() {
        var (c, p) = Self.network()
        p[0].send(.sendMessage(OutgoingMessage(to: p[2].id, messageID: 8, text: "lost")), id: 70, &c.nodes[0])
        #expect(c.nodes[0].handedOut.contains { if case .cluster(.push, _) = $0 { return true }; return false })
        c.nodes[0].handedOut.removeAll()  // gone with the link; the link is back, nobody is declared out
        _ = c.nodes[0].advance(seconds: Double(CheckpointConfiguration.remotePushLifetimeMillis) / 1000 - 1)
        #expect(!p[0].inbox.contains { $0.id == 70 })
        _ = c.nodes[0].advance(seconds: 1.5)
        #expect(p[0].inbox.contains { $0.id == 70 && $0.frame == .messageOutcome(MessageOutcome(to: p[2].id, messageID: 8, outcome: .timedOut)) })
        #expect(c.nodes[0].machine.remotePushes.isEmpty)
    }

    @Test("of two claims on one peer, the newer registration wins on every node")
    func newerClaimWins() {
        var c = ClusterHarness()
        c.linkUp(0, 1)
        c.linkUp(0, 2)
        c.linkUp(1, 2)
        c.nodes[0].machine.wallClockMillis = 2_000_000
        let first = WirePeer(5)
        let second = WirePeer(5, endpoint: PeerEndpoint(ip: .v4(0xC633_6499), port: 45_000))
        #expect(first.join(&c.nodes[0]) != nil)   // version 2,000,000 on node 0
        #expect(second.join(&c.nodes[1]) != nil)  // version 1,000,000 on node 1: older
        c.pump()
        for i in 0..<3 { #expect(c.nodes[i].machine.directory.entry(for: first.id)?.home == (i == 0 ? nil : c.node(0))) }
        #expect(c.nodes[0].machine.registeredCount == 1)
        #expect(c.nodes[1].machine.registeredCount == 0)
    }

    @Test("a snapshot after a link comes back removes the rows its home no longer has")
    func snapshotRepairs() {
        var (c, p) = Self.network()
        c.down = [1]
        #expect(c.nodes[1].deliver(p[1].seal(.unregister, id: 99), from: p[1].endpoint).count == 1)
        c.pump()  // node 1's peerDown is lost
        #expect(c.nodes[0].machine.directory.entry(for: p[1].id) != nil)
        c.down = []
        c.linkUp(0, 1)
        #expect(c.nodes[0].machine.directory.entry(for: p[1].id) == nil)
        #expect(c.nodes[0].machine.directory.count == 2)
        #expect(c.nodes[1].machine.directory.count == 2)
    }

    @Test("connect, answer, offers and plans across nodes: one HANDSHAKE on the initiator's node plans both sides")
    func traversalAcrossNodes() {
        let relays = FakeRelays()
        var (c, p) = Self.network(relays: relays)
        let (a, b) = (p[0], p[2])
        #expect(c.request(a, .connect(ConnectRequest(to: b.id, requestID: 7, transport: .udp, note: "game")), at: 0) == .ok)
        let asked = c.ackAll(b, at: 2)
        #expect(asked.map(\.frame) == [.connectRequested(IncomingConnectRequest(from: a.id, requestID: 7, transport: .udp, note: "game"))])
        #expect(c.request(b, .answerConnect(ConnectDecision(peer: a.id, requestID: 7, accepted: true, reason: "")), at: 2) == .ok)
        let answered = c.ackAll(a, at: 0)
        #expect(answered.map(\.frame) == [.connectAnswered(ConnectDecision(peer: b.id, requestID: 7, accepted: true, reason: ""))])
        #expect(c.request(a, .traversalOffer(a.offer(.initiator, initiator: a, acceptor: b, requestID: 7)), at: 0) == .ok)
        #expect(c.request(b, .traversalOffer(b.offer(.acceptor, initiator: a, acceptor: b, requestID: 7)), at: 2) == .ok)
        #expect(c.nodes[0].machine.handshakeCounters.planned == 1)
        #expect(c.nodes[2].machine.handshakeCounters.planned == 0)
        let planA = a.plans(&c.nodes[0]), planB = b.plans(&c.nodes[2])
        c.pump()
        #expect(planA.count == 1 && planB.count == 1)
        #expect(planA.first?.method == .punch && planB.first?.method == .punch)
        #expect(planA.first?.relay?.token == relays.grants.initiator.token)
        #expect(planB.first?.relay?.token == relays.grants.acceptor.token)
        #expect(planA.first?.targets.isEmpty == false && planB.first?.targets.isEmpty == false)
        #expect(c.request(b, .traversalResult(TraversalResult(initiator: a.id, acceptor: b.id, requestID: 7, role: .acceptor,
                                                              path: .direct, method: .punch, millis: 40)), at: 2) == .ok)
        #expect(c.nodes[0].machine.handshakeCounters.resultsByPath[.direct] == 1)
    }

    @Test("a frame forwarded by a node that is not the sender's home is ignored")
    func forgedForward() {
        var (c, p) = Self.network()
        var out: [CheckpointAction] = []
        // Node 1 claims a request of peer 1, whose home is node 0.
        c.nodes[2].machine.clusterReceive(.forward(from: p[0].id, observed: p[0].endpoint,
                                                   frame: .answerConnect(ConnectDecision(peer: p[2].id, requestID: 1, accepted: true, reason: ""))),
                                          from: c.node(1), now: c.nodes[2].now, into: &out)
        #expect(out.isEmpty)
        // A peerDown for a peer of another home changes nothing.
        c.nodes[2].machine.clusterReceive(.peerDown(p[0].id, change: .offline), from: c.node(1), now: c.nodes[2].now, into: &out)
        #expect(out.isEmpty)
        #expect(c.nodes[2].machine.directory.entry(for: p[0].id) != nil)
    }

    @Test("a lone checkpoint emits no cluster frames")
    func loneCheckpoint() {
        var h = CheckpointHarness()
        let a = WirePeer(1)
        #expect(a.join(&h, metadata: ["x": "1"]) != nil)
        #expect(a.request(.unregister, &h) == .ok)
        #expect(!h.handedOut.contains { if case .cluster = $0 { return true }; return false })
    }
}
