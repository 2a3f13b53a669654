import Crypto
import PeerwayRelay
import PeerwaySTUN
import Testing

@Suite("RELAY allocation table")
struct RelayTableTests {
    let a = STUNAddress(ip: .v4(0xCB00_710B), port: 40_001)   // 203.0.113.11
    let b = STUNAddress(ip: .v4(0xCB00_7115), port: 50_002)   // 203.0.113.21
    let eve = STUNAddress(ip: .v4(0x0808_0808), port: 9)
    let minter = RelayTokenMinter(key: SymmetricKey(data: [UInt8](repeating: 0x5A, count: 32)))
    /// Virtual time: 2026-11-21 12:00 UTC; tokens expire an hour later.
    let start = RelayTime(unixSeconds: 1_795_262_400)
    var expires: UInt32 { start.unixSeconds + 3_600 }

    func table(byteLimit: UInt64 = RelayLimits.defaultByteLimit, maximumAllocations: Int = 10) -> RelayTable<STUNAddress> {
        RelayTable(minter: minter, configuration: .init(transport: .udp, byteLimit: byteLimit, maximumAllocations: maximumAllocations))
    }

    func tokens(_ allocation: UInt64, expires: UInt32? = nil, transport: RelayTransport = .udp) -> (RelayToken, RelayToken) {
        minter.mintPair(allocation: allocation, expires: expires ?? self.expires, transport: transport)
    }

    /// Binds both sides of `allocation` (a from A, b from B) and checks both were answered.
    func bound(_ t: inout RelayTable<STUNAddress>, _ allocation: UInt64, at now: RelayTime? = nil) -> (RelayToken, RelayToken) {
        let pair = tokens(allocation)
        #expect(t.receive(RelayMessage.bind(pair.0), from: a, now: now ?? start) == .answer)
        #expect(t.receive(RelayMessage.bind(pair.1), from: b, now: now ?? start) == .answer)
        return pair
    }

    @Test("the first valid bind creates the allocation; after both bind, datagrams pass both ways untouched")
    func forwardsRaw() {
        var t = table()
        #expect(t.count == 0)
        let pair = tokens(7)
        #expect(t.receive(RelayMessage.bind(pair.0), from: a, now: start) == .answer)
        #expect(t.count == 1 && t.counters.allocations == 1)
        #expect(t.endpoints(of: 7) == [a, nil])
        #expect(t.receive(RelayMessage.bind(pair.1), from: b, now: start) == .answer)
        #expect(t.endpoints(of: 7) == [a, b])
        let payload = (0..<1400).map { UInt8(truncatingIfNeeded: $0 * 7) }
        #expect(t.receive(payload, from: a, now: start) == .forward(to: b))
        // Even a payload that looks like a bind (of another token) is payload once the side is bound.
        let lookalike = RelayMessage.bind(tokens(8).0)
        #expect(t.receive(lookalike, from: b, now: start) == .forward(to: a))
        #expect(t.bytes(of: 7) == 1400 + 37)
        #expect(t.counters.forwardedDatagrams == 2 && t.counters.forwardedBytes == 1437)
        #expect(t.partner(of: a) == b && t.partner(of: b) == a)
    }

    @Test("a bind's answer is never larger than the bind; a bind repeated from the bound address is answered again")
    func bindAnswers() {
        var t = table()
        let pair = tokens(1)
        let bind = RelayMessage.bind(pair.0)
        #expect(t.receive(bind, from: a, now: start) == .answer)
        #expect(t.receive(bind, from: a, now: start.adding(seconds: 1)) == .answer)   // the answer was lost
        #expect(t.counters.bindings == 1 && t.counters.answeredBinds == 2)
        // The answer the server sends is the bind with its magic changed: same 37 bytes.
        var answer = bind
        answer.withUnsafeMutableBytes { RelayMessage.makeAnswer(inPlace: $0) }
        #expect(answer == RelayMessage.answer(pair.0))
        #expect(answer.count <= bind.count)
        // Before the partner binds, payload waits nowhere: it is dropped and counted.
        #expect(t.receive([1, 2, 3], from: a, now: start) == .drop)
        #expect(t.counters.waitingForPartner == 1)
        // After both are bound a retransmitted bind is still answered, not forwarded.
        #expect(t.receive(RelayMessage.bind(pair.1), from: b, now: start) == .answer)
        #expect(t.receive(bind, from: a, now: start) == .answer)
        #expect(t.counters.forwardedDatagrams == 0)
    }

    @Test("a token bound to one address is refused from another; forged, expired, TCP and garbage binds get nothing")
    func refusals() {
        var t = table()
        let pair = bound(&t, 3)
        let third = STUNAddress(ip: .v4(0xCB00_711F), port: 40_001)
        #expect(t.receive(RelayMessage.bind(pair.0), from: third, now: start) == .drop)
        let forger = RelayTokenMinter(key: SymmetricKey(data: [UInt8](repeating: 1, count: 32)))
        #expect(t.receive(RelayMessage.bind(forger.mint(allocation: 4, expires: expires, side: 0, transport: .udp)), from: eve, now: start) == .drop)
        #expect(t.receive(RelayMessage.bind(tokens(5, expires: start.unixSeconds).0), from: eve, now: start) == .drop)
        #expect(t.receive(RelayMessage.bind(tokens(6, transport: .tcp).0), from: eve, now: start) == .drop)
        #expect(t.receive([0xFF, 0, 1], from: eve, now: start) == .drop)
        #expect(t.counters.refused == [.taken: 1, .forged: 1, .expired: 1, .wrongTransport: 1])
        #expect(t.counters.refusedBinds == 4)
        #expect(t.counters.unauthenticated == 1)
        #expect(t.endpoints(of: 3) == [a, b])
        #expect(t.count == 1)
        // A bound address binding the other side of its own allocation is refused too (through `bind`).
        #expect(throws: RelayError.taken) { try t.bind(pair.1.bytes, from: a, now: start) }
    }

    @Test("a UDP side silent for moveIdleMillis moves to the address its bind comes from (a roamed peer); one in use does not")
    func moves() {
        var t = table()
        let pair = bound(&t, 7)
        let roamed = STUNAddress(ip: .v4(0xCB00_711F), port: 40_777)
        // A side in use is not taken over.
        let busy = start.adding(seconds: 10)
        #expect(t.receive([1], from: a, now: busy) == .forward(to: b))
        #expect(t.receive(RelayMessage.bind(pair.0), from: roamed, now: RelayTime(millis: busy.millis + RelayLimits.moveIdleMillis - 1)) == .drop)
        #expect(t.counters.refused[.taken] == 1)
        // Silent long enough: the bind from the new address moves the side, and traffic follows.
        let later = RelayTime(millis: busy.millis + RelayLimits.moveIdleMillis)
        #expect(t.receive(RelayMessage.bind(pair.0), from: roamed, now: later) == .answer)
        #expect(t.counters.moves == 1)
        #expect(t.endpoints(of: 7) == [roamed, b])
        #expect(t.receive([2], from: roamed, now: later) == .forward(to: b))
        #expect(t.receive([3], from: b, now: later) == .forward(to: roamed))
        #expect(t.receive([4], from: a, now: later) == .drop, "the old address is nobody's now")
        // The other side, just heard from, cannot be taken from a third address.
        #expect(t.receive(RelayMessage.bind(pair.1), from: eve, now: later) == .drop)
        #expect(t.endpoints(of: 7) == [roamed, b])
    }

    @Test("allocations end when idle, at their byte limit, at their token's expiry, or when the partner never binds")
    func ends() {
        // Idle: 120 s without a forwarded datagram.
        var t = table()
        _ = bound(&t, 1)
        #expect(t.receive([1], from: a, now: start.adding(seconds: 60)) == .forward(to: b))
        t.tick(now: start.adding(seconds: 60 + RelayLimits.idleTimeoutSeconds - 1))
        #expect(t.endpoints(of: 1) != nil)
        let ended = t.tick(now: start.adding(seconds: 60 + RelayLimits.idleTimeoutSeconds))
        #expect(Set(ended) == [a, b])
        #expect(t.endpoints(of: 1) == nil)
        #expect(t.counters.ended[.idle] == 1)
        // Unbound: the partner does not bind within 30 s of the first bind.
        #expect(t.receive(RelayMessage.bind(tokens(2).0), from: a, now: start) == .answer)
        t.tick(now: start.adding(seconds: RelayLimits.bindTimeoutSeconds))
        #expect(t.endpoints(of: 2) == nil)
        #expect(t.counters.ended[.unbound] == 1)
        // Bytes: the datagram that would pass the limit ends the allocation instead.
        var limited = table(byteLimit: 100)
        _ = bound(&limited, 3)
        #expect(limited.receive([UInt8](repeating: 1, count: 60), from: a, now: start) == .forward(to: b))
        #expect(limited.receive([UInt8](repeating: 2, count: 60), from: b, now: start) == .drop)
        #expect(limited.endpoints(of: 3) == nil && !limited.isBound(a))
        #expect(limited.counters.ended[.bytes] == 1)
        // Lifetime: the token's expiry ends the allocation however busy it is, at the next datagram or tick.
        var busy = table()
        let short = minter.mintPair(allocation: 4, expires: start.unixSeconds + 10, transport: .udp)
        #expect(busy.receive(RelayMessage.bind(short.0), from: a, now: start) == .answer)
        #expect(busy.receive(RelayMessage.bind(short.1), from: b, now: start) == .answer)
        #expect(busy.receive([1], from: a, now: start.adding(seconds: 9)) == .forward(to: b))
        #expect(busy.receive([1], from: a, now: start.adding(seconds: 10)) == .drop)
        #expect(busy.counters.ended[.lifetime] == 1)
        let other = minter.mintPair(allocation: 5, expires: start.unixSeconds + 10, transport: .udp)
        #expect(busy.receive(RelayMessage.bind(other.0), from: a, now: start) == .answer)
        busy.tick(now: start.adding(seconds: 10))
        #expect(busy.counters.ended[.lifetime] == 2)
        // The ended sides' addresses are free again: nothing is forwarded for them.
        #expect(busy.receive([1], from: a, now: start.adding(seconds: 11)) == .drop)
        #expect(busy.counters.unauthenticated == 1)
    }

    @Test("an ended allocation is not revived by its tokens; a full relay refuses new allocations")
    func noRevivalAndFull() {
        var t = table(maximumAllocations: 2)
        let first = bound(&t, 1)
        t.tick(now: start.adding(seconds: RelayLimits.idleTimeoutSeconds))
        #expect(t.count == 0)
        #expect(t.receive(RelayMessage.bind(first.0), from: a, now: start.adding(seconds: 200)) == .drop)
        #expect(t.counters.refused[.ended] == 1)
        _ = bound(&t, 2)
        #expect(t.receive(RelayMessage.bind(tokens(3).0), from: eve, now: start) == .answer)
        #expect(t.count == 2)
        #expect(t.receive(RelayMessage.bind(tokens(4).0), from: STUNAddress(ip: .v4(0x0808_0404), port: 1), now: start) == .drop)
        #expect(t.counters.refused[.full] == 1)
        // Once the tokens expire, the ended allocation is forgotten (the table stays bounded).
        t.tick(now: RelayTime(unixSeconds: UInt64(expires)))
        #expect(t.count == 0)
    }

    @Test("over TCP a connection id is the endpoint: bytes are accounted, a close ends both")
    func tcpAccounting() throws {
        var t = RelayTable<Int>(minter: minter, configuration: .init(transport: .tcp, byteLimit: 1_000))
        let pair = tokens(9, transport: .tcp)
        let first = try t.bind(pair.0.bytes, from: 100, now: start)
        #expect(first.isNew && first.partner == nil)
        #expect(t.account(10, from: 100, now: start) == .drop)   // partner not bound yet
        let second = try t.bind(pair.1.bytes, from: 200, now: start)
        #expect(second.isNew && second.partner == 100)
        #expect(t.account(600, from: 100, now: start) == .forward(to: 200))
        #expect(t.account(300, from: 200, now: start) == .forward(to: 100))
        #expect(t.close(200) == 100)
        #expect(!t.isBound(100) && t.count == 0)
        #expect(t.counters.ended[.closed] == 1)
        #expect(throws: RelayError.wrongTransport) { try t.bind(tokens(10).0.bytes, from: 300, now: start) }
    }
}
