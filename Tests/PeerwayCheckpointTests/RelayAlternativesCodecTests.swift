import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

/// A plan's relay alternatives (issue 14: every way to reach the granted relay): the optional
/// `count(1) { endpoint }` after the plan's `failure`. Golden bytes, round trips, the plans of
/// before (no alternatives) unchanged, and malformed lists.
@Suite("Relay alternatives codec")
struct RelayAlternativesCodecTests {
    typealias T = TraversalSamples
    /// 198.51.100.1:443, the supernode's shared TCP port.
    static let shared = T.v4(198, 51, 100, 1, 443)
    static let relayTCP = T.relayUDP  // 198.51.100.1:7401

    static func plan(alternatives: [PeerEndpoint], tcp: PeerEndpoint? = relayTCP, udp: PeerEndpoint? = nil) -> TraversalPlan {
        TraversalPlan(initiator: ControlSamples.peerA, acceptor: ControlSamples.peerB, requestID: 99, transport: .tcp, method: .relay,
                      directWindowMillis: 0, remoteKeyShare: [], targets: [],
                      relay: RelayGrant(udp: udp, tcp: tcp, token: T.token, alternatives: alternatives))
    }

    /// Written out from the layout in TraversalFrames.swift.
    static let head = "55 | 00000007 | \(TraversalCodecTests.peerA) | \(TraversalCodecTests.peerB) | 0000000000000063 | 01 | 07 | 00 | 00000000 | 0001 | 00 | 00 | 00"
    static let relay = "01 | 00 | 01 04 c6336401 1ce9 | \(TraversalCodecTests.token)"

    @Test("golden bytes: one alternative after an empty failure text")
    func golden() throws {
        let bytes = ControlTest.hex("\(Self.head) | \(Self.relay) | 0000 | 01 04 c6336401 01bb")
        let envelope = ControlEnvelope(id: 7, frame: .traversalPlan(Self.plan(alternatives: [Self.shared])))
        #expect(ControlTest.frameBytes(envelope.frame, id: 7) == bytes)
        #expect(try ControlTest.decodeFrame(bytes).get() == envelope)
    }

    @Test("a plan without alternatives is byte for byte the plan of before, and decodes as none")
    func compatible() throws {
        let bytes = ControlTest.hex("\(Self.head) | \(Self.relay) | 0000")
        let envelope = ControlEnvelope(id: 7, frame: .traversalPlan(Self.plan(alternatives: [])))
        #expect(ControlTest.frameBytes(envelope.frame, id: 7) == bytes)
        #expect(try ControlTest.decodeFrame(bytes).get() == envelope)
    }

    @Test("round trips: IPv4 and IPv6, the most allowed, with and without the relay's own ports",
          arguments: [
              [shared],
              [shared, T.v6, T.v6b, T.v4(203, 0, 113, 1, 443)],
              [T.v6],
          ])
    func roundTrip(alternatives: [PeerEndpoint]) throws {
        for (udp, tcp) in [(nil, Self.relayTCP), (T.relayUDP, Self.relayTCP), (nil, nil)] as [(PeerEndpoint?, PeerEndpoint?)] {
            let frame = ControlFrame.traversalPlan(Self.plan(alternatives: alternatives, tcp: tcp, udp: udp))
            let bytes = ControlTest.frameBytes(frame, id: 1)
            #expect(bytes.count <= ControlLimits.maximumFrameBytes)
            #expect(try ControlTest.decodeFrame(bytes).get() == ControlEnvelope(id: 1, frame: frame))
        }
        // The largest plan of the traversal samples still fits with the most alternatives.
        guard case .traversalPlan(var full) = T.frames.first(where: { $0.0 == "plan full" })!.1 else { return }
        full.relay?.alternatives = Array(repeating: T.v6, count: ControlLimits.maximumRelayAlternatives)
        #expect(ControlTest.frameBytes(.traversalPlan(full), id: 1).count <= ControlLimits.maximumFrameBytes)
        #expect(try ControlTest.decodeFrame(ControlTest.frameBytes(.traversalPlan(full), id: 1)).get().frame == .traversalPlan(full))
    }

    @Test("tcpEndpoints: the relay's own TCP port first, then the alternatives, each once")
    func order() {
        let grant = RelayGrant(udp: T.relayUDP, tcp: Self.relayTCP, token: T.token, alternatives: [Self.shared, Self.relayTCP, Self.shared])
        #expect(grant.tcpEndpoints == [Self.relayTCP, Self.shared])
        #expect(RelayGrant(udp: nil, tcp: nil, token: T.token, alternatives: [Self.shared]).tcpEndpoints == [Self.shared])
        #expect(RelayGrant(udp: T.relayUDP, tcp: nil, token: T.token).tcpEndpoints.isEmpty)
    }

    @Test("malformed: an empty list, too many, a bad endpoint, a list without a relay (trailing bytes), a cut list")
    func malformed() {
        let base = ControlTest.hex("\(Self.head) | \(Self.relay) | 0000")
        func invalid(_ bytes: [UInt8], _ words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
            let text = ControlTest.invalidText(ControlTest.frameError(bytes))
            #expect(text != nil, "expected .invalid, got \(String(describing: ControlTest.frameError(bytes)))", sourceLocation: sourceLocation)
            for word in words { #expect(text?.contains(word) == true, "'\(text ?? "")' lacks \(word)", sourceLocation: sourceLocation) }
        }
        invalid(base + [0], ["traversalPlan.relay.alternatives", "empty"])
        let five = [UInt8(ControlLimits.maximumRelayAlternatives + 1)] + Array(repeating: ControlTest.hex("04 c6336401 01bb"), count: 5).joined()
        invalid(base + five, ["maximumRelayAlternatives"])
        invalid(base + ControlTest.hex("01 05 c6336401 01bb"), ["traversalPlan.relay.alternative", "family 5"])
        // Without a relay nothing may follow the failure text.
        let noRelay = ControlTest.frameBytes(.traversalPlan(TraversalPlan(
            initiator: ControlSamples.peerA, acceptor: ControlSamples.peerB, requestID: 99, transport: .tcp, method: .relay,
            directWindowMillis: 0, remoteKeyShare: [], targets: [])), id: 7)
        #expect(ControlTest.frameError(noRelay + ControlTest.hex("01 04 c6336401 01bb")) == .trailingBytes(8))
        // A list cut inside an endpoint is truncated; a list cut before its count is a plan without alternatives.
        let whole = ControlTest.frameBytes(.traversalPlan(Self.plan(alternatives: [Self.shared, T.v6])), id: 7)
        for cut in (base.count + 1)..<whole.count {
            #expect(ControlTest.isTruncated(ControlTest.frameError(Array(whole.prefix(cut)))), "cut at \(cut)")
        }
        #expect(ControlTest.frameError(Array(whole.prefix(base.count))) == nil)
    }
}
