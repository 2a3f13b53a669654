import Logging
import NIOConcurrencyHelpers
import NIOCore
import PeerwayCheckpoint

/*
 The mesh beside the checkpoint's thread.

     checkpoint thread                              mesh (event loops)
       machine -> .cluster(frame, to) -> encode -> send(bytes, to key) / broadcast(bytes)
                                                     |
       wake pipe readable <-- inbox <-- receive(from key, bytes) (decoded here)
                                   <-- link up / link down (down only after `linkGraceMillis`
                                        without coming back: a link that flaps costs a snapshot,
                                        not an offline-online storm for every peer behind it)
       machine.clusterReceive / clusterNodeUp / clusterNodeDown

 The machine stays on its thread; the mesh calls in from its own threads and only touches the
 locked inbox and the link table.
*/

/// Connects a checkpoint's machine to the other supernodes of its network (flow above).
public final class CheckpointClusterBridge: @unchecked Sendable {
    /// What comes back to the checkpoint's thread.
    enum Inbound {
        case frame(ClusterFrame, from: ClusterNode)
        case up(ClusterNode)
        case down(ClusterNode)
        /// The other live members' CHECKPOINT addresses (told to registering peers).
        case supernodes([SupernodeAddress])
    }

    /// How the bridge reaches the other supernodes (the mesh).
    public struct Transport: Sendable {
        /// Sends one payload to a supernode; false when no link to it is up.
        public var send: @Sendable (ByteBuffer, [UInt8]) -> Bool
        /// Sends one payload to every linked supernode.
        public var broadcast: @Sendable (ByteBuffer) -> Void

        public init(send: @escaping @Sendable (ByteBuffer, [UInt8]) -> Bool, broadcast: @escaping @Sendable (ByteBuffer) -> Void) {
            self.send = send
            self.broadcast = broadcast
        }
    }

    /// Rung when the inbox has something: the checkpoint's loop polls it.
    let doorbell: Doorbell
    private let inbox = NIOLockedValueBox<[Inbound]>([])
    private let transport = NIOLockedValueBox<Transport?>(nil)
    /// Per supernode: whether its link is up, and a generation that a pending "down" must still
    /// match when its grace ends.
    private let links = NIOLockedValueBox<[ClusterNode: (up: Bool, generation: UInt64)]>([:])
    private let graceMillis: Int
    private let logger: Logger

    /// - Parameter linkGraceMillis: how long a supernode whose link went down has to come back
    ///   before its peers are taken offline (`ClusterLimits.linkGraceMillis`).
    /// - Throws: when the doorbell's pipe cannot be made (out of descriptors).
    public init(linkGraceMillis: Int, logger: Logger) throws {
        doorbell = try Doorbell()
        graceMillis = linkGraceMillis
        self.logger = logger
    }

    /// Sets how frames leave (the mesh, once it exists).
    public func connect(_ transport: Transport) {
        self.transport.withLockedValue { $0 = transport }
    }

    // MARK: - From the mesh

    /// A payload from supernode `key`.
    public func receive(_ payload: ByteBuffer, from key: [UInt8]) {
        var bytes = payload
        let frame: ClusterFrame
        do { frame = try bytes.readClusterFrame() } catch {
            // From an authenticated member: another version of Peerway, or a bug. Dropped.
            logger.warning("cluster: frame dropped", metadata: ["from": "\(ClusterNode(key: key))", "error": "\(error)"])
            return
        }
        enqueue(.frame(frame, from: ClusterNode(key: key)))
    }

    /// The link to `key` came up or went down.
    public func linkChanged(_ key: [UInt8], up: Bool) {
        let node = ClusterNode(key: key)
        let generation = links.withLockedValue { table -> UInt64 in
            let g = (table[node]?.generation ?? 0) &+ 1
            table[node] = (up, g)
            return g
        }
        if up {
            enqueue(.up(node))
            return
        }
        let grace = graceMillis
        Task { [weak self] in
            try? await Task.sleep(for: .milliseconds(grace))
            guard let self else { return }
            let still = self.links.withLockedValue { $0[node].map { !$0.up && $0.generation == generation } ?? false }
            if still { self.enqueue(.down(node)) }
        }
    }

    /// `key` left the network (its heartbeat stopped): down at once, no grace.
    public func memberLeft(_ key: [UInt8]) {
        let node = ClusterNode(key: key)
        let known = links.withLockedValue { table -> Bool in
            guard let entry = table[node] else { return false }
            table[node] = (false, entry.generation &+ 1)
            return true
        }
        if known { enqueue(.down(node)) }
    }

    /// The other live members of the network, at each refresh of the membership: registering
    /// peers learn them as their failover list (ClusterFailover.swift; the machine tells peers
    /// only when the list changed).
    public func membersChanged(_ others: [SupernodeAddress]) {
        enqueue(.supernodes(others))
    }

    // MARK: - On the checkpoint's thread

    /// Sends a `.cluster` action; false when it could not leave (no link to that supernode).
    func send(_ frame: ClusterFrame, to node: ClusterNode?) -> Bool {
        guard let transport = transport.withLockedValue({ $0 }) else { return false }
        var bytes = ByteBuffer()
        bytes.writeClusterFrame(frame)
        guard let node else {
            transport.broadcast(bytes)
            return true
        }
        return transport.send(bytes, node.key)
    }

    /// When the doorbell rang: what came in.
    func drain() -> [Inbound] {
        doorbell.silence()
        return inbox.withLockedValue { items in
            defer { items.removeAll(keepingCapacity: true) }
            return items
        }
    }

    private func enqueue(_ item: Inbound) {
        inbox.withLockedValue { $0.append(item) }
        doorbell.ring()
    }
}
