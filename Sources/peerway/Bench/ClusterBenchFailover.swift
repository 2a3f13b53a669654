#if canImport(Glibc)
import Glibc
#endif
import CPeerwayLinux
import Foundation
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN

/*
 The failover population of `peerway bench cluster`: real peers, i.e. the client library's own
 state machine (`CheckpointClientMachine`, what `Peer` runs), each with its own UDP socket on
 127.3.x.y, driven by one thread (epoll over the sockets, every machine's wake-up checked each
 turn). The load generator's peers speak the protocol but have no reconnection logic of their
 own (the bench moves them, ClusterBenchFailoverPhase.swift), so the client's own failover is
 timed on these.

   start     peer i starts at i * stagger / count (stagger = one keepalive period), so their
             keepalives are spread over the period as a real population's are; each is given
             the victim's address only (it learns the others from its registration), or with
             `giveAll` every supernode, the victim first and the others in turns
   kill      the bench kills the victim (SIGKILL) and calls `killed(at:)`
   measure   per peer: the kill -> its first `disconnected` (detection) -> `reregistered` on
             another supernode (failover time)

 The thread ends on `finish()` or after `maximumSeconds`.
*/

/// Real client state machines that register with one supernode and fail over when it dies.
final class FailoverPopulation: @unchecked Sendable {
    /// The longest the population's thread runs.
    static let maximumSeconds = 1800.0
    /// The first socket's address (127.3.0.1); socket i binds this + i.
    static let firstSocketIP: UInt32 = 0x7F03_0001
    /// Largest population (one socket each).
    static let maximumPeers = 16_384
    /// Largest control datagram read.
    static let receiveBytes = ControlLimits.maximumDatagramBytes + 1

    let count: Int
    let keepaliveSeconds: UInt16
    /// Supernode addresses: index 0 is the victim.
    let supernodes: [SupernodeAddress]
    let endpoints: [STUNAddress]
    let staggerSeconds: Double
    /// Every peer is given every supernode's address (else only the victim's).
    let giveAll: Bool

    private let lock = NSLock()
    private var stopRequested = false
    private var killAt: UInt64 = 0
    private var registeredNow = 0
    private let done = DispatchSemaphore(value: 0)

    // Written by the thread only; read after `finish()`.
    private(set) var registeredAt: [UInt64]
    private(set) var homeAtKill: [Int]
    private(set) var detectedAt: [UInt64]
    private(set) var failedOverAt: [UInt64]
    private(set) var newHome: [Int]
    private(set) var disconnects = 0
    private(set) var stopped = 0
    private(set) var handshakes = 0
    private(set) var retransmissions = 0

    private var fds: [Int32] = []
    private var epfd: Int32 = -1

    /// - Parameter supernodes: the victim first; every peer gets all of them.
    init(count: Int, keepaliveSeconds: UInt16, supernodes: [SupernodeAddress], staggerSeconds: Double, giveAll: Bool) throws {
        precondition(supernodes.count >= 2, "failover needs somewhere to go")
        self.count = min(count, Self.maximumPeers)
        self.keepaliveSeconds = keepaliveSeconds
        self.supernodes = supernodes
        endpoints = supernodes.compactMap(\.endpoint)
        precondition(endpoints.count == supernodes.count, "supernode addresses must be IP:PORT")
        self.staggerSeconds = staggerSeconds
        self.giveAll = giveAll
        registeredAt = Array(repeating: 0, count: self.count)
        homeAtKill = Array(repeating: -1, count: self.count)
        detectedAt = Array(repeating: 0, count: self.count)
        failedOverAt = Array(repeating: 0, count: self.count)
        newHome = Array(repeating: -1, count: self.count)
        try openSockets()
    }

    deinit {
        for fd in fds { _ = close(fd) }
        if epfd >= 0 { _ = close(epfd) }
    }

    private func openSockets() throws {
        epfd = cpeerway_epoll_create()
        guard epfd >= 0 else { throw CheckpointLoadError.socket("epoll_create1", errno) }
        for i in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw CheckpointLoadError.socket("socket", errno) }
            fds.append(fd)
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_addr.s_addr = (Self.firstSocketIP + UInt32(i)).bigEndian
            let rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { throw CheckpointLoadError.socket("bind failover peer \(i)", errno) }
            guard cpeerway_epoll_add(epfd, fd, UInt32(i)) == 0 else { throw CheckpointLoadError.socket("epoll_ctl", errno) }
        }
    }

    /// The deterministic identity of failover peer `i` (distinct from the load's peers).
    static func identity(_ i: Int) -> PeerIdentity {
        var seed = [UInt8](repeating: 0, count: 32)
        for b in 0..<8 { seed[b] = UInt8(truncatingIfNeeded: UInt64(i) >> (56 - 8 * UInt64(b))) }
        for b in 8..<32 { seed[b] = UInt8(truncatingIfNeeded: 0x5A &+ b &* 13) }
        return try! PeerIdentity(seed: seed)
    }

    // MARK: - Control (any thread)

    /// Starts the population's thread.
    func start() {
        let thread = Thread { [self] in
            run()
            done.signal()
        }
        thread.name = "failover-peers"
        thread.start()
    }

    /// Peers registered now.
    var registered: Int { lock.withLock { registeredNow } }

    /// The victim was killed at `time` (NIODeadline nanoseconds).
    func killed(at time: UInt64) { lock.withLock { killAt = time } }

    /// Stops the thread and waits for it; the figures can be read afterwards.
    func finish() {
        lock.withLock { stopRequested = true }
        done.wait()
    }

    /// Peers that were on the victim at the kill and have re-registered elsewhere.
    var failedOver: Int { lock.withLock { failedOverCount } }
    private var failedOverCount = 0

    // MARK: - The thread

    private func run() {
        let supernodeCount = supernodes.count
        var machines: [CheckpointClientMachine] = (0..<count).map { i in
            // The victim first, the others in turns so that failover spreads over them.
            let order = giveAll ? [0] + (1..<supernodeCount).map { 1 + ($0 - 1 + i) % (supernodeCount - 1) } : [0]
            let candidate = STUNAddress(ip: .v4(Self.firstSocketIP + UInt32(i)), port: Self.localPort(fds[i]))
            return CheckpointClientMachine(configuration: CheckpointClientConfiguration(
                identity: Self.identity(i), supernodes: order.map { supernodes[$0] }, keepaliveSeconds: keepaliveSeconds,
                candidates: [candidate]))
        }
        /// The bench's index of the supernode a machine names by its own index (configured or
        /// learned from a registration), -1 for one the bench did not start.
        func node(_ i: Int, _ index: Int) -> Int {
            guard index < machines[i].supernodes.count else { return -1 }
            let key = machines[i].supernodes[index].publicKeyBytes
            return supernodes.firstIndex { $0.publicKeyBytes == key } ?? -1
        }
        var wake = [UInt64](repeating: UInt64.max, count: count)
        let begin = NIODeadline.now().uptimeNanoseconds
        let startAt = (0..<count).map { begin + UInt64(Double($0) * staggerSeconds / Double(max(1, count)) * 1e9) }
        var nextStart = 0
        let deadline = begin + UInt64(Self.maximumSeconds * 1e9)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.receiveBytes, alignment: 16)
        defer { buffer.deallocate() }
        var tags = [UInt32](repeating: 0, count: 256)
        var kill: UInt64 = 0

        func perform(_ actions: [CheckpointClientAction], peer i: Int, now: UInt64) {
            for action in actions {
                switch action {
                case .send(let bytes, let to):
                    let target = node(i, to)
                    if target >= 0 { send(bytes, from: i, to: target) }
                case .scheduleWakeUp(let at):
                    wake[i] = at.uptimeNanoseconds
                case .completed:
                    break
                case .event(let event):
                    switch event {
                    case .registered(let r):
                        registeredAt[i] = now
                        homeAtKill[i] = node(i, r.supernode)
                        lock.withLock { registeredNow += 1 }
                    case .reregistered(let r, _):
                        let home = node(i, r.supernode)
                        if kill != 0, homeAtKill[i] == 0, home != 0, failedOverAt[i] == 0 {
                            failedOverAt[i] = now
                            newHome[i] = home
                            lock.withLock { failedOverCount += 1 }
                        }
                    case .disconnected:
                        disconnects += 1
                        if kill != 0, detectedAt[i] == 0 { detectedAt[i] = now }
                    case .stopped:
                        stopped += 1
                    default:
                        break
                    }
                }
            }
        }

        while true {
            let now = NIODeadline.now().uptimeNanoseconds
            let (stop, k) = lock.withLock { (stopRequested, killAt) }
            if stop || now >= deadline { break }
            kill = k
            while nextStart < count, startAt[nextStart] <= now {
                perform(machines[nextStart].start(now: NIODeadline.uptimeNanoseconds(now)), peer: nextStart, now: now)
                nextStart += 1
            }
            for i in 0..<count where wake[i] <= now {
                wake[i] = UInt64.max
                perform(machines[i].wakeUp(now: NIODeadline.uptimeNanoseconds(now)), peer: i, now: now)
            }
            let ready = tags.withUnsafeMutableBufferPointer { cpeerway_epoll_wait_tags(epfd, $0.baseAddress, Int32($0.count), 2) }
            guard ready > 0 else { continue }
            let received = NIODeadline.now().uptimeNanoseconds
            for r in 0..<Int(ready) {
                let i = Int(tags[r])
                while let (bytes, source) = receive(on: fds[i], into: buffer) {
                    guard let position = machines[i].supernodes.firstIndex(where: { $0.endpoint == source }) else { continue }
                    perform(machines[i].datagramReceived(bytes, from: position, now: NIODeadline.uptimeNanoseconds(received)),
                            peer: i, now: received)
                }
            }
        }
        for m in machines {
            handshakes += m.statistics.handshakes
            retransmissions += m.statistics.retransmissions
        }
    }

    private func send(_ bytes: ByteBuffer, from i: Int, to supernode: Int) {
        let e = endpoints[supernode]
        guard case .v4(let ip) = e.ip else { return }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = e.port.bigEndian
        sa.sin_addr.s_addr = ip.bigEndian
        _ = bytes.withUnsafeReadableBytes { raw in
            withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fds[i], raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    private func receive(on fd: Int32, into buffer: UnsafeMutableRawPointer) -> (ByteBuffer, STUNAddress)? {
        var sa = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, buffer, Self.receiveBytes, 0, $0, &length) }
        }
        guard n > 0 else { return nil }
        var bytes = ByteBuffer()
        bytes.writeBytes(UnsafeRawBufferPointer(start: buffer, count: n))
        return (bytes, STUNAddress(ip: .v4(UInt32(bigEndian: sa.sin_addr.s_addr)), port: UInt16(bigEndian: sa.sin_port)))
    }

    private static func localPort(_ fd: Int32) -> UInt16 {
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: bound.sin_port)
    }
}

/// What the failover population measured.
struct FailoverFigures: Codable {
    var peers = 0
    var keepaliveSeconds = 0
    /// Peers registered on the victim when it was killed.
    var onVictim = 0
    var failedOver = 0
    /// Kill -> first `disconnected` (the client noticed), milliseconds.
    var detectP50Millis = 0.0, detectP99Millis = 0.0
    /// Kill -> re-registered on another supernode, milliseconds.
    var failoverP50Millis = 0.0, failoverP99Millis = 0.0, failoverMaxMillis = 0.0
    /// Share of the victim's peers re-registered within two keepalive periods of the kill.
    var withinTwoKeepalives = 0.0
    /// Where they went: peers per supernode ("supernode N").
    var newHomes: [String: Int] = [:]
    var disconnects = 0, handshakes = 0, retransmissions = 0, stopped = 0
    var note = ""
}

extension FailoverPopulation {
    /// The figures, once `finish()` returned, for a kill at `kill` (NIODeadline nanoseconds).
    func figures(kill: UInt64) -> FailoverFigures {
        var f = FailoverFigures()
        f.peers = count
        f.keepaliveSeconds = Int(keepaliveSeconds)
        let victims = (0..<count).filter { homeAtKill[$0] == 0 && registeredAt[$0] != 0 && registeredAt[$0] < kill }
        f.onVictim = victims.count
        var failover: [Double] = [], detect: [Double] = []
        for i in victims {
            if detectedAt[i] > kill { detect.append(Double(detectedAt[i] - kill) / 1e6) }
            if failedOverAt[i] > kill {
                failover.append(Double(failedOverAt[i] - kill) / 1e6)
                f.newHomes["supernode \(newHome[i])", default: 0] += 1
            }
        }
        failover.sort()
        detect.sort()
        func q(_ v: [Double], _ p: Double) -> Double { v.isEmpty ? 0 : v[min(v.count - 1, Int(Double(v.count) * p))] }
        f.failedOver = failover.count
        f.detectP50Millis = q(detect, 0.5)
        f.detectP99Millis = q(detect, 0.99)
        f.failoverP50Millis = q(failover, 0.5)
        f.failoverP99Millis = q(failover, 0.99)
        f.failoverMaxMillis = failover.last ?? 0
        let bound = 2_000 * Double(keepaliveSeconds)
        f.withinTwoKeepalives = victims.isEmpty ? 0 : Double(failover.filter { $0 <= bound }.count) / Double(victims.count)
        f.disconnects = disconnects
        f.handshakes = handshakes
        f.retransmissions = retransmissions
        f.stopped = stopped
        return f
    }
}
