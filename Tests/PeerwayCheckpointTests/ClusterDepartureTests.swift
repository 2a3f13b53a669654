import NIOCore
import PeerwayCheckpoint
import Testing

/// A large supernode declared out: its peers leave the survivors' directories
/// `departuresPerTick` at a time, so the checkpoint keeps answering meanwhile.
@Suite("A large supernode's departure is spread over ticks")
struct ClusterDepartureTests {
    static let big = ClusterNode(key: [UInt8](repeating: 0xB1, count: 32))

    /// A clustered checkpoint holding `count` replicas of `big`'s peers.
    static func survivor(holding count: Int) -> CheckpointHarness {
        var h = CheckpointHarness(configure: { $0.clustered = true })
        h.machine.wallClockMillis = 1_000
        var out: [CheckpointAction] = []
        h.machine.clusterNodeUp(big, now: h.now, into: &out)
        var rows: [ClusterPeerRow] = []
        for n in 0..<count {
            rows.append(ClusterPeerRow(peer: PeerID(high: 0xAB, low: UInt64(n)), observed: PeerEndpoint(ip: .v4(0x0A00_0000 | UInt32(n)), port: 4000),
                                       candidates: [], metadata: PeerMetadata(), version: 1))
            if rows.count == ClusterFrameLimits.maximumRowsPerFrame {
                h.machine.clusterReceive(.peersUp(rows), from: big, now: h.now, into: &out)
                rows.removeAll()
            }
        }
        if !rows.isEmpty { h.machine.clusterReceive(.peersUp(rows), from: big, now: h.now, into: &out) }
        return h
    }

    @Test("50,000 peers leave in three slices; one that registered here meanwhile stays")
    func departureInSlices() {
        let count = 2 * CheckpointConfiguration.departuresPerTick + 10_000
        var h = Self.survivor(holding: count)
        #expect(h.machine.directory.count == count)
        #expect(h.machine.remotePeerCount == count)

        var out: [CheckpointAction] = []
        h.machine.clusterNodeDown(Self.big, now: h.now, into: &out)
        #expect(h.machine.directory.count == count - CheckpointConfiguration.departuresPerTick)
        #expect(out.filter { if case .presence(_, false) = $0 { true } else { false } }.count == CheckpointConfiguration.departuresPerTick)

        // One of the departing peers registers here before its turn comes.
        let moved = WirePeer(9)
        _ = moved.join(&h)
        _ = h.advance(seconds: 0.1)
        #expect(h.machine.directory.count == count - 2 * CheckpointConfiguration.departuresPerTick + 1)
        _ = h.advance(seconds: 0.1)
        #expect(h.machine.directory.count == 1, "only the peer registered here is left")
        #expect(h.machine.directory.entry(for: moved.id) != nil)
        #expect(h.machine.remotePeerCount == 0)
    }

    @Test("a supernode back before its departure ended has its remaining peers as replicas again")
    func backBeforeTheEnd() {
        let count = CheckpointConfiguration.departuresPerTick + 5_000
        var h = Self.survivor(holding: count)
        var out: [CheckpointAction] = []
        h.machine.clusterNodeDown(Self.big, now: h.now, into: &out)
        #expect(h.machine.directory.count == 5_000)
        h.machine.clusterNodeUp(Self.big, now: h.now, into: &out)
        #expect(h.machine.remotePeerCount == 5_000)
        _ = h.advance(seconds: 0.5)
        #expect(h.machine.directory.count == 5_000, "no longer departing")
        // Its snapshot then holds none of them: they go, as after any snapshot.
        h.machine.clusterReceive(.snapshot(start: true), from: Self.big, now: h.now, into: &out)
        h.machine.clusterReceive(.snapshot(start: false), from: Self.big, now: h.now, into: &out)
        #expect(h.machine.directory.count == 0)
    }
}
