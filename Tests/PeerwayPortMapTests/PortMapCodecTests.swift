import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwayPortMap

/// NAT-PMP (RFC 6886 §3.2-3.5) and PCP (RFC 6887 §7, §11) layouts, byte for byte.
@Suite struct NATPMPCodecTests {
    @Test func externalAddressRequestIsTwoBytes() {
        #expect(NATPMPRequest.externalAddress.bytes == [0, 0])
    }

    @Test func mappingRequestGoldenBytes() {
        let udp = NATPMPRequest.map(.udp, internalPort: 4000, suggestedExternalPort: 4001, lifetimeSeconds: 7200)
        #expect(udp.bytes == [0, 1, 0, 0, 0x0F, 0xA0, 0x0F, 0xA1, 0, 0, 0x1C, 0x20])
        let tcp = NATPMPRequest.map(.tcp, internalPort: 80, suggestedExternalPort: 0, lifetimeSeconds: 1)
        #expect(tcp.bytes == [0, 2, 0, 0, 0, 80, 0, 0, 0, 0, 0, 1])
    }

    @Test func deletionIsLifetimeZeroAndPortZero() {
        #expect(NATPMPRequest.delete(.udp, internalPort: 4000).bytes == [0, 1, 0, 0, 0x0F, 0xA0, 0, 0, 0, 0, 0, 0])
    }

    @Test func externalAddressResponse() throws {
        let bytes: [UInt8] = [0, 128, 0, 0, 0, 0, 0, 5, 203, 0, 113, 11]
        let r = try NATPMPResponse(bytes: bytes)
        #expect(r.opcode == 0 && r.result == .success && r.epochSeconds == 5)
        #expect(r.body == .externalAddress(0xCB00_710B))
        #expect(r.bytes == bytes)
    }

    @Test func mappingResponse() throws {
        let bytes: [UInt8] = [0, 129, 0, 0, 0, 0, 1, 0, 0x0F, 0xA0, 0x4E, 0x20, 0, 0, 0, 120]
        let r = try NATPMPResponse(bytes: bytes)
        #expect(r.epochSeconds == 256)
        #expect(r.body == .mapping(.udp, internalPort: 4000, externalPort: 20000, lifetimeSeconds: 120))
        #expect(r.bytes == bytes)
    }

    @Test func everyResultCodeReadsFromTheHeaderAlone() throws {
        for code in UInt16(1)...5 {
            let r = try NATPMPResponse(bytes: [0, 129, 0, UInt8(code), 0, 0, 0, 9])
            #expect(r.result.rawValue == code)
            #expect(r.body == .none)
        }
    }

    @Test func truncatedAndMalformedAreRefused() {
        let good: [UInt8] = [0, 129, 0, 0, 0, 0, 1, 0, 0x0F, 0xA0, 0x4E, 0x20, 0, 0, 0, 120]
        for n in 0..<good.count {
            #expect(throws: PortMapDecodeError.self) { try NATPMPResponse(bytes: good.prefix(n)) }
        }
        #expect(throws: PortMapDecodeError.self) { try NATPMPResponse(bytes: [1, 129, 0, 0, 0, 0, 0, 0]) }  // version
        #expect(throws: PortMapDecodeError.self) { try NATPMPResponse(bytes: [0, 1, 0, 0, 0, 0, 0, 0]) }  // a request
        #expect(throws: PortMapDecodeError.self) { try NATPMPResponse(bytes: [0, 129, 0, 99, 0, 0, 0, 0]) }  // result code
        #expect(throws: PortMapDecodeError.self) { try NATPMPResponse(bytes: [0, 140, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) }  // opcode
    }
}

@Suite struct PCPCodecTests {
    static let nonce: [UInt8] = Array(1...12)

    @Test func mapRequestGoldenBytes() {
        let r = PCPMapRequest(nonce: Self.nonce, transport: .udp, internalPort: 4000, suggestedExternalPort: 4000,
                              lifetimeSeconds: 7200, clientIP: 0x0A00_010B)
        let expected: [UInt8] = [2, 1, 0, 0, 0, 0, 0x1C, 0x20]
            + [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 1, 11]  // client IP, IPv4-mapped (§5)
            + Array(1...12)  // nonce
            + [17, 0, 0, 0, 0x0F, 0xA0, 0x0F, 0xA0]  // protocol, reserved, internal port, suggested port
            + [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0]  // no preferred external address
        #expect(r.bytes == expected)
        #expect(r.bytes.count == PCPMapRequest.headerBytes + PCPMapRequest.mapBytes)
        #expect(r.bytes.count % 4 == 0)
    }

    @Test func mapResponseRoundTrip() throws {
        let response = PCPMapResponse(result: .success, lifetimeSeconds: 3600, epochSeconds: 42, nonce: Self.nonce, transport: .udp,
                                      internalPort: 4000, externalPort: 31000, externalIP: 0xCB00_710B)
        let bytes = response.bytes
        #expect(bytes.count == 60)
        #expect(Array(bytes[0..<4]) == [2, 0x81, 0, 0])
        #expect(Array(bytes[4..<12]) == [0, 0, 0x0E, 0x10, 0, 0, 0, 42])
        #expect(try PCPDecoded(bytes: bytes) == .map(response))
    }

    @Test func optionsAfterTheMapDataAreSkipped() throws {
        let response = PCPMapResponse(result: .success, lifetimeSeconds: 60, epochSeconds: 1, nonce: Self.nonce, transport: .tcp,
                                      internalPort: 1, externalPort: 2, externalIP: 3)
        let withOption = response.bytes + [0x80, 0, 0, 4, 1, 2, 3, 4]  // an option (§7.3) the client does not need
        #expect(try PCPDecoded(bytes: withOption) == .map(response))
    }

    @Test func errorAnswerWithHeaderOnly() throws {
        var header: [UInt8] = [2, 0x81, 0, 2, 0, 0, 0, 30, 0, 0, 0, 7]
        header += [UInt8](repeating: 0, count: 12)
        guard case .map(let r) = try PCPDecoded(bytes: header) else { Issue.record("not a MAP answer"); return }
        #expect(r.result == .notAuthorized && r.lifetimeSeconds == 30 && r.epochSeconds == 7)
    }

    @Test func natPMPServerSaysUnsupportedVersion() throws {
        // RFC 6887 §9: a NAT-PMP-only server answers a PCP request with version 0, result 1.
        #expect(try PCPDecoded(bytes: [0, 0x81, 0, 1, 0, 0, 0, 3]) == .natPMPOnly)
        #expect(throws: PortMapDecodeError.self) { try PCPDecoded(bytes: [0, 128, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4]) }
    }

    @Test func everyResultCodeHasAName() {
        for code in UInt8(0)...13 { #expect(PCPResultCode(rawValue: code) != nil) }
        #expect(PCPResultCode(rawValue: 14) == nil)
        #expect(PCPResultCode.addressMismatch.description == "ADDRESS_MISMATCH")
    }

    @Test func truncatedAndMalformedAreRefused() {
        let good = PCPMapResponse(result: .success, lifetimeSeconds: 60, epochSeconds: 1, nonce: Self.nonce, transport: .udp,
                                  internalPort: 1, externalPort: 2, externalIP: 3).bytes
        for n in [0, 1, 8, 23, 24, 40, 59] {
            #expect(throws: PortMapDecodeError.self) { try PCPDecoded(bytes: good.prefix(n)) }
        }
        var request = good
        request[1] = 0x01  // R = 0: a request
        #expect(throws: PortMapDecodeError.self) { try PCPDecoded(bytes: request) }
        var peer = good
        peer[1] = 0x82  // PEER, not MAP
        #expect(throws: PortMapDecodeError.self) { try PCPDecoded(bytes: peer) }
        var version = good
        version[0] = 3
        #expect(throws: PortMapDecodeError.self) { try PCPDecoded(bytes: version) }
        #expect(throws: PortMapDecodeError.self) { try PCPDecoded(bytes: good + [UInt8](repeating: 0, count: 1100)) }
    }

    @Test func nonIPv4MappedExternalAddressIsNil() throws {
        var bytes = PCPMapResponse(result: .success, lifetimeSeconds: 60, epochSeconds: 1, nonce: Self.nonce, transport: .udp,
                                   internalPort: 1, externalPort: 2, externalIP: 3).bytes
        bytes[44] = 0x20  // 2000::...: an IPv6 external address
        guard case .map(let r) = try PCPDecoded(bytes: bytes) else { Issue.record("not a MAP answer"); return }
        #expect(r.externalIP == nil)
    }
}

@Suite struct GatewayRouteTests {
    static let table = """
        Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
        eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
        wlan0\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
        eth0\t00000000\t0101000A\t0003\t0\t0\t100\t00000000\t0\t0\t0

        """

    @Test func lowestMetricDefaultRouteWins() {
        let route = GatewayRoute.parse(procNetRoute: Self.table)
        #expect(route == GatewayRoute(interface: "eth0", gateway: 0x0A00_0101, metric: 100))
    }

    @Test func noDefaultRoute() {
        #expect(GatewayRoute.parse(procNetRoute: "Iface\tDestination\n") == nil)
        #expect(GatewayRoute.parse(procNetRoute: "") == nil)
        // A default route without RTF_GATEWAY (on-link) has no gateway to ask.
        #expect(GatewayRoute.parse(procNetRoute: "h\neth0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n") == nil)
    }
}
