import Foundation
import PeerwayCheckpoint
import PeerwayRelay
import PeerwaySTUN
import PeerwayTunnel
#if canImport(Glibc)
import Glibc
#endif

/// The I/O around `TCPTraversalMachine` (the flow is described there): the listening socket,
/// connects, accepts and reads for the direct part; after the window, the relay's bind, then the
/// same machine over the one connection bound through the relay's splice. Runs on threads of its
/// own (blocking `poll`), so a traversal never holds an event loop.
enum TCPTraversal {
    /// Milliseconds the loop sleeps in `poll` at most (the machine's timers are coarser).
    static let pollMillis: Int32 = 20
    /// Most connections accepted in one round of the loop.
    static let acceptsPerRound = 16

    /// A connection the two sides agreed on, made blocking.
    struct Connection: Sendable {
        var socket: TunnelSocket
        var remote: STUNAddress
        var method: TraversalMethod
    }

    /// Direct attempts within the plan's window, then the relay.
    static func run(plan: TraversalPlan, role: TraversalRole, keys: TunnelKeys, peer: PeerID, listener: TunnelSocket,
                    options: TunnelOptions, started: ContinuousClock.Instant) async throws(PeerError) -> Tunnel {
        if !plan.targets.isEmpty && plan.directWindowMillis > 0 {
            let direct = await runOnOwnThread(name: "peerway-tcp-traversal") {
                Self.direct(plan: plan, keys: keys, listener: listener)
            }
            switch direct {
            case .success(let c):
                return try Tunnel.tcp(socket: c.socket, remote: c.remote, peer: peer, role: role, keys: keys, path: .direct, method: c.method,
                                      encrypted: options.encrypted, datagrams: false, setupTime: ContinuousClock.now - started)
            case .failure(.traversalFailed(let why)) where plan.relay?.tcpEndpoints.isEmpty ?? true:
                throw .traversalFailed("\(why), and the plan has no TCP relay")
            case .failure:
                break  // the relay next
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
            Self.bindRelay(endpoints: endpoints, proxy: proxy, token: relay.token, keys: keys)
        }
        switch result {
        case .success(let (socket, endpoint)):
            return try Tunnel.tcp(socket: socket, remote: endpoint, peer: peer, role: role, keys: keys, path: .relayed, method: .relay,
                                  encrypted: options.encrypted, datagrams: datagrams, setupTime: ContinuousClock.now - started)
        case .failure(let e):
            throw e
        }
    }

    private static func millis() -> UInt64 { UInt64(UDPTraversal.millis()) }

    /// Reads what is waiting on a non-blocking socket, never past `limit` bytes (what follows
    /// belongs to the tunnel); `open` is false when it closed or failed.
    private static func read(_ socket: TunnelSocket, upTo limit: Int) -> (bytes: [UInt8], open: Bool) {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while bytes.count < limit {
            let want = min(buffer.count, limit - bytes.count)
            let n = buffer.withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress, want, 0) }
            if n > 0 { bytes += buffer[0..<n]; continue }
            if n == 0 { return (bytes, false) }
            return (bytes, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        }
        return (bytes, true)
    }

    private static func writeAll(_ socket: TunnelSocket, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { send(socket.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// One connection waiting on `listener` (made non-blocking) and where it comes from.
    private static func acceptOne(_ listener: TunnelSocket) -> (TunnelSocket, STUNAddress)? {
        var slot = SocketSlot()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = withUnsafeMutablePointer(to: &slot.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener.fd, $0, &length) }
        }
        guard fd >= 0 else { return nil }
        let socket = TunnelSocket(fd: fd)
        guard let remote = slot.address else {
            socket.close()
            return nil
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return (socket, remote)
    }

    /// The direct part: listens on `listener`'s port, connects from it to the plan's targets, and
    /// returns the connection the two sides agreed on, or why there is none.
    static func direct(plan: TraversalPlan, keys: TunnelKeys, listener: TunnelSocket) -> Result<Connection, PeerError> {
        guard let local = listener.localAddress, listen(listener.fd, 16) == 0 else {
            return .failure(.traversalFailed("cannot listen on the TCP tunnel port"))
        }
        var machine = TCPTraversalMachine(plan: plan, keys: keys, nowMillis: millis())
        var sockets: [Int: TunnelSocket] = [:]
        let result = drive(&machine, sockets: &sockets, listener: listener, local: local)
        if ProcessInfo.processInfo.environment["PEERWAY_DEBUG_TRAVERSAL"] != nil {
            let summary: String
            switch result {
            case .success(let c): summary = "direct by \(c.method) to \(c.remote)"
            case .failure(let e): summary = "failed: \(e)"
            }
            FileHandle.standardError.write(Data("tcp traversal \(keys.role): \(summary), after \(machine.connectsStarted) connects, \(machine.acceptedCount) accepted\n".utf8))
        }
        return result
    }

    /// Runs `machine` until it establishes a connection or fails. `sockets` are its connections by
    /// attempt id; `listener` (direct) takes arriving connections, connects go out from `local`.
    /// Every socket left in `sockets` is closed on return (the agreed one is taken out of it).
    private static func drive(_ machine: inout TCPTraversalMachine, sockets: inout [Int: TunnelSocket], listener: TunnelSocket?,
                              local: STUNAddress?) -> Result<Connection, PeerError> {
        var connecting = Set<Int>()
        defer {
            for s in sockets.values { s.close() }
            sockets = [:]
        }
        func drop(_ id: Int) {
            sockets.removeValue(forKey: id)?.close()
            connecting.remove(id)
        }
        func perform(_ actions: [TCPTraversalMachine.Action]) -> Result<Connection, PeerError>? {
            var queue = actions[...]
            while let action = queue.popFirst() {
                switch action {
                case .connect(let id, let to):
                    guard let local, let s = try? TunnelSocket.tcp(bound: local) else {
                        queue += machine.connectFailed(attempt: id)
                        continue
                    }
                    do { try s.connect(to: to) } catch {
                        s.close()
                        queue += machine.connectFailed(attempt: id)
                        continue
                    }
                    sockets[id] = s
                    connecting.insert(id)
                case .send(let id, let bytes):
                    guard let s = sockets[id], !writeAll(s, bytes) else { continue }
                    drop(id)
                    queue += machine.closed(attempt: id)
                case .close(let id):
                    drop(id)
                case .established(let id, let remote, let method):
                    // Gone only when its last write (`useAck`) failed: the other side cannot take it.
                    guard let s = sockets.removeValue(forKey: id) else {
                        return .failure(.traversalFailed("the connection to \(remote) broke while answering use"))
                    }
                    s.makeBlocking()
                    return .success(Connection(socket: s, remote: remote, method: method))
                case .failed(let why):
                    return .failure(.traversalFailed(why))
                }
            }
            return nil
        }
        while true {
            if let done = perform(machine.tick(nowMillis: millis())) { return done }
            let ids = Array(sockets.keys)
            var entries = listener.map { [pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0)] } ?? []
            let first = entries.count
            for id in ids {
                let events = connecting.contains(id) ? Int16(POLLOUT) : machine.bytesWanted(attempt: id) > 0 ? Int16(POLLIN) : 0
                entries.append(pollfd(fd: sockets[id]!.fd, events: events, revents: 0))
            }
            _ = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), pollMillis) }
            if let listener, entries[0].revents & Int16(POLLIN) != 0 {
                for _ in 0..<acceptsPerRound {
                    guard let (socket, remote) = acceptOne(listener) else { break }
                    let (id, actions) = machine.accepted(remote: remote)
                    sockets[id] = socket
                    if let done = perform(actions) { return done }
                }
            }
            for (k, id) in ids.enumerated() {
                let revents = entries[first + k].revents
                guard revents != 0, let s = sockets[id] else { continue }
                if connecting.contains(id) {
                    connecting.remove(id)
                    if revents & Int16(POLLOUT) != 0 && s.pendingError == 0 {
                        if let done = perform(machine.connected(attempt: id)) { return done }
                    } else {
                        drop(id)
                        if let done = perform(machine.connectFailed(attempt: id)) { return done }
                    }
                    continue
                }
                let want = machine.bytesWanted(attempt: id)
                let (bytes, open) = want > 0 ? read(s, upTo: want) : ([], revents & Int16(POLLHUP | POLLERR) == 0)
                if !bytes.isEmpty, let done = perform(machine.received(attempt: id, bytes: bytes)) { return done }
                if !open, sockets[id] != nil {
                    drop(id)
                    if let done = perform(machine.closed(attempt: id)) { return done }
                }
            }
        }
    }

    /// Connects to the first of the relay's TCP endpoints that answers (`RelayDialer`), binds,
    /// then hello and `use` through the splice (`TCPTraversalMachine` over that one connection);
    /// returns the socket and the endpoint it reached.
    static func bindRelay(endpoints: [STUNAddress], proxy: ProxySetting = .none, token: [UInt8],
                          keys: TunnelKeys) -> Result<(TunnelSocket, STUNAddress), PeerError> {
        let deadline = millis() + TCPTraversalLimits.relayWindowMillis
        guard let relayToken = RelayToken(bytes: token) else { return .failure(.traversalFailed("the plan's relay token is malformed")) }
        let socket: TunnelSocket, endpoint: STUNAddress
        switch RelayDialer.connect(endpoints, proxy: proxy, deadline: Int(deadline)) {
        case .success(let connected): (socket, endpoint) = connected
        case .failure(let e): return .failure(e)
        }
        func fail(_ why: String) -> Result<(TunnelSocket, STUNAddress), PeerError> {
            socket.close()
            return .failure(.traversalFailed(why))
        }
        guard writeAll(socket, RelayMessage.bind(relayToken)) else { return fail("cannot send the relay bind to \(endpoint)") }
        // The bind's answer, exactly its bytes: the other side's hello may follow right behind it.
        var answer: [UInt8] = []
        while answer.count < RelayLimits.bindBytes {
            guard millis() < deadline else {
                return fail("the relay path through \(endpoint) did not come up within \(TCPTraversalLimits.relayWindowMillis) ms")
            }
            _ = TunnelSocket.poll([socket.fd], timeoutMillis: pollMillis)
            let (bytes, open) = read(socket, upTo: RelayLimits.bindBytes - answer.count)
            answer += bytes
            guard open else { return fail("the relay closed the connection: the token was refused or expired") }
        }
        guard RelayMessage.answeredToken(answer) == relayToken else { return fail("the relay answered something other than this bind's answer") }
        var machine = TCPTraversalMachine(relayConnection: endpoint, keys: keys, nowMillis: millis(), deadlineMillis: deadline)
        var sockets = [0: socket]
        return drive(&machine, sockets: &sockets, listener: nil, local: nil).map { ($0.socket, endpoint) }
    }
}
