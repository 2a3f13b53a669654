import PeerwayCheckpoint
import PeerwaySTUN

/*
 One side of a TCP traversal, as a pure state machine (docs/traversal-protocol.md, "Encrypted
 records", TCP): no sockets, no clock. The driver (`TCPTraversal` in Peerway) owns the listening
 socket and the connections, reports what happens to them, and does what the machine returns.

 Direct (`init(plan:keys:nowMillis:)`): every side listens on its tunnel port and, from the same
 port (SO_REUSEPORT), connects to each of the other side's targets again and again until the
 direct window ends: crossing SYNs make a TCP simultaneous open through two NATs that keep their
 mappings, a LAN peer simply accepts.

   plan arrives ─► every target without a connected connection: `.connect` every
                   `connectRetryMillis` (the pending connect to it is closed and replaced),
                   at most `maximumConnections` connections in all (accepted ones included)
   connected / accepted ─► `.send` the stream hello; read at most hello + 1 bytes
   hello in  ─►    verified, or (bad hello) that connection alone is closed
     initiator:    the first verified connection is picked: `.send` `use` on it (another one is
                   picked if it closes) ─► `useAck` on it ─► established
     acceptor:     `use` on a verified connection ─► `.send` `useAck` ─► established
   window over ─►  failed, unless a connection is verified or picked: then it has
                   `useGraceMillis` more to finish (`use` / `useAck` resent by TCP after a loss);
                   connects go on meanwhile, as before the window

 Relay (`init(relayConnection:keys:deadlineMillis:)`): one connection, already bound through the
 relay's splice (attempt 0): the same hello, `use` and `useAck` on it, but any fault (bad hello,
 unexpected byte, closed) fails the traversal at once, and the deadline is fixed.

 Every byte the machine reads is part of the handshake: the hello, then the one `use` or `useAck`
 byte. What follows belongs to the tunnel, so the driver never reads more than `bytesWanted`.
 Once established, every other connection is closed (`.close` before `.established`); a failure
 closes them all.
*/

/// Timers and limits of TCP traversal.
public enum TCPTraversalLimits {
    /// Milliseconds between two connect attempts to one target.
    public static let connectRetryMillis: UInt64 = 400
    /// Milliseconds the relay path may take after the window (connect, bind, hello, `use`): TCP
    /// recovers a lost SYN only after 1, 3, 7 s, so heavy loss needs this long.
    public static let relayWindowMillis: UInt64 = 20_000
    /// The byte the initiator sends on the connection it picks.
    public static let useByte: UInt8 = 0x55
    /// The acceptor's answer to `use`: only then does the initiator take the connection (a `use`
    /// that arrived after the acceptor gave up would leave the two sides on different paths).
    public static let useAckByte: UInt8 = 0x56
    /// Milliseconds past the direct window that a picked or verified connection may still take to
    /// exchange `use` and its answer (TCP resends a lost segment after 200 ms to seconds).
    public static let useGraceMillis: UInt64 = 8_000
    /// Most connections open at once (connecting, connected and accepted).
    public static let maximumConnections = 64
    /// Most target endpoints connected to (half the connections: the rest is for accepted ones).
    public static let maximumTargets = maximumConnections / 2
}

/// One side of a TCP traversal. Feed it the plan, connection events and the time; do what it returns.
public struct TCPTraversalMachine: Sendable {
    /// What the driver does next, in order.
    public enum Action: Equatable, Sendable {
        /// Open a connection from the tunnel port to `to` (non-blocking); then report
        /// `connected(attempt:)` or `connectFailed(attempt:)`.
        case connect(attempt: Int, to: PeerEndpoint)
        /// Write these bytes on the connection (a failed write: report `closed(attempt:)`).
        case send(attempt: Int, bytes: [UInt8])
        /// Close the connection and forget it.
        case close(attempt: Int)
        /// The two sides agreed on this connection: it carries the tunnel from the next byte on.
        case established(attempt: Int, remote: PeerEndpoint, method: TraversalMethod)
        /// No connection was agreed on (every connection is closed by the actions before it).
        case failed(String)
    }

    struct Target {
        var endpoint: PeerEndpoint
        var method: TraversalMethod
        var lastConnectMillis: UInt64?
    }

    struct Connection {
        var id: Int
        var remote: PeerEndpoint
        var method: TraversalMethod
        var connected: Bool
        var helloSent: Bool
        var received: [UInt8] = []
        var verified = false
    }

    enum State: Equatable {
        case running, established, failed
    }

    /// This side's role (from the keys).
    public var role: TraversalRole { keys.role }
    private let keys: TunnelKeys
    private let hello: [UInt8]
    /// The relay's endpoint in relay mode (one connection, any fault fails).
    private let relay: PeerEndpoint?
    private let plan: TraversalPlan?
    private let startMillis: UInt64
    /// When the direct window ends (relay mode: the fixed deadline).
    public let windowEndMillis: UInt64
    private var state: State = .running
    private var targets: [Target] = []
    /// Open connections, oldest first.
    private var connections: [Connection] = []
    private var nextID = 0
    /// The initiator's `use` went out on this connection.
    private var picked: Int?
    /// How many connects were started (for diagnostics and failure reasons).
    public private(set) var connectsStarted = 0
    /// How many connections were accepted (for diagnostics and failure reasons).
    public private(set) var acceptedCount = 0

    /// Direct traversal: connects to the plan's targets (at most `maximumTargets` endpoints) and
    /// takes accepted connections until the plan's window ends.
    public init(plan: TraversalPlan, keys: TunnelKeys, nowMillis: UInt64) {
        self.keys = keys
        self.plan = plan
        relay = nil
        hello = TunnelStreamHello.make(keys: keys)
        startMillis = nowMillis
        windowEndMillis = nowMillis + UInt64(plan.directWindowMillis)
        var seen = Set<PeerEndpoint>()
        for t in plan.targets {
            for endpoint in t.endpoints where targets.count < TCPTraversalLimits.maximumTargets && seen.insert(endpoint).inserted {
                targets.append(Target(endpoint: endpoint, method: t.method))
            }
        }
    }

    /// Relay: the hello and `use` exchange on one connection (attempt 0) the driver already bound
    /// through the relay at `endpoint`; the hello goes out on the first `tick`.
    public init(relayConnection endpoint: PeerEndpoint, keys: TunnelKeys, nowMillis: UInt64, deadlineMillis: UInt64) {
        self.keys = keys
        plan = nil
        relay = endpoint
        hello = TunnelStreamHello.make(keys: keys)
        startMillis = nowMillis
        windowEndMillis = deadlineMillis
        connections = [Connection(id: 0, remote: endpoint, method: .relay, connected: true, helloSent: false)]
        nextID = 1
    }

    /// Whether the machine established a connection or failed.
    public var isFinished: Bool { state != .running }
    /// Connections open now (connecting, connected or accepted).
    public var connectionCount: Int { connections.count }
    /// When the traversal fails now: the window's end, or (direct, a connection verified or
    /// picked) `useGraceMillis` later.
    public var deadlineMillis: UInt64 {
        relay == nil && (picked != nil || connections.contains(where: \.verified))
            ? windowEndMillis + TCPTraversalLimits.useGraceMillis : windowEndMillis
    }

    /// How many bytes the driver may read from `attempt` now (0 when it is unknown, still
    /// connecting, or done with its hello and `use` byte): never more, the rest is the tunnel's.
    public func bytesWanted(attempt: Int) -> Int {
        guard state == .running, let c = connections.first(where: { $0.id == attempt }), c.connected else { return 0 }
        return TunnelLimits.helloBytes + 1 - c.received.count
    }

    private func index(_ attempt: Int) -> Int? { connections.firstIndex { $0.id == attempt } }

    /// Time passes: connects to the targets, hellos not yet sent, the window and its grace.
    public mutating func tick(nowMillis now: UInt64) -> [Action] {
        guard state == .running else { return [] }
        if now >= deadlineMillis { return fail(timeoutReason) }
        var out: [Action] = []
        for i in connections.indices where connections[i].connected && !connections[i].helloSent {
            connections[i].helloSent = true
            out.append(.send(attempt: connections[i].id, bytes: hello))
        }
        for t in targets.indices {
            let endpoint = targets[t].endpoint
            guard !connections.contains(where: { $0.remote == endpoint && $0.connected }) else { continue }
            if let last = targets[t].lastConnectMillis, now < last + TCPTraversalLimits.connectRetryMillis { continue }
            let stale = connections.filter { $0.remote == endpoint && !$0.connected }.map(\.id)
            guard connections.count - stale.count < TCPTraversalLimits.maximumConnections else { continue }
            for id in stale { out.append(.close(attempt: id)) }
            connections.removeAll { stale.contains($0.id) }
            targets[t].lastConnectMillis = now
            let id = newID()
            connections.append(Connection(id: id, remote: endpoint, method: targets[t].method, connected: false, helloSent: false))
            connectsStarted += 1
            out.append(.connect(attempt: id, to: endpoint))
        }
        return out
    }

    private var timeoutReason: String {
        if let relay {
            return "the hello and use through the relay at \(relay) did not finish within \(windowEndMillis - startMillis) ms of its bind's answer"
        }
        let window = windowEndMillis - startMillis
        if picked != nil || connections.contains(where: \.verified) {
            return "a direct TCP connection was verified but use and its answer did not cross it within "
                + "\(TCPTraversalLimits.useGraceMillis) ms past the \(window) ms window"
        }
        return "no direct TCP connection verified within \(window) ms (\(connectsStarted) connects to \(targets.count) "
            + "endpoints, \(acceptedCount) accepted)"
    }

    private mutating func newID() -> Int {
        defer { nextID += 1 }
        return nextID
    }

    /// The connect of `attempt` completed: the hello goes out on it.
    public mutating func connected(attempt: Int) -> [Action] {
        guard state == .running, let i = index(attempt), !connections[i].connected else { return [] }
        connections[i].connected = true
        connections[i].helloSent = true
        return [.send(attempt: attempt, bytes: hello)]
    }

    /// The connect of `attempt` failed (the driver closed its socket): its target is tried again
    /// `connectRetryMillis` after this connect started.
    public mutating func connectFailed(attempt: Int) -> [Action] {
        closed(attempt: attempt)
    }

    /// A connection arrived on the listening port: the id it goes by, and what to do (its hello,
    /// or closing it at once when `maximumConnections` are open or the machine is done).
    public mutating func accepted(remote: PeerEndpoint) -> (attempt: Int, actions: [Action]) {
        let id = newID()
        guard state == .running, relay == nil, connections.count < TCPTraversalLimits.maximumConnections else {
            return (id, [.close(attempt: id)])
        }
        acceptedCount += 1
        let method = plan?.targets.first { $0.endpoint.ip == remote.ip }?.method ?? .tcpSimultaneousOpen
        connections.append(Connection(id: id, remote: remote, method: method, connected: true, helloSent: true))
        return (id, [.send(attempt: id, bytes: hello)])
    }

    /// The connection closed or failed (the driver closed its socket). The initiator picks another
    /// verified connection if it was the picked one; in relay mode the traversal fails.
    public mutating func closed(attempt: Int) -> [Action] {
        guard state == .running, let i = index(attempt) else { return [] }
        connections.remove(at: i)
        if relay != nil { return fail("the relay connection closed") }
        if picked == attempt { picked = nil }
        return pickIfReady()
    }

    /// Bytes read from `attempt` (at most `bytesWanted(attempt:)`; any more are ignored).
    public mutating func received(attempt: Int, bytes: [UInt8]) -> [Action] {
        guard state == .running, let i = index(attempt), connections[i].connected else { return [] }
        let wanted = bytesWanted(attempt: attempt)
        connections[i].received += bytes.prefix(wanted)
        let helloBytes = TunnelLimits.helloBytes
        if !connections[i].verified && connections[i].received.count >= helloBytes {
            guard TunnelStreamHello.check(Array(connections[i].received.prefix(helloBytes)), keys: keys) else {
                return drop(i, relayReason: "the other side's stream hello through the relay did not verify")
            }
            connections[i].verified = true
        }
        if connections[i].verified && connections[i].received.count > helloBytes {
            let next = connections[i].received[helloBytes]
            if role == .initiator {
                guard picked == attempt, next == TCPTraversalLimits.useAckByte else {
                    return drop(i, relayReason: "unexpected byte instead of use's answer")
                }
                return establish(i)
            }
            guard next == TCPTraversalLimits.useByte else { return drop(i, relayReason: "unexpected byte instead of use") }
            return [.send(attempt: attempt, bytes: [TCPTraversalLimits.useAckByte])] + establish(i)
        }
        return pickIfReady()
    }

    /// A connection that broke the protocol: closed (relay mode: the traversal fails).
    private mutating func drop(_ i: Int, relayReason: String) -> [Action] {
        let id = connections[i].id
        if relay != nil { return fail(relayReason) }
        connections.remove(at: i)
        if picked == id { picked = nil }
        return [.close(attempt: id)] + pickIfReady()
    }

    /// Initiator: `use` on the oldest verified connection when none is picked.
    private mutating func pickIfReady() -> [Action] {
        guard role == .initiator, picked == nil, let c = connections.first(where: \.verified) else { return [] }
        picked = c.id
        return [.send(attempt: c.id, bytes: [TCPTraversalLimits.useByte])]
    }

    private mutating func establish(_ i: Int) -> [Action] {
        let chosen = connections[i]
        state = .established
        let others = connections.filter { $0.id != chosen.id }.map { Action.close(attempt: $0.id) }
        connections = []
        return others + [.established(attempt: chosen.id, remote: chosen.remote, method: chosen.method)]
    }

    private mutating func fail(_ why: String) -> [Action] {
        state = .failed
        let all = connections.map { Action.close(attempt: $0.id) }
        connections = []
        return all + [.failed(why)]
    }
}
