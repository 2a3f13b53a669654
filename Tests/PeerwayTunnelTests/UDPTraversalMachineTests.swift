import PeerwayCheckpoint
import PeerwaySTUN
import PeerwayTunnel
import Testing

/// The UDP traversal state machine under virtual time: scripted probes, no sockets.
@Suite("UDP traversal machine")
struct UDPTraversalMachineTests {
    typealias M = UDPTraversalMachine
    static let a = PeerID(high: 1, low: 1), b = PeerID(high: 2, low: 2)
    static let theirs = STUNAddress(parsing: "203.0.113.20:40000")!
    static let relay = STUNAddress(parsing: "198.51.100.1:7401")!

    static func plan(targets: [TraversalTarget] = [TraversalTarget(method: .punch, endpoint: theirs)], window: UInt32 = 4000,
                     sockets: UInt16 = 1, spray: TraversalSpray? = nil, relay: Bool = true) -> TraversalPlan {
        TraversalPlan(initiator: a, acceptor: b, requestID: 7, transport: .udp, method: .punch, directWindowMillis: window,
                      localSockets: sockets, remoteKeyShare: [], targets: targets, spray: spray,
                      relay: relay ? RelayGrant(udp: Self.relay, tcp: nil, token: [UInt8](repeating: 9, count: 32)) : nil)
    }

    static func requests(_ actions: [M.Action]) -> [(txid: UInt64, socket: Int, to: STUNAddress)] {
        actions.compactMap { if case .probe(.request, let t, let s, let to, _) = $0 { return (t, s, to) }; return nil }
    }

    @Test("initiator: requests on every pair, the answered pair is selected, selectAck establishes it")
    func initiatorSelects() {
        var m = M(role: .initiator, plan: Self.plan(), nowMillis: 0, seed: 1)
        let first = m.tick(nowMillis: 0)
        let sent = Self.requests(first)
        #expect(sent.count == 1 && sent[0].to == Self.theirs && sent[0].socket == 0)
        #expect(!first.contains { if case .bindRelay = $0 { return true }; return false }, "the relay bind waits for the first probe round")
        // Nothing again before the probe interval.
        #expect(Self.requests(m.tick(nowMillis: 10)).isEmpty)
        #expect(Self.requests(m.tick(nowMillis: 25)).count == 1, "a quick first retry")
        #expect(m.tick(nowMillis: 100).contains { if case .bindRelay(Self.relay) = $0 { return true }; return false })
        #expect(Self.requests(m.tick(nowMillis: 200)).count == 1)
        // The response to the first request verifies the pair; the initiator selects it.
        let afterResponse = m.received(.response, txid: sent[0].txid, socket: 0, from: Self.theirs, nowMillis: 210)
        guard case .probe(.select, let selectID, 0, Self.theirs, nil)? = afterResponse.first else {
            Issue.record("expected a select, got \(afterResponse)")
            return
        }
        // A selectAck for another txid or from elsewhere changes nothing.
        #expect(m.received(.selectAck, txid: selectID &+ 1, socket: 0, from: Self.theirs, nowMillis: 220).isEmpty)
        #expect(m.received(.selectAck, txid: selectID, socket: 0, from: Self.relay, nowMillis: 220).isEmpty)
        let done = m.received(.selectAck, txid: selectID, socket: 0, from: Self.theirs, nowMillis: 230)
        #expect(done == [.established(M.Pair(socket: 0, remote: Self.theirs), method: .punch, path: .direct)])
        #expect(m.isFinished)
        #expect(m.tick(nowMillis: 5000).isEmpty)
    }

    @Test("a response from an address other than the request's does not verify the pair")
    func responseFromElsewhere() {
        var m = M(role: .initiator, plan: Self.plan(), nowMillis: 0, seed: 2)
        let sent = Self.requests(m.tick(nowMillis: 0))
        let spoofed = STUNAddress(parsing: "203.0.113.66:40000")!
        let actions = m.received(.response, txid: sent[0].txid, socket: 0, from: spoofed, nowMillis: 10)
        #expect(!actions.contains { if case .probe(.select, _, _, _, _) = $0 { return true }; return false })
    }

    @Test("acceptor: answers requests (learning the source as a pair), establishes on select and answers late selects")
    func acceptorFollows() {
        var m = M(role: .acceptor, plan: Self.plan(), nowMillis: 0, seed: 3)
        _ = m.tick(nowMillis: 0)
        let prflx = STUNAddress(parsing: "203.0.113.20:40123")!
        let answer = m.received(.request, txid: 42, socket: 0, from: prflx, nowMillis: 5)
        #expect(answer.first == .probe(.response, txid: 42, socket: 0, to: prflx, observed: prflx))
        #expect(Self.requests(answer).map(\.to) == [prflx], "a triggered request on the learnt pair")
        let selected = m.received(.select, txid: 77, socket: 0, from: prflx, nowMillis: 20)
        #expect(selected == [.probe(.selectAck, txid: 77, socket: 0, to: prflx, observed: nil),
                             .established(M.Pair(socket: 0, remote: prflx), method: .punch, path: .direct)])
        // The ack was lost: the select comes again and is answered again.
        #expect(m.received(.select, txid: 77, socket: 0, from: prflx, nowMillis: 120)
                == [.probe(.selectAck, txid: 77, socket: 0, to: prflx, observed: nil)])
    }

    @Test("nothing direct answers: after the window the relay pair is verified and selected; relayed path")
    func relayFallback() {
        var m = M(role: .initiator, plan: Self.plan(window: 1000), nowMillis: 0, seed: 4)
        var t: UInt64 = 0
        var relayRequest: UInt64?
        while t <= 1500 && relayRequest == nil {
            let actions = m.tick(nowMillis: t)
            if actions.contains(where: { if case .bindRelay = $0 { return true }; return false }) { m.relayAnswered() }
            relayRequest = Self.requests(actions).first { $0.to == Self.relay }?.txid
            if relayRequest != nil { #expect(t >= 1000, "the relay is probed only after the direct window") }
            t += 50
        }
        guard let relayRequest else {
            Issue.record("no request through the relay")
            return
        }
        let select = m.received(.response, txid: relayRequest, socket: 0, from: Self.relay, nowMillis: t)
        guard case .probe(.select, let id, 0, Self.relay, nil)? = select.first else {
            Issue.record("expected a select through the relay, got \(select)")
            return
        }
        #expect(m.received(.selectAck, txid: id, socket: 0, from: Self.relay, nowMillis: t + 10)
                == [.established(M.Pair(socket: 0, remote: Self.relay), method: .relay, path: .relayed)])
    }

    @Test("heard over a direct pair: the direct window grows by directGraceMillis before the relay")
    func directGrace() {
        var m = M(role: .initiator, plan: Self.plan(window: 1000), nowMillis: 0, seed: 10)
        _ = m.tick(nowMillis: 0)
        #expect(m.directDeadlineMillis == 1000)
        _ = m.received(.request, txid: 5, socket: 0, from: Self.theirs, nowMillis: 500)
        #expect(m.directDeadlineMillis == 1000 + UDPTraversalLimits.directGraceMillis)
        m.relayAnswered()
        let early = m.tick(nowMillis: 2000)
        #expect(!Self.requests(early).contains { $0.to == Self.relay }, "the relay waits for the longer window")
        #expect(Self.requests(m.tick(nowMillis: 1000 + UDPTraversalLimits.directGraceMillis)).contains { $0.to == Self.relay })
    }

    @Test("no path at all: failed at the deadline (window + relay window), with a reason")
    func fails() {
        var m = M(role: .initiator, plan: Self.plan(window: 500), nowMillis: 1000, seed: 5)
        #expect(m.deadlineMillis == 1500 + UDPTraversalLimits.relayWindowMillis)
        _ = m.tick(nowMillis: 1000)
        let end = m.tick(nowMillis: m.deadlineMillis)
        guard case .failed(let why)? = end.last else {
            Issue.record("expected failure, got \(end)")
            return
        }
        #expect(why.contains("relay"))
        var bare = M(role: .acceptor, plan: Self.plan(window: 0, relay: false), nowMillis: 0, seed: 6)
        #expect(bare.tick(nowMillis: 0).contains { if case .failed = $0 { return true }; return false })
    }

    @Test("many-port, easy side: the spray is paced, every port distinct and above 1023; a hit verifies its pair")
    func spray() {
        let target = STUNAddress(parsing: "203.0.113.30:5000")!
        var m = M(role: .initiator, plan: Self.plan(targets: [TraversalTarget(method: .manyPort, endpoint: target)],
                                                     spray: TraversalSpray(address: target, count: 2048)), nowMillis: 0, seed: 7)
        var ports: [UInt16] = []
        var sprayTxid: [UInt16: UInt64] = [:]
        for t in stride(from: UInt64(0), through: 1000, by: 10) {
            for r in Self.requests(m.tick(nowMillis: t)) where r.to.ip == target.ip && r.to != target {
                ports.append(r.to.port)
                sprayTxid[r.to.port] = r.txid
            }
            if t == 250 { #expect(ports.count <= Int(250 * UDPTraversalLimits.sprayPerSecond / 1000) + 1) }
        }
        #expect(ports.count == 2048)
        #expect(Set(ports).count == 2048 && ports.allSatisfy { $0 >= UDPTraversalLimits.sprayLowestPort })
        // The random side answers one sprayed port: that pair is verified and selected.
        let hit = ports[1234]
        let from = STUNAddress(ip: target.ip, port: hit)
        let actions = m.received(.response, txid: sprayTxid[hit]!, socket: 0, from: from, nowMillis: 1010)
        #expect(actions.contains { if case .probe(.select, _, 0, from, nil) = $0 { return true }; return false })
    }

    @Test("many-port, hard side: every local socket probes the easy side's address")
    func manySockets() {
        var m = M(role: .acceptor, plan: Self.plan(sockets: 256), nowMillis: 0, seed: 8)
        #expect(m.socketCount == 256)
        let sent = Self.requests(m.tick(nowMillis: 0))
        #expect(Set(sent.map(\.socket)) == Set(0..<256))
        #expect(sent.allSatisfy { $0.to == Self.theirs })
    }

    @Test("prediction targets expand to consecutive ports in order")
    func prediction() {
        let start = STUNAddress(parsing: "203.0.113.40:20011")!
        var m = M(role: .initiator, plan: Self.plan(targets: [TraversalTarget(method: .predict, endpoint: start, count: 24, step: 1)]),
                  nowMillis: 0, seed: 9)
        #expect(Self.requests(m.tick(nowMillis: 0)).map(\.to.port) == Array(20011...20034))
    }
}
