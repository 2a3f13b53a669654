#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPeerwayLinux
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PeerwayCheckpoint
import PeerwayIndex
import PeerwaySTUN
import ServiceLifecycle

/*
 The CHECKPOINT service: one UDP socket and one thread that owns the pure `CheckpointMachine`.

     poll(socket, stop pipe; timeout = time to the next tick)
       -> recvmmsg up to `batch` datagrams
       -> machine.receive(each) -> actions (sealed answers, pushes)
       -> actions copied into send slots, sendmmsg per batch
       -> machine.tick every `CheckpointMachine.tickMillis` (expiry, push retransmission)

 The machine is touched by this thread only, so it needs no lock; counters and sizes are
 published to a lock-protected snapshot after every pass for `statistics()`.
*/

/// Configuration of the CHECKPOINT service.
public struct CheckpointServerConfiguration: Sendable {
    /// Address to bind; port 0 picks a free port (tests).
    public var listen: STUNAddress
    /// The address peers are told to dial when it differs from `listen` (a wildcard bind, NAT).
    public var advertisedHost: String?
    public var checkpoint: CheckpointConfiguration
    /// Where the control channel over TCP listens (`CheckpointTCPListener.swift`); `nil`: no TCP.
    /// Port 0 on the same IP as `listen`: the UDP port's number when TCP can have it, else any.
    public var tcp: STUNAddress?
    /// Takes a TCP connection whose first 4 bytes are "PWRB" (a relay bind): its non-blocking
    /// socket (now the callee's to close) and those 4 bytes. Called on the checkpoint's thread:
    /// return quickly. `nil`: such connections are closed.
    public var relayHandoff: (@Sendable (Int32, [UInt8]) -> Void)?
    /// The INDEX peers reach over their control channel (`nil`: INDEX requests are refused with
    /// `unavailable`). The checkpoint keeps its `presence` table (read by the management API too).
    public var index: IndexControlService?
    /// The other supernodes of its network (`nil`: this supernode is alone).
    public var cluster: CheckpointClusterBridge?

    public init(listen: STUNAddress, advertisedHost: String? = nil, checkpoint: CheckpointConfiguration,
                tcp: STUNAddress? = nil, relayHandoff: (@Sendable (Int32, [UInt8]) -> Void)? = nil,
                index: IndexControlService? = nil, cluster: CheckpointClusterBridge? = nil) {
        self.cluster = cluster
        self.listen = listen
        self.advertisedHost = advertisedHost
        self.checkpoint = checkpoint
        self.tcp = tcp
        self.relayHandoff = relayHandoff
        self.index = index
        self.checkpoint.index = index != nil
        self.checkpoint.clustered = cluster != nil
    }
}

/// Limits of the checkpoint's datagram loop.
enum CheckpointEngineLimits {
    /// Datagrams moved per recvmmsg/sendmmsg call.
    static let batch = 64
    /// Receive batches handled before the loop checks its timers again.
    static let batchesPerPass = 16
    /// Kernel receive and send buffer of the socket.
    static let socketBufferBytes: Int32 = 8 << 20
    /// Bytes per receive slot: the largest control datagram plus one, so oversize is detected.
    static let receiveSlotSize = ControlLimits.maximumDatagramBytes + 1
    /// Bytes per send slot.
    static let sendSlotSize = ControlLimits.maximumDatagramBytes
}

/// What a running checkpoint reports.
public struct CheckpointStatistics: Sendable, Equatable {
    public var counters = CheckpointCounters()
    public var sessions = 0
    public var registered = 0
    public var pendingPushes = 0
    /// Peers registered on the other supernodes of the network, in this one's directory.
    public var remotePeers = 0
    /// What the HANDSHAKE has done.
    public var handshake = HandshakeCounters()
    /// Datagrams the kernel refused to send.
    public var sendFailures = 0
    /// Datagrams over the size limit, dropped.
    public var oversize = 0
    /// The control channel over TCP.
    public var tcp = CheckpointTCPStatistics()
    /// Peers that watch others, and peers watched (`CheckpointMachine.watcherCount`, `watchedCount`).
    public var watchers = 0, watchedPeers = 0
}

/// The CHECKPOINT service (a ServiceLifecycle `Service`): presence, lookup, search, messages,
/// watches and connection negotiation for registered peers, over UDP.
public final class CheckpointServer: Service, Sendable {
    public let configuration: CheckpointServerConfiguration
    private let logger: Logger
    private let state = NIOLockedValueBox<State>(State())

    private struct State {
        var worker: CheckpointWorker?
        var bound: STUNAddress?
        var boundTCP: STUNAddress?
    }

    public init(configuration: CheckpointServerConfiguration, logger: Logger = Logger(label: "peerway.checkpoint")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The bound address, once started.
    public var boundAddress: STUNAddress? { state.withLockedValue { $0.bound } }

    /// The bound address of the control channel over TCP, once started with one.
    public var boundTCPAddress: STUNAddress? { state.withLockedValue { $0.boundTCP } }

    /// The address peers dial (`peerway://key@host:port`, `?tcp=PORT` when the TCP port
    /// differs), once started.
    public var address: SupernodeAddress? {
        guard let bound = boundAddress else { return nil }
        return SupernodeAddress(publicKey: configuration.checkpoint.key.publicKey,
                                host: configuration.advertisedHost ?? bound.ipString, port: bound.port,
                                tcpPort: boundTCPAddress?.port)
    }

    /// Binds the socket and starts the thread; returns the address peers dial.
    @discardableResult
    public func start() throws -> SupernodeAddress {
        let (fd, port) = try STUNSocket.bind(configuration.listen, bufferBytes: CheckpointEngineLimits.socketBufferBytes,
                                                   reusePort: false)
        // SO_RCVBUF is capped by net.core.rmem_max; with CAP_NET_ADMIN take the full size, so a
        // pause of the loop (a large allocation, a burst of registrations) is absorbed, not dropped.
        var force = CheckpointEngineLimits.socketBufferBytes
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &force, socklen_t(MemoryLayout<Int32>.size))
        var tcp: (fd: Int32, port: UInt16)?
        if let address = configuration.tcp {
            do { tcp = try CheckpointTCPConnections.listen(address, udp: configuration.listen.with(port: port)) } catch {
                close(fd)
                throw error
            }
        }
        let worker: CheckpointWorker
        do {
            var checkpoint = configuration.checkpoint
            checkpoint.index = configuration.index != nil
            checkpoint.clustered = configuration.cluster != nil
            worker = try CheckpointWorker(fd: fd, configuration: checkpoint,
                                          tcp: tcp.map { CheckpointTCPConnections(listener: $0.fd, relayHandoff: configuration.relayHandoff) },
                                          index: try configuration.index.map { try CheckpointIndexBridge(service: $0) },
                                          cluster: configuration.cluster)
        } catch {
            close(fd)
            if let tcp { close(tcp.fd) }
            throw error
        }
        worker.start()
        state.withLockedValue {
            $0.worker = worker
            $0.bound = configuration.listen.with(port: port)
            $0.boundTCP = tcp.flatMap { t in configuration.tcp?.with(port: t.port) }
        }
        let address = self.address!
        logger.info("CHECKPOINT listening", metadata: ["address": "\(address)"])
        return address
    }

    /// Stops the thread and closes the socket. Registered peers notice at their next keepalive.
    public func stop() async {
        let worker = state.withLockedValue { s -> CheckpointWorker? in
            defer { s.worker = nil }
            return s.worker
        }
        await worker?.stop()
    }

    /// `Service`: runs until graceful shutdown, then stops.
    public func run() async throws {
        if boundAddress == nil { try start() }
        try? await gracefulShutdown()
        await stop()
    }

    /// The latest published figures.
    public func statistics() -> CheckpointStatistics {
        state.withLockedValue { $0.worker }?.statistics ?? CheckpointStatistics()
    }
}

/// The checkpoint's thread: its socket, its machine, its buffers.
final class CheckpointWorker: @unchecked Sendable {
    private let fd: Int32
    private let thread: ServiceThread
    private var machine: CheckpointMachine<InMemoryLiveDirectory>
    private let published = NIOLockedValueBox(CheckpointStatistics())
    /// The control channel over TCP, if any (used by the loop only).
    private let tcp: CheckpointTCPConnections?
    /// The INDEX, if any.
    private let index: CheckpointIndexBridge?
    /// The other supernodes of the network, if any.
    private let cluster: CheckpointClusterBridge?

    init(fd: Int32, configuration: CheckpointConfiguration, tcp: CheckpointTCPConnections? = nil,
         index: CheckpointIndexBridge? = nil, cluster: CheckpointClusterBridge? = nil) throws {
        self.fd = fd
        self.tcp = tcp
        self.index = index
        self.cluster = cluster
        thread = try ServiceThread()
        machine = CheckpointMachine(configuration: configuration, directory: InMemoryLiveDirectory(), now: .now())
    }

    var statistics: CheckpointStatistics { published.withLockedValue { $0 } }

    func start() {
        thread.start(name: "peerway-checkpoint") { [self] in self.loop() }
    }

    func stop() async {
        await thread.stop()
        close(fd)
        index?.close()
    }

    private func loop() {
        let batch = CheckpointEngineLimits.batch
        let recvSlot = CheckpointEngineLimits.receiveSlotSize
        let sendSlot = CheckpointEngineLimits.sendSlotSize
        let addressSlot = Int(CPEERWAY_ADDRESS_SLOT)
        let recvBuffer = UnsafeMutableRawPointer.allocate(byteCount: batch * recvSlot, alignment: 16)
        let recvAddresses = UnsafeMutableRawPointer.allocate(byteCount: batch * addressSlot, alignment: 16)
        let sendBuffers = UnsafeMutableRawPointer.allocate(byteCount: batch * sendSlot, alignment: 16)
        let sendAddresses = UnsafeMutableRawPointer.allocate(byteCount: batch * addressSlot, alignment: 16)
        defer {
            recvBuffer.deallocate()
            recvAddresses.deallocate()
            sendBuffers.deallocate()
            sendAddresses.deallocate()
        }
        var recvLengths = [UInt32](repeating: 0, count: batch)
        var truncated = [UInt8](repeating: 0, count: batch)
        var sendLengths = [UInt32](repeating: 0, count: batch)
        var pending = 0
        var sendFailures = 0, oversize = 0
        var actions: [CheckpointAction] = []
        actions.reserveCapacity(batch * 2)
        var datagram = ByteBuffer()
        datagram.reserveCapacity(recvSlot)
        // Slots: the socket, the stop pipe, the INDEX's and the cluster's wake pipes (or nothing:
        // -1), then TCP.
        var polls = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: thread.stopDescriptor, events: Int16(POLLIN), revents: 0),
                     pollfd(fd: index?.doorbell.descriptor ?? -1, events: Int16(POLLIN), revents: 0),
                     pollfd(fd: cluster?.doorbell.descriptor ?? -1, events: Int16(POLLIN), revents: 0)]
        let firstTCPSlot = 4
        let tick = CheckpointMachine<InMemoryLiveDirectory>.tickMillis
        var nextTick = NIODeadline.now() + .milliseconds(Int64(tick))

        // Statistics are published before the answers leave, so a peer that got its answer sees
        // figures that include it.
        func publish() {
            let snapshot = CheckpointStatistics(
                counters: machine.counters, sessions: machine.sessionCount, registered: machine.registeredCount,
                pendingPushes: machine.pendingPushes, remotePeers: machine.remotePeerCount, handshake: machine.handshakeCounters, sendFailures: sendFailures, oversize: oversize,
                tcp: tcp?.statistics ?? CheckpointTCPStatistics(), watchers: machine.watcherCount, watchedPeers: machine.watchedCount)
            published.withLockedValue { $0 = snapshot }
        }
        func flush() {
            publish()
            guard pending > 0 else { return }
            // sendmmsg stops at the first datagram the kernel refuses (an unreachable peer, a
            // full buffer): count that one and go on with the rest of the batch.
            var offset = 0
            while offset < pending {
                let sent = Int(sendLengths.withUnsafeBufferPointer { lengths in
                    cpeerway_send_to_batch(fd, sendBuffers + offset * sendSlot, sendSlot, lengths.baseAddress! + offset,
                                           sendAddresses + offset * addressSlot, UInt32(pending - offset))
                })
                if sent > 0 { offset += sent } else { sendFailures += 1; offset += 1 }
            }
            pending = 0
        }
        // Cluster frames that found no link: handed back to the machine after the pass.
        var unsent: [(ClusterFrame, ClusterNode)] = []
        // Supernodes whose link is up, or down but not yet declared out.
        var linked: Set<ClusterNode> = []
        func emit() {
            for action in actions {
                let bytes: ByteBuffer, to: PeerEndpoint
                switch action {
                case .send(let b, let t): (bytes, to) = (b, t)
                case .index(let context): index?.call(context); continue
                case .presence(let peer, let online): index?.presenceChanged(peer, online: online); continue
                case .cluster(let frame, let node):
                    if let cluster, !cluster.send(frame, to: node), let node { unsent.append((frame, node)) }
                    continue
                }
                // To a TCP connection's remote address: framed onto that connection.
                if let tcp, tcp.send(bytes, to: to) { continue }
                guard bytes.readableBytes <= sendSlot else { sendFailures += 1; continue }
                let slot = sendBuffers + pending * sendSlot
                bytes.withUnsafeReadableBytes { slot.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                sendLengths[pending] = UInt32(bytes.readableBytes)
                STUNSocket.write(to, into: sendAddresses + pending * addressSlot)
                pending += 1
                if pending == batch { flush() }
            }
            actions.removeAll(keepingCapacity: true)
            while !unsent.isEmpty {
                let failed = unsent
                unsent.removeAll()
                let now = NIODeadline.now()
                for (frame, node) in failed { machine.clusterUnsent(frame, to: node, now: now, into: &actions) }
                emit()
            }
        }

        defer { tcp?.closeAll() }
        while true {
            if let tcp {
                polls.removeSubrange(firstTCPSlot...)
                tcp.pollDescriptors(into: &polls)
            }
            let remaining = (nextTick - NIODeadline.now()).nanoseconds / 1_000_000
            let ready = poll(&polls, nfds_t(polls.count), Int32(clamping: max(0, remaining)))
            if ready < 0, errno != EINTR { break }
            if cluster != nil { machine.wallClockMillis = UInt64(max(0, Date().timeIntervalSince1970 * 1000)) }
            if polls[1].revents != 0 {
                // Stopping: tell every registered peer, so it re-handshakes now (failover).
                machine.farewell(into: &actions)
                emit()
                flush()
                break
            }
            if ready > 0, polls[0].revents != 0 {
                for _ in 0..<CheckpointEngineLimits.batchesPerPass {
                    let got = Int(recvLengths.withUnsafeMutableBufferPointer { lengths in
                        truncated.withUnsafeMutableBufferPointer { trunc in
                            cpeerway_receive_from_batch(fd, recvBuffer, recvSlot, UInt32(batch), lengths.baseAddress,
                                                        recvAddresses, trunc.baseAddress)
                        }
                    })
                    guard got > 0 else { break }
                    let now = NIODeadline.now()
                    for i in 0..<got {
                        guard let source = STUNSocket.read(recvAddresses + i * addressSlot) else { continue }
                        if truncated[i] != 0 || Int(recvLengths[i]) > ControlLimits.maximumDatagramBytes {
                            oversize += 1
                            continue
                        }
                        datagram.clear()
                        datagram.writeBytes(UnsafeRawBufferPointer(start: recvBuffer + i * recvSlot, count: Int(recvLengths[i])))
                        machine.receive(datagram, from: source, now: now, into: &actions)
                        emit()
                    }
                    flush()
                    if got < batch { break }
                }
            }
            if ready > 0, let index, polls[2].revents != 0 {
                let now = NIODeadline.now()
                for inbound in index.drain() {
                    switch inbound {
                    case .answer(let context, let result): machine.answerIndex(context, with: result, now: now, into: &actions)
                    case .notify(let note): machine.pushNetworkStatus(note.status, to: note.to, now: now, into: &actions)
                    case .broadcast(let event): _ = cluster?.send(.index(event), to: nil)
                    }
                }
                emit()
                flush()
            }
            if ready > 0, let cluster, polls[3].revents != 0 {
                let now = NIODeadline.now()
                for inbound in cluster.drain() {
                    switch inbound {
                    // The INDEX's, after the presence changes of the frames before it.
                    case .frame(.index(let event), _): index?.clusterEvent(event)
                    case .frame(let frame, let node): machine.clusterReceive(frame, from: node, now: now, into: &actions)
                    case .up(let node):
                        // Up again without having been out: INDEX events it sent meanwhile may be lost.
                        if !linked.insert(node).inserted { index?.linkRestored() }
                        machine.clusterNodeUp(node, now: now, into: &actions)
                    case .down(let node):
                        linked.remove(node)
                        machine.clusterNodeDown(node, now: now, into: &actions)
                    case .supernodes(let others): machine.setNetworkSupernodes(others)
                    }
                    emit()
                }
                flush()
            }
            if ready > 0, let tcp {
                tcp.handle(polls[firstTCPSlot...], now: .now()) { frame, source in
                    machine.receive(frame, from: source, now: .now(), into: &actions)
                    emit()
                }
                flush()
            }
            let now = NIODeadline.now()
            if now >= nextTick {
                machine.tick(now: now, into: &actions)
                tcp?.expire(now: now)
                emit()
                flush()
                nextTick = now + .milliseconds(Int64(tick))
            }
        }
    }
}
