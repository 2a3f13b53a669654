import Foundation
import Peerway
import PeerwayCheckpoint

/// `peerway peer`'s tunnel commands: `connect`, `accept`/`refuse`, `send-bytes`, `close`, and
/// what `--echo` does with each tunnel it accepts.
extension PeerSession {
    func connect(_ rest: String) async throws {
        let parts = rest.split(separator: " ", maxSplits: 2).map(String.init)
        let usage = "connect ID udp|tcp [NOTE]"
        let to = try peerID(parts.first ?? "", usage: usage)
        guard parts.count >= 2, let transport = ["udp": TunnelTransport.udp, "tcp": .tcp][parts[1].lowercased()] else {
            throw UsageError(text: "usage: \(usage)")
        }
        let note = parts.count > 2 ? parts[2] : ""
        output.emit("connecting", [("peer", .string(to.description)), ("transport", .string(transport.description))],
                    human: "asking \(to) for a \(transport) tunnel...")
        let started = ContinuousClock.now
        let answer = try await peer.requestConnection(to: to, transport: transport, note: note)
        switch answer {
        case .accepted(let requestID):
            output.emit("connect-answer", [("peer", .string(to.description)), ("accepted", .bool(true)), ("transport", .string(transport.description)),
                                           ("request", .string(String(requestID)))],
                        human: "\(to) accepted the \(transport) connection; making the tunnel...")
            do {
                let tunnel = try await peer.openTunnel(to: to, requestID: requestID, transport: transport, options: tunnelOptions)
                opened(tunnel, totalMillis: Self.millis(since: started))
            } catch {
                output.emit("tunnel-failed", [("peer", .string(to.description)), ("transport", .string(transport.description)),
                                              ("error", .string("\(error)"))],
                            human: "no \(transport) tunnel to \(to): \(error)")
            }
        case .refused(let reason):
            output.emit("connect-answer", [("peer", .string(to.description)), ("accepted", .bool(false)), ("reason", .string(reason))],
                        human: "\(to) refused the connection: \(reason.isEmpty ? "no reason given" : reason)")
        }
    }

    func answer(_ rest: String, accept: Bool) async throws {
        // `accept [ID]` / `refuse [ID] [REASON]`: the oldest pending request, or the one from ID.
        var reason = rest
        var index = pendingRequests.startIndex
        if let first = rest.split(separator: " ").first, let from = PeerID(String(first)) {
            guard let i = pendingRequests.firstIndex(where: { $0.from == from }) else {
                throw UsageError(text: "no pending connection request from \(from)")
            }
            index = i
            reason = String(rest.dropFirst(first.count)).trimmingCharacters(in: .whitespaces)
        }
        guard index < pendingRequests.endIndex else { throw UsageError(text: "no pending connection request") }
        let request = pendingRequests.remove(at: index)
        guard accept else {
            do {
                try await peer.answer(request, accept: false, reason: reason)
            } catch {
                pendingRequests.insert(request, at: min(index, pendingRequests.count))
                throw error
            }
            output.emit("answered", [("peer", .string(request.from.description)), ("accepted", .bool(false)), ("reason", .string(reason))],
                        human: "refused \(request.from)'s request")
            return
        }
        await acceptAndOpen(request)
    }

    /// Accepts `request` and makes its tunnel.
    func acceptAndOpen(_ request: IncomingConnectRequest) async {
        let started = ContinuousClock.now
        do {
            let tunnel = try await peer.accept(request, options: tunnelOptions)
            output.emit("answered", [("peer", .string(request.from.description)), ("accepted", .bool(true)), ("reason", .string(""))],
                        human: "accepted \(request.from)'s request")
            opened(tunnel, totalMillis: Self.millis(since: started))
        } catch {
            output.emit("tunnel-failed", [("peer", .string(request.from.description)), ("transport", .string(request.transport.description)),
                                          ("error", .string("\(error)"))],
                        human: "no \(request.transport) tunnel with \(request.from): \(error)")
        }
    }

    static func millis(since start: ContinuousClock.Instant) -> Int {
        let d = ContinuousClock.now - start
        return Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
    }

    /// A tunnel is up: print it, keep it, and echo or print what arrives on the acceptor's side.
    func opened(_ tunnel: Tunnel, totalMillis: Int) {
        tunnels[tunnel.peer]?.close()
        tunnels[tunnel.peer] = tunnel
        output.emit("tunnel", [("peer", .string(tunnel.peer.description)), ("transport", .string(tunnel.transport.description)),
                               ("path", .string(tunnel.path.description)), ("method", .string(tunnel.method.description)),
                               ("ms", .int(totalMillis)), ("traversal_ms", .int(tunnel.setupMilliseconds)),
                               ("encrypted", .bool(tunnel.isEncrypted)), ("role", .string(tunnel.role == .initiator ? "initiator" : "acceptor")),
                               ("remote", .string(tunnel.remote.description)), ("upgrading", .bool(tunnel.isUpgrading))],
                    human: "\(tunnel) (\(totalMillis) ms in all)")
        Self.reportPaths(of: tunnel, to: output)
        guard tunnel.role == .acceptor else { return }
        if echo {
            PeerTunnelIO.echo(tunnel)
        } else {
            let output = self.output, from = tunnel.peer
            PeerTunnelIO.read(tunnel) { n, text in
                output.emit("data", [("peer", .string(from.description)), ("bytes", .int(n)), ("text", text.map { .string($0) } ?? .null)],
                            human: "\(from) sent \(n) bytes\(text.map { ": \($0)" } ?? "")")
            }
        }
    }

    /// Prints the tunnel's path changes as `path` events until it closes:
    /// `{"event":"path","peer":ID,"change":"direct"|"relayed"|"new-address"|"direct-abandoned","path":...,"method":...,
    /// "remote":...,"rtt_ms":...,"direct_ms":...}` (`direct_ms`: from the connect to the first direct path).
    nonisolated static func reportPaths(of tunnel: Tunnel, to output: PeerOutput) {
        let events = tunnel.pathEvents
        let peer = tunnel.peer
        Task { [weak tunnel] in
            for await event in events {
                let change: String
                var fields: [(String, JSONValue)] = [("peer", .string(peer.description))]
                switch event.change {
                case .direct: change = "direct"
                case .relayed: change = "relayed"
                case .newAddress: change = "new-address"
                case .directAbandoned(let why):
                    change = "direct-abandoned"
                    fields.append(("reason", .string(why)))
                }
                fields += [("change", .string(change)), ("path", .string(event.path.description)), ("method", .string(event.method.description)),
                           ("remote", .string(event.remote.description))]
                if let rtt = event.roundTrip { fields.append(("rtt_ms", .number(Double(rtt.components.attoseconds) / 1e15 + Double(rtt.components.seconds) * 1000))) }
                if let direct = tunnel?.timeToDirect {
                    fields.append(("direct_ms", .int(Int(direct.components.seconds * 1000 + direct.components.attoseconds / 1_000_000_000_000_000))))
                }
                output.emit("path", fields, human: "tunnel with \(peer): \(event)")
            }
        }
    }

    func sendBytes(_ rest: String) async throws {
        let usage = "send-bytes ID N"
        let parts = rest.split(separator: " ").map(String.init)
        let to = try peerID(parts.first ?? "", usage: usage)
        guard parts.count == 2, let count = Int(parts[1]), (1...PeerTunnelIO.maximumBytes).contains(count) else {
            throw UsageError(text: "usage: \(usage) (N from 1 to \(PeerTunnelIO.maximumBytes))")
        }
        guard let tunnel = tunnels[to] else { throw UsageError(text: "no tunnel with \(to); connect first") }
        guard tunnel.role == .initiator else {
            throw UsageError(text: "send-bytes runs on tunnels this side opened (the other side echoes); this one was accepted")
        }
        let r = await PeerTunnelIO.sendBytes(tunnel, count: count)
        var fields: [(String, JSONValue)] = [("peer", .string(to.description)), ("bytes", .int(r.bytes)), ("ok", .bool(r.ok)),
                                             ("ms", .int(Int(r.seconds * 1000))), ("mbps", .number(r.megabitsPerSecond)),
                                             ("path", .string(tunnel.path.description))]
        if tunnel.transport == .udp { fields.append(("retransmissions", .int(r.retransmissions))) }
        if let e = r.error { fields.append(("error", .string(e))) }
        output.emit("send-bytes", fields,
                    human: r.ok ? "\(r.bytes) bytes echoed intact by \(to) in \(Int(r.seconds * 1000)) ms (\(String(format: "%.2f", r.megabitsPerSecond)) Mbit/s)"
                        : "send-bytes to \(to) failed: \(r.error ?? "?")")
    }

    func closeTunnel(_ rest: String) async throws {
        let to = try peerID(rest, usage: "close ID")
        guard let tunnel = tunnels.removeValue(forKey: to) else { throw UsageError(text: "no tunnel with \(to)") }
        tunnel.close()
        output.emit("closed", [("peer", .string(to.description))], human: "closed the tunnel with \(to)")
    }
}
