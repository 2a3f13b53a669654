import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PeerwaySTUN

/// A loopback UDP socket for tests: send datagrams, await the next one with a timeout.
final class UDPTestSocket: Sendable {
    let channel: any Channel
    private let inbox: Inbox

    final class Inbox: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let state = NIOLockedValueBox<(queue: [AddressedEnvelope<ByteBuffer>], waiters: [CheckedContinuation<AddressedEnvelope<ByteBuffer>?, Never>])>(([], []))

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let waiter = state.withLockedValue { s -> CheckedContinuation<AddressedEnvelope<ByteBuffer>?, Never>? in
                if s.waiters.isEmpty {
                    s.queue.append(envelope)
                    return nil
                }
                return s.waiters.removeFirst()
            }
            waiter?.resume(returning: envelope)
        }
    }

    private init(channel: any Channel, inbox: Inbox) {
        self.channel = channel
        self.inbox = inbox
    }

    /// Binds a socket on `host` (default 127.0.0.1), port 0.
    static func bind(host: String = "127.0.0.1", port: Int = 0) async throws -> UDPTestSocket {
        let inbox = Inbox()
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(inbox) } }
            .bind(host: host, port: port).get()
        return UDPTestSocket(channel: channel, inbox: inbox)
    }

    var localAddress: STUNAddress { STUNAddress(channel.localAddress!)! }

    func send(_ bytes: ByteBuffer, to address: STUNAddress) async throws {
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: try address.socketAddress(), data: bytes))
    }

    func send(_ message: STUNMessage, to address: STUNAddress, options: STUNEncodingOptions = .plain) async throws {
        try await send(message.encoded(options: options), to: address)
    }

    /// The next datagram, or nil when none arrives within `timeout`.
    func receive(timeout: TimeAmount = .seconds(2)) async -> (from: STUNAddress, data: ByteBuffer)? {
        let envelope: AddressedEnvelope<ByteBuffer>? = await withCheckedContinuation { continuation in
            let ready = inbox.state.withLockedValue { s -> AddressedEnvelope<ByteBuffer>?? in
                if !s.queue.isEmpty { return .some(s.queue.removeFirst()) }
                s.waiters.append(continuation)
                return .none
            }
            if case .some(let e) = ready {
                continuation.resume(returning: e)
                return
            }
            channel.eventLoop.scheduleTask(in: timeout) {
                // Time out the oldest waiter still pending.
                let w = self.inbox.state.withLockedValue { s -> CheckedContinuation<AddressedEnvelope<ByteBuffer>?, Never>? in
                    s.waiters.isEmpty ? nil : s.waiters.removeFirst()
                }
                w?.resume(returning: nil)
            }
        }
        guard let envelope else { return nil }
        return (STUNAddress(envelope.remoteAddress)!, envelope.data)
    }

    /// Sends a request and decodes the answer, or nil on timeout.
    func transact(_ request: STUNMessage, to address: STUNAddress, timeout: TimeAmount = .seconds(2)) async throws -> (from: STUNAddress, message: STUNMessage)? {
        try await send(request, to: address)
        guard let (from, data) = await receive(timeout: timeout) else { return nil }
        return (from, try STUNMessage(datagram: data))
    }

    func close() async {
        try? await channel.close()
    }
}
