import Foundation
import NIOCore
import PeerwayCheckpoint
import PeerwayRelay
import PeerwaySTUN
import PeerwayTunnel

/// The I/O around `UDPTraversalMachine`: its sockets, the probes' keys, the relay bind. Runs on a
/// thread of its own (blocking `poll`), so a traversal never holds an event loop.
enum UDPTraversal {
    /// Milliseconds the loop sleeps in `poll` at most (the machine's timers are coarser).
    static let pollMillis: Int32 = 10
    /// Largest datagram read while traversing.
    static let receiveBufferBytes = 2048

    /// A traversal's result: the socket that won, the remote address, how; relay first, also
    /// the machine still probing for a direct path and every socket it probes from.
    struct Outcome: Sendable {
        var socket: TunnelSocket
        var remote: STUNAddress
        var method: TraversalMethod
        var path: TunnelPath
        var probesSent: Int
        /// The machine as it was at `established` (not finished: relay first goes on probing).
        var machine: UDPTraversalMachine
        /// The winner alone, or (machine not finished) every socket, indexed as the machine's pairs.
        var sockets: [TunnelSocket]
        /// The relay token of the plan, when it had a readable one.
        var relayToken: RelayToken?
    }

    /// Asks a STUN server for `socket`'s server-reflexive address (RFC 8489 Binding), retrying
    /// every `retryMillis` until `timeoutMillis`. Blocking; nil when no answer came.
    static func reflexiveAddress(socket: TunnelSocket, server: STUNAddress, timeoutMillis: Int = 1_500,
                                 retryMillis: Int = 250) -> STUNAddress? {
        let request = STUNMessage(type: .bindingRequest)
        let bytes = request.encodedBytes()
        let start = Self.millis()
        var lastSent = 0
        var buffer = [UInt8](repeating: 0, count: receiveBufferBytes)
        while Self.millis() - start < timeoutMillis {
            if lastSent == 0 || Self.millis() - lastSent >= retryMillis {
                socket.send(bytes, to: server)
                lastSent = Self.millis()
            }
            _ = TunnelSocket.poll([socket.fd], timeoutMillis: 20)
            while let (n, source) = buffer.withUnsafeMutableBytes({ socket.receive(into: $0) }) {
                guard source == server else { continue }
                var b = ByteBuffer(bytes: buffer[0..<n])
                if let message = try? b.readSTUNMessage(), message.transactionID == request.transactionID,
                   message.type == .bindingSuccess, let mapped = message.mappedAddress {
                    return mapped
                }
            }
        }
        return nil
    }

    static func millis() -> Int { Int(DispatchTime.now().uptimeNanoseconds / 1_000_000) }

    /// Runs the traversal to its end. `first` is the socket whose reflexive address was offered
    /// (the caller keeps owning it); more sockets are opened on `bindAddress` if the plan asks for
    /// them, and closed here unless one of them won.
    /// `relayFirst`: the first working path (normally the relay) ends the run; the outcome's
    /// machine and sockets go on looking for a direct path in the tunnel's pump.
    static func run(plan: TraversalPlan, role: TraversalRole, keys: TunnelKeys, first: TunnelSocket,
                    bindAddress: STUNAddress, relayFirst: Bool) -> Result<Outcome, PeerError> {
        var machine = UDPTraversalMachine(role: role, plan: plan, nowMillis: UInt64(millis()), seed: UInt64.random(in: 1...UInt64.max),
                                          relayFirst: relayFirst)
        let debug = ProcessInfo.processInfo.environment["PEERWAY_DEBUG_TRAVERSAL"] != nil
        var received = 0, opened = 0
        if debug {
            FileHandle.standardError.write(Data("traversal \(role): method \(plan.method) window \(plan.directWindowMillis) sockets \(plan.localSockets) targets \(plan.targets.map { "\($0.method):\($0.endpoint)x\($0.count)" }) spray \(plan.spray.map { "\($0.address)x\($0.count)" } ?? "-") relay \(plan.relay?.udp.map(\.description) ?? "-")\n".utf8))
        }
        var sockets = [first]
        for _ in 1..<machine.socketCount {
            guard let s = try? TunnelSocket.udp(bound: STUNAddress(ip: bindAddress.ip, port: 0)) else { break }
            sockets.append(s)
        }
        // The plan's token as the relay reads it (a malformed one is never answered: relay lost).
        let relayToken = plan.relay.flatMap { RelayToken(bytes: $0.token) }
        let bind = relayToken.map(RelayMessage.bind) ?? []
        var buffer = [UInt8](repeating: 0, count: receiveBufferBytes)
        let fds = sockets.map(\.fd)
        func finish(_ result: Result<Outcome, PeerError>) -> Result<Outcome, PeerError> {
            if debug {
                let summary: String
                switch result {
                case .success(let o): summary = "\(o.path) by \(o.method) to \(o.remote)\(o.machine.isFinished ? "" : ", still looking for a direct path")"
                case .failure(let e): summary = "failed: \(e)"
                }
                FileHandle.standardError.write(Data("traversal \(role): done, \(summary), after \(machine.probesSent) probes sent, \(received) datagrams received, \(opened) probes opened\n".utf8))
            }
            // `first` belongs to the caller (it closes it unless it won); the others are ours.
            for s in sockets.dropFirst() {
                if case .success(let o) = result, o.sockets.contains(where: { $0.fd == s.fd }) { continue }
                s.close()
            }
            return result
        }
        func perform(_ actions: [UDPTraversalMachine.Action]) -> Result<Outcome, PeerError>? {
            for action in actions {
                switch action {
                case .probe(let kind, let txid, let socket, let to, let observed):
                    guard socket < sockets.count, let k = TunnelProbe.Kind(rawValue: kind.rawValue) else { continue }
                    sockets[socket].send(TunnelProbe.seal(kind: k, txid: txid, observed: observed, keys: keys), to: to)
                case .bindRelay(let to):
                    sockets[0].send(bind, to: to)
                case .established(let pair, let method, let path):
                    guard pair.socket < sockets.count else { return .failure(.traversalFailed("established on a socket that is gone")) }
                    return .success(Outcome(socket: sockets[pair.socket], remote: pair.remote, method: method, path: path,
                                            probesSent: machine.probesSent, machine: machine,
                                            sockets: machine.isFinished ? [sockets[pair.socket]] : sockets, relayToken: relayToken))
                case .directAbandoned(let why):
                    return .failure(.traversalFailed(why))
                case .failed(let why):
                    return .failure(.traversalFailed(why))
                }
            }
            return nil
        }
        while true {
            if let done = perform(machine.tick(nowMillis: UInt64(millis()))) { return finish(done) }
            let ready = TunnelSocket.poll(fds, timeoutMillis: pollMillis)
            for (i, revents) in ready.enumerated() where revents != 0 {
                var drained = 0
                while drained < 256, let (n, source) = buffer.withUnsafeMutableBytes({ sockets[i].receive(into: $0) }) {
                    drained += 1
                    received += 1
                    let handled: Result<Outcome, PeerError>? = buffer.withUnsafeBytes { raw in
                        let bytes = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                        if source == machine.relayEndpoint, let relayToken, RelayMessage.answeredToken(bytes) == relayToken {
                            machine.relayAnswered()
                            return nil
                        }
                        guard TunnelProbe.isProbe(bytes), let probe = try? TunnelProbe.open(bytes, keys: keys),
                              let kind = UDPTraversalMachine.ProbeKind(rawValue: probe.kind.rawValue) else { return nil }
                        opened += 1
                        return perform(machine.received(kind, txid: probe.txid, socket: i, from: source, nowMillis: UInt64(millis())))
                    }
                    if let handled { return finish(handled) }
                }
            }
        }
    }
}

/// Runs blocking work on a thread of its own and resumes the caller when it is done.
func runOnOwnThread<T: Sendable>(name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.name = name
        thread.start()
    }
}
