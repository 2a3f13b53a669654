import NIOCore

/// The first handler of a TCP connection to an HTTP proxy: sends `CONNECT target` when the
/// connection is up, reads the answer (`HTTPConnect.parse`), and once the tunnel is open removes
/// itself, passing on whatever came after the answer, and succeeds `established`. A refusal, a
/// malformed answer or no answer within `HTTPConnect.answerTimeoutMillis` fails `established`
/// with a `PeerError` that says what the proxy did, and closes the connection.
final class HTTPConnectHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let target: String
    private let proxy: HTTPProxy
    private let established: EventLoopPromise<Void>
    private var received: [UInt8] = []
    private var done = false
    private var timeout: Scheduled<Void>?

    init(target: String, proxy: HTTPProxy, established: EventLoopPromise<Void>) {
        self.target = target
        self.proxy = proxy
        self.established = established
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard timeout == nil, !done else { return }
        let bytes = HTTPConnect.request(target: target, credentials: proxy.credentials)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timeout = context.eventLoop.scheduleTask(in: .milliseconds(Int64(HTTPConnect.answerTimeoutMillis))) {
            let (handler, context) = loopBound.value
            handler.fail(context, "the proxy \(handler.proxy) did not answer CONNECT \(handler.target) within \(HTTPConnect.answerTimeoutMillis) ms")
        }
    }

    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else {
            context.fireChannelRead(data)
            return
        }
        var buffer = unwrapInboundIn(data)
        received += buffer.readBytes(length: buffer.readableBytes) ?? []
        switch HTTPConnect.parse(received) {
        case .incomplete:
            return
        case .established(let headerBytes):
            done = true
            timeout?.cancel()
            let rest = Array(received[headerBytes...])
            received = []
            established.succeed(())
            if !rest.isEmpty { context.fireChannelRead(wrapInboundOut(context.channel.allocator.buffer(bytes: rest))) }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        case .refused(let status, let reason):
            fail(context, HTTPConnect.explain(status, reason, target: target, proxy: proxy))
        case .malformed(let why):
            fail(context, "the proxy \(proxy) answered CONNECT \(target) with something else than HTTP: \(why)")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { fail(context, "the proxy \(proxy) closed the connection before answering CONNECT \(target)") }
        context.fireChannelInactive()
    }

    private func fail(_ context: ChannelHandlerContext, _ why: String) {
        guard !done else { return }
        done = true
        timeout?.cancel()
        established.fail(PeerError.proxyFailed(why))
        context.close(promise: nil)
    }
}
