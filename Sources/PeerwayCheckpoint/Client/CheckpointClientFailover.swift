import NIOCore

/// Where the client machine goes when its supernode fails: the configured supernodes, then those
/// the network's registrations name (ClusterFailover.swift has the supernode's side).
extension CheckpointClientMachine {
    /// The supernode after the current one in the failover order.
    var nextSupernode: Int {
        guard let i = failoverOrder.firstIndex(of: supernode) else { return failoverOrder.first ?? 0 }
        return failoverOrder[(i + 1) % failoverOrder.count]
    }

    /// Takes the supernodes a registration or a keepalive's answer listed, in this peer's order:
    /// those of the socket's family (that of `observed`) not yet known get new indices, and all
    /// of them come right after the current supernode in the failover order.
    mutating func learnSupernodes(_ listed: [SupernodeAddress], observed: PeerEndpoint) {
        guard !listed.isEmpty else { return }
        var next: [Int] = []
        var learned: [SupernodeAddress] = []
        for address in listed where address.endpoint?.family == observed.family {
            if let known = supernodes.firstIndex(where: { $0.publicKeyBytes == address.publicKeyBytes }) {
                if known != supernode, !next.contains(known) { next.append(known) }
            } else if supernodes.count < CheckpointClientLimits.maximumKnownSupernodes {
                supernodes.append(address)
                learned.append(address)
                next.append(supernodes.count - 1)
            }
        }
        failoverOrder = [supernode] + next + failoverOrder.filter { $0 != supernode && !next.contains($0) }
        if !learned.isEmpty { output.append(.event(.supernodesLearned(learned))) }
    }
}
