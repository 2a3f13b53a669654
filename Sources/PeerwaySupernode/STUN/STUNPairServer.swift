#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PeerwaySTUN
import ServiceLifecycle

/// Configuration of the STUN pair service.
public struct STUNPairConfiguration: Sendable {
    /// Attempts at finding a free port pair when ports are 0 (ephemeral), before giving up.
    public static let ephemeralBindAttempts = 16

    /// The addresses; port 0 picks free ports (tests).
    public var layout: STUNPairLayout
    /// SOFTWARE in answers; `nil` keeps answers minimal.
    public var software: String?
    /// Per-source-IP sustained rate; 0 disables the limiter.
    public var ratePerSecond: Int
    /// Per-source-IP burst.
    public var burst: Int
    /// Sockets per address, bound with SO_REUSEPORT, one engine thread each; 0 means one per core.
    public var workers: Int

    public init(
        layout: STUNPairLayout, software: String? = nil,
        ratePerSecond: Int = SourceRateLimiter.defaultRatePerSecond, burst: Int = SourceRateLimiter.defaultBurst,
        workers: Int = 0
    ) {
        self.layout = layout
        self.software = software
        self.ratePerSecond = ratePerSecond
        self.burst = burst
        self.workers = workers
    }
}

/// Counters of the STUN pair, summed over its sockets.
public struct STUNServerCounters: Sendable, Equatable, Codable {
    /// Datagrams received.
    public var received = 0
    /// Success responses sent.
    public var answered = 0
    /// Error responses sent (400, 420).
    public var errors = 0
    /// Datagrams that were not STUN or were malformed: dropped silently.
    public var malformed = 0
    /// Datagrams over the size limit: dropped.
    public var oversize = 0
    /// Responses and indications: nothing to answer.
    public var notARequest = 0
    /// Requests over the per-source rate limit: dropped.
    public var rateLimited = 0
    /// Answers the kernel refused to send.
    public var sendFailures = 0

    public init() {}

    static func + (a: Self, b: Self) -> Self {
        var s = a
        s.received += b.received
        s.answered += b.answered
        s.errors += b.errors
        s.malformed += b.malformed
        s.oversize += b.oversize
        s.notARequest += b.notARequest
        s.rateLimited += b.rateLimited
        s.sendFailures += b.sendFailures
        return s
    }
}

/// Why the STUN pair could not start.
public enum STUNPairServerError: Error, CustomStringConvertible {
    case bindFailed(STUNAddress, underlying: any Error)
    case noFreePorts(attempts: Int)
    case notStarted

    public var description: String {
        switch self {
        case .bindFailed(let a, let e):
            return "STUN pair cannot bind \(a): \(e). Is another server on that port, and is the address configured on this host? (loopback: 127.0.0.2 exists on Linux)"
        case .noFreePorts(let n):
            return "STUN pair found no port pair free on both addresses after \(n) attempts"
        case .notStarted:
            return "STUN pair is not running: call start() first"
        }
    }
}

/// The STUN pair service: four UDP sockets (A:p, A:p2, B:p, B:p2) answering Binding requests
/// (RFC 8489, RFC 5780, RFC 3489), or one socket without an alternate address.
///
/// Each address gets `workers` sockets bound with SO_REUSEPORT, one per engine thread
/// (`STUNDatagramWorker`); the four sockets of one worker share its thread, so an answer from a
/// sibling socket (CHANGE-REQUEST) never crosses threads. Reads and writes are batched
/// (`recvmmsg`/`sendmmsg`).
public final class STUNPairServer: Service, Sendable {
    public let configuration: STUNPairConfiguration
    private let logger: Logger
    private let state = NIOLockedValueBox<State>(State())

    private struct State {
        var workers: [STUNDatagramWorker] = []
        var layout: STUNPairLayout?
        /// The per-source rate limiter the workers share, when limiting is on.
        var limiter: NIOLockedValueBox<SourceRateLimiter>?
    }

    public init(configuration: STUNPairConfiguration, logger: Logger = Logger(label: "peerway.stun")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The bound layout (ports resolved), once started.
    public var boundLayout: STUNPairLayout? { state.withLockedValue { $0.layout } }

    /// Binds every socket and starts the engine threads; returns the layout with the actual ports.
    @discardableResult
    public func start() async throws -> STUNPairLayout {
        let base = configuration.layout
        let needsSearch = base.primary.port == 0 || (base.alternate?.port == 0)
        let attempts = needsSearch ? STUNPairConfiguration.ephemeralBindAttempts : 1
        var lastError: (any Error)?
        for _ in 0..<attempts {
            do {
                return try bindAll(base)
            } catch {
                lastError = error
            }
        }
        if needsSearch { throw STUNPairServerError.noFreePorts(attempts: attempts) }
        throw lastError ?? STUNPairServerError.notStarted
    }

    /// Stops the engine threads and closes every socket.
    public func stop() async {
        let workers = state.withLockedValue { s -> [STUNDatagramWorker] in
            defer { s = State() }
            return s.workers
        }
        for w in workers { await w.stop() }
    }

    /// `Service`: runs until graceful shutdown (SIGTERM/SIGINT through ServiceGroup), then stops.
    public func run() async throws {
        if boundLayout == nil { try await start() }
        try? await gracefulShutdown()
        await stop()
    }

    /// Counters summed over every socket (published by each worker after every batch).
    public func counters() async -> STUNServerCounters {
        state.withLockedValue { $0.workers }.reduce(STUNServerCounters()) { $0 + $1.counters }
    }

    /// The rate limiter's table: sources tracked now, times a source went over its limit,
    /// requests admitted untracked (table full); nil when limiting is off or not started.
    public func rateLimiterFigures() -> (trackedSources: Int, limitedSources: Int, untrackedAdmissions: Int)? {
        state.withLockedValue { $0.limiter }?.withLockedValue { ($0.trackedSources, $0.limitedSources, $0.untrackedAdmissions) }
    }

    private func bindAll(_ base: STUNPairLayout) throws -> STUNPairLayout {
        let workerCount = configuration.workers > 0 ? configuration.workers : System.coreCount
        var opened: [Int32] = []
        var success = false
        defer { if !success { for fd in opened { close(fd) } } }
        func open(_ address: STUNAddress) throws -> (Int32, UInt16) {
            let (fd, port) = try STUNSocket.bind(address)
            opened.append(fd)
            return (fd, port)
        }
        // Resolve ephemeral ports on the primary IP first; every other socket binds at those ports.
        var first: [Int: Int32] = [:]
        var primary = base.primary
        if primary.port == 0 {
            let (fd, port) = try open(primary)
            primary.port = port
            first[STUNSocketRole.primary.index] = fd
        }
        var alternate = base.alternate
        if var alt = alternate, alt.port == 0 {
            let (fd, port) = try open(STUNAddress(ip: primary.ip, port: 0))
            alt.port = port
            alternate = alt
            first[STUNSocketRole(alternateIP: false, alternatePort: true).index] = fd
        }
        let layout = try STUNPairLayout(primary: primary, alternate: alternate)
        var fdsPerWorker: [[Int32]] = []
        for w in 0..<workerCount {
            var fds = [Int32](repeating: -1, count: 4)
            for role in layout.roles {
                if w == 0, let fd = first[role.index] {
                    fds[role.index] = fd
                } else {
                    fds[role.index] = try open(layout.address(of: role)!).0
                }
            }
            fdsPerWorker.append(fds)
        }
        let responder = STUNResponder(layout: layout, software: configuration.software)
        let limiter = configuration.ratePerSecond > 0
            ? NIOLockedValueBox(SourceRateLimiter(ratePerSecond: configuration.ratePerSecond, burst: configuration.burst))
            : nil
        let workers = try fdsPerWorker.map { try STUNDatagramWorker(fds: $0, responder: responder, limiter: limiter) }
        success = true
        for (i, w) in workers.enumerated() { w.start(name: "peerway-stun-\(i)") }
        state.withLockedValue {
            $0.workers = workers
            $0.layout = layout
            $0.limiter = limiter
        }
        logger.info("STUN pair listening", metadata: ["layout": "\(layout)", "workers": "\(workerCount)"])
        return layout
    }
}
