import Foundation
import NIOCore
import NIOConcurrencyHelpers
import PeerwayCheckpoint
import PeerwayRelay
import PeerwaySTUN
import PeerwayTunnel
#if canImport(Glibc)
import Glibc
#endif

/// An encrypted UDP tunnel's I/O, on a thread of its own: datagrams from the application's end
/// of a socket pair are sealed and sent on the path `TunnelPathMachine` chose; records from any
/// of the tunnel's sockets and paths are opened and handed to the application. The machine's
/// probes, relay binds and keepalives go out from here, and its moves reach the `Tunnel` as path
/// events. Records name no path, so a move loses nothing the paths themselves do not lose.
final class UDPTunnelPump: @unchecked Sendable {
    /// Milliseconds the loop sleeps in `poll` at most while the traversal still probes.
    static let upgradingPollMillis: Int32 = 10
    /// Milliseconds the loop sleeps in `poll` at most once the paths are only watched.
    static let watchingPollMillis: Int32 = 100
    /// Largest datagram read from either side.
    static let bufferBytes = 65_536
    /// Datagrams read from one socket before the others get their turn.
    static let drainBatch = 64
    /// Times a datagram is offered to a full send buffer before it counts as lost.
    static let fullBufferRetries = 4
    /// Milliseconds waited for room in a full send buffer between two offers.
    static let fullBufferWaitMillis: Int32 = 5

    /// Datagrams every UDP tunnel pump of this process sent to the network (records, probes,
    /// keepalives, binds), for `Tunnel.datagramsSent`.
    static let sentCount = NIOLockedValueBox(0)

    private var sockets: [TunnelSocket?]
    private let app: TunnelSocket
    private var crypto: TunnelRecordCrypto
    private var machine: TunnelPathMachine
    private let relayToken: RelayToken?
    /// Where `gather` asks for this side's address, and the request waiting for its answer.
    private let stunServer: STUNAddress?
    private var gathering: STUNMessage?
    private var watcherID: UInt64?
    private let onMove: @Sendable (TunnelPathMachine.Action) -> Void
    private let wake = PumpWake()
    /// `PumpWake` flag: the host's addresses changed.
    private static let networkChangedFlag = "network changed"
    /// `PumpWake` flag: `advertise` left an address in `advertised`.
    private static let advertisedFlag = "advertised"
    private let advertised = NIOLockedValueBox<PeerEndpoint?>(nil)

    /// - Parameters:
    ///   - sockets: every socket of the traversal (index as in the machine's pairs).
    ///   - onMove: called on the pump's thread with each `.use` and `.directAbandoned`.
    init(sockets: [TunnelSocket], app: TunnelSocket, keys: TunnelKeys, machine: TunnelPathMachine, relayToken: RelayToken?,
         stunServer: STUNAddress?, onMove: @escaping @Sendable (TunnelPathMachine.Action) -> Void) {
        self.stunServer = stunServer
        self.sockets = sockets
        self.app = app
        crypto = TunnelRecordCrypto(keys: keys)
        self.machine = machine
        self.relayToken = relayToken
        self.onMove = onMove
    }

    func start() {
        watcherID = NetworkWatcher.shared.listen { [weak self] in self?.noteNetworkChange() }
        let thread = Thread { [self] in run() }
        thread.name = "peerway-tunnel"
        thread.start()
    }

    /// Ends the pump: the other side is told, then every socket closes. Safe after the pump
    /// ended by itself (its descriptors are not touched again).
    func stop() { wake.stop() }

    private func noteNetworkChange() { wake.raise(Self.networkChangedFlag) }

    /// Another address of this side for the other side to probe (from any thread).
    func advertise(_ address: PeerEndpoint) {
        advertised.withLockedValue { $0 = address }
        wake.raise(Self.advertisedFlag)
    }

    private static func millis() -> UInt64 { DispatchTime.now().uptimeNanoseconds / 1_000_000 }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: Self.bufferBytes)
        defer {
            if let bye = crypto.closeRecord(stream: false) {
                send(bye, on: machine.active)
                if let relay = machine.relay, relay != machine.active { send(bye, on: relay) }
            }
            for s in sockets { s?.close() }
            app.close()
            if let watcherID { NetworkWatcher.shared.stop(watcherID) }
            wake.exit()
        }
        var pruned = false
        while !wake.stopRequested {
            if wake.take(Self.advertisedFlag), let address = advertised.withLockedValue({ $0 }) {
                machine.advertise(address)
            }
            if wake.take(Self.networkChangedFlag) { perform(machine.networkChanged(nowMillis: Self.millis())) }
            perform(machine.tick(nowMillis: Self.millis()))
            if !pruned && !machine.isUpgrading {
                pruneSockets()
                pruned = true
            }
            var fds = [app.fd, wake.descriptor]
            var owners: [Int] = [-1, -1]
            for (i, s) in sockets.enumerated() { if let s { fds.append(s.fd); owners.append(i) } }
            var entries = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let timeout = machine.isUpgrading ? Self.upgradingPollMillis : Self.watchingPollMillis
            let rc = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeout) }
            if rc < 0 && errno != EINTR { return }
            if entries[1].revents != 0 { return }
            if entries[0].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { recv(app.fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return }  // the application closed its end
                let record = buffer.withUnsafeBytes { crypto.sealDatagram(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
                send(record, on: machine.active)
                machine.sent(nowMillis: Self.millis())
            }
            for k in 2..<entries.count where entries[k].revents != 0 {
                let i = owners[k]
                var drained = 0
                while drained < Self.drainBatch, let socket = sockets[i],
                      let (n, source) = buffer.withUnsafeMutableBytes({ socket.receive(into: $0) }) {
                    drained += 1
                    let keepGoing = buffer.withUnsafeBytes { handle(UnsafeRawBufferPointer(rebasing: $0[..<n]), socket: i, from: source) }
                    if !keepGoing { return }
                }
            }
        }
    }

    /// False when the other side closed the tunnel.
    private func handle(_ bytes: UnsafeRawBufferPointer, socket: Int, from source: PeerEndpoint) -> Bool {
        let now = Self.millis()
        if let relayToken, source == machine.relay?.remote, RelayMessage.answeredToken(bytes) == relayToken {
            machine.relayAnswered()
            return true
        }
        if TunnelProbe.isProbe(bytes) {
            if let probe = try? TunnelProbe.open(bytes, keys: crypto.keys),
               let kind = UDPTraversalMachine.ProbeKind(rawValue: probe.kind.rawValue) {
                perform(machine.received(kind, txid: probe.txid, socket: socket, from: source, observed: probe.observed, nowMillis: now))
            }
            return true
        }
        if let request = gathering, source == stunServer, socket == 0 {
            var b = ByteBuffer(bytes: bytes)
            if let message = try? b.readSTUNMessage(), message.transactionID == request.transactionID,
               message.type == .bindingSuccess, let mapped = message.mappedAddress {
                gathering = nil
                machine.gathered(mapped, nowMillis: now)
                return true
            }
        }
        switch crypto.openDatagram(bytes) {
        case .data(let payload):
            machine.heard(socket: socket, from: source, nowMillis: now)
            writeApp(payload)
        case .keepalive:
            machine.heard(socket: socket, from: source, nowMillis: now)
        case .closed:
            return false
        case .nothing:
            break
        }
        return true
    }

    private func perform(_ actions: [TunnelPathMachine.Action]) {
        for action in actions {
            switch action {
            case .probe(let kind, let txid, let socket, let to, let observed):
                guard let k = TunnelProbe.Kind(rawValue: kind.rawValue) else { continue }
                send(TunnelProbe.seal(kind: k, txid: txid, observed: observed, keys: crypto.keys), on: .init(socket: socket, remote: to))
            case .bindRelay(let to):
                if let relayToken { send(RelayMessage.bind(relayToken), on: .init(socket: 0, remote: to)) }
            case .keepalive(let pair):
                send(crypto.keepaliveDatagram(), on: pair)
            case .gather:
                guard let stunServer else { continue }
                let request = STUNMessage(type: .bindingRequest)
                gathering = request
                send(request.encodedBytes(), on: .init(socket: 0, remote: stunServer))
            case .use, .directAbandoned:
                onMove(action)
            }
        }
    }

    /// Once the traversal is over, only the sockets of the relay and of the direct pair stay.
    private func pruneSockets() {
        var keep: Set<Int> = [0, machine.active.socket]
        if let direct = machine.direct { keep.insert(direct.socket) }
        for i in sockets.indices where !keep.contains(i) {
            sockets[i]?.close()
            sockets[i] = nil
        }
    }

    /// A refused datagram is a lost one (retransmission and the path checks cover it); a full
    /// send buffer is waited for a little, so a fast sender is slowed rather than dropped.
    private func send(_ bytes: [UInt8], on pair: TunnelPathMachine.Pair) {
        guard pair.socket < sockets.count, let socket = sockets[pair.socket] else { return }
        Self.sentCount.withLockedValue { $0 += 1 }
        for _ in 0..<Self.fullBufferRetries {
            if socket.send(bytes, to: pair.remote) { return }
            guard errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS else { return }
            _ = TunnelSocket.poll([socket.fd], events: Int16(POLLOUT), timeoutMillis: Self.fullBufferWaitMillis)
        }
    }

    private func writeApp(_ bytes: [UInt8]) {
        while true {
            let n = bytes.withUnsafeBytes { Glibc.send(app.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            return
        }
    }
}
