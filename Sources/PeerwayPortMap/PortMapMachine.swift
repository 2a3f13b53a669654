import PeerwaySTUN

/*
 One port mapping's whole life as a socket-free, clock-free state machine: discovery of what the
 default gateway speaks, the mapping, its renewals and its deletion. The driver owns three UDP
 sockets connected to the gateway (`pcp`, `natPMP` to port 5351, `ssdp` to port 1900) and makes
 the HTTP exchanges; it feeds events with the time in milliseconds and performs the actions.

   start ─► all three at once:
            PCP      MAP request (discovery and mapping in one)   → success: mapped
            NAT-PMP  external address request                     → answer: available
            UPnP     M-SEARCH → GET description → control URL     → available
            each UDP request is sent at 0, 250, 750 ms (RFC 6886 §3.1's doubling, cut short) and
            its protocol is absent after `discoveryTimeoutMillis` (1.5 s), or at once when the
            socket reports ICMP port unreachable (a router that does not listen there).
   choose:  the most preferred protocol that can still map: PCP, then NAT-PMP, then UPnP; a
            protocol is only waited for while a more preferred one is still pending, so a gateway
            without any of them costs 1.5 s at most and usually one round trip.
            NAT-PMP  mapping request                              → mapped
            UPnP     GetExternalIPAddress, AddPortMapping         → mapped
                     (718 conflict: another external port, up to `maximumUPnPPortAttempts`;
                      725 permanent leases only: lease 0)
   mapped ─► `finished(report)`, then renewal at half the granted lifetime with the same request
            (PCP keeps its nonce); an unanswered renewal is retried at half the time left; the
            lifetime running out unrenewed is `lost`. A renewal that moves the external address
            or port says `mapped` again.
   close ─► every mapping that may exist (made, or asked for and perhaps made) is deleted: PCP
            and NAT-PMP lifetime 0 (RFC 6887 §15, RFC 6886 §3.4), UPnP DeletePortMapping; `closed`
            once all are answered or after `deleteTimeoutMillis`.

 `probeAll` (netcheck) waits for every protocol's discovery before `finished`, so the report says
 which of them the gateway speaks, not just the first that mapped.
*/

/// Which of the driver's sockets an action or event is about.
public enum PortMapSocket: Hashable, Sendable, CaseIterable {
    /// Connected to the gateway's port 5351, PCP requests only.
    case pcp
    /// Connected to the gateway's port 5351, NAT-PMP requests only (the answers are told apart by socket).
    case natPMP
    /// Connected to the gateway's port 1900.
    case ssdp
}

/// What to map, where, and how.
public struct PortMapConfiguration: Hashable, Sendable {
    /// The default gateway (IPv4).
    public var gateway: UInt32
    /// This host's address on the gateway's link (PCP's client address, UPnP's internal client).
    public var localIP: UInt32
    /// The port to map (the tunnel socket's).
    public var internalPort: UInt16
    public var transport: PortMapTransport
    /// Seconds asked for.
    public var lifetimeSeconds: UInt32
    /// Which protocols to try.
    public var protocols: Set<PortMapProtocol>
    /// Wait for every protocol's discovery before finishing (netcheck) instead of the first mapping.
    public var probeAll: Bool
    /// PCP's mapping nonce (12 random bytes, RFC 6887 §11.1); also seeds UPnP's other ports.
    public var nonce: [UInt8]

    public init(gateway: UInt32, localIP: UInt32, internalPort: UInt16, transport: PortMapTransport = .udp,
                lifetimeSeconds: UInt32 = PortMapLimits.defaultLifetimeSeconds, protocols: Set<PortMapProtocol> = Set(PortMapProtocol.allCases),
                probeAll: Bool = false, nonce: [UInt8]) {
        self.gateway = gateway
        self.localIP = localIP
        self.internalPort = internalPort
        self.transport = transport
        self.lifetimeSeconds = lifetimeSeconds
        self.protocols = protocols
        self.probeAll = probeAll
        self.nonce = nonce
    }
}

/// The port mapping state machine (see the flow above).
public struct PortMapMachine: Sendable {
    public enum Action: Hashable, Sendable {
        /// Send `bytes` on `socket` (connected to its gateway port).
        case send(PortMapSocket, [UInt8])
        /// Make HTTP exchange `id`: connect to `to`, send `request`, read the answer to the end
        /// (at most `PortMapLimits.maximumHTTPResponseBytes`, within `httpTimeoutMillis`).
        case http(id: Int, to: STUNAddress, request: [UInt8])
        /// A mapping is up, or moved: offer `external`.
        case mapped(PortMapping)
        /// Discovery (and the first mapping attempt) is over: what was found.
        case finished(PortMapReport)
        /// The mapping could not be kept (renewals unanswered or refused): stop offering it.
        case lost(String)
        /// `close` is done: every deletion answered or given up. The sockets can go.
        case closed
    }

    /// The most external ports tried with UPnP when the IGD reports a conflict.
    public static let maximumUPnPPortAttempts = 3

    public let configuration: PortMapConfiguration
    public internal(set) var report: PortMapReport
    /// The mapping in force.
    public internal(set) var mapping: PortMapping?
    public internal(set) var isClosed = false

    var startMillis: UInt64 = 0
    var started = false
    var finishedSent = false
    var closing = false
    var closeDeadline: UInt64 = 0
    /// Outstanding UDP requests, by socket.
    var udp: [PortMapSocket: UDPRequest] = [:]
    /// Discovery deadline per protocol.
    var discoveryDeadline: UInt64 = 0
    /// The protocol whose mapping request is in flight (NAT-PMP, UPnP; PCP maps during discovery).
    var mappingWith: PortMapProtocol?
    /// Protocols that were asked for a mapping (so close deletes them).
    var asked: Set<PortMapProtocol> = []
    /// Renewal timer and the expiry of the mapping in force.
    var renewAt: UInt64?
    var expiresAt: UInt64?
    var renewing = false
    // UPnP
    var control: UPnPControlPoint?
    var nextHTTP = 1
    var http: [Int: HTTPStep] = [:]
    var upnpPortAttempt = 0
    var upnpLease: UInt32 = 0
    var upnpExternalPort: UInt16 = 0
    var upnpExternalIP: UInt32?
    var natPMPExternalIP: UInt32?
    var deletionsPending = 0

    enum HTTPStep: Hashable, Sendable {
        case description(UPnPURL), externalIP, add(port: UInt16), delete
    }

    /// A UDP request with RFC 6886 §3.1 retransmission.
    struct UDPRequest: Hashable, Sendable {
        var bytes: [UInt8]
        var sent = 0
        var nextAt: UInt64
        var gap = PortMapLimits.initialRetransmitMillis
        /// What the request is for.
        var purpose: Purpose
        enum Purpose: Hashable, Sendable { case discover, map, renew, delete }
    }

    public init(configuration: PortMapConfiguration) {
        self.configuration = configuration
        self.report = PortMapReport(gateway: .v4(configuration.gateway))
        for p in PortMapProtocol.allCases where !configuration.protocols.contains(p) { setProbe(p, .absent("not tried")) }
        upnpLease = configuration.lifetimeSeconds
        upnpExternalPort = configuration.internalPort
    }

    /// When the driver must call `tick` next (nil: only on events).
    public var nextWakeMillis: UInt64? {
        var times = udp.values.map(\.nextAt)
        if !started || isClosed { return nil }
        if closing { return ([closeDeadline] + times).min() }
        if !discoveryOver { times.append(discoveryDeadline) }
        if let renewAt { times.append(renewAt) }
        if let expiresAt { times.append(expiresAt) }
        return times.min()
    }

    var discoveryOver: Bool { PortMapProtocol.allCases.allSatisfy { report.probe($0) != .pending } }

    // MARK: events

    /// Starts discovery.
    public mutating func start(nowMillis now: UInt64) -> [Action] {
        guard !started else { return [] }
        started = true
        startMillis = now
        discoveryDeadline = now + PortMapLimits.discoveryTimeoutMillis
        let c = configuration
        if c.protocols.contains(.pcp) {
            asked.insert(.pcp)
            udp[.pcp] = UDPRequest(bytes: pcpRequest(lifetime: c.lifetimeSeconds, suggestedPort: c.internalPort), nextAt: now, purpose: .discover)
        }
        if c.protocols.contains(.natPMP) {
            udp[.natPMP] = UDPRequest(bytes: NATPMPRequest.externalAddress.bytes, nextAt: now, purpose: .discover)
        }
        if c.protocols.contains(.upnp) {
            udp[.ssdp] = UDPRequest(bytes: SSDP.searchRequest(gateway: STUNAddress(ip: .v4(c.gateway), port: PortMapLimits.ssdpPort)),
                                    nextAt: now, purpose: .discover)
        }
        return tick(nowMillis: now)
    }

    /// Timers: retransmissions, discovery's end, renewals, expiry, the close deadline.
    public mutating func tick(nowMillis now: UInt64) -> [Action] {
        guard started, !isClosed else { return [] }
        var out: [Action] = []
        if closing {
            if now >= closeDeadline { return finishClose() }
        } else {
            if now >= discoveryDeadline {
                for p in PortMapProtocol.allCases where report.probe(p) == .pending {
                    setProbe(p, .absent("no answer within \(PortMapLimits.discoveryTimeoutMillis) ms"))
                    if let s = discoverySocket(p), udp[s]?.purpose == .discover { udp[s] = nil }
                }
            }
            if let expiresAt, now >= expiresAt, mapping != nil {
                mapping = nil
                self.expiresAt = nil
                renewAt = nil
                renewing = false
                out.append(.lost("the mapping's lifetime ran out without a renewal answered"))
            } else if let at = renewAt, now >= at, !renewing {
                out += renew(now)
            }
        }
        for socket in PortMapSocket.allCases {
            guard var r = udp[socket], now >= r.nextAt else { continue }
            if r.sent >= PortMapLimits.requestAttempts {
                udp[socket] = nil
                out += requestUnanswered(socket, r, now)
                continue
            }
            out.append(.send(socket, r.bytes))
            r.sent += 1
            r.nextAt = now + r.gap
            r.gap *= 2
            udp[socket] = r
        }
        return out + decide(now)
    }

    /// A datagram arrived on `socket` (from the gateway: the socket is connected).
    public mutating func received(_ bytes: [UInt8], on socket: PortMapSocket, nowMillis now: UInt64) -> [Action] {
        guard started, !isClosed, bytes.count <= PortMapLimits.maximumDatagramBytes else { return [] }
        var out: [Action] = []
        switch socket {
        case .pcp: out += receivedPCP(bytes, now)
        case .natPMP: out += receivedNATPMP(bytes, now)
        case .ssdp: out += receivedSSDP(bytes, now)
        }
        return out + decide(now)
    }

    /// The socket reported an error (ICMP port unreachable: nothing listens there).
    public mutating func unreachable(_ socket: PortMapSocket, nowMillis now: UInt64) -> [Action] {
        guard started, !isClosed, let r = udp[socket] else { return [] }
        udp[socket] = nil
        var out: [Action] = []
        if r.purpose == .discover, let p = protocolOf(socket) {
            setProbe(p, .absent("port \(socket == .ssdp ? PortMapLimits.ssdpPort : PortMapLimits.pcpServerPort) unreachable"))
        } else {
            out += requestUnanswered(socket, r, now)
        }
        return out + decide(now)
    }

    /// HTTP exchange `id` ended with this answer.
    public mutating func httpAnswered(id: Int, bytes: [UInt8], nowMillis now: UInt64) -> [Action] {
        guard started, !isClosed, let step = http.removeValue(forKey: id) else { return [] }
        return upnpAnswered(step, bytes, now) + decide(now)
    }

    /// HTTP exchange `id` failed (refused, timed out, cut short).
    public mutating func httpFailed(id: Int, reason: String, nowMillis now: UInt64) -> [Action] {
        guard started, !isClosed, let step = http.removeValue(forKey: id) else { return [] }
        return upnpFailed(step, reason, now) + decide(now)
    }

    /// Deletes whatever mapping may exist and finishes with `closed`.
    public mutating func close(nowMillis now: UInt64) -> [Action] {
        guard !isClosed, !closing else { return [] }
        guard started else {
            isClosed = true
            return [.closed]
        }
        closing = true
        closeDeadline = now + PortMapLimits.deleteTimeoutMillis
        udp = [:]
        http = [:]
        renewAt = nil
        expiresAt = nil
        var out: [Action] = []
        let c = configuration
        if asked.contains(.pcp) {
            udp[.pcp] = UDPRequest(bytes: pcpRequest(lifetime: 0, suggestedPort: mapping?.external.port ?? c.internalPort), nextAt: now, purpose: .delete)
        }
        if asked.contains(.natPMP) {
            udp[.natPMP] = UDPRequest(bytes: NATPMPRequest.delete(c.transport, internalPort: c.internalPort).bytes, nextAt: now, purpose: .delete)
        }
        if asked.contains(.upnp), let control {
            out += startHTTP(.delete, control.controlURL.host,
                             UPnPAction.deletePortMapping(externalPort: upnpExternalPort, transport: c.transport).request(control))
        }
        mapping = nil
        deletionsPending = udp.count + http.count
        if deletionsPending == 0 { return finishClose() }
        return out + tick(nowMillis: now)
    }

    // MARK: the choice

    /// Starts the preferred protocol's mapping when discovery allows, and says `finished`.
    mutating func decide(_ now: UInt64) -> [Action] {
        guard !closing, !isClosed else { return [] }
        var out: [Action] = []
        // Only the first attempt chooses: a mapping lost later is not remade with another protocol.
        if mapping == nil && mappingWith == nil && !renewing && !finishedSent {
            for p in PortMapProtocol.allCases.sorted() {
                let probe = report.probe(p)
                if probe == .pending { break }  // wait for the more preferred one
                guard probe == .available, !asked.contains(p) || p == .pcp else { continue }
                if p == .pcp { continue }  // PCP maps during discovery: available means mapped or refused later
                out += startMapping(p, now)
                break
            }
        }
        let settled = mapping != nil ? (!configuration.probeAll || discoveryOver) : (mappingWith == nil && discoveryOver)
        if settled && !finishedSent {
            finishedSent = true
            report.millis = now - startMillis
            report.mapping = mapping
            if mapping == nil && report.failure == nil {
                report.failure = report.spoken.isEmpty ? "the gateway speaks none of PCP, NAT-PMP and UPnP-IGD" : "the gateway refused every mapping"
            }
            out.append(.finished(report))
        }
        return out
    }

    mutating func startMapping(_ p: PortMapProtocol, _ now: UInt64) -> [Action] {
        asked.insert(p)
        mappingWith = p
        let c = configuration
        switch p {
        case .pcp:
            return []
        case .natPMP:
            let request = NATPMPRequest.map(c.transport, internalPort: c.internalPort, suggestedExternalPort: c.internalPort,
                                            lifetimeSeconds: c.lifetimeSeconds)
            udp[.natPMP] = UDPRequest(bytes: request.bytes, nextAt: now, purpose: .map)
            return tick(nowMillis: now)
        case .upnp:
            guard let control else { mappingWith = nil; return [] }
            return startHTTP(.externalIP, control.controlURL.host, UPnPAction.getExternalIPAddress.request(control))
        }
    }

    mutating func established(_ m: PortMapping, _ now: UInt64) -> [Action] {
        let changed = mapping?.external != m.external
        mapping = m
        mappingWith = nil
        renewing = false
        report.mapping = m
        report.externalAddress = report.externalAddress ?? m.external.ip
        if m.lifetimeSeconds == 0 {
            renewAt = nil
            expiresAt = nil
        } else {
            let life = UInt64(max(m.lifetimeSeconds, PortMapLimits.minimumLifetimeSeconds)) * 1000
            renewAt = now + life / PortMapLimits.renewalFraction
            expiresAt = now + life
        }
        return changed ? [.mapped(m)] : []
    }

    /// A mapping attempt by `p` failed for good: fall to the next protocol (or report none).
    mutating func mappingFailed(_ p: PortMapProtocol, _ why: String, _ now: UInt64) -> [Action] {
        if renewing {
            renewing = false
            // Retry at half the time left, or give up when too little is left.
            if let expiresAt, expiresAt > now + 2 * PortMapLimits.initialRetransmitMillis * 4 {
                renewAt = now + (expiresAt - now) / 2
                return []
            }
            mapping = nil
            renewAt = nil
            self.expiresAt = nil
            return [.lost("renewal with \(p) failed: \(why)")]
        }
        if mappingWith == p { mappingWith = nil }
        setProbe(p, .refused(why))
        return []
    }

    mutating func renew(_ now: UInt64) -> [Action] {
        guard let m = mapping else { return [] }
        renewing = true
        renewAt = nil
        let c = configuration
        switch m.protocolUsed {
        case .pcp:
            udp[.pcp] = UDPRequest(bytes: pcpRequest(lifetime: c.lifetimeSeconds, suggestedPort: m.external.port), nextAt: now, purpose: .renew)
        case .natPMP:
            let request = NATPMPRequest.map(c.transport, internalPort: c.internalPort, suggestedExternalPort: m.external.port,
                                            lifetimeSeconds: c.lifetimeSeconds)
            udp[.natPMP] = UDPRequest(bytes: request.bytes, nextAt: now, purpose: .renew)
        case .upnp:
            guard let control else { return [] }
            return startHTTP(.add(port: upnpExternalPort), control.controlURL.host, addRequest(control, port: upnpExternalPort))
        }
        return []
    }

    /// A UDP request got no answer after every retransmission.
    mutating func requestUnanswered(_ socket: PortMapSocket, _ r: UDPRequest, _ now: UInt64) -> [Action] {
        guard let p = protocolOf(socket) else { return [] }
        switch r.purpose {
        case .discover:
            // Keep the protocol pending until the discovery deadline (a late answer still counts).
            return []
        case .map, .renew:
            return mappingFailed(p, "no answer to \(PortMapLimits.requestAttempts) requests", now)
        case .delete:
            return deletionDone(now)
        }
    }

    mutating func deletionDone(_ now: UInt64) -> [Action] {
        guard closing else { return [] }
        deletionsPending -= 1
        return deletionsPending <= 0 ? finishClose() : []
    }

    mutating func finishClose() -> [Action] {
        guard !isClosed else { return [] }
        isClosed = true
        udp = [:]
        http = [:]
        return [.closed]
    }
}
