import PeerwayCheckpoint
import PeerwayRelay
import PeerwaySTUN

/// The HANDSHAKE's source of relay allocations in a supernode: its relays (this process's
/// `RelayServer`, or several), the least loaded picked for each traversal (`RelayChoice`). Tokens
/// are minted statelessly with the chosen relay's key, so nothing is reserved until both sides bind.
public struct SupernodeRelays: RelayGranting {
    public let relays: [RelayServer]

    public init(_ relays: [RelayServer]) {
        self.relays = relays
    }

    public func grant(transport: TunnelTransport, lifetimeSeconds: UInt32) -> (initiator: RelayGrant, acceptor: RelayGrant)? {
        let loads = relays.map { $0.load() }
        guard let chosen = RelayChoice.leastLoaded(loads), let index = loads.firstIndex(of: chosen) else { return nil }
        let relay = relays[index]
        let udp = STUNAddress(parsing: chosen.endpoint)
        let tcp = chosen.tcpEndpoint.flatMap { STUNAddress(parsing: $0) }
        switch transport {
        case .udp: guard udp != nil else { return nil }
        case .tcp: guard tcp != nil else { return nil }
        }
        let (a, b) = relay.grant(transport: transport == .udp ? .udp : .tcp, lifetime: .seconds(Int64(lifetimeSeconds)))
        return (RelayGrant(udp: udp, tcp: tcp, token: a.bytes), RelayGrant(udp: udp, tcp: tcp, token: b.bytes))
    }
}
