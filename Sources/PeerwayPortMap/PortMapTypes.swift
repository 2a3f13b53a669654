import PeerwaySTUN

/*
 Port mapping: asking the home router (the default gateway) to open a port, with whichever of
 three protocols it speaks.

   PCP      RFC 6887, UDP to gateway:5351, version 2: a MAP request is discovery and mapping at once
   NAT-PMP  RFC 6886, UDP to gateway:5351, version 0: external address request, then a mapping
   UPnP-IGD SSDP M-SEARCH (UDP to gateway:1900) → device description (HTTP GET) → SOAP control
            (GetExternalIPAddress, AddPortMapping, DeletePortMapping) over HTTP/1.1

 This module is the pure part: the three codecs and `PortMapMachine`, which decides what to send
 and when (no sockets, no clock). The driver (`PortMapper` in the Peerway module) owns the sockets.

 Why only the default gateway, and why unicast SSDP: a mapping is only useful on the router the
 host's traffic leaves through, which is the default gateway of the route table. UPnP Device
 Architecture 1.1 §1.3.3 allows a unicast M-SEARCH; sending it to the gateway's port 1900 keeps
 discovery on one link and makes a router without UPnP answer at once with ICMP port
 unreachable, which a connected socket reports as ECONNREFUSED: the machine marks the protocol
 absent right away instead of waiting out the timeout. The same holds for 5351 (PCP, NAT-PMP).

 IPv4 only: NAT-PMP is IPv4-only by design, and an IPv6 host behind a firewall needs no mapping
 but a pinhole (PCP can make both; that is left for the IPv6 part of the work).
*/

/// Every limit and timer of port mapping, named.
public enum PortMapLimits {
    /// The port PCP and NAT-PMP servers listen on (RFC 6887 §19.1, RFC 6886 §3.1).
    public static let pcpServerPort: UInt16 = 5351
    /// The SSDP port (UPnP Device Architecture 1.1 §1.1.2).
    public static let ssdpPort: UInt16 = 1900
    /// The SSDP multicast group, 239.255.255.250 (only for reference: discovery is unicast).
    public static let ssdpMulticastIP: UInt32 = 0xEFFF_FFFA
    /// First retransmission gap of a UDP request (RFC 6886 §3.1: 250 ms, doubling).
    public static let initialRetransmitMillis: UInt64 = 250
    /// UDP requests sent per discovery or mapping attempt: at 250, 500 and 1000 ms gaps the last
    /// one leaves at 750 ms (RFC 6886 sends 9, over 64 s: far too long to hold up a tunnel).
    public static let requestAttempts = 3
    /// Discovery of one protocol gives up this long after it started (a silent gateway costs at
    /// most this much; one that answers ICMP port unreachable costs a round trip).
    public static let discoveryTimeoutMillis: UInt64 = 1_500
    /// One HTTP exchange with the IGD (connect, request, whole answer) gives up after this long.
    public static let httpTimeoutMillis: UInt64 = 2_000
    /// Largest HTTP answer read from an IGD (device descriptions are a few KiB).
    public static let maximumHTTPResponseBytes = 65_536
    /// Largest SSDP answer or PCP/NAT-PMP datagram considered.
    public static let maximumDatagramBytes = 1_100
    /// Lifetime asked for a mapping, seconds (RFC 6886 §3.3 recommends 7200).
    public static let defaultLifetimeSeconds: UInt32 = 7_200
    /// Shortest lifetime the machine accepts from a gateway before renewing at half of it.
    public static let minimumLifetimeSeconds: UInt32 = 4
    /// Renewal starts at this fraction of the granted lifetime (RFC 6886 §3.3: half).
    public static let renewalFraction: UInt64 = 2
    /// Closing gives up on an unanswered deletion after this long.
    public static let deleteTimeoutMillis: UInt64 = 1_000
    /// Longest description text a mapping carries in UPnP (shown by `upnpc -l`).
    public static let mappingDescription = "peerway"
    /// Largest number of SSDP answers parsed in one discovery.
    public static let maximumSSDPAnswers = 8
}

/// The three port mapping protocols, in the order the machine prefers them.
public enum PortMapProtocol: String, Hashable, Sendable, Codable, CaseIterable, Comparable, CustomStringConvertible {
    /// Port Control Protocol, RFC 6887.
    case pcp
    /// NAT Port Mapping Protocol, RFC 6886.
    case natPMP = "nat-pmp"
    /// UPnP Internet Gateway Device (WANIPConnection / WANPPPConnection) over SSDP and SOAP.
    case upnp

    public var description: String {
        switch self {
        case .pcp: "PCP"
        case .natPMP: "NAT-PMP"
        case .upnp: "UPnP-IGD"
        }
    }

    private var rank: Int {
        switch self {
        case .pcp: 0
        case .natPMP: 1
        case .upnp: 2
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rank < rhs.rank }
}

/// The transport a mapping is for.
public enum PortMapTransport: String, Hashable, Sendable, Codable {
    case udp, tcp

    /// IANA protocol number (PCP's protocol field, RFC 6887 §11.1).
    public var ianaNumber: UInt8 { self == .udp ? 17 : 6 }
    /// NAT-PMP's mapping opcode (RFC 6886 §3.3: 1 UDP, 2 TCP).
    public var natPMPOpcode: UInt8 { self == .udp ? 1 : 2 }
    /// UPnP's NewProtocol value.
    public var upnpName: String { self == .udp ? "UDP" : "TCP" }
}

/// A port the gateway opened: traffic to `external` reaches `internalPort` on this host.
public struct PortMapping: Hashable, Sendable, Codable {
    enum CodingKeys: String, CodingKey {
        case protocolUsed = "protocol", transport, external, internalPort, lifetimeSeconds
    }
    /// The protocol that made it.
    public var protocolUsed: PortMapProtocol
    public var transport: PortMapTransport
    /// The public address and port, as the gateway told it.
    public var external: STUNAddress
    /// This host's port the mapping leads to.
    public var internalPort: UInt16
    /// Seconds the gateway granted (0: permanent, UPnP only; deleted when done all the same).
    public var lifetimeSeconds: UInt32

    public init(protocolUsed: PortMapProtocol, transport: PortMapTransport, external: STUNAddress, internalPort: UInt16,
                lifetimeSeconds: UInt32) {
        self.protocolUsed = protocolUsed
        self.transport = transport
        self.external = external
        self.internalPort = internalPort
        self.lifetimeSeconds = lifetimeSeconds
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        protocolUsed = try c.decode(PortMapProtocol.self, forKey: .protocolUsed)
        transport = try c.decode(PortMapTransport.self, forKey: .transport)
        let text = try c.decode(String.self, forKey: .external)
        guard let external = STUNAddress(parsing: text) else {
            throw DecodingError.dataCorruptedError(forKey: .external, in: c, debugDescription: "not ip:port: \(text)")
        }
        self.external = external
        internalPort = try c.decode(UInt16.self, forKey: .internalPort)
        lifetimeSeconds = try c.decode(UInt32.self, forKey: .lifetimeSeconds)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(protocolUsed, forKey: .protocolUsed)
        try c.encode(transport, forKey: .transport)
        try c.encode(external.description, forKey: .external)
        try c.encode(internalPort, forKey: .internalPort)
        try c.encode(lifetimeSeconds, forKey: .lifetimeSeconds)
    }
}

/// What one protocol's discovery found.
public enum PortMapProbe: Hashable, Sendable, CustomStringConvertible {
    /// Not finished.
    case pending
    /// The gateway speaks it.
    case available
    /// The gateway answered that it will not (a result code, a SOAP fault): the reason.
    case refused(String)
    /// Nothing usable came back: ICMP port unreachable, silence, or garbage.
    case absent(String)

    public var description: String {
        switch self {
        case .pending: "pending"
        case .available: "yes"
        case .refused(let why): "refused (\(why))"
        case .absent(let why): "no (\(why))"
        }
    }

    /// The gateway speaks the protocol (even if it refused this request).
    public var isSpoken: Bool {
        switch self {
        case .available, .refused: true
        case .pending, .absent: false
        }
    }
}

/// What a port mapping run found out: for `peerway netcheck` and the logs. In JSON, each
/// protocol is `{"state": "available"|"refused"|"absent"|"pending", "detail": ...}` and the
/// addresses are strings.
public struct PortMapReport: Hashable, Sendable, Codable {
    enum CodingKeys: String, CodingKey {
        case gateway, pcp, natPMP, upnp, externalAddress, mapping, failure, millis, spoken
    }

    struct ProbeJSON: Codable {
        var state: String
        var detail: String?
    }
    /// The default gateway asked (nil: no IPv4 default route).
    public var gateway: STUNAddress.IP?
    /// Each protocol's discovery result.
    public var pcp: PortMapProbe
    public var natPMP: PortMapProbe
    public var upnp: PortMapProbe
    /// The gateway's external address, as the first protocol that told it said.
    public var externalAddress: STUNAddress.IP?
    /// The mapping made, if any.
    public var mapping: PortMapping?
    /// Why no mapping was made, when none was.
    public var failure: String?
    /// Milliseconds from the start to the first mapping (or to giving up).
    public var millis: UInt64

    public init(gateway: STUNAddress.IP?, pcp: PortMapProbe = .pending, natPMP: PortMapProbe = .pending, upnp: PortMapProbe = .pending,
                externalAddress: STUNAddress.IP? = nil, mapping: PortMapping? = nil, failure: String? = nil, millis: UInt64 = 0) {
        self.gateway = gateway
        self.pcp = pcp
        self.natPMP = natPMP
        self.upnp = upnp
        self.externalAddress = externalAddress
        self.mapping = mapping
        self.failure = failure
        self.millis = millis
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func ip(_ key: CodingKeys) throws -> STUNAddress.IP? {
            try c.decodeIfPresent(String.self, forKey: key).flatMap { STUNAddress.parseIP(Substring($0)) }
        }
        func probe(_ key: CodingKeys) throws -> PortMapProbe {
            let p = try c.decode(ProbeJSON.self, forKey: key)
            switch p.state {
            case "available": return .available
            case "refused": return .refused(p.detail ?? "")
            case "absent": return .absent(p.detail ?? "")
            default: return .pending
            }
        }
        gateway = try ip(.gateway)
        pcp = try probe(.pcp)
        natPMP = try probe(.natPMP)
        upnp = try probe(.upnp)
        externalAddress = try ip(.externalAddress)
        mapping = try c.decodeIfPresent(PortMapping.self, forKey: .mapping)
        failure = try c.decodeIfPresent(String.self, forKey: .failure)
        millis = try c.decode(UInt64.self, forKey: .millis)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        func json(_ p: PortMapProbe) -> ProbeJSON {
            switch p {
            case .pending: ProbeJSON(state: "pending")
            case .available: ProbeJSON(state: "available")
            case .refused(let why): ProbeJSON(state: "refused", detail: why)
            case .absent(let why): ProbeJSON(state: "absent", detail: why)
            }
        }
        try c.encode(gateway?.text, forKey: .gateway)
        try c.encode(json(pcp), forKey: .pcp)
        try c.encode(json(natPMP), forKey: .natPMP)
        try c.encode(json(upnp), forKey: .upnp)
        try c.encode(externalAddress?.text, forKey: .externalAddress)
        try c.encode(mapping, forKey: .mapping)
        try c.encode(failure, forKey: .failure)
        try c.encode(millis, forKey: .millis)
        try c.encode(spoken.map(\.rawValue), forKey: .spoken)
    }

    /// The protocols the gateway speaks, preferred first.
    public var spoken: [PortMapProtocol] {
        PortMapProtocol.allCases.filter { probe($0).isSpoken }
    }

    /// One protocol's result.
    public func probe(_ p: PortMapProtocol) -> PortMapProbe {
        switch p {
        case .pcp: pcp
        case .natPMP: natPMP
        case .upnp: upnp
        }
    }
}

/// A malformed or unexpected answer from a gateway: what was wrong, for the report.
public struct PortMapDecodeError: Error, Hashable, Sendable, CustomStringConvertible {
    public var what: String
    public init(_ what: String) { self.what = what }
    public var description: String { what }
}

extension STUNAddress.IP {
    /// The IPv4 value, or nil for IPv6.
    var ipv4: UInt32? {
        if case .v4(let a) = self { return a }
        return nil
    }

    /// Dotted quad for IPv4, the usual text for IPv6.
    var text: String { STUNAddress(ip: self, port: 0).ipString }
}
