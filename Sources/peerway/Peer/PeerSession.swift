import Foundation
import NIOConcurrencyHelpers
import Peerway
import PeerwayCheckpoint

/// The interactive part of `peerway peer`: reads commands, runs them without blocking the
/// next one, and prints events and answers as they come.
actor PeerSession {
    let peer: Peer
    let output: PeerOutput
    /// Connection requests not answered yet, oldest first.
    var pendingRequests: [IncomingConnectRequest] = []
    /// Commands still running.
    private var running: [UUID: Task<Void, Never>] = [:]
    /// Accept every connection request and echo what arrives on tunnels.
    let echo: Bool
    /// Tunnel options (`--raw`: unencrypted).
    let tunnelOptions: TunnelOptions
    /// The newest tunnel with each peer.
    var tunnels: [PeerID: Tunnel] = [:]

    init(peer: Peer, output: PeerOutput, echo: Bool = false, tunnelOptions: TunnelOptions = TunnelOptions()) {
        self.peer = peer
        self.output = output
        self.echo = echo
        self.tunnelOptions = tunnelOptions
    }

    /// Runs until `quit`, the end of stdin (unless `stay`), a signal, or the peer stopping.
    func run(stay: Bool) async {
        let lines = Self.stdinLines()
        let peer = self.peer
        let signals = Self.signals()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await line in lines {
                    if await self.handle(line) == .quit { break }
                }
                // With --stay, only a signal or the peer stopping ends the session.
                if stay { while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) } }
            }
            group.addTask { for await _ in signals { break } }
            // Ends when the peer stops for good (superseded, refused); cancelled otherwise.
            group.addTask { await self.printEvents(peer.events) }
            await group.next()
            group.cancelAll()
        }
        await finishRunning()
        await peer.stop()
    }

    private enum Next { case more, quit }

    private func handle(_ raw: String) async -> Next {
        let line = raw.trimmingCharacters(in: .whitespaces)
        guard !line.isEmpty, !line.hasPrefix("#") else { return .more }
        let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
        let command = parts[0].lowercased()
        let rest = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
        switch command {
        case "quit", "exit": return .quit
        case "help": printHelp()
        case "id": output.emit("id", [("id", .string(peer.id.description))], human: "\(peer.id)")
        case "send": start(command) { try await $0.send(rest) }
        case "lookup": start(command) { try await $0.lookup(rest) }
        case "search": start(command) { try await $0.search(rest) }
        case "watch": start(command) { try await $0.watch(rest, on: true) }
        case "unwatch": start(command) { try await $0.watch(rest, on: false) }
        case "meta": start(command) { try await $0.meta(rest) }
        case "connect": start(command) { try await $0.connect(rest) }
        case "accept": start(command) { try await $0.answer(rest, accept: true) }
        case "refuse": start(command) { try await $0.answer(rest, accept: false) }
        case "send-bytes": start(command) { try await $0.sendBytes(rest) }
        case "close": start(command) { try await $0.closeTunnel(rest) }
        default:
            if !handleIndex(command, rest) { output.error("unknown command '\(command)'; type help", command: command) }
        }
        return .more
    }

    /// Runs a command in its own task so a slow one (a message to a silent peer) does not hold
    /// the next line.
    func start(_ command: String, _ body: @escaping @Sendable (PeerSession) async throws -> Void) {
        let id = UUID()
        running[id] = Task {
            do { try await body(self) } catch let error as UsageError {
                self.output.error(error.text, command: command)
            } catch {
                self.output.error("\(error)", command: command)
            }
            self.finished(id)
        }
    }

    private func finished(_ id: UUID) { running[id] = nil }

    private func finishRunning() async {
        for task in running.values { await task.value }
    }

    // MARK: - Commands

    struct UsageError: Error { let text: String }

    func peerID(_ text: String, usage: String) throws -> PeerID {
        guard let id = PeerID(text) else {
            throw UsageError(text: text.isEmpty ? "usage: \(usage)" : "'\(text)' is not a PeerID (26 base32 characters); usage: \(usage)")
        }
        return id
    }

    private func send(_ rest: String) async throws {
        let parts = rest.split(separator: " ", maxSplits: 1).map(String.init)
        let to = try peerID(parts.first ?? "", usage: "send ID TEXT")
        let text = parts.count > 1 ? parts[1] : ""
        guard !text.isEmpty else { throw UsageError(text: "usage: send ID TEXT") }
        let outcome = try await peer.send(text, to: to)
        switch outcome {
        case .delivered:
            output.emit("delivered", [("to", .string(to.description)), ("text", .string(text))], human: "delivered to \(to)")
        case .offline:
            output.emit("failed", [("to", .string(to.description)), ("reason", .string("offline"))], human: "not delivered to \(to): offline")
        case .timedOut, .queued:
            output.emit("failed", [("to", .string(to.description)), ("reason", .string("timed out"))], human: "not delivered to \(to): timed out")
        }
    }

    private func lookup(_ rest: String) async throws {
        let id = try peerID(rest, usage: "lookup ID")
        let info = try await peer.lookup(id)
        output.emit("lookup", [
            ("peer", .string(id.description)), ("online", .bool(info.online)),
            ("observed", info.observed.map { .string($0.description) } ?? .null),
            ("candidates", .endpoints(info.candidates)), ("metadata", .metadata(info.metadata)),
        ], human: info.online
            ? "\(id) is online at \(info.observed.map(\.description) ?? "?") (local \(info.candidates.map(\.description).joined(separator: ", "))): \(info.metadata.humanText)"
            : "\(id) is offline")
    }

    private func search(_ query: String) async throws {
        guard !query.isEmpty else { throw UsageError(text: "usage: search QUERY (e.g. search app=chat and age>30)") }
        let hits = try await peer.search(query, limit: ControlLimits.maximumSearchPage)
        output.emit("search", [
            ("query", .string(query)),
            ("results", .array(hits.map { .object([("id", .string($0.peer.description)), ("metadata", .metadata($0.metadata))]) })),
        ], human: hits.isEmpty ? "no peer matches \(query)"
            : "\(hits.count) \(hits.count == 1 ? "peer matches" : "peers match") \(query):\n" + hits.map { "  \($0.peer) \($0.metadata.humanText)" }.joined(separator: "\n"))
    }

    private func watch(_ rest: String, on: Bool) async throws {
        let usage = on ? "watch ID..." : "unwatch ID..."
        let ids = try rest.split(separator: " ").map { try peerID(String($0), usage: usage) }
        guard !ids.isEmpty else { throw UsageError(text: "usage: \(usage)") }
        if on {
            let statuses = try await peer.watch(ids)
            for s in statuses {
                output.emit("status", [("peer", .string(s.peer.description)), ("online", .bool(s.online)), ("change", .string("watched"))],
                            human: "\(s.peer) is \(s.online ? "online" : "offline") (watching)")
            }
        } else {
            try await peer.unwatch(ids)
            output.emit("unwatch", [("peers", .array(ids.map { .string($0.description) }))], human: "no longer watching \(ids.count) peer(s)")
        }
    }

    private func meta(_ rest: String) async throws {
        let changes = try Self.parseAssignments(rest.split(separator: " ").map(String.init))
        guard !changes.isEmpty else { throw UsageError(text: "usage: meta KEY=VALUE... (KEY= removes the key)") }
        try await peer.publish(changes)
        output.emit("meta", [("ok", .bool(true)), ("changes", .object(changes.sorted { $0.key < $1.key }.map { ($0.key, $0.value.map { .string($0) } ?? .null) }))],
                    human: "metadata published")
    }

    private func printHelp() {
        let text = """
        send ID TEXT           send an instant message (delivered / failed)
        lookup ID              is ID online, where, with what metadata
        search QUERY           e.g. search app=chat and (age>30 or city^=par)
        watch ID...            be told when they come online, go offline, change metadata
        unwatch ID...
        meta KEY=VALUE...      publish metadata (KEY= removes KEY)
        connect ID udp|tcp     ask ID for a tunnel (direct when possible, else relayed), optional note after
        accept [ID]            accept the oldest pending request (or ID's) and make the tunnel
        refuse [ID] [REASON]   refuse it, with a reason
        send-bytes ID N        send N bytes over the tunnel with ID, check the echo, print the throughput
        close ID               close the tunnel with ID
        id                     print this peer's id
        quit

        INDEX (accounts and virtual networks; answers carry ok and, on failure, error):
        \(Self.indexHelp)
        """
        output.emit("help", [("text", .string(text))], human: text)
    }

    // MARK: - Events

    private func printEvents(_ events: AsyncStream<PeerEvent>) async {
        for await event in events {
            switch event {
            case .registered(let observed, let supernode):
                output.emit("registered", [("id", .string(peer.id.description)), ("observed", .string(observed.description)),
                                           ("supernode", .string(supernode.description))],
                            human: "registered as \(peer.id), seen as \(observed)")
            case .reregistered(let observed, let supernode):
                output.emit("reregistered", [("id", .string(peer.id.description)), ("observed", .string(observed.description)),
                                             ("supernode", .string(supernode.description))],
                            human: "registered again, seen as \(observed)")
            case .disconnected(let reason):
                output.emit("disconnected", [("reason", .string(reason))], human: "disconnected: \(reason) (reconnecting)")
            case .message(let from, let text):
                output.emit("message", [("from", .string(from.description)), ("text", .string(text))], human: "\(from): \(text)")
            case .status(let p, let online, let change, let metadata):
                output.emit("status", [("peer", .string(p.description)), ("online", .bool(online)), ("change", .string("\(change)")),
                                       ("metadata", .metadata(metadata))],
                            human: "\(p) \(change == .metadataChanged ? "changed metadata: \(metadata.humanText)" : (online ? "is online" : "is offline (\(change))"))")
            case .connectRequest(let request):
                if echo {
                    output.emit("connect-request", [("from", .string(request.from.description)), ("transport", .string(request.transport.description)),
                                                    ("note", .string(request.note)), ("request", .string(String(request.requestID)))],
                                human: "\(request.from) asks for a \(request.transport) tunnel: accepting (--echo)")
                    start("accept") { await $0.acceptAndOpen(request) }
                    continue
                }
                pendingRequests.append(request)
                output.emit("connect-request", [("from", .string(request.from.description)), ("transport", .string(request.transport.description)),
                                                ("note", .string(request.note)), ("request", .string(String(request.requestID)))],
                            human: "\(request.from) asks for a \(request.transport) tunnel\(request.note.isEmpty ? "" : ": \(request.note)") (accept / refuse REASON)")
            case .lateMessageOutcome(let o):
                let delivered = o.outcome == .delivered
                output.emit(delivered ? "delivered" : "failed",
                            [("to", .string(o.to.description)), ("late", .bool(true))]
                                + (delivered ? [] : [("reason", .string(o.outcome == .offline ? "offline" : "timed out"))]),
                            human: delivered ? "delivered to \(o.to) after all" : "not delivered to \(o.to) (\(o.outcome))")
            case .lateConnectAnswer(let d):
                output.emit("connect-answer", [("peer", .string(d.peer.description)), ("accepted", .bool(d.accepted)),
                                               ("reason", .string(d.reason)), ("late", .bool(true))],
                            human: "\(d.peer) answered late: \(d.accepted ? "accepted" : "refused \(d.reason)")")
            case .networkStatus(let status):
                printMemberStatus(status)
            case .stopped(let reason):
                output.emit("stopped", [("reason", .string("\(reason)"))], human: "stopped: \(reason)")
                return
            }
        }
    }

    // MARK: - Input

    /// `KEY=VALUE` pairs; `KEY=` means remove.
    static func parseAssignments(_ items: [String]) throws -> [String: String?] {
        var out: [String: String?] = [:]
        for item in items where !item.isEmpty {
            guard let eq = item.firstIndex(of: "=") else { throw UsageError(text: "'\(item)' is not KEY=VALUE") }
            let key = String(item[..<eq]), value = String(item[item.index(after: eq)...])
            guard !key.isEmpty else { throw UsageError(text: "'\(item)' has no key") }
            out[key] = value.isEmpty ? .some(nil) : .some(value)
        }
        return out
    }

    /// Lines of stdin, read on a thread of their own (a blocking read must not hold one of the
    /// few cooperative threads).
    static func stdinLines() -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream<String>.makeStream()
        let thread = Thread {
            while let line = readLine(strippingNewline: true) { continuation.yield(line) }
            continuation.finish()
        }
        thread.name = "peerway-peer-stdin"
        thread.start()
        return stream
    }

    /// SIGINT and SIGTERM, as a stream.
    static func signals() -> AsyncStream<Int32> {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { continuation.yield(sig) }
            s.resume()
            return s
        }
        let keep = SignalSources(sources)
        continuation.onTermination = { _ in keep.cancel() }
        return stream
    }
}

/// Keeps the signal sources alive as long as their stream.
private final class SignalSources: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]
    init(_ sources: [any DispatchSourceSignal]) { self.sources = sources }
    func cancel() { sources.forEach { $0.cancel() } }
}

extension PeerSession.UsageError: CustomStringConvertible {
    var description: String { text }
}
