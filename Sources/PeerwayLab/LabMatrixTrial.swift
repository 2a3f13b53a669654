import Foundation

/// Lines a child process printed, appended by its reader and waited on by the matrix (thread-safe).
public final class LabLineBuffer: @unchecked Sendable {
    private let condition = NSCondition()
    private var lines: [String] = []
    private var ended = false

    public init() {}

    /// Appends one line (without its newline) and wakes the waiters.
    public func append(_ line: String) {
        condition.lock()
        lines.append(line)
        condition.broadcast()
        condition.unlock()
    }

    /// No more lines will come (the process's output closed).
    public func end() {
        condition.lock()
        ended = true
        condition.broadcast()
        condition.unlock()
    }

    /// How many lines so far: a cursor for `wait(after:...)`.
    public var count: Int { condition.withLock { lines.count } }

    /// Every line so far.
    public var all: [String] { condition.withLock { lines } }

    /// The first line at index `cursor` or later for which `match` returns a value, waiting up to
    /// `timeout` seconds for it; nil when none comes in time or the output ends.
    public func wait<T>(after cursor: Int, timeout: TimeInterval, _ match: (String) -> T?) -> T? {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        var next = max(0, cursor)
        while true {
            while next < lines.count {
                if let found = match(lines[next]) { return found }
                next += 1
            }
            if ended || Date() >= deadline { return nil }
            _ = condition.wait(until: deadline)
        }
    }
}

/// A line-oriented child: commands go in by `send`, its output lines arrive in `output`. The
/// matrix drives `peerway peer` and the aioice agents through this (and the tests drive fakes).
public protocol LabLineLink: AnyObject, Sendable {
    var output: LabLineBuffer { get }
    func send(_ line: String)
}

/// One JSON line of `peerway peer --json` (or of the aioice agent), reduced to the fields the
/// matrix reads.
public struct LabPeerEvent: Decodable, Hashable, Sendable {
    public var event: String
    public var id: String?
    public var peer: String?
    public var transport: String?
    public var path: String?
    public var method: String?
    public var ms: Double?
    public var encrypted: Bool?
    public var role: String?
    public var bytes: Int?
    public var ok: Bool?
    public var mbps: Double?
    public var error: String?
    public var message: String?
    public var command: String?
    public var accepted: Bool?
    public var reason: String?
    public var observed: String?
    /// `path` events: `direct`, `relayed`, `new-address` or `direct-abandoned`.
    public var change: String?
    /// `path` events: from the connect to the first direct path.
    public var directMs: Double?
    /// `tunnel` events: the tunnel started on the relay and still looks for a direct path.
    public var upgrading: Bool?

    public init(event: String) { self.event = event }

    enum CodingKeys: String, CodingKey {
        case event, id, peer, transport, path, method, ms, encrypted, role, bytes, ok, mbps, error, message, command, accepted,
             reason, observed, change, upgrading, directMs = "direct_ms"
    }

    /// The event of one output line, or nil when it is not a JSON object with an "event".
    public static func parse(_ line: String) -> LabPeerEvent? {
        guard line.first == "{" else { return nil }
        return try? JSONDecoder().decode(LabPeerEvent.self, from: Data(line.utf8))
    }
}

/// What one try of a tunnel did.
public struct LabTunnelOutcome: Codable, Hashable, Sendable {
    /// The tunnel came up.
    public var connected: Bool
    /// `direct` or `relayed`.
    public var path: String?
    /// How it was found: `lan`, `hairpin`, `punch`, `predict`, `many-port`, `tcp-simultaneous-open`, `relay`.
    public var method: String?
    /// Time to tunnel (to its first path, when the first byte can flow), as the initiator measured it.
    public var ms: Double?
    /// The path the tunnel started on (`relayed` when it started on the relay and moved).
    public var firstPath: String?
    /// From the connect to the move onto a direct path (nil: it started direct, or never moved).
    public var directMs: Double?
    public var encrypted: Bool?
    /// The echo of `LabMatrix.echoBytes` came back intact (nil: not tried).
    public var echoed: Bool?
    public var mbps: Double?
    /// `close` was answered by `closed`.
    public var closed: Bool?
    /// Why the try failed.
    public var error: String?

    public init(connected: Bool, path: String? = nil, method: String? = nil, ms: Double? = nil, encrypted: Bool? = nil,
                echoed: Bool? = nil, mbps: Double? = nil, closed: Bool? = nil, error: String? = nil) {
        self.connected = connected
        self.path = path
        self.method = method
        self.ms = ms
        self.encrypted = encrypted
        self.echoed = echoed
        self.mbps = mbps
        self.closed = closed
        self.error = error
    }

    /// The try counts: a tunnel came up and carried the echo.
    public var succeeded: Bool { connected && echoed == true }
    public var direct: Bool { succeeded && path == "direct" }
}

/// One try of a tunnel between two running `peerway peer --json --echo --stay` processes:
/// `connect ID TRANSPORT`, the `tunnel` (or `tunnel-failed`) event, `send-bytes ID N` and its
/// answer, `close ID` and `closed`. Every wait is bounded.
public enum LabMatrixTrial {
    public struct Timeouts: Hashable, Sendable {
        /// From `connect` to `tunnel`: the HANDSHAKE's direct window, then the relay.
        public var tunnel: TimeInterval = 30
        /// From `send-bytes` to its answer.
        public var echo: TimeInterval = 20
        /// From `close` to the initiator's `closed`.
        public var close: TimeInterval = 5
        /// How long the acceptor's own `closed` may lag (best effort: a peer may not print one).
        public var acceptorClose: TimeInterval = 1
        /// From the tunnel on the relay to its move onto a direct path, or to the direct search
        /// giving up (the longest direct window, its grace, and slack).
        public var direct: TimeInterval = 25

        public init(tunnel: TimeInterval = 30, echo: TimeInterval = 20, close: TimeInterval = 5, acceptorClose: TimeInterval = 1,
                    direct: TimeInterval = 25) {
            self.direct = direct
            self.tunnel = tunnel
            self.echo = echo
            self.close = close
            self.acceptorClose = acceptorClose
        }
    }

    public static func run(initiator: any LabLineLink, acceptor: any LabLineLink, acceptorID: String, initiatorID: String,
                           transport: LabMatrixTransport, bytes: Int = LabMatrix.echoBytes, timeouts: Timeouts = Timeouts()) -> LabTunnelOutcome {
        let out = initiator.output
        var cursor = out.count
        let acceptorCursor = acceptor.output.count
        initiator.send("connect \(acceptorID) \(transport.rawValue)")
        // The tunnel, its failure, a refusal, or an error about the connect command.
        let answer = out.wait(after: cursor, timeout: timeouts.tunnel) { line -> LabPeerEvent? in
            guard let e = LabPeerEvent.parse(line) else { return nil }
            switch e.event {
            case "tunnel", "tunnel-failed": return e.peer == acceptorID ? e : nil
            case "connect-answer": return e.peer == acceptorID && e.accepted == false ? e : nil
            case "error": return e.command == "connect" ? e : nil
            default: return nil
            }
        }
        guard let answer, answer.event == "tunnel" else {
            let error: String
            switch answer?.event {
            case nil: error = "no tunnel within \(Int(timeouts.tunnel)) s"
            case "tunnel-failed": error = "tunnel failed: \(answer?.error ?? "no reason")"
            case "connect-answer": error = "refused: \(answer?.reason ?? "")"
            default: error = "connect: \(answer?.message ?? "error")"
            }
            // Whatever is half-open goes.
            initiator.send("close \(acceptorID)")
            _ = out.wait(after: out.count, timeout: timeouts.close) { closed($0, acceptorID) }
            return LabTunnelOutcome(connected: false, error: error)
        }
        var outcome = LabTunnelOutcome(connected: true, path: answer.path, method: answer.method, ms: answer.ms, encrypted: answer.encrypted)
        outcome.firstPath = answer.path
        let connectCursor = cursor

        cursor = out.count
        initiator.send("send-bytes \(acceptorID) \(bytes)")
        let echo = out.wait(after: cursor, timeout: timeouts.echo) { line -> LabPeerEvent? in
            guard let e = LabPeerEvent.parse(line) else { return nil }
            return (e.event == "send-bytes" && e.peer == acceptorID) || (e.event == "error" && e.command == "send-bytes") ? e : nil
        }
        if let echo, echo.event == "send-bytes", echo.ok == true, echo.bytes == nil || echo.bytes == bytes {
            outcome.echoed = true
            outcome.mbps = echo.mbps
        } else {
            outcome.echoed = false
            outcome.error = echo.map { "echo of \(bytes) bytes failed: \($0.error ?? $0.message ?? "not ok")" }
                ?? "no echo of \(bytes) bytes within \(Int(timeouts.echo)) s"
        }

        // Relay first: the move to a direct path (or the search giving up), which the echo may
        // already have run across.
        if answer.path == "relayed" && answer.upgrading == true {
            let settled = out.wait(after: connectCursor, timeout: timeouts.direct) { line -> LabPeerEvent? in
                guard let e = LabPeerEvent.parse(line), e.event == "path", e.peer == acceptorID else { return nil }
                return e.change == "direct" || e.change == "direct-abandoned" ? e : nil
            }
            if let settled, settled.change == "direct" {
                outcome.path = "direct"
                outcome.method = settled.method
                outcome.directMs = settled.directMs
            }
        }

        cursor = out.count
        initiator.send("close \(acceptorID)")
        outcome.closed = out.wait(after: cursor, timeout: timeouts.close) { closed($0, acceptorID) } != nil
        // The acceptor's side ends too before the next try (its own `closed`, best effort).
        _ = acceptor.output.wait(after: acceptorCursor, timeout: timeouts.acceptorClose) { closed($0, initiatorID) }
        return outcome
    }

    static func closed(_ line: String, _ peer: String) -> Bool? {
        guard let e = LabPeerEvent.parse(line), e.event == "closed", e.peer == peer else { return nil }
        return true
    }
}

/// What one aioice try did (always direct when it connects: the agents get no TURN server).
public struct LabAioiceOutcome: Codable, Hashable, Sendable {
    /// Both agents ran and reported a result (connected or not); false means a broken setup.
    public var ran: Bool
    public var connected: Bool
    /// The selected pair's candidate types, as the controlling agent saw them (`host`, `srflx`, `prflx`).
    public var localType: String?
    public var remoteType: String?
    public var ms: Double?
    public var error: String?

    public init(ran: Bool = true, connected: Bool, localType: String? = nil, remoteType: String? = nil, ms: Double? = nil, error: String? = nil) {
        self.ran = ran
        self.connected = connected
        self.localType = localType
        self.remoteType = remoteType
        self.ms = ms
        self.error = error
    }

    /// `srflx/prflx`: the selected pair's local and remote candidate types.
    public var types: String? { connected ? "\(localType ?? "?")/\(remoteType ?? "?")" : nil }

    enum CodingKeys: String, CodingKey {
        case ran, connected, localType = "local_type", remoteType = "remote_type", ms, error
    }
}

/// One line of scripts/lab-aioice.py.
public struct LabAioiceLine: Decodable, Sendable {
    public var event: String
    public var connected: Bool?
    public var echoed: Bool?
    public var localType: String?
    public var remoteType: String?
    public var ms: Double?
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case event, connected, echoed, localType = "local_type", remoteType = "remote_type", ms, error
    }

    public static func parse(_ line: String) -> LabAioiceLine? {
        guard line.first == "{" else { return nil }
        return try? JSONDecoder().decode(LabAioiceLine.self, from: Data(line.utf8))
    }
}

/// One aioice try between two agents (scripts/lab-aioice.py, one per namespace): each prints a
/// `local` line (credentials and candidates), which goes to the other's stdin; then each prints a
/// `result` line. Connected only when both agents connected and the controlling one's datagram
/// came back.
public enum LabAioiceExchange {
    /// From the agent's start to its `local` line: Python's start, and gathering (host and
    /// server-reflexive; aioice gives STUN 5 s, the agent gathering 8 s), on a loaded machine.
    public static let gatherTimeout: TimeInterval = 20
    /// Slack past the agents' own connect timeout before the runner gives up on their result.
    public static let resultSlack: TimeInterval = 8

    public static func run(controlling: any LabLineLink, controlled: any LabLineLink, connectTimeout: TimeInterval) -> LabAioiceOutcome {
        func local(_ link: any LabLineLink) -> String? {
            link.output.wait(after: 0, timeout: gatherTimeout) { line in
                LabAioiceLine.parse(line).flatMap { $0.event == "local" || $0.event == "error" ? line : nil }
            }
        }
        guard let mine = local(controlling), let theirs = local(controlled) else {
            return LabAioiceOutcome(ran: false, connected: false, error: "an agent printed no candidates within \(Int(gatherTimeout)) s")
        }
        for line in [mine, theirs] {
            if let e = LabAioiceLine.parse(line), e.event == "error" { return LabAioiceOutcome(ran: false, connected: false, error: e.error ?? "agent error") }
        }
        controlling.send(theirs)
        controlled.send(mine)
        func result(_ link: any LabLineLink) -> LabAioiceLine? {
            link.output.wait(after: 0, timeout: connectTimeout + resultSlack) { line in
                LabAioiceLine.parse(line).flatMap { $0.event == "result" || $0.event == "error" ? $0 : nil }
            }
        }
        guard let a = result(controlling), let b = result(controlled) else {
            return LabAioiceOutcome(ran: false, connected: false, error: "an agent printed no result within \(Int(connectTimeout + resultSlack)) s")
        }
        let ran = a.event == "result" && b.event == "result"
        let connected = ran && a.connected == true && b.connected == true && a.echoed == true
        return LabAioiceOutcome(ran: ran, connected: connected, localType: a.localType, remoteType: a.remoteType, ms: a.ms,
                                error: connected ? nil : (a.error ?? b.error ?? "not connected"))
    }
}
