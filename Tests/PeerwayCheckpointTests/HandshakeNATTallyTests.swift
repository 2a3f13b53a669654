import Testing

@testable import PeerwayCheckpoint

/// The HANDSHAKE's tally of NAT kinds (`HandshakeCounters.offersByNAT`, the dashboard's "NAT types
/// seen"): one count per side of a traversal, by the kind of the profile it offered; a
/// retransmitted offer, before or after the plan, is not counted again; a refused one not at all.
@Suite("Handshake: offers counted by NAT kind")
struct HandshakeNATTallyTests {
    @Test("each side's offer counts once under its NAT kind; retransmissions and refused offers do not")
    func tally() {
        var h = HandshakeMachineTests.harness(relays: FakeRelays())
        let (a, b) = HandshakeMachineTests.join(&h)
        // An offer for a connection nobody asked for is refused and counts nothing.
        exchange(a, .traversalOffer(a.offer(.initiator, initiator: a, acceptor: b, requestID: 9)), &h)
        #expect(h.machine.handshakeCounters.offersByNAT.isEmpty)

        HandshakeMachineTests.negotiate(&h, a, b, requestID: 1)
        let offerA = a.offer(.initiator, initiator: a, acceptor: b, requestID: 1, profile: HandshakeMachineTests.easy)
        let offerB = b.offer(.acceptor, initiator: a, acceptor: b, requestID: 1,
                             profile: NATProfile(mapping: .addressAndPortDependent, filtering: .addressAndPortDependent, portDelta: 2))
        exchange(a, .traversalOffer(offerA), &h)
        exchange(a, .traversalOffer(offerA), &h)  // retransmitted before the other side's came
        #expect(h.machine.handshakeCounters.offersByNAT == [.portRestrictedCone: 1])
        exchange(b, .traversalOffer(offerB), &h)
        exchange(b, .traversalOffer(offerB), &h)  // and after the plan
        #expect(h.machine.handshakeCounters.offersByNAT == [.portRestrictedCone: 1, .symmetricPredictable: 1])
        #expect(h.machine.handshakeCounters.offers == 4, "`offers` counts every offer taken, retransmissions too")
    }
}
