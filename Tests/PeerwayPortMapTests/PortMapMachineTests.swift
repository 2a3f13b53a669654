import Foundation
import PeerwaySTUN
import Testing

@testable import PeerwayPortMap

/// `PortMapMachine` under virtual time against `FakeGateway`.
@Suite struct PortMapMachineTests {
    static let external = STUNAddress(ip: .v4(0xCB00_710B), port: 4000)

    @Test func pcpMapsInOneRoundTrip() {
        var h = PortMapHarness()
        h.start()
        h.run(until: h.now + 10)
        #expect(h.mappings == [PortMapping(protocolUsed: .pcp, transport: .udp, external: Self.external, internalPort: 4000, lifetimeSeconds: 7200)])
        let report = h.finished
        #expect(report?.mapping?.protocolUsed == .pcp)
        #expect(report?.millis == 2)
        #expect(report?.externalAddress == .v4(0xCB00_710B))
        #expect(h.gateway.mappingsMade == 1)
        // Only PCP made a mapping: NAT-PMP asked for the address, UPnP only searched.
        #expect(h.gateway.natPMPRequests.allSatisfy { $0.count == 2 })
        #expect(!h.gateway.soapActions.contains("AddPortMapping"))
    }

    @Test func natPMPWhenPCPIsUnreachable() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .unreachable))
        h.start()
        h.run(until: h.now + 20)
        #expect(h.mappings.map(\.protocolUsed) == [.natPMP])
        #expect(h.mappings.first?.external == Self.external)
        #expect(h.finished?.pcp == .absent("port 5351 unreachable"))
        #expect(h.finished?.natPMP == .available)
    }

    @Test func upnpWhenOnlyUPnP() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .unreachable, natPMP: .unreachable))
        h.start()
        h.run(until: h.now + 50)
        #expect(h.mappings.map(\.protocolUsed) == [.upnp])
        #expect(h.mappings.first?.external == Self.external)
        #expect(h.gateway.soapActions == ["GetExternalIPAddress", "AddPortMapping"])
        #expect(h.finished?.spoken == [.upnp])
    }

    @Test func noGatewayProtocolsIsQuickWhenPortsAreUnreachable() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .unreachable, natPMP: .unreachable, upnp: .unreachable))
        h.start()
        h.run(until: h.now + 5_000)
        let report = h.finished
        #expect(report?.mapping == nil)
        #expect(report?.millis == 2)
        #expect(report?.spoken == [])
        #expect(report?.failure == "the gateway speaks none of PCP, NAT-PMP and UPnP-IGD")
        #expect(h.machine.nextWakeMillis == nil)
    }

    @Test func silentGatewayGivesUpWithinTheDiscoveryTimeout() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .silent, natPMP: .silent, upnp: .silent))
        let start = h.now
        h.start()
        h.run(until: start + 10_000)
        #expect(h.finished?.millis == PortMapLimits.discoveryTimeoutMillis)
        #expect(h.finished?.mapping == nil)
        // RFC 6886 §3.1 spacing: 0, 250, 750 ms; three requests per protocol, no more.
        #expect(h.sends(.pcp) == PortMapLimits.requestAttempts)
        #expect(h.sends(.natPMP) == PortMapLimits.requestAttempts)
        #expect(h.sends(.ssdp) == PortMapLimits.requestAttempts)
        #expect(h.machine.nextWakeMillis == nil)
    }

    @Test func silentPCPDelaysNATPMPOnlyUntilTheDeadline() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .silent))
        h.start()
        h.run(until: h.now + 5_000)
        #expect(h.mappings.map(\.protocolUsed) == [.natPMP])
        #expect(h.finished?.millis == PortMapLimits.discoveryTimeoutMillis + 2)
    }

    @Test func probeAllReportsEveryProtocol() {
        var h = PortMapHarness(probeAll: true)
        h.start()
        h.run(until: h.now + 100)
        let report = h.finished
        #expect(report?.spoken == [.pcp, .natPMP, .upnp])
        #expect(report?.mapping?.protocolUsed == .pcp)
        #expect(report?.gateway == .v4(0x0A00_0101))
    }

    @Test func pcpRefusedFallsToNATPMP() {
        var h = PortMapHarness(gateway: FakeGateway(pcpResult: .notAuthorized))
        h.start()
        h.run(until: h.now + 50)
        #expect(h.finished?.pcp == .refused("NOT_AUTHORIZED"))
        #expect(h.mappings.map(\.protocolUsed) == [.natPMP])
        // UPnP was still being discovered when NAT-PMP mapped (not probeAll): not waited for.
        #expect(h.finished?.spoken == [.pcp, .natPMP])
    }

    @Test func natPMPRefusedFallsToUPnP() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .unreachable, natPMPResult: .notAuthorized))
        h.start()
        h.run(until: h.now + 50)
        #expect(h.mappings.map(\.protocolUsed) == [.upnp])
    }

    @Test func everyProtocolRefusesMeansNoMapping() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .unreachable, natPMPResult: .outOfResources, addFaults: [501, 501, 501]))
        h.start()
        h.run(until: h.now + 3_000)
        #expect(h.mappings.isEmpty)
        #expect(h.finished?.failure == "the gateway refused every mapping")
        if case .refused(let why)? = h.finished?.upnp { #expect(why.contains("501")) } else { Issue.record("UPnP not refused") }
    }

    @Test func upnpConflictPicksAnotherPortAndPermanentOnlyAsksForLeaseZero() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .unreachable, natPMP: .unreachable, addFaults: [718, 725]))
        h.start()
        h.run(until: h.now + 100)
        #expect(h.gateway.soapActions == ["GetExternalIPAddress", "AddPortMapping", "AddPortMapping", "AddPortMapping"])
        let m = h.mappings.first
        #expect(m?.external.port != 4000)
        #expect((m?.external.port ?? 0) >= PortMapMachine.lowestAlternativePort)
        #expect(m?.lifetimeSeconds == 0)
        // A permanent mapping is never renewed, only deleted.
        #expect(h.machine.nextWakeMillis == nil)
    }

    @Test func renewsAtHalfTheGrantedLifetimeWithTheSameNonce() {
        var h = PortMapHarness(gateway: FakeGateway(grantedLifetime: 60))
        h.start()
        h.run(until: h.now + 10)
        #expect(h.mappings.first?.lifetimeSeconds == 60)
        let before = h.gateway.pcpRequests.count
        h.run(until: h.now + 29_000)
        #expect(h.gateway.pcpRequests.count == before)
        h.run(until: h.now + 2_000)
        #expect(h.gateway.pcpRequests.count == before + 1)
        #expect(h.gateway.pcpRequests.last.map { Array($0[24..<36]) } == Array(1...12))
        // Ten minutes later: renewed every 30 s, still one mapping event, never lost.
        h.run(until: h.now + 600_000)
        #expect(h.gateway.pcpRequests.count >= before + 20)
        #expect(h.mappings.count == 1)
        #expect(h.lost.isEmpty)
    }

    @Test func lifetimeShortenedByTheGatewayIsRespected() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .unreachable, grantedLifetime: 10))
        h.start()
        h.run(until: h.now + 10)
        #expect(h.mappings.first?.lifetimeSeconds == 10)
        let before = h.gateway.natPMPRequests.count
        h.run(until: h.now + 5_100)
        #expect(h.gateway.natPMPRequests.count == before + 1)
    }

    @Test func unansweredRenewalsEndInLost() {
        var h = PortMapHarness(gateway: FakeGateway(grantedLifetime: 60, answersRenewals: false))
        h.start()
        h.run(until: h.now + 10)
        #expect(h.mappings.count == 1)
        h.run(until: h.now + 59_000)
        #expect(h.lost.isEmpty)
        h.run(until: h.now + 2_000)
        #expect(h.lost.count == 1)
        #expect(h.machine.mapping == nil)
        // Retried at half the remaining time each round: more than one renewal was tried.
        #expect(h.gateway.pcpRequests.count > 1 + PortMapLimits.requestAttempts)
    }

    @Test func closeDeletesEachWay() {
        for gateway in [FakeGateway(), FakeGateway(pcp: .unreachable), FakeGateway(pcp: .unreachable, natPMP: .unreachable)] {
            var h = PortMapHarness(gateway: gateway)
            h.start()
            h.run(until: h.now + 50)
            let proto = h.mappings.first?.protocolUsed
            h.close()
            h.run(until: h.now + 50)
            #expect(h.closed)
            switch proto {
            case .pcp?: #expect(h.gateway.pcpRequests.last.map(h.gateway.lifetime(pcpBytes:)) == 0)
            case .natPMP?: #expect(h.gateway.natPMPRequests.last == NATPMPRequest.delete(.udp, internalPort: 4000).bytes)
            case .upnp?: #expect(h.gateway.soapActions.last == "DeletePortMapping")
            case nil: Issue.record("no mapping")
            }
            #expect(h.machine.isClosed)
            #expect(h.machine.nextWakeMillis == nil)
        }
    }

    @Test func closeGivesUpOnASilentGateway() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .silent, natPMP: .unreachable, upnp: .unreachable))
        h.start()
        h.run(until: h.now + 100)
        h.close()  // the PCP request may have made a mapping: deleted, unanswered
        let closing = h.now
        h.run(until: h.now + 5_000)
        #expect(h.closed)
        #expect(h.actions.lastIndex(of: .closed) == h.actions.count - 1)
        #expect(h.gateway.pcpRequests.suffix(PortMapLimits.requestAttempts).allSatisfy { h.gateway.lifetime(pcpBytes: $0) == 0 })
        _ = closing
    }

    @Test func closeBeforeStartAndTwice() {
        var h = PortMapHarness()
        h.close()
        #expect(h.actions == [.closed])
        h.close()
        #expect(h.actions == [.closed])
    }

    @Test func garbageAndForeignAnswersAreIgnored() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .silent, natPMP: .silent, upnp: .silent))
        h.start()
        h.perform(h.machine.received([1, 2, 3], on: .pcp, nowMillis: h.now))
        h.perform(h.machine.received([0, 128, 0, 0], on: .natPMP, nowMillis: h.now))
        h.perform(h.machine.received(Array("HTTP/1.1 200 OK\r\n\r\n".utf8), on: .ssdp, nowMillis: h.now))
        // A PCP answer with another nonce belongs to someone else.
        let foreign = PCPMapResponse(result: .success, lifetimeSeconds: 60, epochSeconds: 1, nonce: Array(repeating: 9, count: 12),
                                     transport: .udp, internalPort: 4000, externalPort: 4000, externalIP: 1).bytes
        h.perform(h.machine.received(foreign, on: .pcp, nowMillis: h.now))
        #expect(h.mappings.isEmpty)
        #expect(h.machine.report.pcp == .pending)
        #expect(h.machine.report.upnp == .pending)
    }

    @Test func natPMPServerAnsweringPCPMeansNATPMPOnly() {
        var h = PortMapHarness(gateway: FakeGateway(pcp: .silent))
        h.start()
        h.perform(h.machine.received([0, 0x81, 0, 1, 0, 0, 0, 3], on: .pcp, nowMillis: h.now + 1))
        h.run(until: h.now + 20)
        #expect(h.finished?.pcp == .absent("the gateway answered as a NAT-PMP server: unsupported version"))
        #expect(h.mappings.map(\.protocolUsed) == [.natPMP])
    }

    @Test func onlyTheProtocolsAsked() {
        var h = PortMapHarness(protocols: [.upnp])
        h.start()
        h.run(until: h.now + 50)
        #expect(h.gateway.pcpRequests.isEmpty && h.gateway.natPMPRequests.isEmpty)
        #expect(h.mappings.map(\.protocolUsed) == [.upnp])
        #expect(h.finished?.pcp == .absent("not tried"))
    }

    @Test func reportJSONRoundTrip() throws {
        var h = PortMapHarness(probeAll: true)
        h.start()
        h.run(until: h.now + 100)
        let report = try #require(h.finished)
        let data = try JSONEncoder().encode(report)
        #expect(try JSONDecoder().decode(PortMapReport.self, from: data) == report)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"external\":\"203.0.113.11:4000\""))
        #expect(text.contains("\"spoken\":[\"pcp\",\"nat-pmp\",\"upnp\"]"))
    }
}
