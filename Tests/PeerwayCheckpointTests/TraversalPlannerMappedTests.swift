import PeerwayCheckpoint
import PeerwaySTUN
import Testing

/// The planner with `mapped` candidates (a port opened on the router by PCP, NAT-PMP or UPnP-IGD).
@Suite struct TraversalPlannerMappedTests {
    typealias N = PlannerNet
    /// The mapping on A's router, and one on B's.
    static let mappedA = TraversalCandidate(kind: .mapped, transport: .udp, endpoint: N.v4(203, 0, 113, 10, 5000))
    static let mappedB = TraversalCandidate(kind: .mapped, transport: .udp, endpoint: N.v4(203, 0, 113, 20, 6000))

    @Test("random × random with a mapping on either side: the other side punches the mapping; no many-port, no spray",
          arguments: [(true, false), (false, true), (true, true)])
    func randomRandomGoesDirect(aMapped: Bool, bMapped: Bool) {
        let o = N.plan(N.random, N.random,
                       candidatesA: N.siteA.candidates + (aMapped ? [Self.mappedA] : []),
                       candidatesB: N.siteB.candidates + (bMapped ? [Self.mappedB] : []))
        #expect(o.a.method == .punch && o.b.method == .punch)
        #expect(o.a.directWindowMillis == TraversalPlanner.directWindowMillis)
        #expect(o.a.targets == (bMapped ? [TraversalTarget(method: .punch, endpoint: Self.mappedB.endpoint)] : []))
        #expect(o.b.targets == (aMapped ? [TraversalTarget(method: .punch, endpoint: Self.mappedA.endpoint)] : []))
        for p in [o.a, o.b] {
            #expect(p.spray == nil)
            #expect(p.localSockets <= 1)
            #expect(p.relay != nil)  // the relay stays the fallback
        }
    }

    @Test func withoutMappingsRandomRandomStillRelays() {
        let o = N.plan(N.random, N.random)
        #expect(o.a.method == .relay && o.a.targets.isEmpty && o.b.targets.isEmpty)
    }

    @Test func easyAndMappedRandomSkipsManyPort() {
        let o = N.plan(N.easy, N.random, candidatesB: N.siteB.candidates + [Self.mappedB])
        #expect(o.a.targets == [TraversalTarget(method: .punch, endpoint: Self.mappedB.endpoint)])
        #expect(o.a.spray == nil && o.b.localSockets <= 1)
        #expect(o.a.method == .punch)
    }

    @Test func easyAndEasyWithAMappingPunchBoth() {
        let o = N.plan(N.easy, N.easy, candidatesA: N.siteA.candidates + [Self.mappedA])
        #expect(o.b.targets.contains(TraversalTarget(method: .punch, endpoint: Self.mappedA.endpoint)))
        #expect(o.b.targets.contains(TraversalTarget(method: .punch, endpoint: N.siteA.reflexive)))
        #expect(o.a.targets.contains(TraversalTarget(method: .punch, endpoint: N.siteB.reflexive)))
    }

    @Test func tcpIgnoresUDPMappings() {
        let o = N.plan(N.random, N.random, transport: .tcp, candidatesB: N.siteB.candidates + [Self.mappedB])
        #expect(!o.a.targets.contains { $0.endpoint == Self.mappedB.endpoint })
    }
}
