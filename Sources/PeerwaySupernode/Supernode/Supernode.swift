import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import PeerwayCheckpoint
import PeerwayIndex
import PeerwayIndexAPI
import PeerwaySTUN
import ServiceLifecycle

/*
 One supernode: the services of a `SupernodeConfiguration`, started in the order they need each
 other and stopped in reverse.

   start: data directory (key, stale files) -> INDEX store -> cluster database (the shared relay
          key) -> RELAY (HANDSHAKE grants it)
          -> CHECKPOINT (HANDSHAKE, INDEX over the control channel, relay handoff on its TCP port)
          -> STUN pair -> cluster (mesh, membership row, heartbeat) -> management API (reads the INDEX and CHECKPOINT's presence)
          -> `address` and `admin-url` files
   a step fails: everything before it is stopped / closed, and a SupernodeError names the step
   stop:  management API -> STUN pair -> CHECKPOINT (its peers go elsewhere) -> cluster -> RELAY -> INDEX store (when the supernode opened it)
*/

/// A supernode: CHECKPOINT (with HANDSHAKE and the INDEX's control operations), the RELAY, the
/// STUN pair and the INDEX's management API, composed from one `SupernodeConfiguration`.
///
/// The CLI, tests and benchmarks start supernodes this way; three on loopback in one process:
///
///     let a = try await Supernode.start(SupernodeConfiguration())
///     let b = try await Supernode.start(SupernodeConfiguration())
///     let c = try await Supernode.start(SupernodeConfiguration())
///
/// A ServiceLifecycle `Service`: `run()` waits for graceful shutdown, then stops everything.
public final class Supernode: Service, Sendable {
    /// What the supernode was started with.
    public let configuration: SupernodeConfiguration
    /// The address peers dial (`peerway://KEY@HOST:PORT`).
    public let address: SupernodeAddress
    /// CHECKPOINT, with its HANDSHAKE.
    public let checkpoint: CheckpointServer
    /// The RELAY, if configured.
    public let relay: RelayServer?
    /// The STUN pair, if configured.
    public let stun: STUNPairServer?
    /// The STUN pair's bound addresses (ports resolved), if configured.
    public let stunLayout: STUNPairLayout?
    /// The INDEX's management API, if configured.
    public let admin: IndexAdminServer?
    /// The management API's URL (`http://HOST:PORT`, the bound port), if configured.
    public let adminURL: String?
    /// The INDEX's store, if any (opened by the supernode, or the caller's `.store`).
    public let indexStore: (any IndexStore)?
    /// The INDEX as peers reach it over their control channel, with its presence table.
    public let index: IndexControlService?
    /// Where the INDEX is: the SQLite file, or the PostgreSQL server and database (no password).
    public let indexLocation: String?
    /// Its membership in a network of supernodes, if configured.
    public let cluster: SupernodeCluster?
    private let logger: Logger
    private let services: StartedServices
    private let stopping = NIOLockedValueBox<Task<Void, Never>?>(nil)

    private init(configuration: SupernodeConfiguration, address: SupernodeAddress, checkpoint: CheckpointServer,
                 stunLayout: STUNPairLayout?, adminURL: String?, indexStore: (any IndexStore)?, index: IndexControlService?,
                 logger: Logger, services: StartedServices) {
        self.configuration = configuration
        self.address = address
        self.checkpoint = checkpoint
        self.relay = services.relay
        self.stun = services.stun
        self.stunLayout = stunLayout
        self.admin = services.admin?.server
        self.adminURL = adminURL
        self.indexStore = indexStore
        self.index = index
        self.indexLocation = indexStore.map(Self.location)
        self.cluster = services.cluster
        self.logger = logger
        self.services = services
    }

    /// Opens the INDEX and starts every configured service, in the order they depend on each
    /// other; writes `address` (and `admin-url`) into the data directory, if any. When a step
    /// fails, what was started is stopped, what was opened is closed, and the error names the step.
    public static func start(_ configuration: SupernodeConfiguration,
                             logger: Logger = Logger(label: "peerway.supernode")) async throws(SupernodeError) -> Supernode {
        var started = StartedServices()
        do throws(SupernodeError) {
            return try await launch(configuration, logger: logger, started: &started)
        } catch {
            await started.stop()
            throw error
        }
    }

    /// Stops the services in reverse order and closes the INDEX store the supernode opened (a
    /// `.store` stays open: it is the caller's). Registered peers are told to go elsewhere.
    /// Calling it again, or while it runs, waits for the same stop.
    public func stop() async {
        let task = stopping.withLockedValue { current -> Task<Void, Never> in
            if let current { return current }
            let services = self.services, logger = self.logger, address = self.address
            let task = Task {
                await services.stop()
                logger.info("supernode stopped", metadata: ["address": "\(address)"])
            }
            current = task
            return task
        }
        await task.value
    }

    /// `Service`: runs until graceful shutdown (or cancellation), then stops.
    public func run() async throws {
        try? await gracefulShutdown()
        await stop()
    }

    // MARK: Starting

    private static func launch(_ configuration: SupernodeConfiguration, logger: Logger,
                               started: inout StartedServices) async throws(SupernodeError) -> Supernode {
        try check(configuration)
        let key = try prepareDataDirectory(configuration)
        let token = try adminToken(configuration)
        // Its own registry (Observability/): GET /metrics on the management API.
        let metrics = SupernodeMetrics()

        // The INDEX first: CHECKPOINT serves it over the control channel, the management API reads it.
        let store = try await openIndex(configuration.index, logger: logger)
        if let store, store.owned { started.store = store.store }
        let index = store.map {
            IndexControlService(store: $0.store, observer: { metrics.recordIndexOperation($0, took: $1, succeeded: $2) })
        }

        // The network of supernodes: its database gives the relay key every RELAY of it shares.
        if let settings = configuration.cluster {
            do { started.cluster = try await SupernodeCluster.open(settings, key: key, logger: logger) } catch {
                throw SupernodeError(.cluster, "could not open the membership database: \(error)", underlying: error)
            }
        }

        // The RELAY before CHECKPOINT, whose HANDSHAKE grants its allocations.
        if let settings = configuration.relay {
            let relay = RelayServer(configuration: .init(udp: settings.udp, tcp: settings.tcp,
                                                         key: started.cluster?.relayKey ?? SymmetricKey(size: .bits256),
                                                         advertisedHost: settings.advertisedHost ?? configuration.advertisedHost),
                                    logger: logger)
            do { try relay.start() } catch { throw SupernodeError(.relay, starting: error) }
            started.relay = relay
        }

        var checkpointConfiguration = CheckpointConfiguration(key: key)
        checkpointConfiguration.keepaliveSeconds = configuration.keepaliveSeconds
        // Connections to CHECKPOINT's TCP port that start with "PWRB" are relay binds: the relay takes them.
        var relayHandoff: (@Sendable (Int32, [UInt8]) -> Void)?
        if let relay = started.relay {
            relayHandoff = { fd, firstBytes in relay.adoptTCP(fd: fd, firstBytes: firstBytes) }
        }
        // In a network, the HANDSHAKE grants the least loaded relay of every supernode.
        var relays: SupernodeRelays?
        if let cluster = started.cluster {
            relays = SupernodeRelays(local: started.relay, key: cluster.relayKey)
        } else if let relay = started.relay {
            relays = SupernodeRelays(relay)
        }
        checkpointConfiguration.relays = relays
        checkpointConfiguration.traversalReported = { metrics.recordTraversal($0) }
        configuration.tuneCheckpoint?(&checkpointConfiguration)
        let checkpoint = CheckpointServer(
            configuration: CheckpointServerConfiguration(
                listen: configuration.listen, advertisedHost: configuration.advertisedHost, checkpoint: checkpointConfiguration,
                tcp: configuration.tcpAddress, relayHandoff: relayHandoff, index: index, cluster: started.cluster?.bridge),
            logger: logger)
        let address: SupernodeAddress
        do { address = try checkpoint.start() } catch { throw SupernodeError(.checkpoint, starting: error) }
        started.checkpoint = checkpoint
        // CHECKPOINT's TCP port takes relay binds too: grants name it as another way to the relay.
        if relayHandoff != nil, configuration.tcpAddress != nil { relays?.setLocalShared(address.tcpEndpoint) }

        var stunLayout: STUNPairLayout?
        if let settings = configuration.stun {
            let stun = STUNPairServer(configuration: settings, logger: logger)
            do { stunLayout = try await stun.start() } catch { throw SupernodeError(.stun, starting: error) }
            started.stun = stun
        }

        if let cluster = started.cluster, let settings = configuration.cluster {
            let relayLoad = started.relay?.load()
            let relay = started.relay
            do {
                try await cluster.start(address: address, relay: (relayLoad?.endpoint, relayLoad?.tcpEndpoint),
                                        stun: stunLayout.map { "\($0.primary)" }, relays: relays,
                                        load: { (checkpoint.statistics().registered, relay?.load().allocations ?? 0) })
            } catch {
                throw SupernodeError(.cluster, "could not join the network (mesh on \(settings.linkListen)): \(error)", underlying: error)
            }
        }

        if let settings = configuration.admin, let store, let index, let token {
            var admin = IndexAdminConfiguration(host: settings.host, port: settings.port, token: token, store: store.store,
                                                presence: index.presence, logger: logger)
            admin.reporter = SupernodeReport(collector: metrics, address: address, checkpoint: checkpoint, relay: started.relay,
                                             stun: started.stun, cluster: started.cluster, ownKey: Array(key.publicKey.rawRepresentation),
                                             indexLocation: location(of: store.store))
            admin.metricsNeedToken = settings.metricsNeedToken
            started.admin = try await AdminRunner.start(admin, logger: logger)
        }

        let adminURL = started.admin?.url
        if let directory = configuration.dataDirectory {
            try write(address.description, to: directory, SupernodeConfiguration.addressFileName)
            if let adminURL { try write(adminURL, to: directory, SupernodeConfiguration.adminURLFileName) }
        }
        logger.info("supernode started", metadata: ["address": "\(address)"])
        return Supernode(configuration: configuration, address: address, checkpoint: checkpoint, stunLayout: stunLayout,
                         adminURL: adminURL, indexStore: store?.store, index: index, logger: logger, services: started)
    }

    /// Refuses a configuration that cannot work, before anything is opened.
    private static func check(_ configuration: SupernodeConfiguration) throws(SupernodeError) {
        let range = ControlLimits.keepaliveSecondsRange
        guard range.contains(configuration.keepaliveSeconds) else {
            throw SupernodeError(.checkpoint, "keepalive of \(configuration.keepaliveSeconds) s is outside \(range) s (--keepalive)")
        }
        guard let admin = configuration.admin else { return }
        if case .none = configuration.index {
            throw SupernodeError(.admin, "needs an INDEX: give one (--index), or turn the management API off (--no-admin)")
        }
        if admin.token == nil, configuration.dataDirectory == nil {
            throw SupernodeError(.admin, "needs a token: give one (--admin-token), or a data directory to keep it in")
        }
    }

    /// Creates the data directory (mode 0700), removes the files a previous run left, and
    /// returns the key: the configured one, else the directory's (created on first start), else a fresh one.
    private static func prepareDataDirectory(_ configuration: SupernodeConfiguration) throws(SupernodeError) -> SupernodeKey {
        guard let directory = configuration.dataDirectory else { return configuration.key ?? SupernodeKey() }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            for name in [SupernodeConfiguration.addressFileName, SupernodeConfiguration.adminURLFileName] {
                let path = (directory as NSString).appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            }
            if let key = configuration.key { return key }
            return try SupernodeKey.loadOrCreate(at: (directory as NSString).appendingPathComponent(SupernodeConfiguration.keyFileName))
        } catch {
            throw SupernodeError(.dataDirectory, "\(directory): \(error)", underlying: error)
        }
    }

    /// The management API's token: the configured one, else the data directory's (created on
    /// first start); nil without a management API.
    private static func adminToken(_ configuration: SupernodeConfiguration) throws(SupernodeError) -> AdminToken? {
        guard let admin = configuration.admin else { return nil }
        if let token = admin.token { return token }
        guard let directory = configuration.dataDirectory else { return nil }
        do { return try AdminToken.loadOrCreate(directory: directory) } catch {
            throw SupernodeError(.admin, "has no token: \(error)", underlying: error)
        }
    }

    /// The INDEX's store, and whether the supernode opened it (and so closes it).
    private static func openIndex(_ storage: SupernodeConfiguration.IndexStorage,
                                  logger: Logger) async throws(SupernodeError) -> (store: any IndexStore, owned: Bool)? {
        do {
            switch storage {
            case .none: return nil
            case .sqlite(let directory, let hasher): return (try SQLiteIndexStore(directory: directory, hasher: hasher), true)
            case .postgres(let url, let hasher): return (try await PostgresIndexStore(url: url, hasher: hasher, logger: logger), true)
            case .store(let store): return (store, false)
            }
        } catch {
            throw SupernodeError(.index, "could not open: \(error)", underlying: error)
        }
    }

    /// Writes `text` and a newline to `directory/name`.
    private static func write(_ text: String, to directory: String, _ name: String) throws(SupernodeError) {
        let path = (directory as NSString).appendingPathComponent(name)
        do { try (text + "\n").write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw SupernodeError(.dataDirectory, "could not write \(path): \(error)", underlying: error)
        }
    }

    /// Where `store` is, for people: the SQLite file, the PostgreSQL location, or its type.
    private static func location(of store: any IndexStore) -> String {
        switch store {
        case let sqlite as SQLiteIndexStore: return sqlite.path
        case let postgres as PostgresIndexStore: return postgres.location
        default: return "\(type(of: store))"
        }
    }
}

/// What a start has opened so far, stopped in reverse order by `Supernode.stop()` or by a start
/// that fails part-way.
private struct StartedServices: Sendable {
    /// The INDEX store, when the supernode opened it.
    var store: (any IndexStore)?
    var relay: RelayServer?
    var checkpoint: CheckpointServer?
    var stun: STUNPairServer?
    var admin: AdminRunner?
    var cluster: SupernodeCluster?

    /// The checkpoint says farewell (its peers go to other supernodes) before the cluster leaves.
    func stop() async {
        await admin?.stop()
        await stun?.stop()
        await checkpoint?.stop()
        await cluster?.stop()
        await relay?.stop()
        await store?.close()
    }
}

/// The management API in a task of its own: Hummingbird binds inside `run()`, so the start waits
/// for its `onListening` (or its failure). Its own `ServiceGroup` gives it a graceful shutdown.
private struct AdminRunner: Sendable {
    let server: IndexAdminServer
    let group: ServiceGroup
    let task: Task<Void, Never>
    /// `http://HOST:PORT`, the bound port.
    let url: String

    static func start(_ configuration: IndexAdminConfiguration, logger: Logger) async throws(SupernodeError) -> AdminRunner {
        var configuration = configuration
        let (urls, listening) = AsyncThrowingStream.makeStream(of: String.self)
        configuration.onListening = { url in listening.yield(url) }
        let server = IndexAdminServer(configuration: configuration)
        let group = ServiceGroup(services: [server], logger: logger)
        let task = Task {
            do {
                try await group.run()
                listening.finish()
            } catch {
                listening.finish(throwing: error)
            }
        }
        var failure: (any Error)?
        do {
            for try await url in urls { return AdminRunner(server: server, group: group, task: task, url: url) }
        } catch {
            failure = error
        }
        // It failed (or the start was cancelled): make sure the group has ended.
        await group.triggerGracefulShutdown()
        await task.value
        let address = STUNAddress.hostPort(configuration.host, configuration.port)
        guard let failure else { throw SupernodeError(.admin, "stopped before it listened on \(address)") }
        throw SupernodeError(.admin, starting: failure, address: address)
    }

    /// Shuts the server down gracefully (requests in flight finish) and waits for it.
    func stop() async {
        await group.triggerGracefulShutdown()
        await task.value
    }
}
