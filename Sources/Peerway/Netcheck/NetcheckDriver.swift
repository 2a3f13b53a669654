import NIOCore
import NIOPosix
import PeerwayNetcheck
import PeerwaySTUN

/// Runs a `NetcheckMachine` with real UDP sockets: performs its actions, feeds it datagrams and
/// timer wake-ups, all on one event loop, and closes every socket at the end.
///
/// Thread safety: every stored property is read and written only on `eventLoop` (each entry point
/// hops there first), which is what makes the `@unchecked Sendable` sound.
final class NetcheckDriver: @unchecked Sendable {
    private let eventLoop: any EventLoop
    private let promise: EventLoopPromise<NetcheckReport>
    private var machine: NetcheckMachine
    /// Each socket: NIO reads it, sends go straight to it (a refused send is a lost datagram).
    private var channels: [NetcheckSocketID: LossyDatagramSocket] = [:]
    private var timer: Scheduled<Void>?
    private var isDone = false
    private var queued: [NetcheckAction] = []
    private var isPerforming = false

    init(machine: NetcheckMachine, eventLoop: any EventLoop) {
        self.machine = machine
        self.eventLoop = eventLoop
        self.promise = eventLoop.makePromise(of: NetcheckReport.self)
    }

    /// Starts the run; the future completes after every socket has been closed.
    func start() -> EventLoopFuture<NetcheckReport> {
        eventLoop.execute {
            self.perform(self.machine.start(now: .now()))
        }
        return promise.futureResult
    }

    /// Ends the run with `NetcheckError.cancelled` (from any thread).
    func cancel() {
        eventLoop.execute {
            self.finish(.failure(.cancelled))
        }
    }

    // MARK: on the event loop

    /// Performs the machine's actions in the order it produced them. Performing one can feed the
    /// machine again at once (a bind that completes synchronously); the new actions then queue
    /// behind the rest instead of running nested, so a stale `.wakeUp` never replaces a newer one.
    private func perform(_ actions: [NetcheckAction]) {
        eventLoop.assertInEventLoop()
        queued.append(contentsOf: actions)
        guard !isPerforming else { return }
        isPerforming = true
        defer { isPerforming = false }
        while !queued.isEmpty, !isDone {
            let action = queued.removeFirst()
            switch action {
            case .openSocket(let socket, let family):
                open(socket, family: family)
            case .send(let socket, let destination, let bytes):
                send(bytes, from: socket, to: destination)
            case .wakeUp(let deadline):
                timer?.cancel()
                timer = eventLoop.scheduleTask(deadline: deadline) {
                    self.timer = nil
                    guard !self.isDone else { return }
                    self.perform(self.machine.wakeUp(now: .now()))
                }
            case .finished(let report):
                finish(.success(report))
            case .failed(let error):
                finish(.failure(error))
            }
        }
        queued.removeAll()
    }

    private func open(_ socket: NetcheckSocketID, family: STUNAddress.Family) {
        let wildcard = family == .ipv4 ? "0.0.0.0" : "::"
        let promise = eventLoop.makePromise(of: LossyDatagramSocket.self)
        promise.completeWithTask {
            try await LossyDatagramSocket.bind(host: wildcard, port: 0, on: self.eventLoop) { channel in
                try channel.pipeline.syncOperations.addHandler(NetcheckDatagramHandler(socket: socket, driver: self))
            }
        }
        promise.futureResult.whenComplete { result in
            self.opened(socket, result)
        }
    }

    private func opened(_ socket: NetcheckSocketID, _ result: Result<LossyDatagramSocket, any Error>) {
        switch result {
        case .success(let channel):
            guard !isDone else {
                _ = channel.close()
                return
            }
            channels[socket] = channel
            perform(machine.socketOpened(socket, localAddress: channel.localAddress, now: .now()))
        case .failure(let error):
            guard !isDone else { return }
            perform(machine.socketFailed(socket, reason: String(describing: error), now: .now()))
        }
    }

    fileprivate func received(on socket: NetcheckSocketID, _ envelope: AddressedEnvelope<ByteBuffer>) {
        eventLoop.assertInEventLoop()
        guard !isDone, let source = STUNAddress(envelope.remoteAddress) else { return }
        perform(machine.datagramReceived(on: socket, from: source, bytes: envelope.data, now: .now()))
    }

    private func send(_ bytes: ByteBuffer, from socket: NetcheckSocketID, to destination: STUNAddress) {
        // A refused send is just a lost datagram: the machine retransmits or gives up.
        _ = channels[socket]?.send(bytes, to: destination)
    }

    private func finish(_ result: Result<NetcheckReport, NetcheckError>) {
        eventLoop.assertInEventLoop()
        guard !isDone else { return }
        isDone = true
        timer?.cancel()
        timer = nil
        let closing = channels.values.map { $0.close() }
        channels.removeAll()
        EventLoopFuture.andAllComplete(closing, on: eventLoop).whenComplete { _ in
            self.promise.completeWith(result.mapError { $0 as any Error })
        }
    }
}

/// Hands each received datagram of one socket to the driver.
final class NetcheckDatagramHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let socket: NetcheckSocketID
    let driver: NetcheckDriver

    init(socket: NetcheckSocketID, driver: NetcheckDriver) {
        self.socket = socket
        self.driver = driver
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        driver.received(on: socket, unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Per-datagram errors (e.g. ICMP unreachable on some platforms) are loss as far as the
        // machine is concerned; it retransmits. Keep the socket open.
    }
}
