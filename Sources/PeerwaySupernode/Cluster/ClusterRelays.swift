import Crypto
import Foundation
import NIOConcurrencyHelpers
import PeerwayCheckpoint
import PeerwayRelay
import PeerwaySTUN

/// The HANDSHAKE's relays in a network of supernodes: this supernode's own RELAY and every other
/// member's (as the membership table last reported them), the least loaded chosen for each
/// traversal (`RelayChoice`). Every RELAY of the network checks tokens with one shared key (kept in
/// the membership database), so any HANDSHAKE mints for any relay without asking it.
public final class ClusterRelays: RelayGranting, Sendable {
    private let local: RelayServer?
    private let minter: RelayTokenMinter
    private let remote = NIOLockedValueBox<[RelayLoad]>([])

    /// - Parameters:
    ///   - local: this supernode's RELAY, started with `key`.
    ///   - key: the network's shared relay key.
    public init(local: RelayServer?, key: SymmetricKey) {
        self.local = local
        minter = RelayTokenMinter(key: key)
    }

    /// The other members' relays and loads (from the membership table; this one's own excluded).
    public func setRemote(_ loads: [RelayLoad]) {
        remote.withLockedValue { $0 = loads }
    }

    /// Every relay of the network as the HANDSHAKE sees it now.
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
        let seconds = max(1, min(UInt64(lifetimeSeconds), RelayLimits.maximumLifetimeSeconds))
        let expires = UInt32(clamping: UInt64(Date().timeIntervalSince1970) + seconds)
        var rng = SystemRandomNumberGenerator()
        let (a, b) = minter.mintPair(allocation: rng.next(), expires: expires, transport: transport == .udp ? .udp : .tcp)
        return (RelayGrant(udp: udp, tcp: tcp, token: a.bytes), RelayGrant(udp: udp, tcp: tcp, token: b.bytes))
    }
}
