import PeerwayRelay
import Testing

@Suite("RELAY choice")
struct RelayChoiceTests {
    func load(_ id: String, _ allocations: Int, capacity: Int = 1000, bps: Double = 0) -> RelayLoad {
        RelayLoad(id: id, endpoint: "192.0.2.1:7401", allocations: allocations, capacity: capacity, bytesPerSecond: bps)
    }

    @Test("the relay with the fewest allocations for its capacity wins")
    func fewestAllocations() {
        #expect(RelayChoice.leastLoaded([load("a", 10), load("b", 3), load("c", 7)])?.id == "b")
        // 100 of 10,000 is less loaded than 3 of 100.
        #expect(RelayChoice.leastLoaded([load("small", 3, capacity: 100), load("big", 100, capacity: 10_000)])?.id == "big")
    }

    @Test("ties go to fewer bytes per second, then to the smaller id")
    func ties() {
        #expect(RelayChoice.leastLoaded([load("a", 5, bps: 2e6), load("b", 5, bps: 1e3)])?.id == "b")
        #expect(RelayChoice.leastLoaded([load("z", 5, bps: 10), load("m", 5, bps: 10)])?.id == "m")
    }

    @Test("full relays are never chosen; nothing to choose from gives nil")
    func fullOrEmpty() {
        #expect(RelayChoice.leastLoaded([]) == nil)
        #expect(RelayChoice.leastLoaded([load("a", 1000), load("b", 0, capacity: 0)]) == nil)
        #expect(RelayChoice.leastLoaded([load("a", 1000), load("b", 999, bps: 1e9)])?.id == "b")
    }
}
