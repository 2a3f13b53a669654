#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import PeerwayRelay
import PeerwaySTUN
import ServiceLifecycle

/*
 The raw RELAY service (docs/traversal-protocol.md, RELAY): two threads, no per-datagram allocation.

   UDP thread (RelayUDPWorker): one socket (default port 7401)
     poll(socket, stop pipe; timeout = time to the next tick)
       -> recvmmsg up to `batch` datagrams into fixed slots
       -> RelayTable.receive(each): forward / answer / drop
       -> forwarded datagrams stay in their slot (moved down over dropped ones), a bind's answer is
          the bind with "PWRA" written over "PWRB", in place
       -> one sendmmsg for the batch, straight from the receive slots; a run of same-size
          datagrams to one destination goes as one UDP_SEGMENT (GSO) sendmsg instead, its iovecs
          pointing at the slots (no copy): the kernel cuts it into the very same datagrams
       -> table.tick once a second (idle, lifetime, unbound)

   TCP thread (RelayTCPWorker): its own listener (optional) plus connections handed over by
   `adoptTCP` (the supernode's TCP port hands over connections that start with "PWRB")
     poll(listener, wake pipe, stop pipe, every connection)
       -> a connection's first 37 bytes are a bind; RelayTable<connection id>.bind; answer 37 bytes
       -> once both sides are bound: read from one, write to the other (64 KiB per direction in
          flight at most; a side whose partner cannot take more is not read), half-closes passed on
       -> the table's limits (bytes, idle, lifetime, unbound) close both connections

 Tokens are minted statelessly with the relay key (`grant`), so HANDSHAKE needs no call into the
 threads: the first valid bind creates the allocation.
*/

/// Why the relay could not start.
public enum RelayServerError: Error, CustomStringConvertible {
    case bindFailed(STUNAddress, RelayTransport, underlying: any Error)

    public var description: String {
        switch self {
        case .bindFailed(let a, let t, let e):
            return "RELAY cannot bind \(t) \(a): \(e). Is another server on that port, and is the address configured on this host?"
        }
    }
}

/// What a running relay reports.
public struct RelayStatistics: Sendable, Equatable {
    public var udp = RelayCounters()
    public var tcp = RelayCounters()
    public var udpAllocations = 0
    public var tcpAllocations = 0
    /// TCP connections open (binding, waiting for the partner, or spliced).
    public var tcpConnections = 0
    /// TCP connections closed at once because the relay held its maximum.
    public var refusedConnections = 0
    /// TCP connections that did not send a valid bind in time.
    public var failedTCPBinds = 0
    /// Datagrams the kernel refused to send.
    public var sendFailures = 0
    /// Datagrams sent in segmentation-offload (GSO) sends, and those sends.
    public var segmentedDatagrams = 0
    public var segmentedSends = 0
    /// Datagrams over `RelayServer.Limits.maximumDatagramBytes`, dropped.
    public var oversize = 0
    /// Bytes forwarded per second over the last second (both transports).
    public var bytesPerSecond = 0.0

    public init() {}
}

/// The raw RELAY (a ServiceLifecycle `Service`): forwards UDP datagrams and splices TCP
/// connections between the two sides of allocations whose tokens HANDSHAKE minted.
public final class RelayServer: Service, Sendable {
    /// Where the relay listens and what it enforces.
    public struct Configuration: Sendable {
        /// UDP address; port 0 picks a free port (tests).
        public var udp: STUNAddress
        /// Address of the relay's own TCP listener; nil: TCP binds come only through `adoptTCP`.
        public var tcp: STUNAddress?
        /// The key tokens are minted with (shared with HANDSHAKE): 32 random bytes by default.
        public var key: SymmetricKey
        /// Name of this relay in `load()` (default: its UDP address).
        public var id: String?
        /// The host peers dial, when it differs from the bound one (a wildcard bind, a NAT).
        public var advertisedHost: String?
        /// Bytes one allocation may forward (both directions together).
        public var byteLimit: UInt64
        /// Most allocations per transport.
        public var maximumAllocations: Int
        /// Send runs of same-size datagrams to one destination as one UDP_SEGMENT (GSO) send
        /// (Linux): the kernel cuts them into the same datagrams, for a fraction of the cost. Off,
        /// or where the kernel refuses it, every datagram goes through sendmmsg.
        public var segmentationOffload: Bool

        public init(udp: STUNAddress = STUNAddress(ip: .v4(0x7F00_0001), port: RelayLimits.defaultPort),
                    tcp: STUNAddress? = nil,
                    key: SymmetricKey = SymmetricKey(size: .bits256),
                    id: String? = nil, advertisedHost: String? = nil,
                    byteLimit: UInt64 = RelayLimits.defaultByteLimit,
                    maximumAllocations: Int = RelayLimits.maximumAllocations,
                    segmentationOffload: Bool = true) {
            self.udp = udp
            self.tcp = tcp
            self.key = key
            self.id = id
            self.advertisedHost = advertisedHost
            self.byteLimit = byteLimit
            self.maximumAllocations = maximumAllocations
            self.segmentationOffload = segmentationOffload
        }
    }

    /// Limits of the relay's loops.
    public enum Limits {
        /// Datagrams moved per recvmmsg/sendmmsg call.
        public static let batch = 64
        /// Receive batches handled before the loop checks its timers again.
        public static let batchesPerPass = 32
        /// Largest datagram relayed; bigger ones are dropped (a jumbo frame's payload fits).
        public static let maximumDatagramBytes = 9_216
        /// Kernel receive and send buffer of the UDP socket.
        public static let socketBufferBytes: Int32 = 16 << 20
        /// Most TCP connections at once (binding, waiting or spliced).
        public static let maximumTCPConnections = 1_024
        /// Pending connections the TCP listener's kernel queue holds.
        public static let listenBacklog: Int32 = 128
        /// Seconds a TCP connection has to send its 37-byte bind.
        public static let tcpBindTimeoutSeconds: UInt64 = 10
        /// Bytes read from one side of a TCP splice before its partner must take them.
        public static let tcpChunkBytes = 64 * 1024
        /// Most datagrams in one segmentation-offload send (the kernel takes up to 64 on every version).
        public static let maximumSegments = 64
        /// Most payload bytes in one segmentation-offload send (one IPv4 datagram's worth).
        public static let maximumSegmentedBytes = 65_000
        /// Milliseconds between ticks (limits, statistics).
        public static let tickMillis: UInt64 = 1_000
    }

    public let configuration: Configuration
    /// Mints this relay's tokens (HANDSHAKE may hold its own minter with the same key).
    public let minter: RelayTokenMinter
    private let logger: Logger
    private let state = NIOLockedValueBox<State>(State())

    private struct State {
        var udp: RelayUDPWorker?
        var tcp: RelayTCPWorker?
        var udpAddress: STUNAddress?
        var tcpAddress: STUNAddress?
    }

    public init(configuration: Configuration = Configuration(), logger: Logger = Logger(label: "peerway.relay")) {
        self.configuration = configuration
        self.minter = RelayTokenMinter(key: configuration.key)
        self.logger = logger
    }

    /// The bound UDP address, once started.
    public var udpAddress: STUNAddress? { state.withLockedValue { $0.udpAddress } }
    /// The bound TCP listener's address, once started (nil without a listener of its own).
    public var tcpAddress: STUNAddress? { state.withLockedValue { $0.tcpAddress } }

    /// Binds the UDP socket and the TCP listener and starts both threads.
    public func start() throws {
        let udp: (fd: Int32, port: UInt16)
        do {
            udp = try STUNSocket.bind(configuration.udp, bufferBytes: Limits.socketBufferBytes, reusePort: false)
        } catch {
            throw RelayServerError.bindFailed(configuration.udp, .udp, underlying: (error as? STUNPairServerError).flatMap {
                if case .bindFailed(_, let e) = $0 { return e } else { return nil }
            } ?? error)
        }
        // SO_RCVBUF is capped by net.core.rmem_max; with CAP_NET_ADMIN take the full size, so a
        // burst is queued rather than dropped.
        var force = Limits.socketBufferBytes
        _ = setsockopt(udp.fd, SOL_SOCKET, SO_RCVBUFFORCE, &force, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(udp.fd, SOL_SOCKET, SO_SNDBUFFORCE, &force, socklen_t(MemoryLayout<Int32>.size))
        var listener: (fd: Int32, port: UInt16)?
        if let tcp = configuration.tcp {
            do {
                listener = try RelayTCPWorker.listen(tcp)
            } catch {
                close(udp.fd)
                throw RelayServerError.bindFailed(tcp, .tcp, underlying: error)
            }
        }
        let udpTable = RelayTable<STUNAddress>(minter: minter, configuration: .init(
            transport: .udp, byteLimit: configuration.byteLimit, maximumAllocations: configuration.maximumAllocations))
        let tcpTable = RelayTable<Int>(minter: minter, configuration: .init(
            transport: .tcp, byteLimit: configuration.byteLimit, maximumAllocations: configuration.maximumAllocations))
        let udpWorker: RelayUDPWorker
        let tcpWorker: RelayTCPWorker
        do {
            udpWorker = try RelayUDPWorker(fd: udp.fd, table: udpTable, segmentationOffload: configuration.segmentationOffload)
            tcpWorker = try RelayTCPWorker(listener: listener?.fd, table: tcpTable)
        } catch {
            close(udp.fd)
            if let l = listener { close(l.fd) }
            throw error
        }
        udpWorker.start()
        tcpWorker.start()
        state.withLockedValue {
            $0.udp = udpWorker
            $0.tcp = tcpWorker
            $0.udpAddress = configuration.udp.with(port: udp.port)
            $0.tcpAddress = listener.map { configuration.tcp!.with(port: $0.port) }
        }
        logger.info("RELAY listening", metadata: [
            "udp": "\(udpAddress!)", "tcp": "\(tcpAddress.map(\.description) ?? "adopted connections only")",
        ])
    }

    /// Stops both threads and closes every socket (spliced connections included).
    public func stop() async {
        let (udp, tcp) = state.withLockedValue { s -> (RelayUDPWorker?, RelayTCPWorker?) in
            defer { s.udp = nil; s.tcp = nil }
            return (s.udp, s.tcp)
        }
        await udp?.stop()
        await tcp?.stop()
    }

    /// `Service`: runs until graceful shutdown, then stops.
    public func run() async throws {
        if udpAddress == nil { try start() }
        try? await gracefulShutdown()
        await stop()
    }

    /// Both sides' tokens of a new allocation, valid for `lifetime` from now (at most
    /// `RelayLimits.maximumLifetimeSeconds`). Stateless and thread-safe: nothing is stored until
    /// the first bind.
    public func grant(transport: RelayTransport, lifetime: Duration = .seconds(Int64(RelayLimits.defaultLifetimeSeconds))) -> (RelayToken, RelayToken) {
        minter.grant(transport: transport, lifetimeSeconds: UInt64(clamping: lifetime.components.seconds), now: Self.now())
    }

    /// Hands over an accepted TCP socket whose first bytes (`firstBytes`, already read from it,
    /// normally starting with "PWRB") are a relay bind. The relay owns `fd` from now on: it closes
    /// it when the bind fails, the allocation ends, or the relay stops.
    public func adoptTCP(fd: Int32, firstBytes: [UInt8]) {
        guard let worker = state.withLockedValue({ $0.tcp }) else {
            close(fd)
            return
        }
        worker.adopt(fd: fd, firstBytes: firstBytes)
    }

    /// This relay's load, for `RelayChoice.leastLoaded`.
    public func load() -> RelayLoad {
        let s = statistics()
        let udp = udpAddress.map { advertised($0) } ?? advertised(configuration.udp)
        return RelayLoad(id: configuration.id ?? udp, endpoint: udp, tcpEndpoint: tcpAddress.map { advertised($0) },
                         allocations: s.udpAllocations + s.tcpAllocations, capacity: 2 * configuration.maximumAllocations,
                         bytesPerSecond: s.bytesPerSecond)
    }

    private func advertised(_ a: STUNAddress) -> String {
        guard let host = configuration.advertisedHost else { return a.description }
        return STUNAddress.hostPort(host, a.port)
    }

    /// The latest published figures.
    public func statistics() -> RelayStatistics {
        let (udp, tcp) = state.withLockedValue { ($0.udp, $0.tcp) }
        var s = RelayStatistics()
        if let u = udp?.statistics {
            s.udp = u.counters
            s.udpAllocations = u.allocations
            s.sendFailures = u.sendFailures
            s.oversize = u.oversize
            s.segmentedDatagrams = u.segmentedDatagrams
            s.segmentedSends = u.segmentedSends
            s.bytesPerSecond += u.bytesPerSecond
        }
        if let t = tcp?.statistics {
            s.tcp = t.counters
            s.tcpAllocations = t.allocations
            s.tcpConnections = t.connections
            s.refusedConnections = t.refusedConnections
            s.failedTCPBinds = t.failedBinds
            s.bytesPerSecond += t.bytesPerSecond
        }
        return s
    }

    /// The wall clock as the relay's tables see it.
    static func now() -> RelayTime {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return RelayTime(millis: UInt64(t.tv_sec) * 1000 + UInt64(t.tv_nsec) / 1_000_000)
    }
}

/// What one worker thread publishes after each pass.
struct RelayWorkerStatistics: Sendable {
    var counters = RelayCounters()
    var allocations = 0
    var connections = 0
    var refusedConnections = 0
    var failedBinds = 0
    var sendFailures = 0
    var oversize = 0
    var segmentedDatagrams = 0
    var segmentedSends = 0
    var bytesPerSecond = 0.0
}
