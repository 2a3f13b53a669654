import NIOCore
import NIOPosix
import PeerwaySTUN
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A UDP socket that NIO reads and `send` writes directly with `sendto`, so that a send the
/// network refuses is one lost datagram and nothing more.
///
/// A NIO `DatagramChannel` closes itself when a write fails with anything but EMSGSIZE or
/// EHOSTUNREACH: a single EPERM from a firewall that drops a packet, or an ENETUNREACH while a
/// network goes away, would end the socket and everything built on it (a starting peer stopped
/// with "the peer is stopped"). Here the channel only reads; nothing is ever written through it.
///
/// The socket is made here (non-blocking, close-on-exec), handed to NIO, and from then on owned
/// by the channel: `send` uses its descriptor only on the channel's event loop while the channel
/// is active, so it never reaches a closed descriptor or one reused by another socket.
final class LossyDatagramSocket: @unchecked Sendable {
    /// The channel that reads the socket (its handlers get `AddressedEnvelope<ByteBuffer>`s).
    let channel: any Channel
    /// The socket's address.
    let localAddress: STUNAddress
    private let socket: TunnelSocket
    private let faults: SendFaults?
    /// Sends so far (read and written on the event loop only, which makes `@unchecked Sendable`
    /// sound, like every other field being immutable).
    private var sends = 0

    private init(channel: any Channel, localAddress: STUNAddress, socket: TunnelSocket, faults: SendFaults?) {
        self.channel = channel
        self.localAddress = localAddress
        self.socket = socket
        self.faults = faults
    }

    /// Binds a UDP socket to `host` (an IP, or a name resolved here) and `port` (0: any) and
    /// registers it with `eventLoop`, whose pipeline `initializer` sets up (it runs on the loop).
    /// - Throws: `SocketFailure` saying which step failed.
    static func bind(host: String, port: UInt16, on eventLoop: any EventLoop, faults: SendFaults? = nil,
                     initializer: @escaping @Sendable (any Channel) throws -> Void) async throws(SocketFailure) -> LossyDatagramSocket {
        let local: STUNAddress
        do {
            let resolved = try SocketAddress.makeAddressResolvingHost(host, port: Int(port))
            guard let address = STUNAddress(resolved) else { throw SocketFailure("\(host) is not an IPv4 or IPv6 address") }
            local = address
        } catch let failure as SocketFailure {
            throw failure
        } catch {
            throw SocketFailure("cannot resolve \(host): \(error)")
        }
        let socket: TunnelSocket
        do { socket = try TunnelSocket.udp(bound: local) } catch { throw SocketFailure(error.description) }
        let channel: any Channel
        do {
            // From here the channel owns the descriptor (it closes it, also when this fails).
            channel = try await DatagramBootstrap(group: eventLoop)
                .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try initializer(channel) } }
                .withBoundSocket(socket.fd)
                .get()
        } catch {
            throw SocketFailure("cannot register the socket with the event loop: \(error)")
        }
        guard let bound = socket.localAddress else {
            try? await channel.close()
            throw SocketFailure("the socket has no local address")
        }
        return LossyDatagramSocket(channel: channel, localAddress: bound, socket: socket, faults: faults)
    }

    /// Sends one datagram, on the channel's event loop: nil when it left, otherwise why not (a
    /// lost datagram: the socket stays open). A closed socket reports EBADF.
    func send(_ bytes: ByteBuffer, to destination: STUNAddress) -> SendFailure? {
        channel.eventLoop.assertInEventLoop()
        guard channel.isActive else { return SendFailure(code: EBADF) }
        sends += 1
        if let faults, sends % faults.every == 0 { return SendFailure(code: faults.code) }
        return bytes.withUnsafeReadableBytes { socket.sendReportingFailure($0, to: destination) }
    }

    /// Closes the socket (the channel does).
    func close() -> EventLoopFuture<Void> { channel.close() }

    /// Why the socket could not be made.
    struct SocketFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}

/// Fault injection for tests: every `every`-th send of a socket fails with `code` without
/// leaving (as if a firewall refused it), e.g. every fifth with EPERM.
struct SendFaults: Sendable {
    /// Fail one send in this many (1: every send).
    var every: Int
    /// The `errno` the failed sends report.
    var code: Int32

    init(every: Int, code: Int32) {
        precondition(every >= 1, "SendFaults.every is at least 1")
        self.every = every
        self.code = code
    }
}
