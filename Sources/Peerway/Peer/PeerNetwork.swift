import NIOCore
import NIOPosix
import PeerwayCheckpoint
import PeerwayNetcheck
import PeerwaySTUN

/// The network facts a peer starts from: where its supernodes are and what its own addresses are.
enum PeerNetwork {
    /// A supernode whose host resolved.
    struct Resolved: Sendable {
        let address: SupernodeAddress
        let endpoint: STUNAddress
    }

    /// Resolves each supernode's host (IP literals directly, names with getaddrinfo on NIO's
    /// thread pool, IPv4 preferred). Supernodes that do not resolve are left out; when none
    /// resolves, the error lists why for each.
    static func resolve(_ supernodes: [SupernodeAddress]) async throws(PeerError) -> [Resolved] {
        var resolved: [Resolved] = []
        var failures: [SupernodeAddress: String] = [:]
        for address in supernodes {
            if let endpoint = address.endpoint {
                resolved.append(Resolved(address: address, endpoint: endpoint))
                continue
            }
            do {
                let endpoint = try await Netcheck.resolve(server: "\(address.host):\(address.port)", defaultPort: address.port)
                resolved.append(Resolved(address: address, endpoint: endpoint))
            } catch {
                failures[address] = "\(error)"
            }
        }
        guard !resolved.isEmpty else { throw .cannotResolve(failures) }
        return resolved
    }

    /// The wildcard address of `family`.
    static func wildcard(_ family: STUNAddress.Family) -> String {
        family == .ipv4 ? "0.0.0.0" : "::"
    }

    /// This host's interface addresses usable as host candidates for a socket bound to `bound`:
    /// the bound address itself when it is specific; otherwise the interfaces of the socket's
    /// family (and IPv4 too for an IPv6 wildcard socket), without loopback unless nothing else
    /// exists and without IPv6 link-local addresses (they need a zone), all with the bound port.
    static func hostCandidates(bound: STUNAddress) -> [PeerEndpoint] {
        guard bound.isWildcard else { return [bound] }
        let families: Set<STUNAddress.Family> = bound.family == .ipv4 ? [.ipv4] : [.ipv4, .ipv6]
        let all = LocalAddresses.current().filter { families.contains($0.family) && !$0.isLinkLocal }.map { $0.with(port: bound.port) }
        let outside = all.filter { !$0.isLoopback }
        let chosen = outside.isEmpty ? all : outside
        // IPv4 first: the family most peers share.
        return chosen.filter { $0.family == .ipv4 } + chosen.filter { $0.family == .ipv6 }
    }
}
