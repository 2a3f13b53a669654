import PeerwayCheckpoint

/// A change of a tunnel's path (`Tunnel.pathEvents`).
public struct TunnelPathEvent: Sendable, Equatable, CustomStringConvertible {
    /// What changed.
    public enum Change: Sendable, Equatable {
        /// The tunnel moved onto a direct path (found after a relay-first start, or found again
        /// after a fallback).
        case direct
        /// The tunnel moved onto the relay: its direct path stopped carrying traffic.
        case relayed
        /// The same kind of path, another address (the other side's NAT mapped it anew).
        case newAddress
        /// Relay first: no direct path was found in the traversal's window; the tunnel stays on
        /// the relay (the reason says what was tried).
        case directAbandoned(String)
    }

    public var change: Change
    /// The path the tunnel is on after the change.
    public var path: TunnelPath
    /// The technique that found it.
    public var method: TraversalMethod
    /// Where this side's packets go now.
    public var remote: PeerEndpoint
    /// The path's measured round trip, when known.
    public var roundTrip: Duration?

    public var description: String {
        let rtt = roundTrip.map { ", rtt \($0)" } ?? ""
        switch change {
        case .directAbandoned(let why): return "stays \(path) (\(why))"
        case .newAddress: return "\(path) by \(method) to a new address \(remote)\(rtt)"
        case .direct, .relayed: return "moved to \(path) by \(method) via \(remote)\(rtt)"
        }
    }
}

/// When a tunnel is handed to the application (`TunnelOptions.start`).
public enum TunnelStart: Sendable, Equatable {
    /// As soon as the first path works, normally the relay, about one relay round trip after the
    /// accept; the search for a direct path goes on and the tunnel moves onto it in place. The
    /// default for encrypted UDP tunnels.
    case relayFirst
    /// After the direct window: direct whenever the NATs allow it, the relay only when no direct
    /// path answered. Raw tunnels and TCP tunnels always start this way (their application holds
    /// the network socket, or a connection, that cannot move).
    case directFirst
}
