import NIOCore
import PeerwayNetcheck
import PeerwaySTUN
import Testing

@Suite("Port allocation: classification and observation")
struct PortAllocationTests {
    /// Samples from fresh sockets (one each) with the given mapped ports and local ports 40000 + i.
    static func samples(_ mapped: [UInt16], local: [UInt16]? = nil) -> [NetcheckPortSample] {
        mapped.enumerated().map { index, port in
            NetcheckPortSample(
                socket: NetcheckSocketID(rawValue: index), localPort: local?[index] ?? UInt16(40_000 + index),
                mappedAddress: STUNAddress(ip: Sim.natPublicIP, port: port), destination: Sim.serverA)
        }
    }

    @Test("all mapped ports equal local ports: preserved")
    func preserved() {
        let allocation = NetcheckPortAllocation(classifying: Self.samples([40_000, 40_001, 40_002], local: [40_000, 40_001, 40_002]))
        #expect(allocation.kind == .preserved)
        #expect(allocation.delta == nil)
    }

    @Test("a constant step is sequential, including negative steps and wrap-around", arguments: [
        ([61_000, 61_001, 61_002, 61_003], 1),
        ([3, 1, 65_535, 65_533], -2),
        ([65_534, 65_535, 0, 1, 2], 1),
        ([1_000, 1_016, 1_032], 16),
    ] as [([UInt16], Int)])
    func sequential(ports: [UInt16], delta: Int) {
        let allocation = NetcheckPortAllocation(classifying: Self.samples(ports))
        #expect(allocation.kind == .sequential)
        #expect(allocation.delta == delta)
    }

    @Test("one outlier among at least four deltas is tolerated")
    func oneOutlier() {
        // Deltas 1, 1, 2, 1, 1: another host took port 61003 between two of our probes.
        let allocation = NetcheckPortAllocation(classifying: Self.samples([61_000, 61_001, 61_002, 61_004, 61_005, 61_006]))
        #expect(allocation.kind == .sequential)
        #expect(allocation.delta == 1)
    }

    @Test("a counter shared with other flows: small steps of one sign are sequential with the common step", arguments: [
        [61_000, 61_001, 61_003, 61_004],
        [61_000, 61_001, 61_003, 61_004, 61_006, 61_007],
        [30_000, 30_002, 30_003, 30_006, 30_007, 30_008],
    ] as [[UInt16]])
    func sharedCounter(ports: [UInt16]) {
        let allocation = NetcheckPortAllocation(classifying: Self.samples(ports))
        #expect(allocation.kind == .sequential)
        #expect(allocation.delta == 1)
    }

    @Test("not sequential: steps of both signs, too large a step, no step, or no pattern", arguments: [
        [61_000, 61_001, 60_990, 60_991, 61_010],
        [1_000, 1_100, 1_200, 1_300],
        [1_000, 1_000, 1_000],
        [52_113, 7_031, 33_870, 61_004, 12_345],
    ] as [[UInt16]])
    func random(ports: [UInt16]) {
        #expect(NetcheckPortAllocation(classifying: Self.samples(ports)).kind == .random)
    }

    @Test("fewer than three new mappings: unknown")
    func tooFew() {
        #expect(NetcheckPortAllocation(classifying: Self.samples([61_000, 61_001])).kind == .unknown)
        #expect(NetcheckPortAllocation(classifying: []).kind == .unknown)
    }

    @Test("a socket reusing its mapping is not a new mapping")
    func reusedMapping() {
        var input = Self.samples([61_000, 61_001, 61_002])
        input.insert(
            NetcheckPortSample(
                socket: input[0].socket, localPort: input[0].localPort, mappedAddress: input[0].mappedAddress, destination: Sim.serverB),
            at: 1)
        let allocation = NetcheckPortAllocation(classifying: input)
        #expect(allocation.samples.map(\.isNewMapping) == [true, false, true, true])
        #expect(allocation.kind == .sequential)
        #expect(allocation.delta == 1)
    }

    // MARK: observed through the simulated NAT

    @Test("EIM with sequential ports: fresh sockets step by the NAT's delta; the main socket's reuse is marked")
    func simulatedSequentialEIM() throws {
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .addressDependent, allocation: .sequential(start: 20_000, delta: 3)))
        let report = try sim.run().get()
        let allocation = report.portAllocation
        #expect(allocation.kind == .sequential)
        #expect(allocation.delta == 3)
        // main → A, main → B:p (same mapping), filtering → A, probes 1...5 → A.
        #expect(allocation.samples.map(\.socket) == [.main, .main, .filtering] + (1...5).map(NetcheckSocketID.allocationProbe))
        #expect(allocation.samples.map(\.isNewMapping) == [true, false] + Array(repeating: true, count: 6))
        #expect(allocation.samples.map(\.mappedPort) == [20_000, 20_000, 20_003, 20_006, 20_009, 20_012, 20_015, 20_018])
        #expect(allocation.samples.map(\.localPort) == [Sim.localPort(.main), Sim.localPort(.main), Sim.localPort(.filtering)]
            + (1...5).map { Sim.localPort(.allocationProbe($0)) })
        #expect(allocation.samples[1].destination == STUNAddress(ip: Sim.serverB.ip, port: Sim.serverA.port))
        #expect(report.directConnectivity == .holePunching)
    }

    @Test("APDM with sequential ports: the main socket's mappings toward each server address are samples too")
    func simulatedSequentialAPDM() throws {
        let sim = Simulation(nat: SimNAT(mapping: .addressAndPortDependent, filtering: .addressAndPortDependent, allocation: .sequential(start: 30_000, delta: 2)))
        let report = try sim.run().get()
        let allocation = report.portAllocation
        #expect(allocation.kind == .sequential)
        #expect(allocation.delta == 2)
        let main = allocation.samples.filter { $0.socket == .main }
        #expect(main.map(\.destination) == [Sim.serverA, STUNAddress(ip: Sim.serverB.ip, port: Sim.serverA.port), Sim.serverB])
        #expect(main.map(\.mappedPort) == [30_000, 30_002, 30_016])
        #expect(allocation.samples.allSatisfy { $0.isNewMapping })
        #expect(report.directConnectivity == .portPrediction)
    }

    @Test("APDM with random ports: random, and direct connections are hard")
    func simulatedRandom() throws {
        let sim = Simulation(nat: SimNAT(mapping: .addressAndPortDependent, filtering: .addressAndPortDependent, allocation: .random(seed: 42)))
        let report = try sim.run().get()
        #expect(report.portAllocation.kind == .random)
        #expect(report.portAllocation.delta == nil)
        #expect(report.directConnectivity == .hard)
        #expect(!report.portPreserved)
    }

    @Test("a port-preserving EIM NAT: preserved everywhere")
    func simulatedPreservingEIM() throws {
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent, allocation: .preserving))
        let report = try sim.run().get()
        #expect(report.portPreserved)
        #expect(report.mappedAddress == STUNAddress(ip: Sim.natPublicIP, port: Sim.localPort(.main)))
        #expect(report.portAllocation.kind == .preserved)
        #expect(!report.noNAT, "same port, but another IP: a NAT")
        #expect(report.directConnectivity == .easy)
    }

    @Test("a port-preserving APDM NAT: the main port is preserved, later mappings of it cannot be")
    func simulatedPreservingAPDM() throws {
        let sim = Simulation(nat: SimNAT(mapping: .addressAndPortDependent, filtering: .addressAndPortDependent, allocation: .preserving))
        let report = try sim.run().get()
        #expect(report.portPreserved)
        #expect(report.portAllocation.kind != .preserved)
        let main = report.portAllocation.samples.filter { $0.socket == .main }.map(\.mappedPort)
        #expect(main == [Sim.localPort(.main), Sim.localPort(.main) + 1, Sim.localPort(.main) + 2])
    }

    @Test("K probe sockets are opened and each sends test I once")
    func probeCount() throws {
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent))
        sim.configuration.allocationProbeSockets = 3
        let report = try sim.run().get()
        #expect(sim.opened == [.main, .filtering] + (1...3).map(NetcheckSocketID.allocationProbe))
        for index in 1...3 {
            #expect(sim.sent.filter { $0.socket == .allocationProbe(index) }.map(\.to) == [Sim.serverA])
        }
        #expect(report.portAllocation.samples.count == 2 + 1 + 3)
    }
}
