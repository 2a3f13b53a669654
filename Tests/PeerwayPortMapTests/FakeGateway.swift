import Foundation
import PeerwaySTUN

@testable import PeerwayPortMap

/// A gateway for the machine's tests: answers PCP, NAT-PMP and UPnP as miniupnpd does (or does
/// not, per protocol), after `rttMillis`, and records what it was asked.
struct FakeGateway {
    enum Behaviour { case speaks, silent, unreachable }
    var pcp: Behaviour = .speaks
    var natPMP: Behaviour = .speaks
    var upnp: Behaviour = .speaks
    var externalIP: UInt32 = 0xCB00_710B
    var grantedLifetime: UInt32 = 7200
    var pcpResult: PCPResultCode = .success
    var natPMPResult: NATPMPResultCode = .success
    /// UPnP faults to answer AddPortMapping with, in order, before succeeding.
    var addFaults: [Int] = []
    /// Answer renewals (false: the gateway went quiet after the first mapping).
    var answersRenewals = true
    var rttMillis: UInt64 = 2
    var epoch: UInt32 = 100

    var pcpRequests: [[UInt8]] = []
    var natPMPRequests: [[UInt8]] = []
    var ssdpRequests = 0
    var soapActions: [String] = []
    var mappingsMade = 0

    static let control = "/ctl/IPConn"

    /// What the gateway sends back for a datagram on `socket`: bytes, unreachable, or nothing.
    enum Reply { case bytes([UInt8]), unreachable, none }

    mutating func datagram(_ bytes: [UInt8], on socket: PortMapSocket) -> Reply {
        switch socket {
        case .pcp:
            pcpRequests.append(bytes)
            switch pcp {
            case .unreachable: return .unreachable
            case .silent: return .none
            case .speaks: break
            }
            if pcpRequests.count > 1 && !answersRenewals && lifetime(pcpBytes: bytes) != 0 { return .none }
            let nonce = Array(bytes[24..<36])
            let port = UInt16(bytes[42]) << 8 | UInt16(bytes[43])
            let internalPort = UInt16(bytes[40]) << 8 | UInt16(bytes[41])
            let requested = lifetime(pcpBytes: bytes)
            if pcpResult == .success && requested != 0 { mappingsMade += 1 }
            return .bytes(PCPMapResponse(result: pcpResult, lifetimeSeconds: min(requested, grantedLifetime), epochSeconds: epoch,
                                         nonce: nonce, transport: .udp, internalPort: internalPort,
                                         externalPort: port == 0 ? 40000 : port, externalIP: externalIP).bytes)
        case .natPMP:
            natPMPRequests.append(bytes)
            switch natPMP {
            case .unreachable: return .unreachable
            case .silent: return .none
            case .speaks: break
            }
            if bytes.count == 2 {
                return .bytes(NATPMPResponse(opcode: 0, result: natPMPResult, epochSeconds: epoch, body: .externalAddress(externalIP)).bytes)
            }
            if natPMPRequests.count > 2 && !answersRenewals && bytes[8...11] != [0, 0, 0, 0] { return .none }
            let internalPort = UInt16(bytes[4]) << 8 | UInt16(bytes[5])
            let requested = UInt32(bytes[8]) << 24 | UInt32(bytes[9]) << 16 | UInt32(bytes[10]) << 8 | UInt32(bytes[11])
            if natPMPResult == .success && requested != 0 { mappingsMade += 1 }
            return .bytes(NATPMPResponse(opcode: 1, result: natPMPResult, epochSeconds: epoch,
                                         body: .mapping(.udp, internalPort: internalPort, externalPort: requested == 0 ? 0 : internalPort,
                                                        lifetimeSeconds: min(requested, grantedLifetime))).bytes)
        case .ssdp:
            ssdpRequests += 1
            switch upnp {
            case .unreachable: return .unreachable
            case .silent: return .none
            case .speaks: return .bytes(Array(UPnPCodecTests.ssdpAnswer.utf8))
            }
        }
    }

    func lifetime(pcpBytes b: [UInt8]) -> UInt32 {
        UInt32(b[4]) << 24 | UInt32(b[5]) << 16 | UInt32(b[6]) << 8 | UInt32(b[7])
    }

    /// The answer to an HTTP request (nil: the connection fails).
    mutating func http(_ request: [UInt8]) -> [UInt8]? {
        let text = String(decoding: request, as: UTF8.self)
        if text.hasPrefix("GET /rootDesc.xml") { return Self.ok(UPnPCodecTests.description) }
        guard text.hasPrefix("POST \(Self.control)"), let action = text.components(separatedBy: "#").dropFirst().first?.prefix(while: { $0 != "\"" }) else {
            return nil
        }
        soapActions.append(String(action))
        switch action {
        case "GetExternalIPAddress":
            return Self.ok("<s:Envelope><s:Body><u:GetExternalIPAddressResponse><NewExternalIPAddress>\(STUNAddress.IP.v4(externalIP).text)"
                + "</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>")
        case "AddPortMapping":
            if !addFaults.isEmpty {
                let code = addFaults.removeFirst()
                let body = "<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>\(code)</errorCode>"
                    + "<errorDescription>fault \(code)</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>"
                return Array("HTTP/1.1 500 Internal Server Error\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
            }
            mappingsMade += 1
            return Self.ok("<s:Envelope><s:Body><u:AddPortMappingResponse/></s:Body></s:Envelope>")
        case "DeletePortMapping":
            return Self.ok("<s:Envelope><s:Body><u:DeletePortMappingResponse/></s:Body></s:Envelope>")
        default:
            return nil
        }
    }

    static func ok(_ body: String) -> [UInt8] {
        Array("HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)".utf8)
    }
}

/// Runs a machine against a `FakeGateway` under virtual time.
struct PortMapHarness {
    enum Event {
        case datagram(PortMapSocket, [UInt8])
        case unreachable(PortMapSocket)
        case http(Int, [UInt8]?)
    }

    var machine: PortMapMachine
    var gateway: FakeGateway
    var now: UInt64 = 1_000
    var pending: [(at: UInt64, event: Event)] = []
    var actions: [PortMapMachine.Action] = []
    /// Most steps one `run` takes (every loop bounded).
    static let maximumSteps = 10_000

    init(gateway: FakeGateway = FakeGateway(), probeAll: Bool = false, lifetime: UInt32 = 7200,
         protocols: Set<PortMapProtocol> = Set(PortMapProtocol.allCases)) {
        self.gateway = gateway
        machine = PortMapMachine(configuration: PortMapConfiguration(
            gateway: 0x0A00_0101, localIP: 0x0A00_010B, internalPort: 4000, lifetimeSeconds: lifetime, protocols: protocols,
            probeAll: probeAll, nonce: Array(1...12)))
    }

    mutating func perform(_ list: [PortMapMachine.Action]) {
        actions += list
        for a in list {
            switch a {
            case .send(let socket, let bytes):
                switch gateway.datagram(bytes, on: socket) {
                case .bytes(let reply): pending.append((now + gateway.rttMillis, .datagram(socket, reply)))
                case .unreachable: pending.append((now + gateway.rttMillis, .unreachable(socket)))
                case .none: break
                }
            case .http(let id, _, let request):
                pending.append((now + gateway.rttMillis, .http(id, gateway.http(request))))
            default: break
            }
        }
    }

    mutating func start() { perform(machine.start(nowMillis: now)) }

    /// Advances virtual time to `until`, delivering answers and timers in order.
    mutating func run(until: UInt64) {
        for _ in 0..<Self.maximumSteps {
            let nextEvent = pending.map(\.at).min()
            let nextWake = machine.nextWakeMillis
            guard let next = [nextEvent, nextWake].compactMap({ $0 }).min(), next <= until else { break }
            now = max(now, next)
            if let i = pending.firstIndex(where: { $0.at <= now }) {
                let (_, event) = pending.remove(at: i)
                switch event {
                case .datagram(let s, let b): perform(machine.received(b, on: s, nowMillis: now))
                case .unreachable(let s): perform(machine.unreachable(s, nowMillis: now))
                case .http(let id, let b?): perform(machine.httpAnswered(id: id, bytes: b, nowMillis: now))
                case .http(let id, nil): perform(machine.httpFailed(id: id, reason: "connection refused", nowMillis: now))
                }
            } else {
                perform(machine.tick(nowMillis: now))
            }
        }
        now = max(now, until)
    }

    mutating func close() { perform(machine.close(nowMillis: now)) }

    var finished: PortMapReport? {
        for case .finished(let r) in actions { return r }
        return nil
    }

    var mappings: [PortMapping] { actions.compactMap { if case .mapped(let m) = $0 { m } else { nil } } }
    var lost: [String] { actions.compactMap { if case .lost(let why) = $0 { why } else { nil } } }
    var closed: Bool { actions.contains(.closed) }
    func sends(_ socket: PortMapSocket) -> Int { actions.filter { if case .send(socket, _) = $0 { true } else { false } }.count }
}
