import Crypto
import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwayCheckpoint

/// How peers learn the network's other supernodes and fail over to them (ClusterFailover.swift):
/// the supernode's side (each peer's rendezvous order), the wire, and the client machine's side
/// (learned indices, failover order, the keepalive timeout), all under virtual time.
@Suite("Failover across a network of supernodes")
struct ClusterFailoverTests {
    static func supernode(_ seed: UInt8, _ host: String, port: UInt16 = 7400) -> SupernodeAddress {
        let key = try! SupernodeKey(seed: [UInt8](repeating: seed, count: 32))
        return SupernodeAddress(publicKey: key.publicKey, host: host, port: port, tcpPort: port == 7400 ? nil : 443)
    }

    // MARK: the supernode's side

    @Test("a registration lists the other supernodes (not itself, not DNS names, not the other family), in a per-peer order")
    func registeredListsTheOthers() {
        var h = CheckpointHarness(seed: 7)
        let others = [Self.supernode(1, "192.0.2.1"), Self.supernode(2, "192.0.2.2"), Self.supernode(3, "2001:db8::3"),
                      Self.supernode(4, "sn4.example.org"), Self.supernode(7, "192.0.2.7"), Self.supernode(1, "192.0.2.9")]
        h.machine.setNetworkSupernodes(others)
        #expect(h.machine.networkSupernodes.map(\.host) == ["192.0.2.1", "192.0.2.2", "2001:db8::3", "192.0.2.7"].filter { $0 != "192.0.2.7" },
                "its own key, the DNS name and the duplicate key are dropped")
        let a = WirePeer(1)
        guard case .registered(let r) = a.join(&h) else { Issue.record("not registered"); return }
        #expect(Set(r.supernodes.map(\.host)) == ["192.0.2.1", "192.0.2.2"], "an IPv4 peer is told the IPv4 supernodes")
        let scores = r.supernodes.map { CheckpointMachine<InMemoryLiveDirectory>.rendezvousScore(peer: a.id, supernode: $0.publicKeyBytes) }
        #expect(scores == scores.sorted(by: >), "highest score first")

        let v6 = WirePeer(2, endpoint: PeerEndpoint(ip: .v6(high: 0x2001_0DB8_0000_0000, low: 0x99), port: 50_000))
        guard case .registered(let r6) = v6.join(&h) else { Issue.record("not registered"); return }
        #expect(r6.supernodes.map(\.host) == ["2001:db8::3"])
    }

    @Test("a peer registered before the list changed is told the new list once, in its next keepalive's answer")
    func keepaliveTellsTheNewListOnce() {
        var h = CheckpointHarness(seed: 7)
        let a = WirePeer(1)
        guard case .registered(let r) = a.join(&h) else { Issue.record("not registered"); return }
        #expect(r.supernodes.isEmpty, "the supernode knew no others yet")
        #expect(a.request(.keepalive, &h) == .keepaliveAck(observed: a.endpoint))
        let others = [Self.supernode(1, "192.0.2.1"), Self.supernode(2, "192.0.2.2")]
        h.machine.setNetworkSupernodes(others)
        guard case .keepaliveAck(let observed, let listed) = a.request(.keepalive, &h) else { Issue.record("no keepaliveAck"); return }
        #expect(observed == a.endpoint)
        #expect(Set(listed) == Set(others))
        #expect(a.request(.keepalive, &h) == .keepaliveAck(observed: a.endpoint), "told once")
        h.machine.setNetworkSupernodes(others)
        #expect(a.request(.keepalive, &h) == .keepaliveAck(observed: a.endpoint), "the same list is no change")
        h.machine.setNetworkSupernodes([others[1]])
        #expect(a.request(.keepalive, &h) == .keepaliveAck(observed: a.endpoint, supernodes: [others[1]]))
    }

    @Test("a lone supernode lists nothing: the registered body is the one of earlier versions")
    func loneSupernodeListsNothing() {
        var h = CheckpointHarness()
        guard case .registered(let r) = WirePeer(1).join(&h) else { Issue.record("not registered"); return }
        #expect(r.supernodes.isEmpty)
        var b = ByteBuffer()
        b.writeControlFrame(.registered(r), id: 1)
        #expect(b.readableBytes == 1 + 4 + 16 + 7 + 2 + 1, "type id peer observed(v4) keepalive misses, nothing after")
    }

    @Test("the peers of a failed supernode spread evenly over the others (each peer's first choice)")
    func rendezvousOrderSpreads() {
        let others = (1...4).map { Self.supernode(UInt8($0), "192.0.2.\($0)") }
        var first: [String: Int] = [:]
        var h = CheckpointHarness(seed: 9)
        h.machine.setNetworkSupernodes(others)
        let peers = 2_000
        for n in 0..<peers {
            let peer = PeerID(high: UInt64(n) &* 0x9E37_79B9_7F4A_7C15, low: UInt64(n))
            let order = h.machine.failoverSupernodes(for: peer, observed: PeerEndpoint(ip: .v4(0x0A00_0001), port: 1))
            #expect(order.count == 4)
            first[order[0].host, default: 0] += 1
        }
        // Each of 4 gets 500 expected; 6 standard deviations (sqrt(2000 * 0.25 * 0.75) = 19.4) either side.
        for host in others.map(\.host) {
            #expect(abs(first[host, default: 0] - peers / 4) < 117, "\(host): \(first[host, default: 0]) of \(peers)")
        }
        // Removing one supernode moves only the peers that ranked it first.
        h.machine.setNetworkSupernodes(Array(others.dropFirst()))
        var moved = 0
        for n in 0..<peers {
            let peer = PeerID(high: UInt64(n) &* 0x9E37_79B9_7F4A_7C15, low: UInt64(n))
            var all = CheckpointHarness(seed: 9)
            all.machine.setNetworkSupernodes(others)
            let before = all.machine.failoverSupernodes(for: peer, observed: PeerEndpoint(ip: .v4(0x0A00_0001), port: 1))
            let after = h.machine.failoverSupernodes(for: peer, observed: PeerEndpoint(ip: .v4(0x0A00_0001), port: 1))
            if before[0].host != "192.0.2.1" { #expect(after[0] == before[0]) } else { moved += 1 }
            #expect(after == before.filter { $0.host != "192.0.2.1" }, "the relative order of the rest stays")
        }
        #expect(moved == first["192.0.2.1"])
    }

    // MARK: the wire

    @Test("registered with supernodes: golden bytes, round trip, byte-at-a-time, malformed")
    func registeredWire() throws {
        let a = Self.supernode(1, "192.0.2.1")
        let b = Self.supernode(2, "2001:db8::2", port: 7500)
        let frame = ControlFrame.registered(Registered(peer: ControlSamples.peerA, observed: ControlSamples.v4, keepaliveSeconds: 25,
                                                       expiryMisses: 3, supernodes: [a, b]))
        var bytes = ByteBuffer()
        bytes.writeControlFrame(frame, id: 5)
        let hex = bytes.readableBytesView.map { String(format: "%02x", $0) }.joined()
        let expected = "30" + "00000005" + "00112233445566778899aabbccddeeff" + "04c00002011f90" + "0019" + "03" + "02"
            + a.publicKeyBytes.map { String(format: "%02x", $0) }.joined() + "04c0000201" + "1ce8" + "1ce8"
            + b.publicKeyBytes.map { String(format: "%02x", $0) }.joined() + "0620010db8000000000000000000000002" + "1d4c" + "01bb"
        #expect(hex == expected)
        var copy = bytes
        #expect(try copy.readControlFrame() == ControlEnvelope(id: 5, frame: frame))

        // Every proper prefix after expiryMisses is malformed (a count without its entries).
        let whole = Array(bytes.readableBytesView)
        let endOfOldBody = 1 + 4 + 16 + 7 + 2 + 1
        for cut in (endOfOldBody + 1)..<whole.count {
            var prefix = ByteBuffer(bytes: whole[..<cut])
            #expect(throws: ControlDecodingError.self, "cut at \(cut)") { try prefix.readControlFrame() }
        }
        var old = ByteBuffer(bytes: whole[..<endOfOldBody])
        guard case .registered(let r) = try old.readControlFrame().frame else { Issue.record("not registered"); return }
        #expect(r.supernodes.isEmpty, "the body of earlier versions decodes with no supernodes")

        var tooMany = ByteBuffer(bytes: whole[..<endOfOldBody])
        tooMany.writeInteger(UInt8(ControlLimits.maximumAdvertisedSupernodes + 1))
        #expect(throws: ControlDecodingError.self) { try tooMany.readControlFrame() }

        // A DNS name cannot be listed: it is left out, never sent.
        var withName = ByteBuffer()
        withName.writeControlFrame(.registered(Registered(peer: ControlSamples.peerA, observed: ControlSamples.v4, keepaliveSeconds: 25,
                                                          expiryMisses: 3, supernodes: [Self.supernode(4, "sn.example.org"), a])), id: 5)
        guard case .registered(let named) = try withName.readControlFrame().frame else { Issue.record("not registered"); return }
        #expect(named.supernodes == [a])
    }

    // MARK: the client machine

    /// A harness registered at its one configured supernode, whose answer lists `listed`.
    static func registered(listing listed: [SupernodeAddress], keepaliveSeconds: UInt16 = 25,
                           extra: [FakeCheckpoint]) -> ClientHarness {
        var h = ClientHarness(supernodes: 1, keepaliveSeconds: keepaliveSeconds)
        h.checkpoints += extra
        h.startMachine()
        guard let register = h.handshake(), case .register(let request) = register.frame else {
            Issue.record("no register")
            return h
        }
        h.push(.registered(Registered(peer: PeerID(digestOf: request.publicKey), observed: h.checkpoints[0].observed,
                                      keepaliveSeconds: request.keepaliveSeconds, expiryMisses: 3, supernodes: listed)),
               id: register.id)
        return h
    }

    @Test("the machine learns the listed supernodes and, when keepalives go unanswered, moves to the first of them")
    func learnsAndFailsOver() throws {
        let b = FakeCheckpoint(seed: 2, host: "192.0.2.2"), c = FakeCheckpoint(seed: 3, host: "192.0.2.3")
        var h = Self.registered(listing: [c.address, b.address], extra: [c, b])
        #expect(h.events.contains(.supernodesLearned([c.address, b.address])))
        #expect(h.machine.supernodes.count == 3)
        #expect(h.machine.failoverOrder == [0, 1, 2])
        h.events.removeAll()

        h.advance(by: .seconds(25))
        #expect(h.openSent().map(\.frame) == [.keepalive])
        let timeout = CheckpointClientLimits.keepaliveTimeout(keepaliveSeconds: 25, requestTimeout: CheckpointClientLimits.defaultRequestTimeout)
        #expect(timeout == .seconds(8))
        h.advance(by: timeout - .milliseconds(1))
        _ = h.takeSent()
        #expect(h.events.isEmpty)
        h.advance(by: .milliseconds(1))
        #expect(h.events == [.disconnected(.keepaliveTimedOut)])
        // Straight to the first listed supernode (c, index 1): no hello wasted on the dead one.
        let taken = h.handshake(with: 1)
        let register = try #require(taken)
        h.confirm(register, at: 1)
        guard case .reregistered(let registration, .sessionRestarted) = h.events.last else { Issue.record("no reregistered: \(h.events)"); return }
        #expect(registration.supernode == 1)
    }

    @Test("a keepalive's answer with a list teaches the machine too")
    func learnsFromKeepaliveAnswers() throws {
        let b = FakeCheckpoint(seed: 2, host: "192.0.2.2")
        var h = Self.registered(listing: [], extra: [b])
        #expect(h.machine.supernodes.count == 1)
        h.advance(by: .seconds(25))
        let keepalive = try #require(h.openSent().first)
        h.push(.keepaliveAck(observed: h.checkpoints[0].observed, supernodes: [b.address]), id: keepalive.id)
        #expect(h.events.contains(.supernodesLearned([b.address])))
        #expect(h.machine.failoverOrder == [0, 1])
        #expect(h.openSent().isEmpty, "the same observed address: no re-registration")
    }

    @Test("a later registration reorders known supernodes without learning them twice; other families and the cap are respected")
    func relearningAndFilters() throws {
        let b = FakeCheckpoint(seed: 2, host: "192.0.2.2"), c = FakeCheckpoint(seed: 3, host: "192.0.2.3")
        var h = Self.registered(listing: [b.address, Self.supernode(5, "2001:db8::5"), c.address], extra: [b, c])
        #expect(h.machine.supernodes.map(\.host) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"], "the IPv6 one is useless from an IPv4 socket")
        // Session lost at a (its supernode restarted and forgot it) ... then a is gone: b next.
        h.deliver(h.checkpoints[0].sessionUnknown())
        h.advance(by: CheckpointClientLimits.helloAttemptTimeout)
        h.sent = h.sent.filter { $0.to != 0 }  // the hellos a no longer answers
        let taken = h.handshake(with: 1)
        let register = try #require(taken)
        h.events.removeAll()
        guard case .register(let request) = register.frame else { Issue.record("no register"); return }
        // b lists c then a (its own order for this peer).
        h.push(.registered(Registered(peer: PeerID(digestOf: request.publicKey), observed: h.checkpoints[1].observed,
                                      keepaliveSeconds: 25, expiryMisses: 3, supernodes: [c.address, h.checkpoints[0].address])),
               id: register.id, from: 1)
        #expect(!h.events.contains { if case .supernodesLearned = $0 { true } else { false } })
        #expect(h.machine.supernodes.count == 3)
        #expect(h.machine.failoverOrder == [1, 2, 0])
    }

    @Test("at most maximumKnownSupernodes are remembered")
    func knownSupernodesAreBounded() {
        let many = (0..<60).map { Self.supernode(UInt8(10 + $0), "198.51.100.\(1 + $0)") }
        // One registration lists at most 8; feed several registrations to one machine.
        var one = Self.registered(listing: Array(many.prefix(8)), extra: [])
        for chunk in stride(from: 8, to: many.count, by: 8) {
            one.deliver(one.checkpoints[0].sessionUnknown())
            guard let register = one.handshake(), case .register(let request) = register.frame else { Issue.record("no register"); return }
            one.push(.registered(Registered(peer: PeerID(digestOf: request.publicKey), observed: one.checkpoints[0].observed,
                                            keepaliveSeconds: 25, expiryMisses: 3,
                                            supernodes: Array(many[chunk..<min(chunk + 8, many.count)]))),
                     id: register.id)
        }
        #expect(one.machine.supernodes.count == CheckpointClientLimits.maximumKnownSupernodes)
        #expect(one.machine.failoverOrder.count == CheckpointClientLimits.maximumKnownSupernodes)
        #expect(Set(one.machine.failoverOrder) == Set(0..<CheckpointClientLimits.maximumKnownSupernodes))
    }

    @Test("the keepalive timeout is half the interval, between 4 s and the request timeout")
    func keepaliveTimeoutScales() {
        let request = CheckpointClientLimits.defaultRequestTimeout
        #expect(CheckpointClientLimits.keepaliveTimeout(keepaliveSeconds: 5, requestTimeout: request) == .seconds(4))
        #expect(CheckpointClientLimits.keepaliveTimeout(keepaliveSeconds: 10, requestTimeout: request) == .seconds(5))
        #expect(CheckpointClientLimits.keepaliveTimeout(keepaliveSeconds: 15, requestTimeout: request) == .milliseconds(7_500))
        #expect(CheckpointClientLimits.keepaliveTimeout(keepaliveSeconds: 25, requestTimeout: request) == .seconds(8))
        #expect(CheckpointClientLimits.keepaliveTimeout(keepaliveSeconds: 300, requestTimeout: request) == .seconds(8))
        #expect(CheckpointClientLimits.keepaliveTimeout(keepaliveSeconds: 300, requestTimeout: .seconds(2)) == .seconds(4))
    }

    @Test("with 5 s keepalives a dead supernode is left 9 s after the last answer, within two keepalive periods")
    func shortKeepalivesFailOverQuickly() throws {
        let b = FakeCheckpoint(seed: 2, host: "192.0.2.2")
        var h = Self.registered(listing: [b.address], keepaliveSeconds: 5, extra: [b])
        h.events.removeAll()
        let registeredAt = h.now
        h.advance(by: .seconds(5) + .seconds(4))
        #expect(h.events == [.disconnected(.keepaliveTimedOut)])
        h.sent = h.sent.filter { $0.to != 0 }  // the keepalive's retransmissions to the dead one
        let taken = h.handshake(with: 1)
        let register = try #require(taken)
        h.confirm(register, at: 1)
        #expect(h.now - registeredAt <= .seconds(10))
        guard case .reregistered = h.events.last else { Issue.record("no reregistered: \(h.events)"); return }
    }
}
