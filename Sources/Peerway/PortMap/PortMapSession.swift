import Foundation
import PeerwayPortMap
import PeerwaySTUN
#if canImport(Glibc)
import Glibc
#endif

/// A port mapping on the default gateway for one local port, kept while the session lives: the
/// I/O around `PortMapMachine` (module PeerwayPortMap). A thread of its own owns three UDP
/// sockets connected to the gateway (PCP, NAT-PMP, SSDP), makes the IGD's HTTP exchanges, renews
/// the mapping and deletes it on `close()`. Nothing is sent anywhere but the default gateway.
public final class PortMapSession: @unchecked Sendable {
    /// Milliseconds the thread sleeps in `poll` at most (timers are the machine's; this bounds a lost wake-up).
    static let pollMillis: UInt64 = 1_000
    /// Where Linux lists its IPv4 routes.
    public static let routeFile = "/proc/net/route"

    private let core: Core

    /// The default gateway (IPv4) from the route table, or nil when there is no default route.
    public static func defaultGateway() -> GatewayRoute? {
        guard let text = try? String(contentsOfFile: routeFile, encoding: .utf8) else { return nil }
        return GatewayRoute.parse(procNetRoute: text)
    }

    /// Starts mapping `internalPort` on `gateway` (default: the route table's). Returns nil when
    /// there is no IPv4 default route or its sockets cannot be made: no mapping, nothing lost.
    public static func start(internalPort: UInt16, transport: PortMapTransport = .udp, probeAll: Bool = false,
                             lifetimeSeconds: UInt32 = PortMapLimits.defaultLifetimeSeconds,
                             protocols: Set<PortMapProtocol> = Set(PortMapProtocol.allCases),
                             gateway: UInt32? = nil) -> PortMapSession? {
        guard let gw = gateway ?? defaultGateway()?.gateway else { return nil }
        guard let core = Core(gateway: gw, internalPort: internalPort, transport: transport, probeAll: probeAll,
                              lifetimeSeconds: lifetimeSeconds, protocols: protocols) else { return nil }
        let thread = Thread { core.run() }
        thread.name = "peerway-portmap"
        thread.start()
        return PortMapSession(core: core)
    }

    private init(core: Core) { self.core = core }

    deinit { core.requestClose() }

    /// The first report (discovery and the first mapping attempt), waiting at most `timeoutMillis`;
    /// nil if it is not in by then.
    public func firstReport(timeoutMillis: UInt64) async -> PortMapReport? {
        let core = self.core
        return await runOnOwnThread(name: "peerway-portmap-wait") { core.waitForReport(timeoutMillis: timeoutMillis) }
    }

    /// The mapping in force now (nil: none, or lost).
    public var mapping: PortMapping? { core.locked { $0.mapping } }

    /// Deletes the mapping in the background and ends the session's thread. Idempotent.
    public func close() { core.requestClose() }

    /// Deletes the mapping and waits (at most the machine's delete timeout and a little more)
    /// until the gateway answered or the deletion was given up.
    public func closeAndWait() async {
        let core = self.core
        core.requestClose()
        await runOnOwnThread(name: "peerway-portmap-close") { core.waitForClosed() }
    }

    /// The state shared between the session's thread and its callers.
    final class Core: @unchecked Sendable {
        struct Shared {
            var report: PortMapReport?
            var mapping: PortMapping?
            var closeRequested = false
            var closed = false
        }

        let condition = NSCondition()
        var shared = Shared()
        var machine: PortMapMachine
        let sockets: [PortMapSocket: TunnelSocket]
        /// The read end and write end of the wake-up pipe.
        let wake: (Int32, Int32)

        init?(gateway: UInt32, internalPort: UInt16, transport: PortMapTransport, probeAll: Bool, lifetimeSeconds: UInt32,
              protocols: Set<PortMapProtocol>) {
            var made: [PortMapSocket: TunnelSocket] = [:]
            for (socket, port) in [(PortMapSocket.pcp, PortMapLimits.pcpServerPort), (.natPMP, PortMapLimits.pcpServerPort),
                                   (.ssdp, PortMapLimits.ssdpPort)] {
                guard let s = try? TunnelSocket.udp(bound: STUNAddress(ip: .v4(0), port: 0)) else { break }
                made[socket] = s
                if (try? s.connect(to: STUNAddress(ip: .v4(gateway), port: port))) == nil { break }
            }
            var fds: [Int32] = [0, 0]
            guard made.count == PortMapSocket.allCases.count, pipe(&fds) == 0,
                  case .v4(let localIP)? = made[.pcp]?.localAddress?.ip, localIP != 0
            else {
                made.values.forEach { $0.close() }
                return nil
            }
            for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
            sockets = made
            wake = (fds[0], fds[1])
            let nonce = (0..<12).map { _ in UInt8.random(in: 0...255) }
            machine = PortMapMachine(configuration: PortMapConfiguration(
                gateway: gateway, localIP: localIP, internalPort: internalPort, transport: transport,
                lifetimeSeconds: lifetimeSeconds, protocols: protocols, probeAll: probeAll, nonce: nonce))
        }

        func locked<T>(_ body: (inout Shared) -> T) -> T {
            condition.lock()
            defer { condition.unlock() }
            return body(&shared)
        }

        func requestClose() {
            let first = locked { s -> Bool in
                defer { s.closeRequested = true }
                return !s.closeRequested
            }
            if first {
                var byte: UInt8 = 1
                _ = write(wake.1, &byte, 1)
            }
        }

        func waitForReport(timeoutMillis: UInt64) -> PortMapReport? {
            let deadline = Date().addingTimeInterval(Double(timeoutMillis) / 1000)
            condition.lock()
            defer { condition.unlock() }
            while shared.report == nil && !shared.closed {
                if !condition.wait(until: deadline) { break }
            }
            return shared.report
        }

        func waitForClosed() {
            let deadline = Date().addingTimeInterval(Double(PortMapLimits.deleteTimeoutMillis + PortMapLimits.httpTimeoutMillis) / 1000 + 1)
            condition.lock()
            defer { condition.unlock() }
            while !shared.closed {
                if !condition.wait(until: deadline) { break }
            }
        }

        static func now() -> UInt64 { UInt64(UDPTraversal.millis()) }

        /// The session's thread: until the machine says `closed`.
        func run() {
            let order = PortMapSocket.allCases
            let fds = order.compactMap { sockets[$0]?.fd } + [wake.0]
            var buffer = [UInt8](repeating: 0, count: PortMapLimits.maximumDatagramBytes + 1)
            var pending = machine.start(nowMillis: Self.now())
            while !machine.isClosed {
                perform(&pending)
                if machine.isClosed { break }
                let now = Self.now()
                let wait = machine.nextWakeMillis.map { $0 > now ? min($0 - now, PortMapSession.pollMillis) : 0 } ?? PortMapSession.pollMillis
                let ready = TunnelSocket.poll(fds, timeoutMillis: Int32(wait))
                for (i, socket) in order.enumerated() where ready[i] != 0 {
                    guard let fd = sockets[socket]?.fd else { continue }
                    // Drain what is there (bounded: the gateway sends a handful of datagrams).
                    for _ in 0..<PortMapLimits.maximumSSDPAnswers {
                        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                        if n > 0 {
                            pending += machine.received(Array(buffer[0..<n]), on: socket, nowMillis: Self.now())
                        } else if n < 0 && (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) {
                            pending += machine.unreachable(socket, nowMillis: Self.now())
                        } else {
                            break
                        }
                    }
                }
                if ready.last != 0 {
                    var byte: UInt8 = 0
                    while read(wake.0, &byte, 1) > 0 {}
                }
                if locked({ $0.closeRequested }) {
                    pending += machine.close(nowMillis: Self.now())
                }
                pending += machine.tick(nowMillis: Self.now())
            }
            perform(&pending)
            for s in sockets.values { s.close() }
            Glibc.close(wake.0)
            Glibc.close(wake.1)
            condition.lock()
            shared.closed = true
            condition.broadcast()
            condition.unlock()
        }

        /// Performs the machine's actions, feeding back what the HTTP exchanges bring.
        func perform(_ actions: inout [PortMapMachine.Action]) {
            var rounds = 0
            while !actions.isEmpty && rounds < 64 {
                rounds += 1
                let list = actions
                actions = []
                for action in list {
                    switch action {
                    case .send(let socket, let bytes):
                        guard let fd = sockets[socket]?.fd else { continue }
                        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                        if n < 0 && (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) {
                            actions += machine.unreachable(socket, nowMillis: Self.now())
                        }
                    case .http(let id, let to, let request):
                        switch PortMapHTTP.exchange(to: to, request: request) {
                        case .success(let answer): actions += machine.httpAnswered(id: id, bytes: answer, nowMillis: Self.now())
                        case .failure(let why): actions += machine.httpFailed(id: id, reason: why.description, nowMillis: Self.now())
                        }
                    case .mapped(let m):
                        locked { $0.mapping = m }
                    case .lost:
                        locked { $0.mapping = nil }
                    case .finished(let report):
                        condition.lock()
                        shared.report = report
                        shared.mapping = report.mapping
                        condition.broadcast()
                        condition.unlock()
                    case .closed:
                        locked { $0.mapping = nil }
                    }
                }
            }
        }
    }
}

extension PortMapSession {
    /// Longest `check` waits for the report: discovery, then up to three IGD exchanges.
    public static let checkTimeoutMillis: UInt64 = PortMapLimits.discoveryTimeoutMillis + 3 * PortMapLimits.httpTimeoutMillis

    /// What `peerway netcheck` reports: asks the default gateway with every protocol (waiting for
    /// each one's discovery), maps a fresh UDP socket's port, then deletes the mapping again.
    /// Nil when there is no IPv4 default route.
    public static func check(timeoutMillis: UInt64 = checkTimeoutMillis,
                             protocols: Set<PortMapProtocol> = Set(PortMapProtocol.allCases)) async -> PortMapReport? {
        guard let socket = try? TunnelSocket.udp(bound: STUNAddress(ip: .v4(0), port: 0)) else { return nil }
        defer { socket.close() }
        guard let port = socket.localAddress?.port, let session = start(internalPort: port, probeAll: true, protocols: protocols) else { return nil }
        let report = await session.firstReport(timeoutMillis: timeoutMillis)
        await session.closeAndWait()
        return report
    }
}
