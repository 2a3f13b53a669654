import NIOCore
import NIOPosix
import PeerwayCheckpoint
import PeerwaySTUN

/// Runs a `CheckpointClientMachine` on one UDP channel: feeds it datagrams, timer wake-ups and
/// API calls, performs its actions, and hands completions to the waiting callers and events to
/// the peer's stream.
///
/// Thread safety: every stored `var` is read and written only on `eventLoop` (each entry point
/// hops there first), which is what makes the `@unchecked Sendable` sound.
final class PeerDriver: @unchecked Sendable {
    typealias CallResult = Result<CheckpointClientResponse, CheckpointClientError>

    let eventLoop: any EventLoop
    /// The supernodes the machine uses, by its index (configured, then learned; only grows).
    private(set) var supernodes: [PeerNetwork.Resolved]
    /// Set by `start`; until then datagrams are ignored.
    private var machine: CheckpointClientMachine?
    private var channel: (any Channel)?
    /// The socket's sending side: a failed send is a lost datagram (`LossyDatagramSocket`).
    private var socket: LossyDatagramSocket?
    /// What the sends met since the start began, for the start's error (`PeerSendReport`).
    private var sendTally = SendFailureTally()
    /// Test hook: makes some sends fail (`SendFaults`).
    private let sendFaults: SendFaults?
    private var timer: Scheduled<Void>?
    private var startTimer: Scheduled<Void>?
    private var startPromise: EventLoopPromise<Void>?
    private var waiters: [CheckpointRequestToken: CheckedContinuation<CallResult, Never>] = [:]
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    private var isClosed = false
    /// The `NetworkWatcher` registration (event loop only).
    private var networkWatch: UInt64?
    private let events: AsyncStream<PeerEvent>.Continuation
    /// Where HANDSHAKE plans go: the traversals waiting for them.
    let traversals = TraversalRegistry()

    /// UDP or TCP per supernode (`PeerControlTransport.swift`).
    private let control: PeerControlTransport

    init(supernodes: [PeerNetwork.Resolved], eventLoop: any EventLoop, events: AsyncStream<PeerEvent>.Continuation,
         tcpFallbackDelay: TimeAmount? = PeerOptions.defaultTCPFallbackDelay, proxy: ProxySetting = .none,
         sendFaults: SendFaults? = nil) throws {
        self.supernodes = supernodes
        self.sendFaults = sendFaults
        // Every endpoint must make a socket address (the sends go to its `STUNAddress`).
        for supernode in supernodes { _ = try supernode.endpoint.socketAddress() }
        control = PeerControlTransport(eventLoop: eventLoop,
                                       tcpAddresses: try supernodes.map { try $0.endpoint.with(port: $0.address.tcpPort).socketAddress() },
                                       fallbackDelay: tcpFallbackDelay, proxy: proxy)
        self.eventLoop = eventLoop
        self.events = events
        control.driver = self
    }

    /// Binds the channel; returns its local address.
    func bind(host: String, port: UInt16) async throws(PeerError) -> STUNAddress {
        let socket: LossyDatagramSocket
        do {
            socket = try await LossyDatagramSocket.bind(host: host, port: port, on: eventLoop, faults: sendFaults) { channel in
                try channel.pipeline.syncOperations.addHandler(PeerDatagramHandler(driver: self))
            }
        } catch {
            throw .bindFailed(host: host, port: port, reason: error.description)
        }
        let local = socket.localAddress
        do {
            try await eventLoop.submit {
                self.channel = socket.channel
                self.socket = socket
            }.get()
        } catch {
            throw .bindFailed(host: host, port: port, reason: "\(error)")
        }
        return local
    }

    /// Starts `machine`; returns once registered, throws after `timeout` or when it stops.
    func start(_ machine: CheckpointClientMachine, timeout: TimeAmount) async throws(PeerError) {
        let promise = eventLoop.makePromise(of: Void.self)
        eventLoop.execute {
            guard !self.isClosed else {
                promise.fail(PeerError.stopped)
                return
            }
            self.machine = machine
            self.startPromise = promise
            self.sendTally = SendFailureTally()
            self.startTimer = self.eventLoop.scheduleTask(in: timeout) {
                self.failStart(.supernodeUnreachable(self.supernodes.map(\.address), sends: self.sendTally.report))
            }
            self.perform(self.machine!.start(now: .now()))
            // Another network: the keepalive goes at once, so the registration follows the move.
            self.networkWatch = NetworkWatcher.shared.listen { [weak self] in
                guard let self else { return }
                self.eventLoop.execute {
                    guard !self.isClosed, self.machine != nil else { return }
                    self.perform(self.machine!.networkChanged(now: .now()))
                }
            }
        }
        do {
            try await promise.futureResult.get()
        } catch let error as PeerError {
            throw error
        } catch {
            throw .stopped
        }
    }

    /// Makes one API call of the machine and waits for its completion.
    func call(_ body: @escaping @Sendable (inout CheckpointClientMachine, NIODeadline)
        -> (token: CheckpointRequestToken, actions: [CheckpointClientAction])) async -> CallResult {
        await withCheckedContinuation { continuation in
            eventLoop.execute {
                guard !self.isClosed, self.machine != nil else {
                    continuation.resume(returning: .failure(.stopped))
                    return
                }
                let (token, actions) = body(&self.machine!, .now())
                self.waiters[token] = continuation
                self.perform(actions)
            }
        }
    }

    /// Unregisters (best effort) and closes the channel; returns once closed.
    func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            eventLoop.execute {
                guard !self.isClosed else {
                    continuation.resume()
                    return
                }
                self.stopWaiters.append(continuation)
                guard self.machine != nil else { return self.closeNow(reason: .requested) }
                self.perform(self.machine!.stop(now: .now()))
            }
        }
    }

    /// Closes at once without unregistering (from any thread; `Peer.deinit`, failed start).
    func close() {
        eventLoop.execute {
            self.closeNow(reason: .requested)
        }
    }

    // MARK: on the event loop

    fileprivate func received(_ envelope: AddressedEnvelope<ByteBuffer>) {
        eventLoop.assertInEventLoop()
        guard !isClosed, machine != nil, let source = STUNAddress(envelope.remoteAddress),
              let index = supernodes.firstIndex(where: { $0.endpoint == source }) else { return }
        guard control.datagramArrived(from: index) else { return }
        perform(machine!.datagramReceived(envelope.data, from: index, now: .now()))
    }

    /// A control packet from supernode `index` over TCP.
    func controlReceived(_ bytes: ByteBuffer, from index: Int) {
        eventLoop.assertInEventLoop()
        guard !isClosed, machine != nil else { return }
        perform(machine!.datagramReceived(bytes, from: index, now: .now()))
    }

    /// Sends a control packet to supernode `index` over UDP. A send the network refuses (a
    /// firewall's EPERM, ENETUNREACH during a roam, ENOBUFS) is a lost datagram: the machine
    /// retransmits, and a start that gives up says what the sends met.
    func sendDatagram(_ bytes: ByteBuffer, to index: Int) {
        guard let socket else { return }
        let failure = socket.send(bytes, to: supernodes[index].endpoint)
        if startPromise != nil { sendTally.record(failure, to: supernodes[index].endpoint) }
    }

    fileprivate func channelClosed() {
        eventLoop.assertInEventLoop()
        channel = nil
        socket = nil
        closeNow(reason: .requested)
    }

    private func perform(_ actions: [CheckpointClientAction]) {
        eventLoop.assertInEventLoop()
        for action in actions {
            guard !isClosed else { return }
            switch action {
            case .send(let bytes, let index):
                control.send(bytes, to: index)
            case .scheduleWakeUp(let deadline):
                timer?.cancel()
                timer = eventLoop.scheduleTask(deadline: deadline) {
                    self.timer = nil
                    guard !self.isClosed else { return }
                    self.perform(self.machine!.wakeUp(now: .now()))
                }
            case .completed(let token, let result):
                waiters.removeValue(forKey: token)?.resume(returning: result)
            case .event(let event):
                handle(event)
            }
        }
    }

    private func handle(_ event: CheckpointClientEvent) {
        switch event {
        case .registered(let registration):
            startTimer?.cancel()
            startTimer = nil
            startPromise?.succeed()
            startPromise = nil
            events.yield(.registered(observed: registration.observed, supernode: supernodes[registration.supernode].address))
        case .reregistered(let registration, _):
            events.yield(.reregistered(observed: registration.observed, supernode: supernodes[registration.supernode].address))
        case .disconnected(let reason):
            events.yield(.disconnected(reason: describe(reason)))
        case .message(let message):
            events.yield(.message(from: message.from, text: message.text))
        case .status(let status):
            let online = status.change == .online || status.change == .metadataChanged
            events.yield(.status(peer: status.peer, online: online, change: status.change, metadata: status.metadata))
        case .connectRequest(let request):
            events.yield(.connectRequest(request))
        case .connectAnswer(let decision):
            events.yield(.lateConnectAnswer(decision))
        case .messageOutcome(let outcome):
            events.yield(.lateMessageOutcome(outcome))
        case .traversalPlan(let plan):
            traversals.deliver(plan)
        case .networkStatus(let status):
            events.yield(.networkStatus(status))
        case .supernodesLearned(let learned):
            learn(learned)
        case .stopped(let reason):
            closeNow(reason: reason)
        }
    }

    /// Supernodes of the network named by a registration take the machine's next indices. The
    /// machine only lists IP literals of this socket's family, so each has a socket address; one
    /// that had none would still take its index (it is never reached, the machine moves on).
    private func learn(_ learned: [SupernodeAddress]) {
        for address in learned {
            guard let endpoint = address.endpoint, (try? endpoint.socketAddress()) != nil,
                  let tcp = try? endpoint.with(port: address.tcpPort).socketAddress() else {
                preconditionFailure("the client machine learned \(address), which has no IP endpoint")
            }
            supernodes.append(PeerNetwork.Resolved(address: address, endpoint: endpoint))
            control.addSupernode(tcpAddress: tcp)
        }
    }

    private func describe(_ reason: CheckpointDisconnectReason) -> String {
        if case .supernodeUnreachable(let index) = reason {
            return "supernode \(supernodes[index].address) (\(supernodes[index].endpoint)) did not complete a handshake; trying the next"
        }
        return "\(reason)"
    }

    private func failStart(_ error: PeerError) {
        guard let promise = startPromise else { return }
        startPromise = nil
        promise.fail(error)
        closeNow(reason: .requested)
    }

    private func closeNow(reason: CheckpointStopReason) {
        guard !isClosed else { return }
        if let promise = startPromise {
            startPromise = nil
            switch reason {
            case .requested: promise.fail(PeerError.stopped)
            case .superseded: promise.fail(PeerError.superseded)
            case .registrationRefused(let failure): promise.fail(PeerError.registrationRefused(failure))
            }
        }
        isClosed = true
        if let networkWatch { NetworkWatcher.shared.stop(networkWatch) }
        networkWatch = nil
        control.close()
        timer?.cancel()
        timer = nil
        startTimer?.cancel()
        startTimer = nil
        for waiter in waiters.values { waiter.resume(returning: .failure(.stopped)) }
        waiters.removeAll()
        events.yield(.stopped(reason))
        events.finish()
        let finished = stopWaiters
        stopWaiters = []
        guard let channel else {
            finished.forEach { $0.resume() }
            return
        }
        self.channel = nil
        socket = nil
        channel.close().whenComplete { _ in finished.forEach { $0.resume() } }
    }
}

/// Hands each datagram of the peer's socket to its driver.
final class PeerDatagramHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let driver: PeerDriver

    init(driver: PeerDriver) {
        self.driver = driver
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        driver.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        driver.channelClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Per-datagram errors (ICMP port unreachable and the like) are loss to the machine,
        // which retransmits or fails over. Keep the socket open.
    }
}
