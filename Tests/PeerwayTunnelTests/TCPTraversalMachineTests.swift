import PeerwayCheckpoint
import PeerwaySTUN
import PeerwayTunnel
import Testing

/// The TCP traversal state machine under virtual time: scripted connection events, no sockets.
@Suite("TCP traversal machine")
struct TCPTraversalMachineTests {
    typealias M = TCPTraversalMachine
    typealias L = TCPTraversalLimits
    static let lan = STUNAddress(parsing: "10.0.0.20:41000")!
    static let wan = STUNAddress(parsing: "203.0.113.20:41000")!
    static let relay = STUNAddress(parsing: "198.51.100.1:7401")!

    static func plan(targets: [TraversalTarget] = [TraversalTarget(method: .lan, endpoint: lan),
                                                   TraversalTarget(method: .tcpSimultaneousOpen, endpoint: wan)],
                     window: UInt32 = 4000) -> TraversalPlan {
        TraversalPlan(initiator: Fixture.alice.peerID, acceptor: Fixture.bob.peerID, requestID: 7, transport: .tcp,
                      method: .tcpSimultaneousOpen, directWindowMillis: window, localSockets: 1, remoteKeyShare: [],
                      targets: targets, spray: nil, relay: nil)
    }

    /// (Alice's keys, Bob's keys): Alice initiates.
    static func keys() throws -> (TunnelKeys, TunnelKeys) { try Fixture.keys(transport: .tcp) }

    static func connects(_ actions: [M.Action]) -> [(attempt: Int, to: STUNAddress)] {
        actions.compactMap { if case .connect(let a, let to) = $0 { return (a, to) }; return nil }
    }

    static func isFailure(_ actions: [M.Action]) -> String? {
        if case .failed(let why)? = actions.last { return why }
        return nil
    }

    @Test("initiator: hello on each connection, `use` on the first verified one, established on its useAck")
    func initiatorPicksFirstVerified() throws {
        let (alice, bob) = try Self.keys()
        var m = M(plan: Self.plan(), keys: alice, nowMillis: 0)
        #expect(m.role == .initiator)
        let started = Self.connects(m.tick(nowMillis: 0))
        #expect(started.map(\.to) == [Self.lan, Self.wan] && started.map(\.attempt) == [0, 1])
        #expect(m.bytesWanted(attempt: 0) == 0, "nothing is read before the connect completes")
        let hello = TunnelStreamHello.make(keys: alice)
        #expect(m.connected(attempt: 0) == [.send(attempt: 0, bytes: hello)])
        #expect(m.connected(attempt: 1) == [.send(attempt: 1, bytes: hello)])
        #expect(m.bytesWanted(attempt: 1) == TunnelLimits.helloBytes + 1)
        // The second connection verifies first: it is picked; the first, verified later, is not.
        let theirs = TunnelStreamHello.make(keys: bob)
        #expect(m.received(attempt: 1, bytes: Array(theirs.prefix(10))).isEmpty, "a partial hello waits")
        #expect(m.received(attempt: 1, bytes: Array(theirs.dropFirst(10))) == [.send(attempt: 1, bytes: [L.useByte])])
        #expect(m.received(attempt: 0, bytes: theirs).isEmpty)
        #expect(m.received(attempt: 1, bytes: [L.useAckByte])
                == [.close(attempt: 0), .established(attempt: 1, remote: Self.wan, method: .tcpSimultaneousOpen)])
        #expect(m.isFinished && m.connectionCount == 0)
        #expect(m.tick(nowMillis: 100_000).isEmpty)
    }

    @Test("acceptor: takes the connection `use` arrives on, answers useAck, closes the rest")
    func acceptorFollowsUse() throws {
        let (alice, bob) = try Self.keys()
        var m = M(plan: Self.plan(), keys: bob, nowMillis: 0)
        _ = m.tick(nowMillis: 0)
        let hello = TunnelStreamHello.make(keys: bob), theirs = TunnelStreamHello.make(keys: alice)
        #expect(m.connected(attempt: 0) == [.send(attempt: 0, bytes: hello)])
        let other = STUNAddress(parsing: "10.0.0.20:50123")!
        let (accepted, actions) = m.accepted(remote: other)
        #expect(accepted == 2 && actions == [.send(attempt: 2, bytes: hello)])
        #expect(m.received(attempt: 0, bytes: theirs).isEmpty, "the acceptor picks nothing itself")
        #expect(m.received(attempt: 2, bytes: theirs).isEmpty)
        // Accepted from the LAN target's address: found by that target's method.
        #expect(m.received(attempt: 2, bytes: [L.useByte])
                == [.send(attempt: 2, bytes: [L.useAckByte]), .close(attempt: 0), .close(attempt: 1),
                    .established(attempt: 2, remote: other, method: .lan)])
        // An accepted connection from an unknown address goes by TCP simultaneous open.
        var n = M(plan: Self.plan(), keys: bob, nowMillis: 0)
        let (id, _) = n.accepted(remote: STUNAddress(parsing: "192.0.2.9:1234")!)
        let remote = STUNAddress(parsing: "192.0.2.9:1234")!
        #expect(n.received(attempt: id, bytes: theirs + [L.useByte]).last
                == .established(attempt: id, remote: remote, method: .tcpSimultaneousOpen))
    }

    @Test("a bad hello closes that connection only; the next verified one is picked")
    func badHello() throws {
        let (alice, bob) = try Self.keys()
        var m = M(plan: Self.plan(), keys: alice, nowMillis: 0)
        _ = m.tick(nowMillis: 0)
        _ = m.connected(attempt: 0)
        _ = m.connected(attempt: 1)
        let theirs = TunnelStreamHello.make(keys: bob)
        #expect(m.received(attempt: 0, bytes: theirs.flipping(bit: 100)) == [.close(attempt: 0)])
        // Our own hello reflected back is refused too.
        var n = M(plan: Self.plan(), keys: alice, nowMillis: 0)
        _ = n.tick(nowMillis: 0)
        _ = n.connected(attempt: 0)
        #expect(n.received(attempt: 0, bytes: TunnelStreamHello.make(keys: alice)) == [.close(attempt: 0)])
        // The other connection is untouched and wins.
        #expect(m.connectionCount == 1 && !m.isFinished)
        #expect(m.received(attempt: 1, bytes: theirs) == [.send(attempt: 1, bytes: [L.useByte])])
        #expect(m.received(attempt: 1, bytes: [L.useAckByte]) == [.established(attempt: 1, remote: Self.wan, method: .tcpSimultaneousOpen)])
    }

    @Test("a failed connect is retried connectRetryMillis after it started; a pending one is replaced")
    func retries() throws {
        let (alice, _) = try Self.keys()
        var m = M(plan: Self.plan(targets: [TraversalTarget(method: .tcpSimultaneousOpen, endpoint: Self.wan)]), keys: alice, nowMillis: 1000)
        #expect(m.tick(nowMillis: 1000) == [.connect(attempt: 0, to: Self.wan)])
        #expect(m.connectFailed(attempt: 0).isEmpty)
        #expect(m.tick(nowMillis: 1010).isEmpty)
        #expect(m.tick(nowMillis: 1000 + L.connectRetryMillis - 1).isEmpty)
        #expect(m.tick(nowMillis: 1000 + L.connectRetryMillis) == [.connect(attempt: 1, to: Self.wan)])
        // Still connecting one interval later: closed and tried again.
        #expect(m.tick(nowMillis: 1000 + 2 * L.connectRetryMillis) == [.close(attempt: 1), .connect(attempt: 2, to: Self.wan)])
        #expect(m.connectsStarted == 3 && m.connectionCount == 1)
        // Connected: no more connects to that target, until the connection goes away.
        _ = m.connected(attempt: 2)
        #expect(m.tick(nowMillis: 1000 + 3 * L.connectRetryMillis).isEmpty)
        #expect(m.closed(attempt: 2).isEmpty)
        #expect(m.tick(nowMillis: 1000 + 3 * L.connectRetryMillis) == [.connect(attempt: 3, to: Self.wan)])
    }

    @Test("at most maximumTargets endpoints and maximumConnections connections, accepted ones included")
    func limits() throws {
        let (alice, _) = try Self.keys()
        let many = TraversalTarget(method: .predict, endpoint: Self.wan, count: 40, step: 1)
        var m = M(plan: Self.plan(targets: [many], window: 10_000), keys: alice, nowMillis: 0)
        let first = Self.connects(m.tick(nowMillis: 0))
        #expect(first.count == L.maximumTargets)
        for c in first { _ = m.connected(attempt: c.attempt) }
        var accepted: [Int] = []
        for i in 0..<(L.maximumConnections - L.maximumTargets) {
            let (id, actions) = m.accepted(remote: STUNAddress(ip: Self.lan.ip, port: UInt16(50_000 + i)))
            #expect(actions.count == 1, "\(actions)")
            accepted.append(id)
        }
        #expect(m.connectionCount == L.maximumConnections)
        let (over, refused) = m.accepted(remote: STUNAddress(parsing: "10.0.0.99:1")!)
        #expect(refused == [.close(attempt: over)])
        // A target's connection closes while full again: its retry waits for room.
        #expect(m.closed(attempt: first[0].attempt).isEmpty)
        _ = m.accepted(remote: STUNAddress(parsing: "10.0.0.99:2")!)
        #expect(m.connectionCount == L.maximumConnections)
        #expect(m.tick(nowMillis: L.connectRetryMillis).isEmpty)
        #expect(m.closed(attempt: accepted[0]).isEmpty)
        #expect(m.tick(nowMillis: L.connectRetryMillis + 20) == [.connect(attempt: over + 2, to: first[0].to)])
        #expect(m.connectionCount == L.maximumConnections)
    }

    @Test("the window ends in failure with a reason, every connection closed")
    func windowEnds() throws {
        let (alice, _) = try Self.keys()
        var m = M(plan: Self.plan(window: 1000), keys: alice, nowMillis: 500)
        _ = m.tick(nowMillis: 500)
        _ = m.connected(attempt: 0)
        #expect(m.deadlineMillis == 1500)
        #expect(Self.isFailure(m.tick(nowMillis: 1499)) == nil)
        let end = m.tick(nowMillis: 1500)
        // Attempt 1 (still connecting) was replaced by attempt 2 at 900 ms.
        #expect(Array(end.dropLast()) == [.close(attempt: 0), .close(attempt: 2)])
        let why = Self.isFailure(end)
        #expect(why?.contains("1000 ms") == true && why?.contains("connects") == true, "\(why ?? "-")")
        #expect(m.isFinished && m.tick(nowMillis: 2000).isEmpty)
        #expect(m.connected(attempt: 0).isEmpty && m.received(attempt: 0, bytes: [1]).isEmpty)
        let (late, actions) = m.accepted(remote: Self.lan)
        #expect(actions == [.close(attempt: late)], "nothing is accepted once done")
    }

    @Test("grace: a picked connection may finish useGraceMillis past the window; then it fails")
    func grace() throws {
        let (alice, bob) = try Self.keys()
        let theirs = TunnelStreamHello.make(keys: bob)
        var m = M(plan: Self.plan(window: 1000), keys: alice, nowMillis: 0)
        _ = m.tick(nowMillis: 0)
        _ = m.connected(attempt: 1)
        _ = m.received(attempt: 1, bytes: theirs)
        #expect(m.deadlineMillis == 1000 + L.useGraceMillis)
        #expect(Self.isFailure(m.tick(nowMillis: 1000)) == nil)
        #expect(Self.isFailure(m.tick(nowMillis: 5000)) == nil)
        #expect(m.received(attempt: 1, bytes: [L.useAckByte]).last == .established(attempt: 1, remote: Self.wan, method: .tcpSimultaneousOpen))
        // Without the answer: failed once the grace is over, saying so.
        var n = M(plan: Self.plan(window: 1000), keys: alice, nowMillis: 0)
        _ = n.tick(nowMillis: 0)
        _ = n.connected(attempt: 0)
        _ = n.received(attempt: 0, bytes: theirs)
        #expect(Self.isFailure(n.tick(nowMillis: 1000 + L.useGraceMillis - 1)) == nil)
        #expect(Self.isFailure(n.tick(nowMillis: 1000 + L.useGraceMillis))?.contains("use") == true)
        // The acceptor waits the grace too once a connection verified.
        var b = M(plan: Self.plan(window: 1000), keys: bob, nowMillis: 0)
        let (id, _) = b.accepted(remote: Self.lan)
        _ = b.received(attempt: id, bytes: TunnelStreamHello.make(keys: alice))
        #expect(Self.isFailure(b.tick(nowMillis: 2000)) == nil)
        #expect(b.received(attempt: id, bytes: [L.useByte]).last == .established(attempt: id, remote: Self.lan, method: .lan))
    }

    @Test("the picked connection closes: another verified one is picked")
    func repick() throws {
        let (alice, bob) = try Self.keys()
        let theirs = TunnelStreamHello.make(keys: bob)
        var m = M(plan: Self.plan(), keys: alice, nowMillis: 0)
        _ = m.tick(nowMillis: 0)
        _ = m.connected(attempt: 0)
        _ = m.connected(attempt: 1)
        #expect(m.received(attempt: 0, bytes: theirs) == [.send(attempt: 0, bytes: [L.useByte])])
        #expect(m.received(attempt: 1, bytes: theirs).isEmpty)
        #expect(m.closed(attempt: 0) == [.send(attempt: 1, bytes: [L.useByte])])
    }

    @Test("`use` or useAck is taken only on a connection verified (and, initiator, picked) by this side")
    func unverifiedUse() throws {
        let (alice, bob) = try Self.keys()
        var b = M(plan: Self.plan(), keys: bob, nowMillis: 0)
        let (id, _) = b.accepted(remote: Self.lan)
        // A `use` byte before any hello is only the first byte of a (bad) hello.
        #expect(b.received(attempt: id, bytes: [L.useByte]).isEmpty)
        #expect(b.received(attempt: id, bytes: Array(repeating: 0, count: TunnelLimits.helloBytes)) == [.close(attempt: id)])
        // A bad hello and `use` in one read: closed, not taken.
        let (id2, _) = b.accepted(remote: Self.lan)
        #expect(b.received(attempt: id2, bytes: TunnelStreamHello.make(keys: alice).flipping(bit: 200) + [L.useByte]) == [.close(attempt: id2)])
        #expect(!b.isFinished)
        // Initiator: useAck on a verified connection it did not pick closes that connection.
        var a = M(plan: Self.plan(), keys: alice, nowMillis: 0)
        _ = a.tick(nowMillis: 0)
        _ = a.connected(attempt: 0)
        _ = a.connected(attempt: 1)
        let theirs = TunnelStreamHello.make(keys: bob)
        _ = a.received(attempt: 0, bytes: theirs)
        _ = a.received(attempt: 1, bytes: theirs)
        #expect(a.received(attempt: 1, bytes: [L.useAckByte]) == [.close(attempt: 1)])
        // Any byte other than useAck on the picked one closes it too.
        #expect(a.received(attempt: 0, bytes: [L.useByte]) == [.close(attempt: 0)])
        #expect(!a.isFinished)
    }

    @Test("bytes after the use byte are not consumed: at most hello + 1 bytes are read per connection")
    func tunnelBytesUntouched() throws {
        let (alice, bob) = try Self.keys()
        let tunnelBytes: [UInt8] = [0x00, 0x20, 0xAA, 0xBB]
        var a = M(plan: Self.plan(), keys: alice, nowMillis: 0)
        _ = a.tick(nowMillis: 0)
        _ = a.connected(attempt: 0)
        #expect(a.bytesWanted(attempt: 0) == TunnelLimits.helloBytes + 1)
        _ = a.received(attempt: 0, bytes: TunnelStreamHello.make(keys: bob))
        #expect(a.bytesWanted(attempt: 0) == 1, "the driver reads only the useAck byte next")
        // The acceptor's first record right behind useAck is the tunnel's (ignored if fed anyway).
        #expect(a.received(attempt: 0, bytes: [L.useAckByte] + tunnelBytes).last
                == .established(attempt: 0, remote: Self.lan, method: .lan))
        #expect(a.bytesWanted(attempt: 0) == 0)
        var b = M(plan: Self.plan(), keys: bob, nowMillis: 0)
        let (id, _) = b.accepted(remote: Self.lan)
        #expect(b.received(attempt: id, bytes: TunnelStreamHello.make(keys: alice) + [L.useByte] + tunnelBytes).last
                == .established(attempt: id, remote: Self.lan, method: .lan))
    }

    @Test("through the relay: one bound connection, same exchange; any fault fails at once")
    func relayConnection() throws {
        let (alice, bob) = try Self.keys()
        var a = M(relayConnection: Self.relay, keys: alice, nowMillis: 0, deadlineMillis: 20_000)
        var b = M(relayConnection: Self.relay, keys: bob, nowMillis: 0, deadlineMillis: 20_000)
        #expect(a.tick(nowMillis: 0) == [.send(attempt: 0, bytes: TunnelStreamHello.make(keys: alice))])
        #expect(b.tick(nowMillis: 0) == [.send(attempt: 0, bytes: TunnelStreamHello.make(keys: bob))])
        #expect(a.tick(nowMillis: 10).isEmpty, "the hello goes out once, nothing is connected")
        #expect(a.received(attempt: 0, bytes: TunnelStreamHello.make(keys: bob)) == [.send(attempt: 0, bytes: [L.useByte])])
        #expect(b.received(attempt: 0, bytes: TunnelStreamHello.make(keys: alice) + [L.useByte])
                == [.send(attempt: 0, bytes: [L.useAckByte]), .established(attempt: 0, remote: Self.relay, method: .relay)])
        #expect(a.received(attempt: 0, bytes: [L.useAckByte]) == [.established(attempt: 0, remote: Self.relay, method: .relay)])
        // Faults: a bad hello, a wrong byte, a close, the deadline.
        var bad = M(relayConnection: Self.relay, keys: bob, nowMillis: 0, deadlineMillis: 20_000)
        let refused = bad.received(attempt: 0, bytes: TunnelStreamHello.make(keys: alice).flipping(bit: 7))
        #expect(refused.first == .close(attempt: 0) && Self.isFailure(refused)?.contains("did not verify") == true)
        var wrong = M(relayConnection: Self.relay, keys: bob, nowMillis: 0, deadlineMillis: 20_000)
        #expect(Self.isFailure(wrong.received(attempt: 0, bytes: TunnelStreamHello.make(keys: alice) + [0x01])) != nil)
        var gone = M(relayConnection: Self.relay, keys: alice, nowMillis: 0, deadlineMillis: 20_000)
        #expect(Self.isFailure(gone.closed(attempt: 0)) != nil)
        var slow = M(relayConnection: Self.relay, keys: alice, nowMillis: 0, deadlineMillis: 20_000)
        _ = slow.tick(nowMillis: 0)
        _ = slow.received(attempt: 0, bytes: TunnelStreamHello.make(keys: bob))
        #expect(slow.deadlineMillis == 20_000, "no grace through the relay")
        #expect(Self.isFailure(slow.tick(nowMillis: 20_000)) != nil)
        #expect(slow.accepted(remote: Self.lan).actions.first == .close(attempt: 1))
    }
}
