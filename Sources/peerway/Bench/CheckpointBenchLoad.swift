#if canImport(Glibc)
import Glibc
#endif
import CPeerwayLinux
import Foundation
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN

/*
 The checkpoint load generator's state: N simulated peers speaking the real control protocol
 over K UDP sockets, each bound to its own loopback address 127.2.x.y (the checkpoint limits
 hellos per source IP, so K addresses spread that limit like K hosts would).

 Peers are laid out in blocks: socket s carries peers [s*B, (s+1)*B), and registers them with
 target s % T of the configuration's T supernodes (one unless `otherTargets` names more, as
 `peerway bench cluster` does to spread peers over a network of supernodes). A socket runs one
 registration at a time (hello, cookie, hello with cookie, hello reply, register, registered):
 the cookie and the hello reply name no peer, so the socket they arrive on does. Sealed packets
 carry their session id, which finds the peer (`peerOfSession`). Per-peer state lives in flat
 arrays indexed by peer number (about 150 bytes per peer); identities are derived from the peer
 number (`PeerIdentity(seed:)`), so runs are repeatable.

 Request ids: register 1; keepalive 0x4000_0000 | sequence; sendMessage 0x8000_0000 | window slot.
*/

/// Parameters of one checkpoint load run.
struct CheckpointLoadConfiguration {
    static let maximumPeers = 4_000_000
    static let maximumSockets = 16_384
    /// Datagrams per sendmmsg/recvmmsg call.
    static let batch = 64
    static let registerID: UInt32 = 1
    static let keepaliveTag: UInt32 = 0x4000_0000
    static let messageTag: UInt32 = 0x8000_0000

    var server: SupernodeAddress
    var endpoint: STUNAddress
    /// More supernodes to spread the peers over (socket s registers with target s % count, the
    /// first target being `server`).
    var otherTargets: [CheckpointLoadTarget] = []
    /// The first socket's address (127.2.0.1); socket i binds this + i.
    var firstSocketIP: UInt32 = 0x7F02_0001
    var serverPID: Int32?
    var peers = 10_000
    var sockets = 1024
    var handshakesInFlight = 1024
    var keepaliveSeconds = 25
    /// Seconds of the steady (keepalive-only) phase.
    var duration = 20.0
    var messagePairs = 1000
    var window = 1
    /// Messages per second overall; 0 = as fast as the outcomes come back.
    var messageRate = 0
    var messageDuration = 10.0
    var messageBytes = 64
    var registerTimeout = 600.0
    /// Overall deadline, seconds from the start: the run stops by itself.
    var deadline = 900.0
    var handshakeTimeout = 2.0
    var messageTimeout = 15.0
    var progressSeconds = 3.0
    /// Register one metadata entry (`name=peer-N`) instead of none.
    var metadata = false
    var progress: (String) -> Void = { say($0) }
}

/// A supernode a load registers peers with.
struct CheckpointLoadTarget {
    var address: SupernodeAddress
    var endpoint: STUNAddress
}

extension CheckpointLoadConfiguration {
    /// Every supernode of the run, `server` first.
    var targets: [CheckpointLoadTarget] { [CheckpointLoadTarget(address: server, endpoint: endpoint)] + otherTargets }
}

/// What a run measured.
struct CheckpointBenchResult: Codable {
    var server = ""
    var peers = 0, sockets = 0, keepaliveSeconds = 0
    // registration
    var registered = 0
    var registerSeconds = 0.0
    var registrationsPerSecond = 0.0
    var handshakeRetransmits = 0, registerRetransmits = 0, handshakeRestarts = 0, sessionUnknown = 0
    var registerServerCPUPercent = -1.0, registerGeneratorCPUPercent = -1.0
    // steady keepalive phase
    var steadySeconds = 0.0
    var keepalivesSent = 0, keepaliveAcks = 0
    var keepalivesExpectedPerSecond = 0.0
    var keepaliveAcksPerSecond = 0.0
    var keepaliveP50Microseconds = 0.0, keepaliveP99Microseconds = 0.0
    var steadyServerCPUPercent = -1.0, steadyGeneratorCPUPercent = -1.0
    /// Keepalives unanswered when the next one was due, over the whole run.
    var keepalivesUnanswered = 0
    // message phase
    var messagePairs = 0, messageWindow = 0, messageRate = 0
    var messageSeconds = 0.0
    var messagesSent = 0, messagesDelivered = 0, messagesFailed = 0, messagesTimedOut = 0, messagesRefused = 0
    var messagesPerSecond = 0.0
    var messageP50Microseconds = 0.0, messageP99Microseconds = 0.0
    var messageKeepaliveAcksPerSecond = 0.0
    var messageServerCPUPercent = -1.0, messageGeneratorCPUPercent = -1.0
    // memory (KiB; -1 unknown)
    var serverRSSBeforeKiB = -1, serverRSSAfterKiB = -1, serverHWMKiB = -1
    var serverBytesPerPeer = -1.0
    // anomalies
    var errors: [String: Int] = [:]
    var authenticationFailures = 0, replays = 0, unknownSessionPackets = 0, sendFailures = 0
    var stoppedByDeadline = false
}

enum CheckpointLoadError: Error, CustomStringConvertible {
    case socket(String, Int32)
    var description: String {
        switch self {
        case .socket(let what, let e): return "checkpoint load: \(what) failed: \(String(cString: strerror(e)))"
        }
    }
}

/// Phases of a run, in order.
enum CheckpointLoadPhase: String {
    case registering, steady, messaging, done
}

struct CheckpointLoad {
    /// The configuration; the cluster bench changes the message rate between its phases.
    var c: CheckpointLoadConfiguration
    let n: Int
    /// Peers per socket.
    let block: Int
    let socketCount: Int
    /// The supernodes peers register with (`c.targets`).
    let targets: [CheckpointLoadTarget]
    /// Per socket: the index in `targets` of the supernode its peers register with.
    var socketTarget: [Int]
    var result = CheckpointBenchResult()
    var phase = CheckpointLoadPhase.registering

    // Sockets and batched I/O.
    var fds: [Int32] = []
    var epfd: Int32 = -1
    var socketIPs: [UInt32] = []
    var socketPorts: [UInt16] = []
    let sendSlot = ControlLimits.maximumDatagramBytes
    let recvSlot = ControlLimits.maximumDatagramBytes + 1
    let sendBuffers: UnsafeMutableRawPointer
    let recvBuffers: UnsafeMutableRawPointer
    let addressSlots: UnsafeMutableRawPointer
    var sendLengths = [UInt32](repeating: 0, count: CheckpointLoadConfiguration.batch)
    var recvLengths = [UInt32](repeating: 0, count: CheckpointLoadConfiguration.batch)
    var staged = 0
    var stagedSocket = -1
    var datagram = ByteBuffer()

    // Per socket: the registration it runs.
    var hsPeer: [Int32]
    /// 0 idle, 1 hello sent, 2 hello with cookie sent, 3 register sent.
    var hsStage: [UInt8]
    var hsSentAt: [UInt64]
    var hsTries: [UInt8]
    var hsInitiator: [ControlHandshakeInitiator?]
    var hsRegister: [ByteBuffer?]
    var blockCursor: [Int]
    var redo: [[Int32]]
    var idleSockets: [Int32] = []
    var isIdle: [Bool]
    var activeHandshakes = 0
    /// Smoothed answer time of a handshake step (nanoseconds): the retransmission timeout is
    /// `handshakeTimeout` or 4 times this, whichever is longer, so a server that is slow to
    /// answer is not sent retransmissions it would have to answer too.
    var stepNanos = 0.0

    // Per peer.
    /// 0 not registered, 1 registering, 2 registered, 3 refused.
    var peerPhase: [UInt8]
    var sessionIDs: [UInt64]
    var sendKeys: [ControlKey]
    var receiveKeys: [ControlKey]
    var sendCounters: [UInt64]
    var replays: [ReplayWindow]
    var peerHigh: [UInt64]
    var peerLow: [UInt64]
    var keepaliveSentAt: [UInt64]
    var keepaliveIDs: [UInt32]
    var peerOfSession: [UInt64: Int32] = [:]

    // Counters.
    var registered = 0
    var lastRegistrationAt: UInt64 = 0
    /// When set, the time of every registration from then on (the cluster bench's failover).
    var registrationTimes: [UInt64]?
    var keepaliveStart: UInt64 = 0
    var keepalivePosition = 0
    var keepaliveSequence: UInt32 = 0
    var keepalivesSent = 0, keepaliveAcks = 0
    var recordKeepaliveLatency = false
    var keepaliveLatencies: [UInt32] = []

    // Messages: pair i sends from peer 2*i*stride to peer (2*i+1)*stride.
    var pairs = 0
    var pairStride = 1
    var messageSentAt: [UInt64] = []
    var messageIDOf: [UInt64] = []
    var nextMessageID: [UInt64] = []
    var messageLatencies: [UInt32] = []
    var messagesSent = 0, messagesDelivered = 0, messagesFailed = 0, messagesTimedOut = 0, messagesRefused = 0
    var messageCursor = 0
    let messageText: String
    /// Pairs the caller chose (`usePairs`), instead of the default layout.
    var pairList: CheckpointLoadPairs?
    /// Lookups and searches sent by registered peers (CheckpointBenchQueries.swift).
    var queries = CheckpointLoadQueries()

    init(_ configuration: CheckpointLoadConfiguration) throws {
        c = configuration
        n = configuration.peers
        let k = max(1, min(configuration.sockets, n))
        let perSocket = (configuration.peers + k - 1) / k
        block = perSocket
        socketCount = (n + perSocket - 1) / perSocket
        targets = configuration.targets
        socketTarget = (0..<socketCount).map { [count = configuration.targets.count] in $0 % count }
        let batch = CheckpointLoadConfiguration.batch
        sendBuffers = .allocate(byteCount: batch * ControlLimits.maximumDatagramBytes, alignment: 16)
        recvBuffers = .allocate(byteCount: batch * (ControlLimits.maximumDatagramBytes + 1), alignment: 16)
        addressSlots = .allocate(byteCount: configuration.targets.count * batch * Int(CPEERWAY_ADDRESS_SLOT), alignment: 16)
        datagram.reserveCapacity(ControlLimits.maximumDatagramBytes + 1)
        hsPeer = Array(repeating: -1, count: socketCount)
        hsStage = Array(repeating: 0, count: socketCount)
        hsSentAt = Array(repeating: 0, count: socketCount)
        hsTries = Array(repeating: 0, count: socketCount)
        hsInitiator = Array(repeating: nil, count: socketCount)
        hsRegister = Array(repeating: nil, count: socketCount)
        blockCursor = (0..<((configuration.peers + perSocket - 1) / perSocket)).map { $0 * perSocket }
        redo = Array(repeating: [], count: socketCount)
        isIdle = Array(repeating: true, count: socketCount)
        idleSockets = (0..<Int32(socketCount)).reversed()
        let zero = ControlKey(bytes: [UInt8](repeating: 0, count: 32))
        peerPhase = Array(repeating: 0, count: n)
        sessionIDs = Array(repeating: 0, count: n)
        sendKeys = Array(repeating: zero, count: n)
        receiveKeys = Array(repeating: zero, count: n)
        sendCounters = Array(repeating: 0, count: n)
        replays = Array(repeating: ReplayWindow(), count: n)
        peerHigh = Array(repeating: 0, count: n)
        peerLow = Array(repeating: 0, count: n)
        keepaliveSentAt = Array(repeating: 0, count: n)
        keepaliveIDs = Array(repeating: 0, count: n)
        peerOfSession.reserveCapacity(n)
        messageText = String(repeating: "m", count: max(0, min(configuration.messageBytes, ControlLimits.maximumMessageBytes)))
        try openSockets()
    }

    /// Binds one non-blocking UDP socket per loopback address (127.2.x.y unless `firstSocketIP`
    /// says otherwise) and registers it with epoll; fills one batch of destination slots per target.
    mutating func openSockets() throws {
        epfd = cpeerway_epoll_create()
        guard epfd >= 0 else { throw CheckpointLoadError.socket("epoll_create1", errno) }
        for i in 0..<socketCount {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw CheckpointLoadError.socket("socket", errno) }
            fds.append(fd)
            var size: Int32 = 1 << 20
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            let ip = c.firstSocketIP &+ UInt32(i)
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = 0
            sa.sin_addr.s_addr = ip.bigEndian
            let rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { throw CheckpointLoadError.socket("bind to \(STUNAddress(ip: .v4(ip), port: 0).ipString)", errno) }
            socketIPs.append(ip)
            var bound = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &bound) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            socketPorts.append(UInt16(bigEndian: bound.sin_port))
            guard cpeerway_epoll_add(epfd, fd, UInt32(i)) == 0 else { throw CheckpointLoadError.socket("epoll_ctl", errno) }
        }
        for (t, target) in targets.enumerated() {
            guard case .v4(let serverIP) = target.endpoint.ip else { continue }
            var ipBytes = [UInt8](repeating: 0, count: 4)
            for b in 0..<4 { ipBytes[b] = UInt8(truncatingIfNeeded: serverIP >> (24 - 8 * UInt32(b))) }
            for slot in 0..<CheckpointLoadConfiguration.batch {
                cpeerway_write_address(addressSlot(target: t, slot: slot), 4, ipBytes, target.endpoint.port)
            }
        }
    }

    /// Destination slot `slot` of target `t`'s batch.
    func addressSlot(target t: Int, slot: Int) -> UnsafeMutableRawPointer {
        addressSlots + (t * CheckpointLoadConfiguration.batch + slot) * Int(CPEERWAY_ADDRESS_SLOT)
    }

    /// A fresh handshake with the supernode socket `s` registers with.
    func initiator(forSocket s: Int) -> ControlHandshakeInitiator {
        ControlHandshakeInitiator(checkpointKey: targets[socketTarget[s]].address.publicKey)
    }

    /// Closes the sockets and frees the buffers.
    func close() {
        for fd in fds { _ = Glibc.close(fd) }
        if epfd >= 0 { _ = Glibc.close(epfd) }
        sendBuffers.deallocate()
        recvBuffers.deallocate()
        addressSlots.deallocate()
    }

    func socketOf(_ peer: Int) -> Int { peer / block }

    // MARK: - Sending

    /// Queues a datagram from socket `s`; batches go out per socket with sendmmsg.
    mutating func stage(_ s: Int, _ bytes: ByteBuffer) {
        if staged > 0 && (stagedSocket != s || staged == CheckpointLoadConfiguration.batch) { flush() }
        stagedSocket = s
        guard bytes.readableBytes <= sendSlot else { result.sendFailures += 1; return }
        let slot = sendBuffers + staged * sendSlot
        bytes.withUnsafeReadableBytes { slot.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        sendLengths[staged] = UInt32(bytes.readableBytes)
        staged += 1
    }

    mutating func flush() {
        guard staged > 0 else { return }
        var offset = 0
        let fd = fds[stagedSocket], buffers = sendBuffers, slot = sendSlot, count = staged
        let addresses = addressSlot(target: socketTarget[stagedSocket], slot: 0)
        while offset < staged {
            let sent = sendLengths.withUnsafeBufferPointer { lengths in
                cpeerway_send_to_batch(fd, buffers + offset * slot, slot, lengths.baseAddress! + offset,
                                       addresses, UInt32(count - offset))
            }
            if sent <= 0 {
                result.sendFailures += staged - offset
                break
            }
            offset += Int(sent)
        }
        staged = 0
    }

    /// Seals `frame` for peer `p`'s session and queues it on its socket.
    mutating func send(_ frame: ControlFrame, id: UInt32, peer p: Int) {
        var plain = ByteBuffer()
        plain.reserveCapacity(64)
        plain.writeControlFrame(frame, id: id)
        sendPlain(plain, peer: p)
    }

    mutating func sendPlain(_ plain: ByteBuffer, peer p: Int) {
        sendCounters[p] += 1
        let packet = ControlCipher.sealPacket(plain, sessionID: sessionIDs[p], counter: sendCounters[p], key: sendKeys[p])
        stage(socketOf(p), packet)
    }

    mutating func sendHello(_ s: Int, now: UInt64) {
        guard let initiator = hsInitiator[s] else { return }
        var b = ByteBuffer()
        b.reserveCapacity(ControlLimits.minimumHelloBytes)
        b.writeControlPacket(initiator.hello)
        stage(s, b)
        hsSentAt[s] = now
    }

    /// The deterministic identity of peer `p`.
    static func identity(_ p: Int) -> PeerIdentity {
        var seed = [UInt8](repeating: 0, count: 32)
        for i in 0..<8 { seed[i] = UInt8(truncatingIfNeeded: UInt64(p) >> (56 - 8 * UInt64(i))) }
        for i in 8..<32 { seed[i] = UInt8(truncatingIfNeeded: 0xA5 &+ i &* 37) }
        return try! PeerIdentity(seed: seed)
    }
}
