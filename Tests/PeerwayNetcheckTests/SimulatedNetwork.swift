import NIOCore
import PeerwayNetcheck
import PeerwaySTUN

/// The three RFC 4787 behaviours, for both the simulated NAT's mapping and its filtering.
enum SimBehavior: CaseIterable, Sendable, CustomStringConvertible {
    case endpointIndependent, addressDependent, addressAndPortDependent

    var description: String {
        switch self {
        case .endpointIndependent: "EI"
        case .addressDependent: "AD"
        case .addressAndPortDependent: "APD"
        }
    }
}

/// A NAT: maps (internal address, destination) to a public port according to its mapping
/// behaviour and allocation pattern, and admits inbound packets according to its filtering.
/// Hairpinned packets are translated like outbound ones and then delivered without filtering.
struct SimNAT {
    enum Allocation {
        /// The internal port when it is free, else the next free one.
        case preserving
        /// start, start + delta, start + 2·delta...
        case sequential(start: UInt16, delta: Int)
        /// Uniform in 1024...65535 from a seeded generator.
        case random(seed: UInt64)
    }

    private struct MappingKey: Hashable {
        var inside: STUNAddress
        var ip: STUNAddress.IP?
        var port: UInt16?
    }

    var mapping: SimBehavior
    var filtering: SimBehavior
    var allocation: Allocation
    var hairpin: Bool
    let publicIP: STUNAddress.IP

    private var mappings: [MappingKey: UInt16] = [:]
    private var owners: [UInt16: STUNAddress] = [:]
    private var contacted: [UInt16: Set<STUNAddress>] = [:]
    private var nextSequential = 0
    private var generator = TestRandom(seed: 0)

    init(mapping: SimBehavior, filtering: SimBehavior, allocation: Allocation = .sequential(start: 61_000, delta: 1),
         hairpin: Bool = true, publicIP: STUNAddress.IP = Sim.natPublicIP) {
        self.mapping = mapping
        self.filtering = filtering
        self.allocation = allocation
        self.hairpin = hairpin
        self.publicIP = publicIP
        switch allocation {
        case .sequential(let start, _): nextSequential = Int(start)
        case .random(let seed): generator = TestRandom(seed: seed)
        case .preserving: break
        }
    }

    /// The public source of a packet from `inside` to `remote`, creating the mapping if needed.
    mutating func outbound(from inside: STUNAddress, to remote: STUNAddress) -> STUNAddress {
        let key: MappingKey
        switch mapping {
        case .endpointIndependent: key = MappingKey(inside: inside)
        case .addressDependent: key = MappingKey(inside: inside, ip: remote.ip)
        case .addressAndPortDependent: key = MappingKey(inside: inside, ip: remote.ip, port: remote.port)
        }
        let port = mappings[key] ?? allocate(for: inside)
        mappings[key] = port
        owners[port] = inside
        contacted[port, default: []].insert(remote)
        return STUNAddress(ip: publicIP, port: port)
    }

    /// The internal destination of a packet from `remote` to our public port, if the filter admits it.
    func inbound(from remote: STUNAddress, toPort port: UInt16) -> STUNAddress? {
        guard let inside = owners[port], let sent = contacted[port] else { return nil }
        switch filtering {
        case .endpointIndependent: return inside
        case .addressDependent: return sent.contains { $0.ip == remote.ip } ? inside : nil
        case .addressAndPortDependent: return sent.contains(remote) ? inside : nil
        }
    }

    /// The internal owner of a public port, for hairpinning.
    func owner(ofPort port: UInt16) -> STUNAddress? { owners[port] }

    private mutating func allocate(for inside: STUNAddress) -> UInt16 {
        switch allocation {
        case .preserving:
            var port = inside.port
            while owners[port] != nil { port &+= 1 }
            return port
        case .sequential(_, let delta):
            while true {
                let port = UInt16(truncatingIfNeeded: nextSequential)
                nextSequential += delta
                if owners[port] == nil { return port }
            }
        case .random:
            while true {
                let port = UInt16(1024 + generator.next() % 64_512)
                if owners[port] == nil { return port }
            }
        }
    }
}

/// A STUN server, optionally an RFC 5780 pair listening on A:p, A:p2, B:p and B:p2.
struct SimSTUNServer {
    var primary: STUNAddress
    /// B:p2; `nil` for a plain RFC 8489 server (no OTHER-ADDRESS, 420 to CHANGE-REQUEST).
    var alternate: STUNAddress?
    /// False: a broken server that answers CHANGE-REQUEST from the address it was sent to.
    var honoursChangeRequest = true
    /// False: the alternate address is advertised but nothing answers there.
    var alternateReachable = true
    /// Every answer is sent twice.
    var duplicatesAnswers = false

    static func pair(_ a: STUNAddress = Sim.serverA, _ b: STUNAddress = Sim.serverB) -> SimSTUNServer {
        SimSTUNServer(primary: a, alternate: b)
    }

    static func plain(_ a: STUNAddress) -> SimSTUNServer { SimSTUNServer(primary: a, alternate: nil) }

    var listening: [STUNAddress] {
        guard let b = alternate else { return [primary] }
        let all = [primary, primary.with(port: b.port), b.with(port: primary.port), b]
        return alternateReachable ? all : [primary, primary.with(port: b.port)]
    }

    /// The answer to `bytes` from `source` received at `local`: (answering address, bytes).
    func answer(_ bytes: ByteBuffer, from source: STUNAddress, at local: STUNAddress) -> (STUNAddress, ByteBuffer)? {
        guard let request = try? STUNMessage(datagram: bytes), request.type == .bindingRequest else { return nil }
        let change = request.changeRequest
        guard let b = alternate else {
            if change.changeIP || change.changePort {
                let error = STUNMessage(type: .bindingError, transactionID: request.transactionID, attributes: [.errorCode(.changeRequestUnsupported)])
                return (local, error.encoded())
            }
            let ok = STUNMessage(type: .bindingSuccess, transactionID: request.transactionID, attributes: [.xorMappedAddress(source)])
            return (local, ok.encoded(options: STUNEncodingOptions(fingerprint: true)))
        }
        let a = primary
        var origin = local
        if honoursChangeRequest {
            if change.changeIP { origin.ip = local.ip == a.ip ? b.ip : a.ip }
            if change.changePort { origin.port = local.port == a.port ? b.port : a.port }
        }
        guard alternateReachable || origin.ip == a.ip else { return nil }
        let other = STUNAddress(ip: local.ip == a.ip ? b.ip : a.ip, port: local.port == a.port ? b.port : a.port)
        let ok = STUNMessage(
            type: .bindingSuccess, transactionID: request.transactionID,
            attributes: [.xorMappedAddress(source), .responseOrigin(origin), .otherAddress(other)])
        return (origin, ok.encoded(options: STUNEncodingOptions(fingerprint: true)))
    }
}

/// Fixed addresses of the simulated world.
enum Sim {
    static let hostPrivateIP = ip("192.168.1.10")
    static let hostPublicIP = ip("203.0.113.50")
    static let natPublicIP = ip("203.0.113.7")
    static let serverA = STUNAddress(parsing: "198.51.100.1:3478")!
    static let serverB = STUNAddress(parsing: "198.51.100.2:3479")!
    static let start = NIODeadline.uptimeNanoseconds(5_000_000_000)

    static func ip(_ text: String) -> STUNAddress.IP { STUNAddress.parseIP(Substring(text))! }
    static func ms(_ value: Int64) -> TimeAmount { .milliseconds(value) }
    static func localPort(_ socket: NetcheckSocketID) -> UInt16 { UInt16(40_000 + 37 * socket.rawValue) }
}

/// One request as it left a host socket.
struct SentRequest: Equatable {
    var at: TimeAmount
    var socket: NetcheckSocketID
    var to: STUNAddress
    var transactionID: STUNTransactionID
    var change: STUNChangeRequest
}

/// A datagram on the simulated wire (for loss rules).
struct WirePacket {
    /// 0-based order of the packet among all packets put on the wire.
    var index: Int
    var from: STUNAddress
    var to: STUNAddress
    /// True for host → server, false for server → host.
    var outbound: Bool
}

/// Runs a `NetcheckMachine` against a simulated NAT and STUN servers in virtual time.
final class Simulation {
    var nat: SimNAT?
    var servers: [SimSTUNServer]
    var oneWayDelay = Sim.ms(10)
    var hairpinDelay = Sim.ms(1)
    /// Return true to lose the packet.
    var drop: (WirePacket) -> Bool = { _ in false }
    /// Called for every request sent; may inject datagrams (spoofers, garbage).
    var onSend: ((SentRequest, Simulation) -> Void)?
    var configuration: NetcheckConfiguration
    var seed: UInt64

    private(set) var now = Sim.start
    private(set) var sent: [SentRequest] = []
    private(set) var opened: [NetcheckSocketID] = []
    private(set) var wakeUps: [TimeAmount] = []
    private(set) var endedAt: TimeAmount?
    private var machine: NetcheckMachine
    private var queue: [(time: NIODeadline, order: Int, event: Event)] = []
    private var order = 0
    private var wireCount = 0
    private var wakeAt: NIODeadline?
    private var outcome: Result<NetcheckReport, NetcheckError>?

    private enum Event {
        case opened(NetcheckSocketID)
        case atServer(Int, local: STUNAddress, source: STUNAddress, bytes: ByteBuffer)
        case atHost(from: STUNAddress, to: STUNAddress, bytes: ByteBuffer)
        case deliver(NetcheckSocketID, from: STUNAddress, bytes: ByteBuffer)
    }

    init(nat: SimNAT?, servers: [SimSTUNServer] = [.pair()], checksHairpinning: Bool = true,
         overallTimeout: TimeAmount = NetcheckLimits.defaultOverallTimeout, seed: UInt64 = 1) {
        self.nat = nat
        self.servers = servers
        let host = nat == nil ? Sim.hostPublicIP : Sim.hostPrivateIP
        self.configuration = NetcheckConfiguration(
            servers: servers.map(\.primary), localIPs: [host], checksHairpinning: checksHairpinning, overallTimeout: overallTimeout)
        self.seed = seed
        self.machine = NetcheckMachine(configuration: configuration, randomSeed: seed)
    }

    var hostIP: STUNAddress.IP { nat == nil ? Sim.hostPublicIP : Sim.hostPrivateIP }

    func localAddress(_ socket: NetcheckSocketID) -> STUNAddress {
        STUNAddress(ip: hostIP, port: Sim.localPort(socket))
    }

    /// Runs to the end and returns the machine's verdict.
    @discardableResult
    func run() -> Result<NetcheckReport, NetcheckError> {
        machine = NetcheckMachine(configuration: configuration, randomSeed: seed)
        perform(machine.start(now: now))
        var steps = 0
        while outcome == nil, steps < 100_000 {
            steps += 1
            let next = queue.indices.min { (queue[$0].time, queue[$0].order) < (queue[$1].time, queue[$1].order) }
            if let wake = wakeAt, next == nil || wake < queue[next!].time {
                now = wake
                wakeAt = nil
                perform(machine.wakeUp(now: now))
                continue
            }
            guard let next else { break }
            let item = queue.remove(at: next)
            now = item.time
            handle(item.event)
        }
        return outcome ?? .failure(.invalidConfiguration("simulation stalled at \(now - Sim.start)"))
    }

    var report: NetcheckReport? { if case .success(let r) = outcome { r } else { nil } }

    /// Puts a datagram on `socket` at `delay` from now, as if it came from `source`.
    func inject(_ bytes: ByteBuffer, on socket: NetcheckSocketID, from source: STUNAddress, after delay: TimeAmount = .zero) {
        schedule(.deliver(socket, from: source, bytes: bytes), at: now + delay)
    }

    /// Feeds an event straight into the machine (for tests of the machine's API).
    func feed(_ body: (inout NetcheckMachine, NIODeadline) -> [NetcheckAction]) {
        perform(body(&machine, now))
    }

    private func schedule(_ event: Event, at time: NIODeadline) {
        order += 1
        queue.append((time, order, event))
    }

    private func perform(_ actions: [NetcheckAction]) {
        for action in actions {
            switch action {
            case .openSocket(let socket, _):
                opened.append(socket)
                schedule(.opened(socket), at: now)
            case .send(let socket, let destination, let bytes):
                send(bytes, from: socket, to: destination)
            case .wakeUp(let at):
                wakeAt = at
                wakeUps.append(at - Sim.start)
            case .finished(let report):
                outcome = .success(report)
                endedAt = now - Sim.start
            case .failed(let error):
                outcome = .failure(error)
                endedAt = now - Sim.start
            }
        }
    }

    private func handle(_ event: Event) {
        switch event {
        case .opened(let socket):
            perform(machine.socketOpened(socket, localAddress: STUNAddress(ip: .v4(0), port: Sim.localPort(socket)), now: now))
        case .deliver(let socket, let source, let bytes):
            perform(machine.datagramReceived(on: socket, from: source, bytes: bytes, now: now))
        case .atServer(let index, let local, let source, let bytes):
            guard let reply = servers[index].answer(bytes, from: source, at: local) else { return }
            let (origin, answer) = reply
            let copies = servers[index].duplicatesAnswers ? 2 : 1
            for _ in 0..<copies where !lost(from: origin, to: source, outbound: false) {
                schedule(.atHost(from: origin, to: source, bytes: answer), at: now + oneWayDelay)
            }
        case .atHost(let source, let destination, let bytes):
            let inside: STUNAddress?
            if let nat { inside = nat.inbound(from: source, toPort: destination.port) } else { inside = destination }
            guard let inside, let socket = socket(at: inside) else { return }
            perform(machine.datagramReceived(on: socket, from: source, bytes: bytes, now: now))
        }
    }

    private func socket(at address: STUNAddress) -> NetcheckSocketID? {
        guard address.ip == hostIP else { return nil }
        return opened.first { Sim.localPort($0) == address.port }
    }

    private func lost(from: STUNAddress, to: STUNAddress, outbound: Bool) -> Bool {
        defer { wireCount += 1 }
        return drop(WirePacket(index: wireCount, from: from, to: to, outbound: outbound))
    }

    private func send(_ bytes: ByteBuffer, from socket: NetcheckSocketID, to destination: STUNAddress) {
        if let message = try? STUNMessage(datagram: bytes) {
            let record = SentRequest(
                at: now - Sim.start, socket: socket, to: destination, transactionID: message.transactionID, change: message.changeRequest)
            sent.append(record)
            onSend?(record, self)
        }
        let inside = localAddress(socket)
        var source = inside
        if var nat {
            source = nat.outbound(from: inside, to: destination)
            self.nat = nat
            if destination.ip == nat.publicIP {
                // Hairpin: back inside to whoever owns the public port, if the NAT hairpins.
                guard nat.hairpin, let owner = nat.owner(ofPort: destination.port), let target = self.socket(at: owner) else { return }
                schedule(.deliver(target, from: source, bytes: bytes), at: now + hairpinDelay)
                return
            }
        } else if destination.ip == hostIP {
            guard let target = self.socket(at: destination) else { return }
            schedule(.deliver(target, from: source, bytes: bytes), at: now + hairpinDelay)
            return
        }
        guard let index = servers.firstIndex(where: { $0.listening.contains(destination) }) else { return }
        guard !lost(from: source, to: destination, outbound: true) else { return }
        schedule(.atServer(index, local: destination, source: source, bytes: bytes), at: now + oneWayDelay)
    }
}

/// The tests' own randomness (NAT ports, loss).
typealias TestRandom = STUNSeededRandom

extension Result {
    var failure: Failure? { if case .failure(let e) = self { e } else { nil } }
}
