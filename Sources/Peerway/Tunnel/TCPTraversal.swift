import Foundation
import PeerwayCheckpoint
import PeerwayRelay
import PeerwaySTUN
import PeerwayTunnel
#if canImport(Glibc)
import Glibc
#endif

/*
 TCP traversal (docs/traversal-protocol.md): every side listens on its tunnel port and, from the
 same port (SO_REUSEPORT), connects to each of the other side's targets again and again until the
 direct window ends: crossing SYNs make a TCP simultaneous open through two NATs that keep their
 mappings, a LAN peer simply accepts. Each connection that comes up carries the stream hello both
 ways; the initiator picks the first whose hello verified by sending the one-byte `use` on it; the
 acceptor takes the connection that `use` arrives on and answers `useAck`, on which the initiator
 takes it too. After the window: both sides bind to the relay's TCP port, then hello, `use` and
 `useAck` through the splice.
*/

/// The TCP side of traversal: direct connections, then the relay.
enum TCPTraversal {
    /// Milliseconds between two connect attempts to one target.
    static let connectRetryMillis = 400
    /// Milliseconds the relay path may take after the window (connect, bind, hello, `use`): TCP
    /// recovers a lost SYN only after 1, 3, 7 s, so heavy loss needs this long.
    static let relayWindowMillis = 20_000
    /// The byte the initiator sends on the connection it picks.
    static let useByte: UInt8 = 0x55
    /// The acceptor's answer to `use`: only then does the initiator take the connection (a `use`
    /// that arrived after the acceptor gave up would leave the two sides on different paths).
    static let useAckByte: UInt8 = 0x56
    /// Milliseconds past the direct window that a picked or verified connection may still take to
    /// exchange `use` and its answer (TCP resends a lost segment after 200 ms to seconds).
    static let useGraceMillis = 8_000
    /// Most connections tried at once.
    static let maximumConnections = 64

    /// One TCP connection being set up.
    private struct Attempt {
        var socket: TunnelSocket
        var remote: STUNAddress
        var method: TraversalMethod
        var connected = false
        var helloSent = false
        var received: [UInt8] = []
        var verified = false
    }

    /// Direct attempts within the plan's window, then the relay.
    static func run(plan: TraversalPlan, role: TraversalRole, keys: TunnelKeys, peer: PeerID, listener: TunnelSocket,
                    options: TunnelOptions, started: ContinuousClock.Instant) async throws(PeerError) -> Tunnel {
        if !plan.targets.isEmpty && plan.directWindowMillis > 0 {
            let direct = await runOnOwnThread(name: "peerway-tcp-traversal") {
                Self.direct(plan: plan, role: role, keys: keys, listener: listener)
            }
            if let (socket, remote, method) = direct {
                return try Tunnel.tcp(socket: socket, remote: remote, peer: peer, role: role, keys: keys, path: .direct, method: method,
                                      encrypted: options.encrypted, datagrams: false, setupTime: ContinuousClock.now - started)
            }
        }
        return try await relayed(plan: plan, role: role, keys: keys, peer: peer, datagrams: false, options: options, started: started)
    }

    /// Through the relay's TCP splice: its own TCP port first, then the other ways the plan gives
    /// to reach it (its supernode's shared port). `datagrams`: a UDP tunnel carried over TCP (one
    /// side cannot use UDP).
    static func relayed(plan: TraversalPlan, role: TraversalRole, keys: TunnelKeys, peer: PeerID, datagrams: Bool,
                        options: TunnelOptions, started: ContinuousClock.Instant) async throws(PeerError) -> Tunnel {
        guard let relay = plan.relay, !relay.tcpEndpoints.isEmpty else {
            throw .traversalFailed("no direct TCP path within \(plan.directWindowMillis) ms and the plan has no TCP relay")
        }
        let endpoints = relay.tcpEndpoints, proxy = options.proxy ?? .none
        let result = await runOnOwnThread(name: "peerway-tcp-relay") { () -> Result<(TunnelSocket, STUNAddress), PeerError> in
            Self.bindRelay(endpoints: endpoints, proxy: proxy, token: relay.token, role: role, keys: keys)
        }
        switch result {
        case .success(let (socket, endpoint)):
            return try Tunnel.tcp(socket: socket, remote: endpoint, peer: peer, role: role, keys: keys, path: .relayed, method: .relay,
                                  encrypted: options.encrypted, datagrams: datagrams, setupTime: ContinuousClock.now - started)
        case .failure(let e):
            throw e
        }
    }

    private static func millis() -> Int { UDPTraversal.millis() }

    /// Reads what is waiting on a non-blocking socket, never past `limit` bytes in all (what
    /// follows belongs to the tunnel); false when it closed or failed.
    private static func drain(_ socket: TunnelSocket, into bytes: inout [UInt8], limit: Int) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 512)
        while bytes.count < limit {
            let want = min(buffer.count, limit - bytes.count)
            let n = buffer.withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress, want, 0) }
            if n > 0 { bytes += buffer[0..<n]; continue }
            if n == 0 { return false }
            return errno == EAGAIN || errno == EWOULDBLOCK
        }
        return true
    }

    private static func writeAll(_ socket: TunnelSocket, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { send(socket.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// The direct part: returns the connection the two sides agreed on.
    static func direct(plan: TraversalPlan, role: TraversalRole, keys: TunnelKeys, listener: TunnelSocket)
        -> (TunnelSocket, STUNAddress, TraversalMethod)? {
        guard let local = listener.localAddress, listen(listener.fd, 16) == 0 else { return nil }
        let deadline = millis() + Int(plan.directWindowMillis)
        let targets = plan.targets.flatMap { t in t.endpoints.map { ($0, t.method) } }.prefix(maximumConnections / 2)
        var lastTry: [STUNAddress: Int] = [:]
        var attempts: [Attempt] = []
        let hello = TunnelStreamHello.make(keys: keys)
        var chosen: Int?
        var picked: Int32?  // the initiator's `use` went out on this connection
        defer {
            for (i, a) in attempts.enumerated() where i != chosen { a.socket.close() }
        }
        while millis() < deadline || ((picked != nil || attempts.contains(where: \.verified)) && millis() < deadline + useGraceMillis) {
            let now = millis()
            for (remote, method) in targets where !attempts.contains(where: { $0.remote == remote && $0.connected }) {
                guard now - (lastTry[remote] ?? -connectRetryMillis) >= connectRetryMillis, attempts.count < maximumConnections else { continue }
                lastTry[remote] = now
                attempts.removeAll { a in
                    if a.remote == remote && !a.connected { a.socket.close(); return true }
                    return false
                }
                guard let s = try? TunnelSocket.tcp(bound: local) else { continue }
                do { try s.connect(to: remote) } catch { s.close(); continue }
                attempts.append(Attempt(socket: s, remote: remote, method: method))
            }
            var fds = [listener.fd] + attempts.map(\.socket.fd)
            var events = [Int16(POLLIN)] + attempts.map { $0.connected ? Int16(POLLIN) : Int16(POLLOUT) }
            var entries = zip(fds, events).map { pollfd(fd: $0, events: $1, revents: 0) }
            _ = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), 20) }
            fds = []
            events = []
            if entries[0].revents & Int16(POLLIN) != 0 {
                var slot = SocketSlot()
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let fd = withUnsafeMutablePointer(to: &slot.storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener.fd, $0, &length) }
                }
                if fd >= 0 { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
                if fd >= 0, let remote = slot.address {
                    let method = plan.targets.first { $0.endpoint.ip == remote.ip }?.method ?? .tcpSimultaneousOpen
                    attempts.append(Attempt(socket: TunnelSocket(fd: fd), remote: remote, method: method, connected: true))
                }
            }
            var failed: [Int] = []
            for i in attempts.indices {
                let revents = i + 1 < entries.count ? entries[i + 1].revents : 0
                if !attempts[i].connected {
                    guard revents != 0 else { continue }
                    if attempts[i].socket.pendingError == 0 && revents & Int16(POLLOUT) != 0 {
                        attempts[i].connected = true
                    } else {
                        failed.append(i)
                        continue
                    }
                }
                if !attempts[i].helloSent {
                    attempts[i].helloSent = writeAll(attempts[i].socket, hello)
                }
                if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 || attempts[i].received.isEmpty {
                    if !drain(attempts[i].socket, into: &attempts[i].received, limit: TunnelLimits.helloBytes + 1) {
                        failed.append(i)
                        continue
                    }
                }
                let a = attempts[i]
                if !a.verified && a.received.count >= TunnelLimits.helloBytes {
                    if TunnelStreamHello.check(Array(a.received.prefix(TunnelLimits.helloBytes)), keys: keys) {
                        attempts[i].verified = true
                    } else {
                        failed.append(i)
                        continue
                    }
                }
                if attempts[i].verified {
                    let next = a.received.count > TunnelLimits.helloBytes ? a.received[TunnelLimits.helloBytes] : nil
                    if role == .initiator {
                        if picked == nil, writeAll(attempts[i].socket, [useByte]) { picked = attempts[i].socket.fd }
                        if picked == attempts[i].socket.fd, next == useAckByte { chosen = i }
                    } else if next == useByte, writeAll(attempts[i].socket, [useAckByte]) {
                        chosen = i
                    }
                }
                if chosen != nil { break }
            }
            if let chosen {
                let a = attempts[chosen]
                a.socket.makeBlocking()
                return (a.socket, a.remote, a.method)
            }
            for i in failed.sorted(by: >) {
                attempts[i].socket.close()
                attempts.remove(at: i)
            }
        }
        return nil
    }

    /// Connects to the first of the relay's TCP endpoints that answers (`RelayDialer`), binds,
    /// then hello and `use` through the splice; returns the socket and the endpoint it reached.
    static func bindRelay(endpoints: [STUNAddress], proxy: ProxySetting = .none, token: [UInt8], role: TraversalRole,
                          keys: TunnelKeys) -> Result<(TunnelSocket, STUNAddress), PeerError> {
        let deadline = millis() + relayWindowMillis
        guard let relayToken = RelayToken(bytes: token) else { return .failure(.traversalFailed("the plan's relay token is malformed")) }
        let socket: TunnelSocket, endpoint: STUNAddress
        switch RelayDialer.connect(endpoints, proxy: proxy, deadline: deadline) {
        case .success(let connected): (socket, endpoint) = connected
        case .failure(let e): return .failure(e)
        }
        func fail(_ why: String) -> Result<(TunnelSocket, STUNAddress), PeerError> {
            socket.close()
            return .failure(.traversalFailed(why))
        }
        guard writeAll(socket, RelayMessage.bind(relayToken)) else { return fail("cannot send the relay bind to \(endpoint)") }
        var stage = 1  // 1 bound wait, 2 hello wait, 3 use wait
        var received: [UInt8] = []
        let answerBytes = RelayLimits.bindBytes
        let hello = TunnelStreamHello.make(keys: keys)
        while millis() < deadline {
            var entry = [pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)]
            _ = entry.withUnsafeMutableBufferPointer { poll($0.baseAddress, 1, 50) }
            guard entry[0].revents != 0 else { continue }
            let limit = stage == 1 ? answerBytes : TunnelLimits.helloBytes + 1
            guard drain(socket, into: &received, limit: limit) else {
                return fail(stage == 1 ? "the relay closed the connection: the token was refused or expired" : "the relay connection closed")
            }
            if stage == 1, received.count >= answerBytes {
                let answer = Array(received.prefix(answerBytes))
                guard RelayMessage.answeredToken(answer) == relayToken else { return fail("the relay answered something other than this bind's answer") }
                received.removeFirst(answerBytes)
                guard writeAll(socket, hello) else { return fail("cannot send the stream hello") }
                stage = 2
            }
            if stage == 2, received.count >= TunnelLimits.helloBytes {
                guard TunnelStreamHello.check(Array(received.prefix(TunnelLimits.helloBytes)), keys: keys) else {
                    return fail("the other side's stream hello through the relay did not verify")
                }
                if role == .initiator {
                    guard writeAll(socket, [useByte]) else { return fail("cannot send use") }
                }
                stage = 3
            }
            if stage == 3, received.count > TunnelLimits.helloBytes {
                let next = received[TunnelLimits.helloBytes]
                if role == .initiator {
                    guard next == useAckByte else { return fail("unexpected byte instead of use's answer") }
                } else {
                    guard next == useByte else { return fail("unexpected byte instead of use") }
                    guard writeAll(socket, [useAckByte]) else { return fail("cannot answer use") }
                }
                socket.makeBlocking()
                return .success((socket, endpoint))
            }
        }
        return fail("the relay path through \(endpoint) did not come up within \(relayWindowMillis) ms")
    }
}
