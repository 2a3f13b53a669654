import Crypto
import NIOConcurrencyHelpers
import PeerwayCheckpoint
import PeerwayRelay
import PeerwaySTUN

/// The HANDSHAKE's source of relay allocations in a supernode: its own RELAY and, in a network of
/// supernodes, every other member's (as the membership table last reported them), the least
/// loaded chosen for each traversal (`RelayChoice`). Tokens are minted statelessly with the key
/// the relays check them with (in a network, one key shared by every RELAY of it, kept in the
/// membership database), so nothing is reserved until both sides bind and no relay is asked.
public final class SupernodeRelays: RelayGranting, Sendable {
    private let local: RelayServer?
    private let minter: RelayTokenMinter
    private let remote = NIOLockedValueBox<[RelayLoad]>([])

    /// This supernode's RELAY alone, minting with its own key.
    public convenience init(_ relay: RelayServer) {
        self.init(local: relay, key: relay.configuration.key)
    }

    /// - Parameters:
    ///   - local: this supernode's RELAY, if it runs one (started with `key`).
    ///   - key: the key every relay offered here checks tokens with.
    public init(local: RelayServer?, key: SymmetricKey) {
        self.local = local
        minter = RelayTokenMinter(key: key)
    }

    /// The other members' relays and loads (this supernode's own excluded).
    public func setRemote(_ loads: [RelayLoad]) {
        remote.withLockedValue { $0 = loads }
    }

    /// Every relay the HANDSHAKE may choose from now.
    public var loads: [RelayLoad] {
        (local.map { [$0.load()] } ?? []) + remote.withLockedValue { $0 }
    }

    public func grant(transport: TunnelTransport, lifetimeSeconds: UInt32) -> (initiator: RelayGrant, acceptor: RelayGrant)? {
        let candidates = loads.filter { load in
            switch transport {
            case .udp: return STUNAddress(parsing: load.endpoint) != nil
            case .tcp: return load.tcpEndpoint.flatMap { STUNAddress(parsing: $0) } != nil
            }
        }
        guard let chosen = RelayChoice.leastLoaded(candidates) else { return nil }
        let udp = STUNAddress(parsing: chosen.endpoint)
        let tcp = chosen.tcpEndpoint.flatMap { STUNAddress(parsing: $0) }
        let (a, b) = minter.grant(transport: transport == .udp ? .udp : .tcp, lifetimeSeconds: UInt64(lifetimeSeconds), now: RelayServer.now())
        return (RelayGrant(udp: udp, tcp: tcp, token: a.bytes), RelayGrant(udp: udp, tcp: tcp, token: b.bytes))
    }
}
