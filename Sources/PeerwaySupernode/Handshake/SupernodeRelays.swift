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
///
/// A grant names every way to reach the chosen relay: its UDP port, its own TCP port, and its
/// supernode's shared TCP port (CHECKPOINT's, which hands connections starting with "PWRB" to the
/// relay) as an alternative, so a peer whose network lets only that port out still gets there.
public final class SupernodeRelays: RelayGranting, Sendable {
    private let local: RelayServer?
    private let minter: RelayTokenMinter
    private let remote = NIOLockedValueBox<[RelayLoad]>([])
    private let localShared = NIOLockedValueBox<String?>(nil)

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

    /// This supernode's shared TCP endpoint as peers dial it (CHECKPOINT's TCP port, whose relay
    /// binds go to the local RELAY), once it listens; nil: none.
    public func setLocalShared(_ endpoint: STUNAddress?) {
        localShared.withLockedValue { $0 = endpoint?.description }
    }

    /// Every relay the HANDSHAKE may choose from now.
    public var loads: [RelayLoad] {
        let own = local.map { relay -> RelayLoad in
            var load = relay.load()
            load.sharedTCPEndpoint = localShared.withLockedValue { $0 }
            return load
        }
        return (own.map { [$0] } ?? []) + remote.withLockedValue { $0 }
    }

    public func grant(transport: TunnelTransport, lifetimeSeconds: UInt32) -> (initiator: RelayGrant, acceptor: RelayGrant)? {
        let candidates = loads.filter { load in
            switch transport {
            case .udp: return STUNAddress(parsing: load.endpoint) != nil
            case .tcp: return !Self.tcpEndpoints(load).isEmpty
            }
        }
        guard let chosen = RelayChoice.leastLoaded(candidates) else { return nil }
        let udp = STUNAddress(parsing: chosen.endpoint)
        let tcpEndpoints = Self.tcpEndpoints(chosen)
        let tcp = tcpEndpoints.first
        let alternatives = Array(tcpEndpoints.dropFirst().prefix(ControlLimits.maximumRelayAlternatives))
        let (a, b) = minter.grant(transport: transport == .udp ? .udp : .tcp, lifetimeSeconds: UInt64(lifetimeSeconds), now: RelayServer.now())
        return (RelayGrant(udp: udp, tcp: tcp, token: a.bytes, alternatives: alternatives),
                RelayGrant(udp: udp, tcp: tcp, token: b.bytes, alternatives: alternatives))
    }

    /// The relay's TCP endpoints in the order peers try them: its own port, then its supernode's
    /// shared port (each once; unparsable ones left out).
    static func tcpEndpoints(_ load: RelayLoad) -> [STUNAddress] {
        var out: [STUNAddress] = []
        for text in [load.tcpEndpoint, load.sharedTCPEndpoint] {
            if let text, let endpoint = STUNAddress(parsing: text), !out.contains(endpoint) { out.append(endpoint) }
        }
        return out
    }
}
