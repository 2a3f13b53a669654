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
    /// Default datagrams read per `recvmmsg` call.
    public static let defaultVectorReadCount = 32
    /// Receive buffer per datagram slot: the largest datagram read, plus one byte so an oversize
    /// one is seen as oversize rather than truncated to fit.
    public static let receiveSlotSize = STUNLimits.maximumDatagramSize + 1
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
    /// Sockets per address, bound with SO_REUSEPORT, one per event loop; 0 means one per core.
    public var workers: Int

    public init(
        layout: STUNPairLayout, software: String? = nil,
        ratePerSecond: Int = STUNRateLimiter.defaultRatePerSecond, burst: Int = STUNRateLimiter.defaultBurst,
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
/// Each address gets `workers` sockets bound with SO_REUSEPORT, one per event loop; the four
/// sockets of one worker share an event loop, so an answer from a sibling socket (CHANGE-REQUEST)
/// never crosses threads. Reads are vectored (`recvmmsg`) and answers are flushed once per read
/// burst (`sendmmsg`).
public final class STUNPairServer: Service, Sendable {
    public let configuration: STUNPairConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state = NIOLockedValueBox<State>(State())

    private struct State {
        var workers: [STUNPairWorker] = []
        var channels: [any Channel] = []
        var layout: STUNPairLayout?
    }

    public init(configuration: STUNPairConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger = Logger(label: "peerway.stun")) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
    }

    /// The bound layout (ports resolved), once started.
    public var boundLayout: STUNPairLayout? { state.withLockedValue { $0.layout } }

    /// Binds every socket; returns the layout with the actual ports.
    @discardableResult
    public func start() async throws -> STUNPairLayout {
        let base = configuration.layout
        let needsSearch = base.primary.port == 0 || (base.alternate?.port == 0)
        let attempts = needsSearch ? STUNPairConfiguration.ephemeralBindAttempts : 1
        var lastError: (any Error)?
        for _ in 0..<attempts {
            do {
                return try await bindAll(base)
            } catch {
                lastError = error
                await closeAll()
            }
        }
        if needsSearch { throw STUNPairServerError.noFreePorts(attempts: attempts) }
        throw lastError ?? STUNPairServerError.notStarted
    }

    /// Closes every socket.
    public func stop() async {
        await closeAll()
    }

    /// `Service`: runs until graceful shutdown (SIGTERM/SIGINT through ServiceGroup), then stops.
    public func run() async throws {
        if boundLayout == nil { try await start() }
        try? await gracefulShutdown()
        await stop()
    }

    /// Counters summed over every socket.
    public func counters() async -> STUNServerCounters {
        let workers = state.withLockedValue { $0.workers }
        var total = STUNServerCounters()
        for w in workers {
            if let c = try? await w.loop.submit({ w.counters }).get() { total = total + c }
        }
        return total
    }

    private func closeAll() async {
        let channels = state.withLockedValue { s -> [any Channel] in
            let c = s.channels
            s = State()
            return c
        }
        for c in channels { try? await c.close() }
    }

    private func bindAll(_ base: STUNPairLayout) async throws -> STUNPairLayout {
        let workerCount = configuration.workers > 0 ? configuration.workers : System.coreCount
        let limiter = configuration.ratePerSecond > 0
            ? NIOLockedValueBox(STUNRateLimiter(ratePerSecond: configuration.ratePerSecond, burst: configuration.burst))
            : nil
        var layout = base
        var loops: [any EventLoop] = []
        for _ in 0..<workerCount { loops.append(group.next()) }
        let workers = loops.map { STUNPairWorker(loop: $0) }
        state.withLockedValue { $0.workers = workers }

        // Resolve ephemeral ports on the primary IP first, then bind the rest at those ports.
        var primary = layout.primary
        if primary.port == 0 {
            let ch = try await bind(primary, role: .primary, worker: workers[0], limiter: limiter, layout: nil)
            primary.port = UInt16(ch.localAddress?.port ?? 0)
        }
        var alternate = layout.alternate
        if var alt = alternate, alt.port == 0 {
            let probe = STUNAddress(ip: primary.ip, port: 0)
            let role = STUNSocketRole(alternateIP: false, alternatePort: true)
            let ch = try await bind(probe, role: role, worker: workers[0], limiter: limiter, layout: nil)
            alt.port = UInt16(ch.localAddress?.port ?? 0)
            alternate = alt
        }
        layout = try STUNPairLayout(primary: primary, alternate: alternate)
        let responder = STUNResponder(layout: layout, software: configuration.software)
        for (w, worker) in workers.enumerated() {
            for role in layout.roles {
                let address = layout.address(of: role)!
                // The ephemeral-port probes above are worker 0's primary and A:p2 sockets.
                let isProbe = w == 0 && ((role == .primary && base.primary.port == 0)
                    || (role == STUNSocketRole(alternateIP: false, alternatePort: true) && base.alternate?.port == 0))
                if isProbe { continue }
                _ = try await bind(address, role: role, worker: worker, limiter: limiter, layout: nil)
            }
        }
        for worker in workers {
            try await worker.loop.submit { worker.responder = responder }.get()
        }
        state.withLockedValue { $0.layout = layout }
        logger.info("STUN pair listening", metadata: ["layout": "\(layout)", "workers": "\(workerCount)"])
        return layout
    }

    private func bind(_ address: STUNAddress, role: STUNSocketRole, worker: STUNPairWorker, limiter: NIOLockedValueBox<STUNRateLimiter>?, layout: STUNPairLayout?) async throws -> any Channel {
        let socketAddress = try address.socketAddress()
        let channel: any Channel
        do {
            channel = try await DatagramBootstrap(group: worker.loop)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .channelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
                .channelOption(.datagramVectorReadMessageCount, value: STUNPairConfiguration.defaultVectorReadCount)
                .channelOption(
                    .recvAllocator,
                    value: FixedSizeRecvByteBufferAllocator(
                        capacity: STUNPairConfiguration.defaultVectorReadCount * STUNPairConfiguration.receiveSlotSize))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            STUNPairHandler(role: role, worker: worker, limiter: limiter))
                    }
                }
                .bind(to: socketAddress).get()
        } catch {
            throw STUNPairServerError.bindFailed(address, underlying: error)
        }
        try await worker.loop.submit { worker.channels[role.index] = channel }.get()
        state.withLockedValue { $0.channels.append(channel) }
        return channel
    }
}

/// The four sockets of one worker and their shared state; touched only on `loop`.
final class STUNPairWorker: @unchecked Sendable {
    let loop: any EventLoop
    var channels: [(any Channel)?] = [nil, nil, nil, nil]
    var responder: STUNResponder?
    var counters = STUNServerCounters()
    /// Sibling sockets written to during the current read burst, flushed at its end.
    var pendingFlush: [Bool] = [false, false, false, false]

    init(loop: any EventLoop) { self.loop = loop }

    func flushPending() {
        for i in 0..<4 where pendingFlush[i] {
            pendingFlush[i] = false
            channels[i]?.flush()
        }
    }
}

/// Thin glue: datagram in, `STUNResponder` decides, answer out of the right sibling socket.
final class STUNPairHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let role: STUNSocketRole
    private let worker: STUNPairWorker
    private let limiter: NIOLockedValueBox<STUNRateLimiter>?

    init(role: STUNSocketRole, worker: STUNPairWorker, limiter: NIOLockedValueBox<STUNRateLimiter>?) {
        self.role = role
        self.worker = worker
        self.limiter = limiter
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        worker.counters.received += 1
        guard let responder = worker.responder, let source = STUNAddress(envelope.remoteAddress) else { return }
        if let limiter {
            let now = NIODeadline.now()
            guard limiter.withLockedValue({ $0.admit(source.ip, now: now) }) else {
                worker.counters.rateLimited += 1
                return
            }
        }
        switch responder.respond(to: envelope.data, from: source, on: role) {
        case .drop(let reason):
            switch reason {
            case .malformed: worker.counters.malformed += 1
            case .oversize: worker.counters.oversize += 1
            case .notARequest: worker.counters.notARequest += 1
            case .rateLimited: worker.counters.rateLimited += 1
            }
        case .reply(let bytes, let from, let to):
            if bytes.getInteger(at: bytes.readerIndex, as: UInt16.self).map({ $0 & 0x0110 == 0x0110 }) == true {
                worker.counters.errors += 1
            } else {
                worker.counters.answered += 1
            }
            let remote = to == source ? envelope.remoteAddress : ((try? to.socketAddress()) ?? envelope.remoteAddress)
            let out = AddressedEnvelope(remoteAddress: remote, data: bytes)
            if from == role {
                context.write(wrapOutboundOut(out), promise: nil)
                worker.pendingFlush[role.index] = true
            } else if let sibling = worker.channels[from.index] {
                sibling.write(out, promise: nil)
                worker.pendingFlush[from.index] = true
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        worker.flushPending()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP port unreachable and friends surface here on Linux; a UDP server keeps serving.
        worker.counters.sendFailures += 1
    }
}
