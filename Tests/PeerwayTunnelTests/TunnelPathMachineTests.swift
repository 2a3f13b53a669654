import PeerwayCheckpoint
import PeerwaySTUN
import PeerwayTunnel
import Testing

/// Relay first and path watching under virtual time: scripted probes and records, no sockets.
@Suite("Tunnel paths: relay first, upgrade, fallback, retry")
struct TunnelPathMachineTests {
    typealias M = UDPTraversalMachine
    typealias P = TunnelPathMachine
    static let theirs = UDPTraversalMachineTests.theirs
    static let relay = UDPTraversalMachineTests.relay
    static let direct = M.Pair(socket: 0, remote: theirs)
    static let relayPair = M.Pair(socket: 0, remote: relay)

    static func requests(_ actions: [P.Action]) -> [(txid: UInt64, to: STUNAddress)] {
        actions.compactMap { if case .probe(.request, let t, _, let to, _) = $0 { return (t, to) }; return nil }
    }

    static func keepalives(_ actions: [P.Action]) -> [M.Pair] {
        actions.compactMap { if case .keepalive(let p) = $0 { return p }; return nil }
    }

    /// A relay-first initiator whose relay answers at once and whose direct pair answers nothing
    /// until `directAnswersAt`: returns the machine right after the relayed `established`.
    static func relayFirstInitiator(window: UInt32 = 4000) -> (M, UInt64) {
        var m = M(role: .initiator, plan: UDPTraversalMachineTests.plan(window: window), nowMillis: 0, seed: 11, relayFirst: true)
        var t: UInt64 = 0
        while t < 1000 {
            let actions = m.tick(nowMillis: t)
            if actions.contains(where: { if case .bindRelay = $0 { return true }; return false }) { m.relayAnswered() }
            if let r = UDPTraversalMachineTests.requests(actions).first(where: { $0.to == relay }) {
                let select = m.received(.response, txid: r.txid, socket: 0, from: relay, nowMillis: t + 20)
                guard case .probe(.select, let id, 0, relay, nil)? = select.first else { break }
                let done = m.received(.selectAck, txid: id, socket: 0, from: relay, nowMillis: t + 40)
                #expect(done == [.established(relayPair, method: .relay, path: .relayed)])
                return (m, t + 40)
            }
            t += 10
        }
        Issue.record("the relay was never selected")
        return (m, t)
    }

    @Test("relay first: the relay is established after one relay round trip, then direct is found and the tunnel moves")
    func relayFirstThenDirect() {
        let (traversal, t0) = Self.relayFirstInitiator()
        #expect(t0 <= 200, "the relay path is up within the bind delay and one round trip")
        #expect(!traversal.isFinished && traversal.onRelay)
        var p = P(traversal: traversal, established: Self.relayPair, method: .relay, path: .relayed, relayBound: true,
                  nowMillis: t0, seed: 1)
        #expect(p.isUpgrading)
        // The traversal goes on probing the direct pair; the relay pair is not probed again.
        var t = t0
        var directRequest: UInt64?
        while directRequest == nil && t < t0 + 1000 {
            t += 10
            let sent = Self.requests(p.tick(nowMillis: t))
            #expect(!sent.contains { $0.to == Self.relay })
            directRequest = sent.first { $0.to == Self.theirs }?.txid
        }
        guard let directRequest else { Issue.record("no direct request after the relay start"); return }
        let select = p.received(.response, txid: directRequest, socket: 0, from: Self.theirs, nowMillis: t + 30)
        guard case .probe(.select, let id, 0, Self.theirs, nil)? = select.first else { Issue.record("no select: \(select)"); return }
        let moved = p.received(.selectAck, txid: id, socket: 0, from: Self.theirs, nowMillis: t + 60)
        #expect(moved == [.use(Self.direct, path: .direct, method: .punch, rttMillis: 30)])
        #expect(!p.isUpgrading && p.activePath == .direct && p.active == Self.direct)
    }

    @Test("relay first, acceptor: a select over the relay starts the tunnel, a later direct select moves it")
    func acceptorFollowsUpgrade() {
        var m = M(role: .acceptor, plan: UDPTraversalMachineTests.plan(), nowMillis: 0, seed: 12, relayFirst: true)
        _ = m.tick(nowMillis: 0)
        m.relayAnswered()
        let first = m.received(.select, txid: 5, socket: 0, from: Self.relay, nowMillis: 150)
        #expect(first == [.probe(.selectAck, txid: 5, socket: 0, to: Self.relay, observed: nil),
                          .established(Self.relayPair, method: .relay, path: .relayed)])
        var p = P(traversal: m, established: Self.relayPair, method: .relay, path: .relayed, relayBound: true, nowMillis: 150, seed: 2)
        // The initiator's select came again (our ack lost): acked, no second start.
        #expect(p.received(.select, txid: 5, socket: 0, from: Self.relay, nowMillis: 250)
                == [.probe(.selectAck, txid: 5, socket: 0, to: Self.relay, observed: nil)])
        let moved = p.received(.select, txid: 6, socket: 0, from: Self.theirs, nowMillis: 900)
        #expect(moved == [.probe(.selectAck, txid: 6, socket: 0, to: Self.theirs, observed: nil),
                          .use(Self.direct, path: .direct, method: .punch, rttMillis: nil)])
    }

    @Test("relay first: no direct path in the window is reported once; the tunnel stays relayed and is kept alive")
    func directAbandoned() {
        let (traversal, t0) = Self.relayFirstInitiator(window: 1000)
        var p = P(traversal: traversal, established: Self.relayPair, method: .relay, path: .relayed, relayBound: true,
                  nowMillis: t0, seed: 3)
        var abandoned = 0
        var t = t0
        while t < 60_000 {
            t += 50
            for a in p.tick(nowMillis: t) { if case .directAbandoned = a { abandoned += 1 } }
        }
        #expect(abandoned == 1)
        #expect(!p.isUpgrading && p.activePath == .relayed && p.moves == 0)
    }

    /// A machine on a direct path (the traversal finished there), at time 0.
    static func onDirect() -> P {
        var m = M(role: .initiator, plan: UDPTraversalMachineTests.plan(), nowMillis: 0, seed: 13, relayFirst: true)
        let r = UDPTraversalMachineTests.requests(m.tick(nowMillis: 0))[0]
        let select = m.received(.response, txid: r.txid, socket: 0, from: Self.theirs, nowMillis: 20)
        guard case .probe(.select, let id, _, _, _)? = select.first else { fatalError("no select") }
        #expect(m.received(.selectAck, txid: id, socket: 0, from: Self.theirs, nowMillis: 40)
                == [.established(Self.direct, method: .punch, path: .direct)])
        #expect(m.isFinished, "direct before the relay: nothing left to upgrade")
        return P(traversal: m, established: Self.direct, method: .punch, path: .direct, relayBound: false, nowMillis: 0, seed: 4)
    }

    @Test("a tunnel that went direct at once binds the relay afterwards, for a fallback")
    func bindsRelayLater() {
        var p = Self.onDirect()
        #expect(p.tick(nowMillis: 10).contains(.bindRelay(to: Self.relay)))
        #expect(!p.tick(nowMillis: 100).contains(.bindRelay(to: Self.relay)), "binds are paced")
        #expect(p.tick(nowMillis: 300).contains(.bindRelay(to: Self.relay)))
        p.relayAnswered()
        #expect(!p.tick(nowMillis: 600).contains(.bindRelay(to: Self.relay)))
    }

    @Test("black hole: a silent direct path while sending is checked, falls back to the relay within 3 s, and returns with backoff")
    func blackHole() {
        var p = Self.onDirect()
        p.relayAnswered()
        var t: UInt64 = 0
        // Traffic both ways: no checks.
        while t < 5_000 {
            t += 20
            p.sent(nowMillis: t)
            p.heard(socket: 0, from: Self.theirs, nowMillis: t)
            #expect(Self.requests(p.tick(nowMillis: t)).isEmpty)
        }
        // The direct path goes silent; this side keeps sending.
        let silentFrom = t
        var fellBackAt: UInt64?
        var checks = 0
        while fellBackAt == nil && t < silentFrom + 10_000 {
            t += 20
            p.sent(nowMillis: t)
            let actions = p.tick(nowMillis: t)
            checks += Self.requests(actions).filter { $0.to == Self.theirs }.count
            if actions.contains(.use(Self.relayPair, path: .relayed, method: .relay, rttMillis: nil)) { fellBackAt = t }
        }
        guard let fellBackAt else { Issue.record("never fell back"); return }
        #expect(fellBackAt - silentFrom <= 3_000, "fell back after \(fellBackAt - silentFrom) ms")
        #expect(checks == TunnelPathLimits.checkAttempts)
        // Retries: 1 s, then 2 s, 4 s... each unanswered (the relay carries the traffic meanwhile).
        var retries: [UInt64] = []
        while t < fellBackAt + 20_000 {
            t += 20
            p.sent(nowMillis: t)
            p.heard(socket: 0, from: Self.relay, nowMillis: t)
            retries += Self.requests(p.tick(nowMillis: t)).filter { $0.to == Self.theirs }.map { _ in t }
        }
        #expect(retries.count >= 3 && retries.count <= 5, "retries at \(retries.map { $0 - fellBackAt })")
        let gaps = zip(retries.dropFirst(), retries).map { $0 - $1 }
        #expect(gaps == gaps.sorted() && (gaps.last ?? 0) > (gaps.first ?? 0), "backoff grows: \(gaps)")
        // The hole closes: the next retry is answered and the tunnel moves back.
        var back = false
        while !back && t < fellBackAt + 80_000 {
            t += 20
            p.heard(socket: 0, from: Self.relay, nowMillis: t)
            for r in Self.requests(p.tick(nowMillis: t)) where r.to == Self.theirs {
                back = p.received(.response, txid: r.txid, socket: 0, from: Self.theirs, nowMillis: t + 30)
                    == [.use(Self.direct, path: .direct, method: .punch, rttMillis: 30)]
            }
        }
        #expect(back && p.activePath == .direct)
    }

    @Test("a request from the other side over the direct pair brings the retry forward")
    func otherSideRetries() {
        var p = Self.onDirect()
        p.relayAnswered()
        var t: UInt64 = 0
        while p.activePath == .direct && t < 10_000 {
            t += 20
            p.sent(nowMillis: t)
            _ = p.tick(nowMillis: t)
        }
        #expect(p.activePath == .relayed)
        // Long before the retry is due, the other side's request arrives directly.
        let answer = p.received(.request, txid: 99, socket: 0, from: Self.theirs, nowMillis: t + 10)
        #expect(answer == [.probe(.response, txid: 99, socket: 0, to: Self.theirs, observed: Self.theirs)])
        let retry = Self.requests(p.tick(nowMillis: t + 20))
        #expect(retry.map(\.to) == [Self.theirs])
    }

    @Test("the other side's NAT maps it anew: the new address is checked and becomes the direct pair")
    func newAddress() {
        var p = Self.onDirect()
        let moved = STUNAddress(parsing: "203.0.113.20:41000")!
        let answer = p.received(.request, txid: 7, socket: 0, from: moved, nowMillis: 1000)
        #expect(answer.first == .probe(.response, txid: 7, socket: 0, to: moved, observed: moved))
        guard let check = Self.requests(answer).first, check.to == moved else { Issue.record("no check of \(moved): \(answer)"); return }
        let pair = M.Pair(socket: 0, remote: moved)
        #expect(p.received(.response, txid: check.txid, socket: 0, from: moved, nowMillis: 1040)
                == [.use(pair, path: .direct, method: .punch, rttMillis: nil)])
        #expect(p.active == pair && p.direct == pair)
    }

    @Test("idle: only keepalives, one per path per keepalive interval; no checks while the other side's keepalives arrive")
    func idleCost() {
        var p = Self.onDirect()
        p.relayAnswered()
        var sent = 0, checks = 0
        var t: UInt64 = 0
        let hour: UInt64 = 3_600_000
        while t < hour {
            t += 100
            // The other side's keepalives arrive on the direct path.
            if t % TunnelPathLimits.keepaliveMillis == 0 { p.heard(socket: 0, from: Self.theirs, nowMillis: t) }
            let actions = p.tick(nowMillis: t)
            sent += Self.keepalives(actions).count
            checks += Self.requests(actions).count
        }
        let perPath = Int(hour / TunnelPathLimits.keepaliveMillis)
        #expect(checks == 0)
        #expect(sent == 2 * perPath, "\(sent) keepalives in an hour on two paths")
    }

    @Test("an idle tunnel whose direct path died is checked after two keepalive intervals of silence")
    func idleDeadPath() {
        var p = Self.onDirect()
        p.relayAnswered()
        var t: UInt64 = 0
        var checkedAt: UInt64?
        while checkedAt == nil && t < 120_000 {
            t += 100
            if !Self.requests(p.tick(nowMillis: t)).isEmpty { checkedAt = t }
        }
        #expect(checkedAt == 2 * TunnelPathLimits.keepaliveMillis + TunnelPathLimits.silenceMillis)
    }

    static func actions<T>(_ actions: [P.Action], _ pick: (P.Action) -> T?) -> [T] { actions.compactMap(pick) }

    @Test("roaming: the direct path and the relay both go silent; the relay is bound again, the new address gathered and sent, direct found again")
    func roamRecovery() {
        var p = Self.onDirect()
        p.relayAnswered()
        var t: UInt64 = 0
        var binds: [UInt64] = [], gathers: [UInt64] = [], fellBack: UInt64?
        // This side moved: nothing arrives any more, on any path, while it sends.
        while t < 8_000 && gathers.isEmpty {
            t += 20
            p.sent(nowMillis: t)
            let a = p.tick(nowMillis: t)
            if a.contains(.use(Self.relayPair, path: .relayed, method: .relay, rttMillis: nil)) { fellBack = t }
            binds += Self.actions(a) { if case .bindRelay = $0 { return t }; return nil }
            gathers += Self.actions(a) { $0 == .gather ? t : nil }
        }
        #expect(fellBack != nil, "the dead direct path fell back to the relay first")
        #expect(p.recovering && !gathers.isEmpty && !binds.isEmpty, "recovery: binds \(binds), gathers \(gathers)")
        // The relay answers from the new address; the gathered address is new: it goes to the other side.
        p.relayAnswered()
        let moved = STUNAddress(parsing: "203.0.113.77:61000")!
        p.gathered(moved, nowMillis: t)
        var candidates = 0, retries: [UInt64] = []
        for _ in 0..<50 {
            t += 20
            let a = p.tick(nowMillis: t)
            candidates += Self.actions(a) { if case .probe(.candidate, _, 0, Self.relay, moved) = $0 { return 1 }; return nil }.count
            retries += Self.requests(a).filter { $0.to == Self.theirs }.map(\.txid)
        }
        #expect(candidates >= 2, "the new address went over the relay \(candidates) times")
        #expect(retries.count >= 3, "quick direct retries while recovering: \(retries.count) in a second")
        // The punch went through: a retry is answered, the tunnel is direct again.
        let back = p.received(.response, txid: retries.last!, socket: 0, from: Self.theirs, nowMillis: t + 10)
        #expect(back.contains { if case .use(Self.direct, path: .direct, _, _) = $0 { return true }; return false })
        #expect(!p.recovering && p.activePath == .direct)
    }

    @Test("a network change starts the recovery at once, even on a healthy direct path")
    func networkChange() {
        var p = Self.onDirect()
        p.relayAnswered()
        p.heard(socket: 0, from: Self.theirs, nowMillis: 500)
        let now = p.networkChanged(nowMillis: 500)
        #expect(now == [.use(Self.relayPair, path: .relayed, method: .relay, rttMillis: nil)])
        let next = p.tick(nowMillis: 510)
        #expect(next.contains(.bindRelay(to: Self.relay)) && next.contains(.gather))
        #expect(Self.requests(next).map(\.to) == [Self.theirs], "the old direct pair is retried at once")
    }

    @Test("the other side's candidate: its new address is probed, its own request brings ours again, the answer makes it the direct pair")
    func otherSideMoved() {
        var p = Self.onDirect()
        p.relayAnswered()
        let moved = STUNAddress(parsing: "203.0.113.88:62000")!
        let probe = p.received(candidate: moved, txid: 1, socket: 0, from: Self.relay, nowMillis: 1000)
        guard let request = Self.requests(probe).first, request.to == moved else { Issue.record("no request to \(moved): \(probe)"); return }
        // Its request arrives (the punch from its side): ours goes again, same txid.
        let again = p.received(.request, txid: 9, socket: 0, from: moved, nowMillis: 1100)
        #expect(again.contains(.probe(.response, txid: 9, socket: 0, to: moved, observed: moved)))
        #expect(Self.requests(again).map(\.txid) == [request.txid])
        let pair = M.Pair(socket: 0, remote: moved)
        #expect(p.received(.response, txid: request.txid, socket: 0, from: moved, nowMillis: 1150)
                == [.use(pair, path: .direct, method: .punch, rttMillis: nil)])
    }

    @Test("a recovery that finds nothing ends after its window and the next one waits, doubling: probing backs off")
    func recoveryBacksOff() {
        var p = Self.onDirect()
        var t: UInt64 = 0
        var recoveries: [UInt64] = []
        var wasRecovering = false
        var probes = 0
        // No relay ever answers, nothing is ever heard, this side keeps sending for ten minutes.
        while t < 600_000 {
            t += 50
            p.sent(nowMillis: t)
            let a = p.tick(nowMillis: t)
            probes += a.filter { if case .probe = $0 { return true }; if case .bindRelay = $0 { return true }; return $0 == .gather }.count
            if p.recovering && !wasRecovering { recoveries.append(t) }
            wasRecovering = p.recovering
        }
        let gaps = zip(recoveries.dropFirst(), recoveries).map { $0 - $1 }
        #expect(recoveries.count >= 3 && recoveries.count <= 8, "recoveries at \(recoveries)")
        #expect(zip(gaps.dropFirst(), gaps).allSatisfy { $0 >= $1 }, "gaps grow: \(gaps)")
        print("recovery backoff: \(recoveries.count) recoveries, \(probes) packets in 10 minutes of silence")
        #expect(probes < 2_000)
    }

    @Test("a port mapping made after the offer is advertised over the relay, a few times, then no more")
    func advertiseMapping() {
        let (traversal, t0) = Self.relayFirstInitiator(window: 0)
        var p = P(traversal: traversal, established: Self.relayPair, method: .relay, path: .relayed, relayBound: true, nowMillis: t0, seed: 5)
        #expect(!p.isUpgrading)
        let mapped = STUNAddress(parsing: "203.0.113.10:5555")!
        p.advertise(mapped)
        var sent = 0
        var t = t0
        for _ in 0..<200 {
            t += 20
            p.heard(socket: 0, from: Self.relay, nowMillis: t)
            sent += Self.actions(p.tick(nowMillis: t)) { if case .probe(.candidate, _, 0, Self.relay, mapped) = $0 { return 1 }; return nil }.count
        }
        #expect(sent == TunnelPathLimits.candidateSends)
    }
}
