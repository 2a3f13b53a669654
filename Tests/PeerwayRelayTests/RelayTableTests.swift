import NIOCore
import PeerwayRelay
import PeerwaySTUN
import Testing

@Suite("RELAY allocation table")
struct RelayTableTests {
    let a = STUNAddress(ip: .v4(0xCB00_710B), port: 40_001)   // 203.0.113.11
    let b = STUNAddress(ip: .v4(0xCB00_7115), port: 50_002)   // 203.0.113.21
    let eve = STUNAddress(ip: .v4(0x0808_0808), port: 9)
    var start = NIODeadline.uptimeNanoseconds(5_000_000_000_000)

    func sends(_ out: [RelayAction]) -> [(ByteBuffer, STUNAddress)] {
        out.map { switch $0 { case .send(let bytes, let to): return (bytes, to) } }
    }

    func bound(_ table: inout RelayTable, _ rng: inout STUNSeededRandom) throws -> RelayAllocation {
        let allocation = try table.allocate(now: start, using: &rng)
        var out: [RelayAction] = []
        table.receive(RelayTable.bind(allocation.tokens[0]), from: a, now: start, into: &out)
        table.receive(RelayTable.bind(allocation.tokens[1]), from: b, now: start, into: &out)
        #expect(sends(out).map(\.1) == [a, b])
        #expect(sends(out).map(\.0) == [RelayTable.bound(allocation.tokens[0]), RelayTable.bound(allocation.tokens[1])])
        return allocation
    }

    @Test("after both sides bind, datagrams pass both ways byte for byte, with nothing added")
    func forwardsRaw() throws {
        var table = RelayTable()
        var rng = STUNSeededRandom(seed: 1)
        let allocation = try bound(&table, &rng)
        #expect(table.endpoints(of: allocation.id) == [a, b])
        var out: [RelayAction] = []
        let payload = ByteBuffer(bytes: (0..<1400).map { UInt8(truncatingIfNeeded: $0 * 7) })
        table.receive(payload, from: a, now: start, into: &out)
        // Even a payload that looks like a bind is payload once the side is bound.
        let lookalike = RelayTable.bind(RelayToken(high: 1, low: 2))
        table.receive(lookalike, from: b, now: start, into: &out)
        let sent = sends(out)
        #expect(sent.count == 2)
        #expect(sent[0].0 == payload && sent[0].1 == b)
        #expect(sent[1].0 == lookalike && sent[1].1 == a)
        #expect(table.bytes(of: allocation.id) == 1400 + 21)
    }

    @Test("a bind's answer is never larger than the bind; retransmitted binds are answered again")
    func bindAnswers() throws {
        var table = RelayTable()
        var rng = STUNSeededRandom(seed: 2)
        let allocation = try table.allocate(now: start, using: &rng)
        var out: [RelayAction] = []
        let bind = RelayTable.bind(allocation.tokens[0])
        table.receive(bind, from: a, now: start, into: &out)
        table.receive(bind, from: a, now: start, into: &out)
        #expect(sends(out).count == 2)
        #expect(sends(out).allSatisfy { $0.0.readableBytes <= bind.readableBytes })
        #expect(table.counters.bindings == 1)
        // Before the partner binds, payload waits nowhere: it is dropped and counted.
        out.removeAll()
        table.receive(ByteBuffer(bytes: [1, 2, 3]), from: a, now: start, into: &out)
        #expect(out.isEmpty)
        #expect(table.counters.waitingForPartner == 1)
    }

    @Test("a token binds once: a third party that saw it cannot take the side; unknown tokens and garbage get nothing")
    func tokenBindsOnce() throws {
        var table = RelayTable()
        var rng = STUNSeededRandom(seed: 3)
        let allocation = try bound(&table, &rng)
        var out: [RelayAction] = []
        table.receive(RelayTable.bind(allocation.tokens[0]), from: eve, now: start, into: &out)
        table.receive(RelayTable.bind(RelayToken(high: 7, low: 7)), from: eve, now: start, into: &out)
        table.receive(ByteBuffer(bytes: [0xFF, 0, 1]), from: eve, now: start, into: &out)
        #expect(out.isEmpty)
        #expect(table.counters.refusedBinds == 2)
        #expect(table.counters.unauthenticated == 1)
        #expect(table.endpoints(of: allocation.id) == [a, b])
    }

    @Test("allocations end when idle, at their byte limit, at their lifetime, or when never bound")
    func ends() throws {
        var rng = STUNSeededRandom(seed: 4)
        // Idle.
        var table = RelayTable()
        let idle = try bound(&table, &rng)
        table.tick(now: start + .seconds(Int64(RelayLimits.idleTimeoutSeconds) - 1))
        #expect(table.endpoints(of: idle.id) != nil)
        table.tick(now: start + .seconds(Int64(RelayLimits.idleTimeoutSeconds)))
        #expect(table.endpoints(of: idle.id) == nil)
        #expect(table.counters.ended[.idle] == 1)
        // Never bound.
        let unbound = try table.allocate(now: start, using: &rng)
        table.tick(now: start + .seconds(Int64(RelayLimits.bindTimeoutSeconds)))
        #expect(table.endpoints(of: unbound.id) == nil)
        #expect(table.counters.ended[.unbound] == 1)
        // Bytes: the datagram that would pass the limit ends the allocation instead.
        var limited = RelayTable()
        let small = try limited.allocate(limits: RelayAllocationLimits(bytes: 100, lifetimeSeconds: 60), now: start, using: &rng)
        var out: [RelayAction] = []
        limited.receive(RelayTable.bind(small.tokens[0]), from: a, now: start, into: &out)
        limited.receive(RelayTable.bind(small.tokens[1]), from: b, now: start, into: &out)
        out.removeAll()
        limited.receive(ByteBuffer(bytes: [UInt8](repeating: 1, count: 60)), from: a, now: start, into: &out)
        limited.receive(ByteBuffer(bytes: [UInt8](repeating: 2, count: 60)), from: b, now: start, into: &out)
        #expect(sends(out).count == 1)
        #expect(limited.endpoints(of: small.id) == nil)
        #expect(limited.counters.ended[.bytes] == 1)
        // Lifetime, however busy.
        let short = try limited.allocate(limits: RelayAllocationLimits(bytes: 1 << 20, lifetimeSeconds: 10), now: start, using: &rng)
        limited.tick(now: start + .seconds(10))
        #expect(limited.endpoints(of: short.id) == nil)
        #expect(limited.counters.ended[.lifetime] == 1)
        // The ended sides' addresses and tokens are free again: nothing is forwarded for them.
        out.removeAll()
        limited.receive(ByteBuffer(bytes: [1]), from: a, now: start + .seconds(11), into: &out)
        #expect(out.isEmpty)
    }
}
