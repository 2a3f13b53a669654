import Testing
@testable import PeerwayTunnel

@Test func tunnelProtocolVersionIsOne() {
    #expect(TunnelProtocol.version == 1)
}
