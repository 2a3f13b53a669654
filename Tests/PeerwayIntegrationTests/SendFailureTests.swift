import Foundation
import NIOCore
import NIOPosix
@testable import Peerway
import PeerwayCheckpoint
import PeerwaySTUN
import PeerwaySupernode
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A send the network refuses is a lost datagram: the classification of send errors, the peer's
/// socket that stays open through them, and starts that succeed (or fail saying why) while some
/// or all of the peer's sends fail. Loopback only; the same on real refusals is `LabSendFailureTests`.
@Suite("Send failures: a refused send is a lost datagram (loopback)")
struct SendFailureTests {
    /// Starts of a peer whose every fifth send fails; every one must register.
    static let starts = 10
    /// One send in this many fails in the start test (every fifth, as in the issue).
    static let failEvery = 5

    @Test("transient: firewall, route, queue and ICMP errors; permanent: errors of the datagram or the socket itself")
    func classification() {
        for code in [EPERM, EACCES, ENETUNREACH, EHOSTUNREACH, ENETDOWN, EHOSTDOWN, ENOBUFS, ENOMEM, EAGAIN, EWOULDBLOCK, EINTR,
                     ECONNREFUSED, EADDRNOTAVAIL] {
            #expect(SendFailure(code: code).isTransient, "\(SendFailure(code: code))")
        }
        for code in [EMSGSIZE, EINVAL, EBADF, ENOTSOCK, EAFNOSUPPORT, EDESTADDRREQ, EFAULT, EPIPE] {
            #expect(!SendFailure(code: code).isTransient, "\(SendFailure(code: code))")
        }
        #expect(SendFailure(code: EPERM).description == "Operation not permitted (EPERM)")
        #expect(SendFailure(code: ENETUNREACH).description == "Network is unreachable (ENETUNREACH)")
        #expect(SendFailure(code: EPERM).hint.contains("firewall"))
        #expect(SendFailure(code: EHOSTUNREACH).hint.contains("route"))
        #expect(SendFailure(code: ENOBUFS).hint.contains("queues"))
    }

    @Test("the tally reports nothing without failures, and counts and the last failure with them")
    func tally() throws {
        let to = STUNAddress(ip: .v4(0xC633_6401), port: 7400)
        var tally = SendFailureTally()
        tally.record(nil, to: to)
        #expect(tally.report == nil)
        tally.record(SendFailure(code: ENOBUFS), to: to)
        tally.record(SendFailure(code: EPERM), to: to)
        tally.record(nil, to: to)
        let report = try #require(tally.report)
        #expect(report.attempted == 4 && report.failed == 2 && report.lastError == "Operation not permitted (EPERM)")
        #expect(report.description.hasPrefix("2 of 4 sends failed on this host, the last to 198.51.100.1:7400 with Operation not permitted (EPERM)"))
    }

    @Test("a real refused send (broadcast without SO_BROADCAST) leaves the socket open and the next datagram arrives")
    func refusedSendKeepsSocket() async throws {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let received = Received()
        let receiver = try await LossyDatagramSocket.bind(host: "127.0.0.1", port: 0, on: eventLoop) { channel in
            try channel.pipeline.syncOperations.addHandler(CollectingHandler(received: received))
        }
        let sender = try await LossyDatagramSocket.bind(host: "127.0.0.1", port: 0, on: eventLoop) { _ in }
        let broadcast = STUNAddress(ip: .v4(0xFFFF_FFFF), port: 9)
        let (refused, delivered, active) = try await eventLoop.submit {
            let refused = sender.send(ByteBuffer(string: "nobody"), to: broadcast)
            let delivered = sender.send(ByteBuffer(string: "after"), to: receiver.localAddress)
            return (refused, delivered, sender.channel.isActive)
        }.get()
        #expect(refused != nil, "a broadcast without SO_BROADCAST is refused by the kernel")
        #expect(delivered == nil && active)
        let deadline = ContinuousClock.now + .seconds(5)
        while received.texts.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(received.texts == ["after"])
        try await sender.close().get()
        try await receiver.close().get()
        // Closed, a send reports EBADF instead of touching a descriptor that may be reused.
        let late = try await eventLoop.submit { sender.send(ByteBuffer(string: "late"), to: receiver.localAddress) }.get()
        #expect(late == SendFailure(code: EBADF))
    }

    @Test("IPv6: a socket bound to ::1 sends and receives (skipped where ::1 is missing)")
    func ipv6() async throws {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let received = Received()
        let receiver: LossyDatagramSocket
        do {
            receiver = try await LossyDatagramSocket.bind(host: "::1", port: 0, on: eventLoop) { channel in
                try channel.pipeline.syncOperations.addHandler(CollectingHandler(received: received))
            }
        } catch {
            print("skipping IPv6: \(error)")
            return
        }
        let sender = try await LossyDatagramSocket.bind(host: "::1", port: 0, on: eventLoop) { _ in }
        #expect(receiver.localAddress.family == .ipv6)
        let failure = try await eventLoop.submit { sender.send(ByteBuffer(string: "six"), to: receiver.localAddress) }.get()
        #expect(failure == nil)
        let deadline = ContinuousClock.now + .seconds(5)
        while received.texts.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(received.texts == ["six"])
        try await sender.close().get()
        try await receiver.close().get()
    }

    @Test("with every fifth send failing (EPERM), a peer starts 10 times of 10 over UDP and messages are delivered")
    func startsDespiteFailingSends() async throws {
        let supernode = try await CheckpointPeerTests.supernode()
        var options = CheckpointPeerTests.options()
        options.tcpFallbackDelay = nil
        options.measuresNAT = false
        options.sendFaults = SendFaults(every: Self.failEvery, code: EPERM)
        var peers: [Peer] = []
        var millis: [Int] = []
        for _ in 0..<Self.starts {
            let started = ContinuousClock.now
            peers.append(try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: options))
            let d = ContinuousClock.now - started
            millis.append(Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000))
        }
        print("send failures (every \(Self.failEvery)th send fails with EPERM): \(peers.count)/\(Self.starts) starts, ms: \(millis)")
        #expect(peers.count == Self.starts)
        // The peers keep working: messages both ways, each through sockets that refuse every fifth send.
        for (a, b) in [(peers[0], peers[1]), (peers[1], peers[0])] {
            #expect(try await a.send("hello", to: b.id) == .delivered)
        }
        for peer in peers { await peer.stop() }
        await supernode.stop()
    }

    @Test("with every send failing, a start keeps trying until its timeout and then says what the sends met")
    func startSaysWhatFailed() async throws {
        let supernode = try await CheckpointPeerTests.supernode()
        var options = CheckpointPeerTests.options()
        options.tcpFallbackDelay = nil
        options.measuresNAT = false
        options.startTimeout = .seconds(2)
        options.sendFaults = SendFaults(every: 1, code: ENETUNREACH)
        let started = ContinuousClock.now
        do {
            _ = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: options)
            Issue.record("the start succeeded although every send failed")
        } catch {
            #expect(ContinuousClock.now - started >= .seconds(2), "it gave up before its timeout")
            guard case .supernodeUnreachable(let addresses, let sends) = error else {
                Issue.record("expected supernodeUnreachable, got \(error)")
                return
            }
            #expect(addresses == [supernode.address])
            let report = try #require(sends)
            #expect(report.failed == report.attempted && report.failed > 1, "\(report)")
            #expect(error.description.contains("Network is unreachable (ENETUNREACH)"), "\(error)")
            #expect(error.description.contains("no working route"), "\(error)")
        }
        await supernode.stop()
    }
}

/// The texts of the datagrams a socket received, in order.
private final class Received: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []

    var texts: [String] { lock.withLock { list } }
    func append(_ text: String) { lock.withLock { list.append(text) } }
}

/// Collects the text of every datagram a socket receives.
private final class CollectingHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let received: Received

    init(received: Received) { self.received = received }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received.append(String(buffer: unwrapInboundIn(data).data))
    }
}
