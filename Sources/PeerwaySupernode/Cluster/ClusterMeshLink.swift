import Logging
import NIOConcurrencyHelpers
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN

/// Why a mesh could not start or why one of its links closed (logged with the peer's key).
public enum ClusterMeshError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The link protocol failed: refused (wrong target, not a member), tampered, forged, malformed.
    case link(ClusterLinkError)
    /// The handshake did not complete within ``ClusterLinkLimits/handshakeTimeout``.
    case handshakeTimeout
    /// Nothing was heard on an up link for ``ClusterLinkLimits/idleTimeout``.
    case idleTimeout
    /// The handshake completed but the key is not (or no longer) a member, or the mesh stopped.
    case notAMember([UInt8])
    /// A newer link to the same supernode replaced this one.
    case superseded
    /// A send would have queued more than ``ClusterLinkLimits/maximumQueuedBytes`` on the link.
    case queueOverflow(queuedBytes: Int)
    /// A member's mesh address is not `host:port`.
    case badAddress(String)
    /// The TCP connect to a member failed.
    case connectFailed(address: String, cause: String)
    /// The connection failed (reset, write error...).
    case io(String)
    /// The listener could not be opened.
    case bindFailed(address: String, cause: String)
    /// `start()` was called twice, or after `stop()`.
    case alreadyStarted

    public var description: String {
        switch self {
        case .link(let error): return "cluster link protocol: \(error)"
        case .handshakeTimeout: return "no handshake within \(ClusterLinkLimits.handshakeTimeout.clusterSeconds)"
        case .idleTimeout: return "nothing heard for \(ClusterLinkLimits.idleTimeout.clusterSeconds)"
        case .notAMember(let key): return "supernode \(key.clusterMeshHex) is not a member of the network"
        case .superseded: return "replaced by a newer link to the same supernode"
        case .queueOverflow(let n):
            return "\(n) bytes queued for a peer that does not read (limit \(ClusterLinkLimits.maximumQueuedBytes))"
        case .badAddress(let text): return "mesh address \"\(text)\" is not host:port"
        case .connectFailed(let address, let cause): return "connect to \(address) failed: \(cause)"
        case .io(let cause): return "connection failed: \(cause)"
        case .bindFailed(let address, let cause): return "cannot listen on \(address): \(cause)"
        case .alreadyStarted: return "the cluster mesh was already started (or stopped)"
        }
    }
}

/// One TCP connection of the mesh, from the channel initializer until it closed: the handle
/// `send` uses from any thread (the channel and its queued-byte count).
final class ClusterMeshConnection: Sendable {
    let channel: any Channel
    /// The member this connection dialed, or nil for an accepted one.
    let dialed: [UInt8]?
    /// Bytes handed to the channel and not yet written to the socket.
    let queued = NIOLockedValueBox(0)

    init(channel: any Channel, dialed: [UInt8]?) {
        self.channel = channel
        self.dialed = dialed
    }

    /// Queues `payload` for sealing on the loop; false (and the link closed) when the queue would
    /// exceed ``ClusterLinkLimits/maximumQueuedBytes``.
    func enqueue(_ payload: ByteBuffer) -> Result<Void, ClusterMeshError> {
        let cost = payload.readableBytes + ClusterLinkLimits.recordOverheadBytes
        let overflow: Int? = queued.withLockedValue { q in
            guard q + cost <= ClusterLinkLimits.maximumQueuedBytes else { return q + cost }
            q += cost
            return nil
        }
        if let overflow {
            channel.pipeline.fireUserInboundEventTriggered(ClusterMeshHandler.Close(reason: .queueOverflow(queuedBytes: overflow)))
            return .failure(.queueOverflow(queuedBytes: overflow))
        }
        let promise = channel.eventLoop.makePromise(of: Void.self)
        let queued = self.queued
        promise.futureResult.whenComplete { _ in queued.withLockedValue { $0 -= cost } }
        channel.writeAndFlush(payload, promise: promise)
        return .success(())
    }
}

/// The pipeline's only handler: drives a `ClusterLink` (handshake, records), seals outgoing
/// payloads, keeps the link alive and closes it on any failure, timeout or overflow.
final class ClusterMeshHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Never
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A user event asking the handler to close the link for `reason` (from another thread).
    struct Close: Sendable { let reason: ClusterMeshError }

    private let mesh: ClusterMesh
    private let connection: ClusterMeshConnection
    private var link: ClusterLink
    private var logger: Logger
    private var handshakeTimer: Scheduled<Void>?
    private var keepaliveTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    private var lastHeard = NIODeadline.now()
    private var closing = false

    init(mesh: ClusterMesh, connection: ClusterMeshConnection, link: ClusterLink, logger: Logger) {
        self.mesh = mesh
        self.connection = connection
        self.link = link
        self.logger = logger
        if let peer = link.peerKey { self.logger[metadataKey: "cluster.peer"] = "\(peer.clusterMeshHex)" }
        self.logger[metadataKey: "cluster.role"] = "\(link.role == .dialer ? "dialer" : "acceptor")"
    }

    func channelActive(context: ChannelHandlerContext) {
        lastHeard = .now()
        handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: ClusterLinkLimits.handshakeTimeout) {
            [self] in fail(context, .handshakeTimeout)
        }
        if link.role == .dialer { context.writeAndFlush(wrapOutboundOut(link.hello), promise: nil) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        lastHeard = .now()
        let actions: [ClusterLinkAction]
        do { actions = try link.receive(unwrapInboundIn(data)) } catch {
            fail(context, .link(error))
            return
        }
        for action in actions {
            switch action {
            case .send(let bytes):
                context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
            case .established(let peer):
                established(context, peer: peer)
                if closing { return }
            case .deliver(let payload):
                mesh.deliver(payload, from: link.peerKey ?? [])
            }
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        do {
            context.write(wrapOutboundOut(try link.seal(unwrapOutboundIn(data))), promise: promise)
        } catch {
            promise?.fail(ClusterMeshError.link(error))
            if error == .counterExhausted { fail(context, .link(error)) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let close = event as? Close { fail(context, close.reason) } else { context.fireUserInboundEventTriggered(event) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context, .io("\(error)"))
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !closing {
            closing = true
            if link.isEstablished {
                logger.info("cluster link closed by the other side")
            } else {
                // An acceptor closes without a word on a refusal (not a member there, or not the key we expect).
                logger.info("cluster link closed by the other side during the handshake (refused?)")
            }
        }
        cancelTimers()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
    }

    // MARK: states

    private func established(_ context: ChannelHandlerContext, peer: [UInt8]) {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        logger[metadataKey: "cluster.peer"] = "\(peer.clusterMeshHex)"
        guard mesh.linkEstablished(connection, peer: peer) else {
            fail(context, .notAMember(peer))
            return
        }
        lastHeard = .now()
        scheduleKeepalive(context)
        scheduleIdleCheck(context)
    }

    private func scheduleKeepalive(_ context: ChannelHandlerContext) {
        keepaliveTimer = context.eventLoop.assumeIsolated().scheduleTask(in: ClusterLinkLimits.keepaliveInterval) { [self] in
            guard !closing else { return }
            if let keepalive = try? link.seal(ByteBuffer()) {
                context.writeAndFlush(wrapOutboundOut(keepalive), promise: nil)
            }
            scheduleKeepalive(context)
        }
    }

    private func scheduleIdleCheck(_ context: ChannelHandlerContext) {
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: lastHeard + ClusterLinkLimits.idleTimeout) { [self] in
            guard !closing else { return }
            if NIODeadline.now() - lastHeard >= ClusterLinkLimits.idleTimeout {
                fail(context, .idleTimeout)
            } else {
                scheduleIdleCheck(context)
            }
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ reason: ClusterMeshError) {
        guard !closing else { return }
        closing = true
        cancelTimers()
        switch reason {
        case .superseded:
            logger.info("cluster link closed", metadata: ["cluster.reason": "\(reason)"])
        case .link(.dialerNotAllowed), .link(.wrongAcceptor), .notAMember:
            logger.notice("cluster link refused", metadata: ["cluster.reason": "\(reason)"])
        default:
            logger.warning("cluster link failed", metadata: ["cluster.reason": "\(reason)",
                                                              "cluster.up": "\(link.isEstablished)"])
        }
        context.close(promise: nil)
    }

    private func cancelTimers() {
        handshakeTimer?.cancel()
        keepaliveTimer?.cancel()
        idleTimer?.cancel()
        handshakeTimer = nil
        keepaliveTimer = nil
        idleTimer = nil
    }
}

extension Collection where Element == UInt8 {
    /// The first 8 bytes in hex and an ellipsis: enough to tell supernodes apart in logs.
    var clusterMeshHex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in prefix(8) { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self) + (count > 8 ? "…" : "")
    }
}

extension TimeAmount {
    var clusterSeconds: String { "\(Double(nanoseconds) / 1e9) s" }
}
