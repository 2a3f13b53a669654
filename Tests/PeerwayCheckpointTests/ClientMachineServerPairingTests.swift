import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwayCheckpoint

/// Client machines and the server's `CheckpointMachine`, wired together under virtual time
/// with a lossless, instant network: the two sides of the protocol must agree.
struct PairedCheckpoint {
    var server: CheckpointMachine<InMemoryLiveDirectory>
    var clients: [CheckpointClientMachine] = []
    /// The source address of each client as the server sees it.
    var endpoints: [PeerEndpoint] = []
    var wakeUps: [NIODeadline?] = []
    var completions: [[CheckpointRequestToken: Result<CheckpointClientResponse, CheckpointClientError>]] = []
    var events: [[CheckpointClientEvent]] = []
    private var toServer: [(ByteBuffer, Int)] = []
    private(set) var now = NIODeadline.uptimeNanoseconds(5_000_000_000_000)
    let address: SupernodeAddress

    init() {
        let key = try! SupernodeKey(seed: [UInt8](repeating: 3, count: 32))
        server = CheckpointMachine(configuration: CheckpointConfiguration(key: key), directory: InMemoryLiveDirectory(), now: now)
        address = SupernodeAddress(publicKey: key.publicKey, host: "192.0.2.9", port: 7400)
    }

    /// Adds a client and registers it; returns its index.
    mutating func addClient(seed: UInt8, metadata: [String: String]) -> Int {
        let identity = try! PeerIdentity(seed: [UInt8](repeating: seed, count: 32))
        clients.append(CheckpointClientMachine(configuration: CheckpointClientConfiguration(
            identity: identity, supernodes: [address], metadata: try! PeerMetadata(metadata))))
        endpoints.append(PeerEndpoint(ip: .v4(0xCB00_7100 + UInt32(seed)), port: 30_000 + UInt16(seed)))
        wakeUps.append(nil)
        completions.append([:])
        events.append([])
        let index = clients.count - 1
        perform(index, clients[index].start(now: now))
        pump()
        return index
    }

    mutating func perform(_ index: Int, _ actions: [CheckpointClientAction]) {
        for action in actions {
            switch action {
            case .send(let bytes, _): toServer.append((bytes, index))
            case .scheduleWakeUp(let at): wakeUps[index] = at
            case .completed(let token, let result): completions[index][token] = result
            case .event(let event): events[index].append(event)
            }
        }
    }

    /// Delivers datagrams both ways until the network is quiet.
    mutating func pump() {
        while !toServer.isEmpty {
            let (bytes, from) = toServer.removeFirst()
            var out: [CheckpointAction] = []
            server.receive(bytes, from: endpoints[from], now: now, into: &out)
            for case .send(let reply, let to) in out {
                guard let index = endpoints.firstIndex(of: to) else { continue }
                perform(index, clients[index].datagramReceived(reply, from: 0, now: now))
            }
        }
    }

    /// Makes a call on client `index` and runs the network until it completes (or `limit` passes).
    mutating func call(_ index: Int, limit: TimeAmount = .seconds(20),
                       _ body: (inout CheckpointClientMachine, NIODeadline) -> (token: CheckpointRequestToken, actions: [CheckpointClientAction]))
        -> Result<CheckpointClientResponse, CheckpointClientError>? {
        let (token, actions) = body(&clients[index], now)
        perform(index, actions)
        pump()
        let end = now + limit
        while completions[index][token] == nil, now < end { advance(by: .milliseconds(100)) }
        return completions[index][token]
    }

    /// Moves time on in 100 ms steps: server ticks, client wake-ups, the network.
    mutating func advance(by amount: TimeAmount) {
        let end = now + amount
        while now < end {
            now = min(end, now + .milliseconds(100))
            var out: [CheckpointAction] = []
            server.tick(now: now, into: &out)
            for case .send(let reply, let to) in out {
                guard let index = endpoints.firstIndex(of: to) else { continue }
                perform(index, clients[index].datagramReceived(reply, from: 0, now: now))
            }
            for index in clients.indices {
                if let at = wakeUps[index], at <= now {
                    wakeUps[index] = nil
                    perform(index, clients[index].wakeUp(now: now))
                }
            }
            pump()
        }
    }
}

@Suite("Client machine against the server's CheckpointMachine")
struct ClientMachineServerPairingTests {
    @Test("register, lookup, watch, message, publish, search, connect, stop: both sides agree")
    func fullConversation() throws {
        var net = PairedCheckpoint()
        let alice = net.addClient(seed: 11, metadata: ["name": "alice", "city": "paris"])
        let bob = net.addClient(seed: 12, metadata: ["name": "bob", "city": "paris"])
        guard case .registered(let a) = net.events[alice].first, case .registered(let b) = net.events[bob].first else {
            Issue.record("not registered: \(net.events)")
            return
        }
        #expect(a.observed == net.endpoints[alice])
        #expect(net.server.registeredCount == 2)

        let looked = net.call(alice) { $0.lookup(b.peer, now: $1) }
        guard case .success(.lookup(let info)) = looked else { Issue.record("lookup: \(String(describing: looked))"); return }
        #expect(info.online && info.observed == net.endpoints[bob] && info.metadata["name"] == "bob")

        let watched = net.call(alice) { $0.watch([b.peer], now: $1) }
        #expect(watched == .success(.watched([PeerStatus(peer: b.peer, online: true)])))

        let sent = net.call(alice) { $0.sendMessage("hello bob", to: b.peer, now: $1) }
        #expect(sent == .success(.messageOutcome(.delivered)))
        #expect(net.events[bob].contains { if case .message(let m) = $0 { m.from == a.peer && m.text == "hello bob" } else { false } })

        let published = net.call(bob) { $0.publish(["city": "lyon"], now: $1) }
        #expect(published == .success(.done))
        #expect(net.events[alice].contains { if case .status(let s) = $0 { s.peer == b.peer && s.change == .metadataChanged && s.metadata["city"] == "lyon" } else { false } })

        let found = net.call(alice) { $0.search("city=paris", limit: 10, after: nil, now: $1) }
        guard case .success(.search(let page)) = found else { Issue.record("search: \(String(describing: found))"); return }
        #expect(page.hits.map(\.peer) == [a.peer])

        let connect = net.call(alice, limit: .seconds(1)) { $0.connect(to: b.peer, transport: .udp, note: "chat", now: $1) }
        #expect(connect == nil, "the answer is still pending")
        guard case .connectRequest(let asked) = net.events[bob].last else { Issue.record("no connect request: \(net.events[bob])"); return }
        #expect(asked.from == a.peer && asked.note == "chat")
        let answered = net.call(bob) { $0.answerConnect(from: asked.from, requestID: asked.requestID, accept: true, now: $1) }
        #expect(answered == .success(.done))
        let completedConnect = net.completions[alice].values.contains { $0 == .success(.connectAnswer(ConnectDecision(peer: b.peer, requestID: asked.requestID, accepted: true, reason: ""))) }
        #expect(completedConnect)

        net.perform(bob, net.clients[bob].stop(now: net.now))
        net.pump()
        #expect(net.events[bob].last == .stopped(.requested))
        #expect(net.events[alice].contains { if case .status(let s) = $0 { s.peer == b.peer && s.change == .offline } else { false } })
        let offline = net.call(alice) { $0.sendMessage("still there?", to: b.peer, now: $1) }
        #expect(offline == .success(.messageOutcome(.offline)))
    }

    @Test("keepalives keep a peer registered well past the expiry time")
    func keepalivesKeepRegistration() {
        var net = PairedCheckpoint()
        let alice = net.addClient(seed: 21, metadata: [:])
        net.advance(by: .seconds(Int64(ControlLimits.defaultKeepaliveSeconds) * Int64(ControlLimits.expiryMisses) * 2))
        #expect(net.server.registeredCount == 1)
        #expect(net.clients[alice].registration != nil)
        #expect(net.events[alice].count == 1, "no disconnection: \(net.events[alice])")
    }
}
