import NIOCore
import PeerwaySTUN

/// NAT mapping behaviour, in RFC 4787 §4.1 terms.
public enum NetcheckMappingBehavior: String, Hashable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case endpointIndependent
    case addressDependent
    case addressAndPortDependent
    case unknown

    /// Short name: "endpoint-independent", "address-dependent", "address and port-dependent".
    public var name: String {
        switch self {
        case .endpointIndependent: "endpoint-independent"
        case .addressDependent: "address-dependent"
        case .addressAndPortDependent: "address and port-dependent"
        case .unknown: "unknown"
        }
    }

    /// The RFC 4787 abbreviation.
    public var abbreviation: String {
        switch self {
        case .endpointIndependent: "EIM"
        case .addressDependent: "ADM"
        case .addressAndPortDependent: "APDM"
        case .unknown: "unknown"
        }
    }

    /// RFC 4787 §4.1 wording.
    public var description: String {
        switch self {
        case .endpointIndependent:
            "endpoint-independent mapping: the NAT reuses the same public address and port for packets to any external IP address and port"
        case .addressDependent:
            "address-dependent mapping: the NAT reuses the public address and port only for packets to the same external IP address, whatever the port"
        case .addressAndPortDependent:
            "address and port-dependent mapping: the NAT reuses the public address and port only for packets to the same external IP address and port"
        case .unknown:
            "mapping behaviour unknown"
        }
    }
}

/// NAT filtering behaviour, in RFC 4787 §5 terms.
public enum NetcheckFilteringBehavior: String, Hashable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case endpointIndependent
    case addressDependent
    case addressAndPortDependent
    case unknown

    /// Short name: "endpoint-independent", "address-dependent", "address and port-dependent".
    public var name: String {
        switch self {
        case .endpointIndependent: "endpoint-independent"
        case .addressDependent: "address-dependent"
        case .addressAndPortDependent: "address and port-dependent"
        case .unknown: "unknown"
        }
    }

    /// The RFC 4787 abbreviation.
    public var abbreviation: String {
        switch self {
        case .endpointIndependent: "EIF"
        case .addressDependent: "ADF"
        case .addressAndPortDependent: "APDF"
        case .unknown: "unknown"
        }
    }

    /// RFC 4787 §5 wording.
    public var description: String {
        switch self {
        case .endpointIndependent:
            "endpoint-independent filtering: once a mapping exists, packets from any external IP address and port reach it"
        case .addressDependent:
            "address-dependent filtering: only packets from external IP addresses this host has sent to reach the mapping, from any port"
        case .addressAndPortDependent:
            "address and port-dependent filtering: only packets from external IP addresses and ports this host has sent to reach the mapping"
        case .unknown:
            "filtering behaviour unknown"
        }
    }
}

/// What the findings mean for direct connections between peers.
public enum NetcheckDirectConnectivity: String, Hashable, Sendable, Codable, CaseIterable {
    /// No NAT and no filtering seen.
    case open
    /// Endpoint-independent mapping and filtering.
    case easy
    /// Endpoint-independent mapping with filtering (or unknown filtering): UDP hole punching with
    /// simultaneous open.
    case holePunching
    /// The mapping depends on the destination but new ports are predictable.
    case portPrediction
    /// The mapping depends on the destination and ports are unpredictable.
    case hard
    /// Not enough is known.
    case unknown

    public var summary: String {
        switch self {
        case .open:
            "No NAT and no filtering seen: peers can connect to this host directly from anywhere."
        case .easy:
            "Easy NAT: once a peer knows the mapped address it can send to it directly, from anywhere."
        case .holePunching:
            "The mapped address is the same for every peer, but unsolicited packets are (or may be) filtered: direct connections work by hole punching, both peers sending at the same time (simultaneous open)."
        case .portPrediction:
            "The NAT opens a new port for every destination, predictably: direct connections need port prediction by the peer; with a hard peer on the other side the connection may be relayed."
        case .hard:
            "Hard NAT: a new, unpredictable port for every destination. Direct connections work only with a peer on an easy NAT, by probing many ports; otherwise the connection is relayed."
        case .unknown:
            "Not enough is known for a verdict (the server lacks RFC 5780 support or tests got no answer): hole punching will be tried, with a relay as fallback."
        }
    }
}

/// What one STUN server said to test I.
public struct NetcheckServerResult: Hashable, Sendable, Codable {
    public var server: STUNAddress
    public var mappedAddress: STUNAddress?
    public var otherAddress: STUNAddress?
    public var responseOrigin: STUNAddress?
    /// Round-trip time, when the answer came before any retransmission.
    public var rtt: TimeAmount?
    /// Why there is no mapped address ("no answer after 8 requests", "420 ...").
    public var error: String?

    public init(server: STUNAddress, mappedAddress: STUNAddress? = nil, otherAddress: STUNAddress? = nil,
                responseOrigin: STUNAddress? = nil, rtt: TimeAmount? = nil, error: String? = nil) {
        self.server = server
        self.mappedAddress = mappedAddress
        self.otherAddress = otherAddress
        self.responseOrigin = responseOrigin
        self.rtt = rtt
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case server, mappedAddress, otherAddress, responseOrigin, rttMilliseconds, error
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        server = try c.decodeAddress(forKey: .server)
        mappedAddress = try c.decodeAddressIfPresent(forKey: .mappedAddress)
        otherAddress = try c.decodeAddressIfPresent(forKey: .otherAddress)
        responseOrigin = try c.decodeAddressIfPresent(forKey: .responseOrigin)
        rtt = try c.decodeMillisecondsIfPresent(forKey: .rttMilliseconds)
        error = try c.decodeIfPresent(String.self, forKey: .error)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(server.description, forKey: .server)
        try c.encode(mappedAddress?.description, forKey: .mappedAddress)
        try c.encode(otherAddress?.description, forKey: .otherAddress)
        try c.encode(responseOrigin?.description, forKey: .responseOrigin)
        try c.encode(rtt.map(milliseconds), forKey: .rttMilliseconds)
        try c.encode(error, forKey: .error)
    }
}

/// Everything a netcheck learnt. JSON keys are camelCase and stable; addresses are "ip:port"
/// strings ("[v6]:port" for IPv6), durations are milliseconds, unknowns are null.
public struct NetcheckReport: Hashable, Sendable, Codable {
    /// The server the RFC 5780 tests used (the primary).
    public var server: STUNAddress
    /// What every probed server said to test I.
    public var servers: [NetcheckServerResult]
    /// The main socket's local address (this host's routed IP when known, else the bound one).
    public var localAddress: STUNAddress?
    /// The main socket's address as the primary server saw it (test I).
    public var mappedAddress: STUNAddress
    /// True when the mapped address is one of this host's own: no NAT on the path.
    public var noNAT: Bool
    public var mappingBehavior: NetcheckMappingBehavior
    public var filteringBehavior: NetcheckFilteringBehavior
    /// Whether a packet to our own mapped address comes back to us; `nil` when not applicable
    /// (no NAT), not tested, or unfinished.
    public var hairpinning: Bool?
    /// Whether the main socket's mapped port equals its local port.
    public var portPreserved: Bool
    public var portAllocation: NetcheckPortAllocation
    /// The smallest clean round-trip time to the primary server pair.
    public var rtt: TimeAmount?
    /// The primary server's OTHER-ADDRESS (or CHANGED-ADDRESS), as it sent it.
    public var otherAddress: STUNAddress?
    /// Whether the primary server gave an OTHER-ADDRESS the RFC 5780 tests could use.
    public var supportsRFC5780: Bool
    /// The primary's RESPONSE-ORIGIN in test I.
    public var responseOrigin: STUNAddress?
    public var ignoredDatagrams: NetcheckIgnoredDatagrams
    /// How long the run took.
    public var duration: TimeAmount
    /// Plain-English observations, in the order they were made.
    public var notes: [String]

    public init(
        server: STUNAddress, servers: [NetcheckServerResult], localAddress: STUNAddress?, mappedAddress: STUNAddress,
        noNAT: Bool, mappingBehavior: NetcheckMappingBehavior, filteringBehavior: NetcheckFilteringBehavior,
        hairpinning: Bool?, portPreserved: Bool, portAllocation: NetcheckPortAllocation, rtt: TimeAmount?,
        otherAddress: STUNAddress?, supportsRFC5780: Bool, responseOrigin: STUNAddress?,
        ignoredDatagrams: NetcheckIgnoredDatagrams, duration: TimeAmount, notes: [String]
    ) {
        self.server = server
        self.servers = servers
        self.localAddress = localAddress
        self.mappedAddress = mappedAddress
        self.noNAT = noNAT
        self.mappingBehavior = mappingBehavior
        self.filteringBehavior = filteringBehavior
        self.hairpinning = hairpinning
        self.portPreserved = portPreserved
        self.portAllocation = portAllocation
        self.rtt = rtt
        self.otherAddress = otherAddress
        self.supportsRFC5780 = supportsRFC5780
        self.responseOrigin = responseOrigin
        self.ignoredDatagrams = ignoredDatagrams
        self.duration = duration
        self.notes = notes
    }

    /// What the findings mean for direct connections (also in the JSON, with its summary).
    public var directConnectivity: NetcheckDirectConnectivity {
        let mapping = noNAT ? .endpointIndependent : mappingBehavior
        switch mapping {
        case .endpointIndependent:
            if filteringBehavior == .endpointIndependent { return noNAT ? .open : .easy }
            return .holePunching
        case .addressDependent, .addressAndPortDependent:
            switch portAllocation.kind {
            case .preserved, .sequential: return .portPrediction
            case .random, .unknown: return .hard
            }
        case .unknown:
            return .unknown
        }
    }

    enum CodingKeys: String, CodingKey {
        case server, servers, localAddress, mappedAddress, noNAT, mappingBehavior, filteringBehavior, hairpinning
        case portPreserved, portAllocation, rttMilliseconds, otherAddress, supportsRFC5780, responseOrigin
        case ignoredDatagrams, durationMilliseconds, notes, directConnectivity, summary
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        server = try c.decodeAddress(forKey: .server)
        servers = try c.decode([NetcheckServerResult].self, forKey: .servers)
        localAddress = try c.decodeAddressIfPresent(forKey: .localAddress)
        mappedAddress = try c.decodeAddress(forKey: .mappedAddress)
        noNAT = try c.decode(Bool.self, forKey: .noNAT)
        mappingBehavior = try c.decode(NetcheckMappingBehavior.self, forKey: .mappingBehavior)
        filteringBehavior = try c.decode(NetcheckFilteringBehavior.self, forKey: .filteringBehavior)
        hairpinning = try c.decodeIfPresent(Bool.self, forKey: .hairpinning)
        portPreserved = try c.decode(Bool.self, forKey: .portPreserved)
        portAllocation = try c.decode(NetcheckPortAllocation.self, forKey: .portAllocation)
        rtt = try c.decodeMillisecondsIfPresent(forKey: .rttMilliseconds)
        otherAddress = try c.decodeAddressIfPresent(forKey: .otherAddress)
        supportsRFC5780 = try c.decode(Bool.self, forKey: .supportsRFC5780)
        responseOrigin = try c.decodeAddressIfPresent(forKey: .responseOrigin)
        ignoredDatagrams = try c.decode(NetcheckIgnoredDatagrams.self, forKey: .ignoredDatagrams)
        duration = try c.decodeMillisecondsIfPresent(forKey: .durationMilliseconds) ?? .zero
        notes = try c.decode([String].self, forKey: .notes)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(server.description, forKey: .server)
        try c.encode(servers, forKey: .servers)
        try c.encode(localAddress?.description, forKey: .localAddress)
        try c.encode(mappedAddress.description, forKey: .mappedAddress)
        try c.encode(noNAT, forKey: .noNAT)
        try c.encode(mappingBehavior, forKey: .mappingBehavior)
        try c.encode(filteringBehavior, forKey: .filteringBehavior)
        try c.encode(hairpinning, forKey: .hairpinning)
        try c.encode(portPreserved, forKey: .portPreserved)
        try c.encode(portAllocation, forKey: .portAllocation)
        try c.encode(rtt.map(milliseconds), forKey: .rttMilliseconds)
        try c.encode(otherAddress?.description, forKey: .otherAddress)
        try c.encode(supportsRFC5780, forKey: .supportsRFC5780)
        try c.encode(responseOrigin?.description, forKey: .responseOrigin)
        try c.encode(ignoredDatagrams, forKey: .ignoredDatagrams)
        try c.encode(milliseconds(duration), forKey: .durationMilliseconds)
        try c.encode(notes, forKey: .notes)
        try c.encode(directConnectivity, forKey: .directConnectivity)
        try c.encode(directConnectivity.summary, forKey: .summary)
    }
}

// MARK: - coding helpers (addresses as text, durations as milliseconds)

func milliseconds(_ amount: TimeAmount) -> Double { Double(amount.nanoseconds) / 1_000_000 }

extension KeyedDecodingContainer {
    func decodeAddress(forKey key: Key) throws -> STUNAddress {
        let text = try decode(String.self, forKey: key)
        guard let address = STUNAddress(parsing: text) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "\"\(text)\" is not an IP:port address")
        }
        return address
    }

    func decodeAddressIfPresent(forKey key: Key) throws -> STUNAddress? {
        guard try decodeIfPresent(String.self, forKey: key) != nil else { return nil }
        return try decodeAddress(forKey: key)
    }

    func decodeMillisecondsIfPresent(forKey key: Key) throws -> TimeAmount? {
        guard let ms = try decodeIfPresent(Double.self, forKey: key) else { return nil }
        guard ms.isFinite, abs(ms) < 1e12 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "\(ms) ms is out of range")
        }
        return .nanoseconds(Int64((ms * 1_000_000).rounded()))
    }
}
