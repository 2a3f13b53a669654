import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PeerwayCheckpoint
import PeerwayRelay
import PeerwaySTUN

/*
 A supernode as a member of a network of supernodes (DESIGN.md, deployment shape 2).

     PostgreSQL (the only shared engine)           the other supernodes
       peerway_cluster_members  <-- join, then a heartbeat every `heartbeatMillis`
                                --> live members (heartbeat within `memberTimeoutMillis`, by the
                                    database's clock) -> mesh.setMembers, relay loads, peers'
                                    list of supernodes
       peerway_cluster_secrets  --> the network's relay key (every RELAY mints and checks with it)
     mesh (ClusterMesh: one sealed TCP link per pair of members, keys from the table)
       <-> CheckpointClusterBridge <-> the checkpoint's machine (ClusterFrame.swift)

 Failure: a member killed is noticed by its links at once (the kernel resets them) and is out
 after `linkGraceMillis`; one that hangs is out when its links go idle (`ClusterLinkLimits`) or
 its heartbeat stops. With PostgreSQL unreachable the links and the last member list stay as they
 are (peers keep being served and routed; no new member can join) and `status` says so; it
 recovers by itself on the next heartbeat that goes through. Then every member's last heartbeat
 is as old as the outage: those seen before it stay members for `memberTimeoutMillis` more (they
 heartbeat again meanwhile), so no link is closed and no peer taken offline for it.
*/

extension ClusterLimits {
    /// Milliseconds a member whose link went down has to link again before its peers are taken
    /// offline: a short network blip costs a snapshot, not an offline storm.
    public static let linkGraceMillis = 2_000
    /// Name of the shared relay key in `peerway_cluster_secrets`.
    public static let relayKeyName = "relay-token-key"
    /// Heartbeats between two sweeps of long-dead members' rows (`forgetDeadAfterSeconds`).
    public static let forgetDeadEveryBeats = 300
    /// Least time between two membership reads caused by unknown supernodes dialing in.
    public static let strangerRefreshMillis = 500
    /// Default port of the mesh listener (other supernodes dial it).
    public static let defaultLinkPort: UInt16 = 7402
}

/// How a supernode joins a network of supernodes.
public struct ClusterConfiguration: Sendable {
    /// The PostgreSQL that holds the membership (and may hold the INDEX): postgres://user@host:port/db.
    public var url: String
    /// Where the mesh listens for the other supernodes (port 0: any).
    public var linkListen: STUNAddress
    /// The host other supernodes dial, when it differs from `linkListen` (a wildcard bind).
    public var advertisedHost: String?
    public var heartbeatMillis = ClusterLimits.heartbeatMillis
    public var memberTimeoutMillis = ClusterLimits.memberTimeoutMillis
    public var linkGraceMillis = ClusterLimits.linkGraceMillis

    public init(url: String, linkListen: STUNAddress, advertisedHost: String? = nil) {
        self.url = url
        self.linkListen = linkListen
        self.advertisedHost = advertisedHost
    }
}

/// How this supernode sees its network now, for operators.
public struct ClusterStatus: Sendable, Equatable {
    /// The live members at the last heartbeat that reached the database (this one included).
    public var members: [ClusterMember] = []
    /// Members whose link to this one is up.
    public var linked: Int = 0
    /// Their keys (`ClusterMember.key`).
    public var linkedKeys: Set<[UInt8]> = []
    /// Why the membership database is not answering, when it is not (members and links then
    /// stay as last seen; no supernode can join until it answers again).
    public var unavailable: String?
}

/// This supernode's membership in its network: the membership table, the mesh, the bridge to the
/// checkpoint (flow above).
public final class SupernodeCluster: Sendable {
    public let configuration: ClusterConfiguration
    /// The network's shared relay key: the RELAY of this supernode must be started with it.
    public let relayKey: SymmetricKey
    /// What the checkpoint is given (`CheckpointServerConfiguration.cluster`).
    public let bridge: CheckpointClusterBridge
    private let key: SupernodeKey
    /// This supernode's public key, as the membership table and the mesh name it.
    private let ownKey: [UInt8]
    private let store: ClusterMembershipStore
    private let logger: Logger
    private let state = NIOLockedValueBox(State())

    private struct State {
        var mesh: ClusterMesh?
        var loop: Task<Void, Never>?
        var status = ClusterStatus()
        var me: ClusterMember?
        var stopped = false
        var lastStrangerRefresh: ContinuousClock.Instant?
        /// Just back after an outage of the membership database: until then, members seen before
        /// it stay members though their last heartbeat is as old as the outage (they beat again
        /// within a heartbeat or two).
        var keepMembersUntil: ContinuousClock.Instant?
    }

    /// Opens the membership database and reads the shared relay key (created by the first
    /// supernode that asks). Nothing runs until `start`.
    public static func open(_ configuration: ClusterConfiguration, key: SupernodeKey, logger: Logger) async throws(ClusterMembershipError) -> SupernodeCluster {
        let store = try await ClusterMembershipStore(url: configuration.url, logger: logger)
        do {
            let secret = try await store.sharedSecret(named: ClusterLimits.relayKeyName)
            let bridge: CheckpointClusterBridge
            do { bridge = try CheckpointClusterBridge(linkGraceMillis: configuration.linkGraceMillis, logger: logger) } catch {
                throw ClusterMembershipError.storage("cannot make the cluster bridge's wake pipe: \(error)")
            }
            return SupernodeCluster(configuration: configuration, key: key, store: store, relayKey: SymmetricKey(data: secret),
                                    bridge: bridge, logger: logger)
        } catch let error as ClusterMembershipError {
            await store.close()
            throw error
        } catch {
            await store.close()
            throw .storage("\(error)")
        }
    }

    private init(configuration: ClusterConfiguration, key: SupernodeKey, store: ClusterMembershipStore, relayKey: SymmetricKey,
                 bridge: CheckpointClusterBridge, logger: Logger) {
        self.configuration = configuration
        self.key = key
        ownKey = Array(key.publicKey.rawRepresentation)
        self.store = store
        self.relayKey = relayKey
        self.bridge = bridge
        self.logger = logger
    }

    /// Where the membership lives (no password).
    public var location: String { store.location }

    /// Starts the mesh, records this supernode in the membership table and keeps its heartbeat.
    /// - Parameters:
    ///   - address: this supernode's CHECKPOINT address as peers dial it.
    ///   - relay: its RELAY's UDP and TCP addresses (advertised), if it runs one.
    ///   - stun: its STUN pair's primary address, if it runs one.
    ///   - relays: the HANDSHAKE's relay pool, told the other members' relays and loads.
    ///   - load: this supernode's registered peers and relay allocations, read at each heartbeat.
    /// - Returns: the mesh's bound address.
    @discardableResult
    public func start(address: SupernodeAddress, relay: (udp: String?, tcp: String?), stun: String?, relays: SupernodeRelays?,
                      load: @escaping @Sendable () -> (peers: Int, relayAllocations: Int)) async throws -> STUNAddress {
        let bridge = self.bridge
        let mesh = ClusterMesh(key: key, listen: configuration.linkListen, logger: logger,
                               onReceive: { from, payload in bridge.receive(payload, from: from) },
                               onLinkChange: { peer, up in bridge.linkChanged(peer, up: up) },
                               onStranger: { [weak self] _ in self?.strangerDialed(relays: relays) })
        let bound = try await mesh.start()
        bridge.connect(.init(send: { bytes, to in mesh.send(bytes, to: to) }, broadcast: { bytes in _ = mesh.broadcast(bytes) }))
        let link = STUNAddress.hostPort(configuration.advertisedHost ?? bound.ipString, bound.port)
        let now = load()
        let me = ClusterMember(key: ownKey, address: address.description, link: link,
                               relayUDP: relay.udp, relayTCP: relay.tcp, stun: stun, peers: now.peers,
                               relayAllocations: now.relayAllocations)
        do {
            try await store.join(me)
        } catch {
            await mesh.stop()
            throw error
        }
        state.withLockedValue {
            $0.mesh = mesh
            $0.me = me
        }
        await refresh(mesh: mesh, relays: relays)
        let interval = configuration.heartbeatMillis
        let store = self.store
        let loop = Task { [weak self] in
            var beats = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(interval))
                guard let self, !Task.isCancelled else { return }
                await self.beat(load: load())
                await self.refresh(mesh: mesh, relays: relays)
                beats += 1
                // Rows of supernodes dead for an hour are deleted by whichever member gets there.
                if beats % ClusterLimits.forgetDeadEveryBeats == 0 { _ = try? await store.forgetDead() }
            }
        }
        state.withLockedValue { $0.loop = loop }
        logger.info("cluster: member of the network", metadata: ["link": "\(link)", "membership": "\(store.location)"])
        return bound
    }

    /// The latest view of the network.
    public var status: ClusterStatus {
        let (status, mesh) = state.withLockedValue { ($0.status, $0.mesh) }
        var s = status
        s.linkedKeys = Set(mesh?.connectedPeers ?? [])
        s.linked = s.linkedKeys.count
        return s
    }

    /// Leaves the network: removes this supernode from the table (best effort), closes the links
    /// and the database. Its peers are told to go elsewhere by the checkpoint's farewell.
    public func stop() async {
        let (loop, mesh, me, already) = state.withLockedValue { s -> (Task<Void, Never>?, ClusterMesh?, ClusterMember?, Bool) in
            defer { s.stopped = true; s.loop = nil; s.mesh = nil }
            return (s.loop, s.mesh, s.me, s.stopped)
        }
        guard !already else { return }
        loop?.cancel()
        if let me { try? await store.leave(key: me.key) }
        await mesh?.stop()
        await store.close()
    }

    private func beat(load: (peers: Int, relayAllocations: Int)) async {
        guard let me = state.withLockedValue({ $0.me }) else { return }
        do {
            if try await !store.heartbeat(key: me.key, peers: load.peers, relayAllocations: load.relayAllocations) {
                // Forgotten (declared dead during a pause, or removed by an operator): join again.
                var again = me
                again.peers = load.peers
                again.relayAllocations = load.relayAllocations
                try await store.join(again)
            }
        } catch {
            unavailable(error)
        }
    }

    private func refresh(mesh: ClusterMesh, relays: SupernodeRelays?) async {
        let live: [ClusterMember]
        do { live = try await store.members(timeoutMillis: configuration.memberTimeoutMillis) } catch {
            unavailable(error)
            return
        }
        let now = ContinuousClock.now
        let keepFor = Duration.milliseconds(configuration.memberTimeoutMillis)
        var members = live
        let (before, wasUnavailable) = state.withLockedValue { s -> ([ClusterMember], String?) in
            if s.status.unavailable != nil { s.keepMembersUntil = now + keepFor }
            if let until = s.keepMembersUntil, now < until {
                let listed = Set(members.map(\.key))
                members = (members + s.status.members.filter { !listed.contains($0.key) }).sorted { $0.key.lexicographicallyPrecedes($1.key) }
            } else {
                s.keepMembersUntil = nil
            }
            defer {
                s.status.members = members
                s.status.unavailable = nil
            }
            return (s.status.members, s.status.unavailable)
        }
        let others = members.filter { $0.key != ownKey }
        if let wasUnavailable { logger.notice("cluster: membership database answers again", metadata: ["was": "\(wasUnavailable)"]) }
        mesh.setMembers(others.map { (key: $0.key, link: $0.link) })
        bridge.membersChanged(others.compactMap { try? SupernodeAddress(parsing: $0.address) })
        let gone = Set(before.map(\.key)).subtracting(members.map(\.key)).subtracting([ownKey])
        for key in gone {
            logger.notice("cluster: member left the network (no heartbeat)", metadata: ["member": "\(ClusterNode(key: key))"])
            bridge.memberLeft(key)
        }
        relays?.setRemote(others.compactMap { m in
            guard m.relayUDP != nil || m.relayTCP != nil else { return nil }
            // Its CHECKPOINT's TCP port hands relay binds to its RELAY: another way there.
            let shared = (try? SupernodeAddress(parsing: m.address))?.tcpEndpoint?.description
            return RelayLoad(id: m.address, endpoint: m.relayUDP ?? "", tcpEndpoint: m.relayTCP, sharedTCPEndpoint: shared,
                             allocations: m.relayAllocations,
                             capacity: 2 * RelayLimits.maximumAllocations, bytesPerSecond: 0)
        })
    }

    /// A supernode not in our list dialed in (it probably joined since our last refresh): read
    /// the membership now, at most once per `strangerRefreshMillis`.
    private func strangerDialed(relays: SupernodeRelays?) {
        let now = ContinuousClock.now
        let mesh = state.withLockedValue { s -> ClusterMesh? in
            guard !s.stopped, let mesh = s.mesh,
                  s.lastStrangerRefresh.map({ now - $0 >= .milliseconds(ClusterLimits.strangerRefreshMillis) }) ?? true else { return nil }
            s.lastStrangerRefresh = now
            return mesh
        }
        guard let mesh else { return }
        Task { await self.refresh(mesh: mesh, relays: relays) }
    }

    private func unavailable(_ error: Error) {
        let text = "\(error)"
        let first = state.withLockedValue { s -> Bool in
            defer { s.status.unavailable = text }
            return s.status.unavailable == nil
        }
        if first {
            logger.error("cluster: membership database unavailable; serving with the last known members until it answers",
                         metadata: ["error": "\(text)"])
        }
    }
}
