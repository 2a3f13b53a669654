#if canImport(Glibc)
import Glibc
#endif
import Crypto
import Foundation
import NIOCore
import PeerwayRelay
import PeerwaySTUN
import PeerwaySupernode
import Testing

/// The raw RELAY over loopback: a real `RelayServer`, real sockets.
@Suite("RELAY server over loopback", .serialized)
struct RelayServerTests {
    static let key = SymmetricKey(data: [UInt8](repeating: 0x42, count: 32))

    /// Runs `body` with a started relay on 127.0.0.1 (UDP and TCP on free ports) and stops it after.
    func withServer(_ body: (RelayServer) async throws -> Void) async throws {
        let server = RelayServer(configuration: .init(udp: STUNAddress(ip: .v4(0x7F00_0001), port: 0),
                                                      tcp: STUNAddress(ip: .v4(0x7F00_0001), port: 0), key: Self.key))
        try server.start()
        do {
            try await body(server)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    @Test("UDP: two sockets bind with minted tokens and exchange datagrams both ways, byte for byte, nothing added")
    func udpForwarding() async throws { try await withServer { server in
        let relay = try #require(server.udpAddress)
        let a = try await UDPTestSocket.bind()
        let b = try await UDPTestSocket.bind()
        defer { Task { await a.close(); await b.close() } }  // NIO channels: closing later is harmless
        let (tokenA, tokenB) = server.grant(transport: .udp, lifetime: .seconds(60))
        #expect(tokenA.allocation == tokenB.allocation && tokenA.side == 0 && tokenB.side == 1)

        for (socket, token) in [(a, tokenA), (b, tokenB)] {
            try await socket.send(ByteBuffer(bytes: RelayMessage.bind(token)), to: relay)
            let answer = try #require(await socket.receive())
            #expect(answer.from == relay)
            #expect(Array(answer.data.readableBytesView) == RelayMessage.answer(token))
            #expect(answer.data.readableBytes == RelayLimits.bindBytes)   // never more than the bind
        }
        // A retransmitted bind is answered again.
        try await a.send(ByteBuffer(bytes: RelayMessage.bind(tokenA)), to: relay)
        #expect(try #require(await a.receive()).data.readableBytes == RelayLimits.bindBytes)

        var sent = 0
        // Sizes up to what the NIO test socket reads in one datagram (2,048 bytes).
        for size in [1, 37, 100, 1200, 1472, 2000] {
            let ab = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ size) }
            try await a.send(ByteBuffer(bytes: ab), to: relay)
            let atB = try #require(await b.receive())
            #expect(atB.from == relay)
            let atBBytes = Array(atB.data.readableBytesView)
            #expect(atBBytes == ab ? true : false, "A→B, \(size) bytes sent, \(atBBytes.count) received, not identical")
            let ba = ab.reversed().map { $0 ^ 0xFF }
            try await b.send(ByteBuffer(bytes: ba), to: relay)
            let atA = try #require(await a.receive())
            let atABytes = Array(atA.data.readableBytesView)
            #expect(atABytes == ba ? true : false, "B→A, \(size) bytes sent, \(atABytes.count) received, not identical")
            sent += 2 * size
        }
        // Once bound, even a bind lookalike is payload.
        let lookalike = RelayMessage.bind(server.grant(transport: .udp).0)
        try await a.send(ByteBuffer(bytes: lookalike), to: relay)
        #expect(Array(try #require(await b.receive()).data.readableBytesView) == lookalike)
        sent += lookalike.count

        let stats = server.statistics()
        #expect(stats.udp.forwardedDatagrams == 13)
        #expect(stats.udp.forwardedBytes == UInt64(sent))
        #expect(stats.udpAllocations == 1)
        #expect(stats.udp.bindings == 2)
    } }

    @Test("UDP: forged and expired tokens get no answer; a third socket cannot take a side in use")
    func udpRefusals() async throws { try await withServer { server in
        let relay = try #require(server.udpAddress)
        let a = try await UDPTestSocket.bind()
        let b = try await UDPTestSocket.bind()
        let eve = try await UDPTestSocket.bind()
        defer { Task { await a.close(); await b.close(); await eve.close() } }

        let forger = RelayTokenMinter(key: SymmetricKey(data: [UInt8](repeating: 0x43, count: 32)))
        let forged = forger.mint(allocation: 1, expires: UInt32(Date().timeIntervalSince1970) + 60, side: 0, transport: .udp)
        try await eve.send(ByteBuffer(bytes: RelayMessage.bind(forged)), to: relay)
        #expect(await eve.receive(timeout: .milliseconds(300)) == nil)

        let minter = RelayTokenMinter(key: Self.key)
        let expired = minter.mint(allocation: 2, expires: UInt32(Date().timeIntervalSince1970) - 1, side: 0, transport: .udp)
        try await eve.send(ByteBuffer(bytes: RelayMessage.bind(expired)), to: relay)
        #expect(await eve.receive(timeout: .milliseconds(300)) == nil)

        let (tokenA, tokenB) = server.grant(transport: .udp)
        try await a.send(ByteBuffer(bytes: RelayMessage.bind(tokenA)), to: relay)
        #expect(await a.receive() != nil)
        try await b.send(ByteBuffer(bytes: RelayMessage.bind(tokenB)), to: relay)
        #expect(await b.receive() != nil)
        // Eve saw token A on the wire: while A is in use (it just sent) her bind is refused, and
        // A's traffic still goes to B only. (A side silent for `RelayLimits.moveIdleMillis` moves
        // to a new address: a roamed peer, RelayTableTests.)
        try await a.send(ByteBuffer(bytes: [7]), to: relay)
        try await eve.send(ByteBuffer(bytes: RelayMessage.bind(tokenA)), to: relay)
        #expect(await eve.receive(timeout: .milliseconds(300)) == nil)
        #expect(Array(try #require(await b.receive()).data.readableBytesView) == [7])
        try await b.send(ByteBuffer(bytes: [9, 9, 9]), to: relay)
        #expect(Array(try #require(await a.receive()).data.readableBytesView) == [9, 9, 9])
        #expect(await eve.receive(timeout: .milliseconds(200)) == nil)
        // Datagrams that are no bind, from an unbound address, are dropped.
        try await eve.send(ByteBuffer(bytes: [1, 2, 3]), to: relay)
        // A TCP token over UDP is refused too.
        try await eve.send(ByteBuffer(bytes: RelayMessage.bind(server.grant(transport: .tcp).0)), to: relay)
        #expect(await eve.receive(timeout: .milliseconds(300)) == nil)

        let stats = server.statistics()
        #expect(stats.udp.refused == [.forged: 1, .expired: 1, .taken: 1, .wrongTransport: 1])
        #expect(stats.udp.unauthenticated == 1)
        #expect(stats.udpAllocations == 1)
    } }

    @Test("UDP: a burst of same-size datagrams, relayed with segmentation offload, arrives complete, in order, identical")
    func udpBurst() async throws { try await withServer { server in
        let relay = try #require(server.udpAddress)
        let a = try RawUDP.open(connectedTo: relay)
        defer { close(a) }
        let b = try RawUDP.open(connectedTo: relay)
        defer { close(b) }
        let (tokenA, tokenB) = server.grant(transport: .udp)
        for (fd, token) in [(a, tokenA), (b, tokenB)] {
            RawUDP.send(fd, RelayMessage.bind(token))
            #expect(try RawUDP.receive(fd) == RelayMessage.answer(token))
        }
        // The relay takes a burst in one recvmmsg and sends runs of same-size datagrams to one
        // destination as one UDP_SEGMENT send; the kernel cuts them into the same datagrams. A
        // burst may be read one datagram at a time by chance: up to five bursts until one was segmented.
        var segmented = 0
        for attempt in 0..<5 where segmented == 0 {
            // 63 datagrams of 1,001 bytes and a shorter last one (only the last segment may be shorter).
            let burst = (0..<64).map { i in
                (0..<(i == 63 ? 500 : 1001)).map { UInt8(truncatingIfNeeded: $0 &* 3 ^ i ^ attempt) }
            }
            for d in burst { RawUDP.send(a, d) }
            for (i, d) in burst.enumerated() {
                let got = try RawUDP.receive(b)
                #expect(got == d ? true : false, "datagram \(i) of burst \(attempt): \(got.count) bytes, expected \(d.count), identical: \(got == d)")
            }
            for _ in 0..<20 where segmented == 0 {
                segmented = server.statistics().segmentedDatagrams
                if segmented == 0 { try await Task.sleep(for: .milliseconds(50)) }
            }
        }
        #expect(segmented > 0, "no burst was relayed with segmentation offload")
        #expect(server.statistics().sendFailures == 0)
    } }

    @Test("TCP: two connections bind (one through the listener, one adopted) and are spliced: 1 MiB each way intact")
    func tcpSplice() async throws { try await withServer { server in
        let listener = try #require(server.tcpAddress)
        let (tokenA, tokenB) = server.grant(transport: .tcp)

        // A dials the relay's own listener.
        let a = try TCPTestSocket.connect(listener)
        try TCPTestSocket.writeAll(a, RelayMessage.bind(tokenA))
        #expect(try TCPTestSocket.read(a, count: 37) == RelayMessage.answer(tokenA))
        var aOpen = true
        defer { if aOpen { close(a) } }

        // B dials "the supernode's TCP port" (a listener of the test), which reads the first 4
        // bytes, sees "PWRB" and hands the socket over.
        let front = try TCPTestSocket.listen()
        defer { close(front.fd) }
        let b = try TCPTestSocket.connect(front.address)
        defer { close(b) }
        try TCPTestSocket.writeAll(b, RelayMessage.bind(tokenB))
        let accepted = accept(front.fd, nil, nil)
        #expect(accepted >= 0)
        let head = try TCPTestSocket.read(accepted, count: 4)
        #expect(RelayMessage.startsWithBindMagic(head))
        server.adoptTCP(fd: accepted, firstBytes: head)
        #expect(try TCPTestSocket.read(b, count: 37) == RelayMessage.answer(tokenB))

        let size = 1 << 20
        let fromA = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ ($0 >> 11)) }
        let fromB = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        let (atB, atA) = try TCPTestSocket.exchange(a: a, sendA: fromA, b: b, sendB: fromB, timeout: 20)
        #expect(atB.count == size && (atB == fromA ? true : false), "A→B: \(atB.count) bytes, identical: \(atB == fromA)")
        #expect(atA.count == size && (atA == fromB ? true : false), "B→A: \(atA.count) bytes, identical: \(atA == fromB)")

        let stats = server.statistics()
        #expect(stats.tcp.bindings == 2)
        #expect(stats.tcp.forwardedBytes == UInt64(2 * size))
        #expect(stats.tcpConnections == 2)

        // A closes: B sees the end of the stream, and the allocation ends.
        close(a)
        aOpen = false
        shutdown(b, Int32(SHUT_WR))
        #expect(try TCPTestSocket.read(b, count: 1, timeout: 5) == [])
        var ended = false
        for _ in 0..<50 where !ended {
            ended = server.statistics().tcpConnections == 0
            if !ended { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(ended)
        #expect(server.statistics().tcp.ended[.closed] == 1)
    } }

    @Test("TCP: a forged bind is closed without an answer")
    func tcpForged() async throws { try await withServer { server in
        let forger = RelayTokenMinter(key: SymmetricKey(data: [UInt8](repeating: 1, count: 32)))
        let c = try TCPTestSocket.connect(try #require(server.tcpAddress))
        defer { close(c) }
        try TCPTestSocket.writeAll(c, RelayMessage.bind(forger.mint(allocation: 5, expires: UInt32.max, side: 0, transport: .tcp)))
        #expect(try TCPTestSocket.read(c, count: 37, timeout: 5) == [])
        #expect(server.statistics().tcp.refused[.forged] == 1)
    } }
}

/// Raw loopback UDP sockets for bursts (NIO's test socket reads datagrams one event at a time).
enum RawUDP {
    static func open(connectedTo peer: STUNAddress) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var size: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var s = TCPTestSocket.sockaddrIn(peer)
        let rc = withUnsafePointer(to: &s) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw TCPTestSocket.Failure(description: "UDP connect: errno \(errno)") }
        return fd
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
    }

    /// The next datagram (up to 65,536 bytes), or a failure after `timeout` seconds.
    static func receive(_ fd: Int32, timeout: Double = 2) throws -> [UInt8] {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) > 0 else { throw TCPTestSocket.Failure(description: "UDP receive timed out") }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n >= 0 else { throw TCPTestSocket.Failure(description: "UDP receive: errno \(errno)") }
        return Array(buffer[0..<n])
    }
}

/// Blocking-with-timeout TCP helpers on raw sockets (loopback only).
enum TCPTestSocket {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func address(_ fd: Int32, peer: Bool = false) -> STUNAddress {
        var storage = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length) }
        }
        return STUNAddress(ip: .v4(UInt32(bigEndian: storage.sin_addr.s_addr)), port: UInt16(bigEndian: storage.sin_port))
    }

    static func sockaddrIn(_ a: STUNAddress) -> sockaddr_in {
        guard case .v4(let ip) = a.ip else { fatalError("IPv4 only") }
        var s = sockaddr_in()
        s.sin_family = sa_family_t(AF_INET)
        s.sin_port = a.port.bigEndian
        s.sin_addr.s_addr = ip.bigEndian
        return s
    }

    static func connect(_ a: STUNAddress) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var s = sockaddrIn(a)
        let rc = withUnsafePointer(to: &s) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw Failure(description: "connect \(a): errno \(errno)")
        }
        return fd
    }

    static func listen() throws -> (fd: Int32, address: STUNAddress) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var s = sockaddrIn(STUNAddress(ip: .v4(0x7F00_0001), port: 0))
        let rc = withUnsafePointer(to: &s) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, Glibc.listen(fd, 8) == 0 else { throw Failure(description: "listen: errno \(errno)") }
        return (fd, address(fd))
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "send: errno \(errno)") }
            offset += n
        }
    }

    /// Reads exactly `count` bytes, or fewer when the stream ends (an empty array: closed at once).
    static func read(_ fd: Int32, count: Int, timeout: Double = 5) throws -> [UInt8] {
        var out: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: count)
        while out.count < count {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
            guard poll(&p, 1, left) > 0 else { throw Failure(description: "read: timed out with \(out.count) of \(count) bytes") }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - out.count, 0) }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return out
    }

    /// Sends `sendA` from `a` and `sendB` from `b` at the same time and reads what each receives,
    /// until both got as many bytes as the other sent (or `timeout` seconds pass).
    static func exchange(a: Int32, sendA: [UInt8], b: Int32, sendB: [UInt8], timeout: Double) throws -> (atB: [UInt8], atA: [UInt8]) {
        for fd in [a, b] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        defer { for fd in [a, b] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) } }
        var sentA = 0, sentB = 0
        var atA: [UInt8] = [], atB: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let deadline = Date().addingTimeInterval(timeout)
        while atA.count < sendB.count || atB.count < sendA.count {
            guard Date() < deadline else { throw Failure(description: "exchange timed out: A got \(atA.count), B got \(atB.count)") }
            var polls = [
                pollfd(fd: a, events: Int16(POLLIN) | (sentA < sendA.count ? Int16(POLLOUT) : 0), revents: 0),
                pollfd(fd: b, events: Int16(POLLIN) | (sentB < sendB.count ? Int16(POLLOUT) : 0), revents: 0),
            ]
            guard poll(&polls, 2, 100) >= 0 else { continue }
            if sentA < sendA.count, polls[0].revents & Int16(POLLOUT) != 0 {
                let n = sendA.withUnsafeBytes { send(a, $0.baseAddress! + sentA, min(16_384, $0.count - sentA), Int32(MSG_NOSIGNAL)) }
                if n > 0 { sentA += n }
            }
            if sentB < sendB.count, polls[1].revents & Int16(POLLOUT) != 0 {
                let n = sendB.withUnsafeBytes { send(b, $0.baseAddress! + sentB, min(16_384, $0.count - sentB), Int32(MSG_NOSIGNAL)) }
                if n > 0 { sentB += n }
            }
            if polls[0].revents & Int16(POLLIN) != 0 {
                let n = buffer.withUnsafeMutableBytes { recv(a, $0.baseAddress, $0.count, 0) }
                if n > 0 { atA += buffer[0..<n] } else if n == 0 { break }
            }
            if polls[1].revents & Int16(POLLIN) != 0 {
                let n = buffer.withUnsafeMutableBytes { recv(b, $0.baseAddress, $0.count, 0) }
                if n > 0 { atB += buffer[0..<n] } else if n == 0 { break }
            }
        }
        return (atB, atA)
    }
}
