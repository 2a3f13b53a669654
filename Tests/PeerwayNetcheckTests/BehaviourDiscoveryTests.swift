import NIOCore
import PeerwayNetcheck
import PeerwaySTUN
import Testing

@Suite("RFC 5780 behaviour discovery against a simulated NAT and STUN pair")
struct BehaviourDiscoveryTests {
    static func expectedMapping(_ b: SimBehavior) -> NetcheckMappingBehavior {
        switch b {
        case .endpointIndependent: .endpointIndependent
        case .addressDependent: .addressDependent
        case .addressAndPortDependent: .addressAndPortDependent
        }
    }

    static func expectedFiltering(_ b: SimBehavior) -> NetcheckFilteringBehavior {
        switch b {
        case .endpointIndependent: .endpointIndependent
        case .addressDependent: .addressDependent
        case .addressAndPortDependent: .addressAndPortDependent
        }
    }

    @Test("every mapping × filtering combination is classified", arguments: SimBehavior.allCases, SimBehavior.allCases)
    func mappingAndFiltering(mapping: SimBehavior, filtering: SimBehavior) throws {
        let sim = Simulation(nat: SimNAT(mapping: mapping, filtering: filtering))
        let report = try sim.run().get()

        #expect(report.mappingBehavior == Self.expectedMapping(mapping))
        #expect(report.filteringBehavior == Self.expectedFiltering(filtering))
        #expect(report.server == Sim.serverA)
        #expect(report.mappedAddress == STUNAddress(ip: Sim.natPublicIP, port: 61_000))
        #expect(report.localAddress == STUNAddress(ip: Sim.hostPrivateIP, port: Sim.localPort(.main)))
        #expect(!report.noNAT)
        #expect(report.supportsRFC5780)
        #expect(report.otherAddress == Sim.serverB)
        #expect(report.responseOrigin == Sim.serverA)
        #expect(report.hairpinning == true)
        #expect(!report.portPreserved)
        #expect(report.rtt == Sim.ms(20))
        #expect(report.ignoredDatagrams.suspicious == 0)

        // The filtering tests run on their own socket, which only ever sends to A:p.
        let filteringDestinations = Set(sim.sent.filter { $0.socket == .filtering }.map(\.to))
        #expect(filteringDestinations == [Sim.serverA])
        // Test III to B:p2 is only needed when test II saw a new mapping.
        #expect(sim.sent.contains { $0.socket == .main && $0.to == Sim.serverB } == (mapping != .endpointIndependent))

        let expectedConnectivity: NetcheckDirectConnectivity =
            switch (mapping, filtering) {
            case (.endpointIndependent, .endpointIndependent): .easy
            case (.endpointIndependent, _): .holePunching
            default: .portPrediction  // the simulated NAT allocates sequentially
            }
        #expect(report.directConnectivity == expectedConnectivity)

        // Concurrent tests: a negative filtering test costs one transaction timeout after test I
        // (answered at 20 ms; RTO = max(100 ms, 3 × 20 ms) gives up 2.9 s later), not the sum.
        if filtering == .endpointIndependent {
            #expect(try #require(sim.endedAt) <= Sim.ms(60))
        } else {
            #expect(sim.endedAt == Sim.ms(2_920))
        }
    }

    @Test("no NAT: the mapped address is the local one, behaviour is endpoint-independent, hairpinning not applicable")
    func noNAT() throws {
        let sim = Simulation(nat: nil)
        let report = try sim.run().get()
        let local = STUNAddress(ip: Sim.hostPublicIP, port: Sim.localPort(.main))
        #expect(report.noNAT)
        #expect(report.mappedAddress == local)
        #expect(report.localAddress == local)
        #expect(report.mappingBehavior == .endpointIndependent)
        #expect(report.filteringBehavior == .endpointIndependent)
        #expect(report.hairpinning == nil)
        #expect(report.notes.contains("Hairpinning: not applicable, there is no NAT."))
        #expect(report.portPreserved)
        #expect(report.portAllocation.kind == .preserved)
        #expect(report.directConnectivity == .open)
        #expect(!sim.sent.contains { $0.to == local }, "no hairpin request without a NAT")
    }

    @Test("no NAT but a stateful firewall: no-NAT flag with address and port-dependent filtering")
    func noNATFirewall() throws {
        // A 'NAT' that maps every socket to its own address and port but filters like a firewall.
        let firewall = SimNAT(mapping: .endpointIndependent, filtering: .addressAndPortDependent, allocation: .preserving, publicIP: Sim.hostPrivateIP)
        let sim = Simulation(nat: firewall)
        let report = try sim.run().get()
        #expect(report.noNAT)
        #expect(report.filteringBehavior == .addressAndPortDependent)
        #expect(report.directConnectivity == .holePunching)
    }

    @Test("hairpinning is detected by the request coming back", arguments: [true, false])
    func hairpinning(hairpins: Bool) throws {
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent, hairpin: hairpins))
        let report = try sim.run().get()
        #expect(report.hairpinning == hairpins)
        let hairpinRequests = sim.sent.filter { $0.to == report.mappedAddress }
        #expect(Set(hairpinRequests.map(\.transactionID)).count == 1)
        #expect(hairpinRequests.allSatisfy { $0.socket == .main })
        if hairpins {
            #expect(hairpinRequests.count == 1)
            #expect(sim.endedAt == Sim.ms(41))
        } else {
            #expect(hairpinRequests.count == NetcheckLimits.requestCount)
            #expect(report.notes.contains { $0.contains("does not hairpin") })
            // Started at 40 ms, when mapping test II settled, with RTO 100 ms.
            #expect(sim.endedAt == Sim.ms(40) + NetcheckRetransmission(rto: Sim.ms(100)).giveUpOffset)
        }
    }

    @Test("hairpinning can be switched off")
    func hairpinningOff() throws {
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent), checksHairpinning: false)
        let report = try sim.run().get()
        #expect(report.hairpinning == nil)
        #expect(!sim.sent.contains { $0.to.ip == Sim.natPublicIP })
    }

    @Test("a server without OTHER-ADDRESS: mapped address only, mapping and filtering unknown")
    func noOtherAddress() throws {
        let sim = Simulation(nat: SimNAT(mapping: .addressAndPortDependent, filtering: .addressAndPortDependent), servers: [.plain(Sim.serverA)])
        let report = try sim.run().get()
        #expect(report.mappedAddress == STUNAddress(ip: Sim.natPublicIP, port: 61_000))
        #expect(!report.supportsRFC5780)
        #expect(report.otherAddress == nil)
        #expect(report.mappingBehavior == .unknown)
        #expect(report.filteringBehavior == .unknown)
        #expect(report.directConnectivity == .unknown)
        #expect(report.notes.contains { $0.contains("does not support RFC 5780") })
        #expect(!sim.sent.contains { $0.change.changeIP || $0.change.changePort }, "no CHANGE-REQUEST to a server that cannot honour it")
        #expect(!sim.opened.contains(.filtering))
        // The probes still sample the allocation: main + 5 probes, sequential ports.
        #expect(report.portAllocation.samples.count == 1 + NetcheckLimits.allocationProbeSockets)
        #expect(report.portAllocation.kind == .sequential)
        #expect(report.portAllocation.delta == 1)
        #expect(report.hairpinning == true)
    }

    @Test("several plain servers: a different mapping per server means not endpoint-independent")
    func crossServerDifferentMappings() throws {
        let second = STUNAddress(parsing: "192.0.2.80:3478")!
        let sim = Simulation(
            nat: SimNAT(mapping: .addressAndPortDependent, filtering: .addressAndPortDependent, allocation: .random(seed: 9)),
            servers: [.plain(Sim.serverA), .plain(second)])
        let report = try sim.run().get()
        #expect(report.mappingBehavior == .addressAndPortDependent)
        #expect(report.servers.count == 2)
        let mapped = report.servers.compactMap(\.mappedAddress)
        #expect(mapped.count == 2 && mapped[0] != mapped[1])
        #expect(report.notes.contains { $0.contains("the mapping depends on the destination") })
        #expect(report.portAllocation.kind == .random)
        #expect(report.directConnectivity == .hard)
    }

    @Test("several plain servers: the same mapping seen from another IP means endpoint-independent")
    func crossServerSameMapping() throws {
        let second = STUNAddress(parsing: "192.0.2.80:3478")!
        let sim = Simulation(
            nat: SimNAT(mapping: .endpointIndependent, filtering: .addressAndPortDependent),
            servers: [.plain(Sim.serverA), .plain(second)])
        let report = try sim.run().get()
        #expect(report.mappingBehavior == .endpointIndependent)
        #expect(report.filteringBehavior == .unknown)
        #expect(report.servers.map(\.mappedAddress) == [report.mappedAddress, report.mappedAddress])
        #expect(report.directConnectivity == .holePunching)
    }

    @Test("RFC 5780 result contradicted by a second server: the stricter mapping is reported")
    func crossServerContradiction() throws {
        // An EIM NAT toward the pair, but a second server that sees another public address (as
        // behind a NAT with several exits): its answer is forged to arrive before the real one.
        let second = STUNAddress(parsing: "192.0.2.80:3478")!
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent), servers: [.pair(), .plain(second)])
        sim.onSend = { request, sim in
            // Forge the second server's answer with another mapped address, before the real one.
            guard request.to == second, request.at == .zero else { return }
            let forged = STUNMessage(
                type: .bindingSuccess, transactionID: request.transactionID,
                attributes: [.xorMappedAddress(STUNAddress(parsing: "198.18.0.1:7000")!)])
            sim.inject(forged.encoded(), on: .main, from: second, after: Sim.ms(5))
        }
        let report = try sim.run().get()
        #expect(report.mappingBehavior == .addressAndPortDependent)
        #expect(report.notes.contains { $0.contains("contradicts mapping test II") })
        // The real answer came after the forged one, and filtering test III's answer after test II
        // had settled filtering (test III cancelled): two duplicates, nothing suspicious.
        #expect(report.ignoredDatagrams == NetcheckIgnoredDatagrams(duplicate: 2))
    }

    @Test("the first server in list order that answers is the primary; a dead one is reported")
    func deadFirstServer() throws {
        let dead = STUNAddress(parsing: "192.0.2.99:3478")!
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent), servers: [.plain(dead), .pair()])
        sim.drop = { $0.to == dead }
        let report = try sim.run().get()
        #expect(report.server == Sim.serverA)
        #expect(report.servers.map(\.server) == [dead, Sim.serverA])
        #expect(report.servers[0].error == "no answer after \(NetcheckLimits.requestCount) requests")
        #expect(report.servers[0].mappedAddress == nil)
        #expect(report.mappingBehavior == .endpointIndependent)
        // The choice waits for the dead server's test I to give up (4.5 s), for a deterministic primary.
        #expect(try #require(sim.endedAt) > NetcheckRetransmission(rto: NetcheckLimits.initialRTO).giveUpOffset)
    }

    @Test("a server that ignores CHANGE-REQUEST makes filtering unknown rather than wrong")
    func changeRequestIgnored() throws {
        var server = SimSTUNServer.pair()
        server.honoursChangeRequest = false
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .addressAndPortDependent), servers: [server])
        let report = try sim.run().get()
        #expect(report.filteringBehavior == .unknown)
        #expect(report.mappingBehavior == .endpointIndependent)
        #expect(report.notes.contains { $0.contains("does not honour CHANGE-REQUEST") })
    }

    @Test("an advertised but unreachable alternate address: mapping and filtering unknown")
    func alternateUnreachable() throws {
        var server = SimSTUNServer.pair()
        server.alternateReachable = false
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent), servers: [server])
        let report = try sim.run().get()
        #expect(report.supportsRFC5780)
        #expect(report.mappingBehavior == .unknown)
        #expect(report.filteringBehavior == .unknown)
        #expect(report.notes.contains { $0.contains("Is the alternate address reachable?") })
    }

    @Test("servers of another address family are skipped with a note")
    func mixedFamilies() throws {
        let v6 = STUNAddress(parsing: "[2001:db8::1]:3478")!
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent), servers: [.pair()])
        sim.configuration.servers.append(v6)
        let report = try sim.run().get()
        #expect(report.servers.map(\.server) == [Sim.serverA])
        #expect(report.notes.contains { $0.hasPrefix("Skipped [2001:db8::1]:3478") })
    }
}
