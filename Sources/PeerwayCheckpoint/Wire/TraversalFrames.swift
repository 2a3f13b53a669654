import NIOCore
import PeerwaySTUN

/*
 The HANDSHAKE's frames (docs/traversal-protocol.md). After B accepted A's `connect`, both send
 a `traversalOffer` (request, answered `ok`); once the HANDSHAKE holds both offers it pushes each
 side its `traversalPlan` in the same instant; each side reports a `traversalResult` (request,
 answered `ok`) when its tunnel is up or has failed.

   traversalOffer   initiator(16) acceptor(16) requestID(8) transport(1) role(1)
                    candidates: count(1) { kind(1) transport(1) endpoint }
                    profile: mapping(1) filtering(1) portDelta(2, signed)
                    flags(1): bit 0 preservesPort, 1 hairpins, 2 udpBlocked (the profile),
                              bit 3 this side asks for a raw (unencrypted) tunnel
                    keyShare(128)
   traversalPlan    initiator(16) acceptor(16) requestID(8) transport(1) method(1)
                    flags(1): bit 0 raw tunnel (both sides asked for one)
                    directWindowMillis(4) localSockets(2) remoteKeyShare(0 | 128: length(1) first)
                    targets: count(1) { method(1) endpoint count(2) step(2, signed) }
                    spray: present(1) [ address endpoint, count(2) ]
                    relay: present(1) [ udp: optional endpoint, tcp: optional endpoint, token(32) ]
                    failure(text; empty when the plan can run)
                    relay alternatives (only with a relay, only when there are some; a plan that
                    ends after `failure` has none, as every plan before them):
                              count(1) { endpoint }, 1...maximumRelayAlternatives
   traversalResult  initiator(16) acceptor(16) requestID(8) role(1) path(1) method(1) millis(4)
*/

/// Where a candidate address came from.
public enum TraversalCandidateKind: UInt8, Sendable, Codable, CaseIterable {
    /// An address of one of the peer's own interfaces.
    case host = 1
    /// The peer's address as the STUN pair saw it (its NAT's mapping).
    case serverReflexive = 2
    /// A mapping the peer opened on its router with UPnP-IGD, NAT-PMP or PCP.
    case mapped = 3
}

/// One address a peer offers to be reached at.
public struct TraversalCandidate: Hashable, Sendable {
    public var kind: TraversalCandidateKind
    public var transport: TunnelTransport
    public var endpoint: PeerEndpoint

    public init(kind: TraversalCandidateKind, transport: TunnelTransport, endpoint: PeerEndpoint) {
        self.kind = kind
        self.transport = transport
        self.endpoint = endpoint
    }
}

/// A peer's NAT as its netcheck saw it (RFC 4787 / RFC 5780 terms).
public struct NATProfile: Hashable, Sendable {
    /// How the NAT picks the public port of a new flow.
    public enum Mapping: UInt8, Sendable, Codable {
        /// Not measured (treated with every technique that can work for some NAT).
        case unknown = 0
        /// No NAT: the peer's address is public.
        case none = 1
        /// One public port per local port, whatever the destination (RFC 4787 §4.1 EIM).
        case endpointIndependent = 2
        /// A new public port per destination address.
        case addressDependent = 3
        /// A new public port per destination address and port ("symmetric").
        case addressAndPortDependent = 4
    }

    /// What the NAT lets in to a mapping (RFC 4787 §5).
    public enum Filtering: UInt8, Sendable, Codable {
        case unknown = 0, endpointIndependent = 1, addressDependent = 2, addressAndPortDependent = 3
    }

    public var mapping: Mapping
    public var filtering: Filtering
    /// For a mapping that depends on the destination: the step between consecutive new mappings'
    /// ports when it is predictable (sequential allocation), or 0 when ports are random or unknown.
    public var portDelta: Int16
    /// The NAT keeps the local port as the public port when it can.
    public var preservesPort: Bool
    /// The NAT sends a LAN peer's packets to its own public address back into the LAN.
    public var hairpins: Bool
    /// UDP does not leave this network at all (the peer reached the supernode over TCP).
    public var udpBlocked: Bool

    public init(mapping: Mapping = .unknown, filtering: Filtering = .unknown, portDelta: Int16 = 0,
                preservesPort: Bool = false, hairpins: Bool = false, udpBlocked: Bool = false) {
        self.mapping = mapping
        self.filtering = filtering
        self.portDelta = portDelta
        self.preservesPort = preservesPort
        self.hairpins = hairpins
        self.udpBlocked = udpBlocked
    }

    /// Unmeasured.
    public static let unknown = NATProfile()

    /// The same public port towards every destination (no NAT, or endpoint-independent mapping).
    public var isEasy: Bool { mapping == .none || mapping == .endpointIndependent }
    /// A per-destination mapping whose next port can be predicted.
    public var isPredictable: Bool { (mapping == .addressDependent || mapping == .addressAndPortDependent) && portDelta != 0 }
    /// A per-destination mapping with random ports.
    public var isRandom: Bool { (mapping == .addressDependent || mapping == .addressAndPortDependent) && portDelta == 0 }
}

/// Which side of a traversal a peer is (docs/traversal-protocol.md, first paragraph). The raw
/// value is the `role` byte of offers, of the tunnel key share signature, of probes and of the
/// stream hello.
public enum TraversalRole: UInt8, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The peer that asked for the connection (A, role 0).
    case initiator = 0
    /// The peer that accepted it (B, role 1).
    case acceptor = 1

    /// The other side's role.
    public var other: TraversalRole { self == .initiator ? .acceptor : .initiator }

    public var description: String { self == .initiator ? "initiator" : "acceptor" }
}

/// How a tunnel's path was found.
public enum TraversalMethod: UInt8, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// Host candidates on a shared LAN (or the same host).
    case lan = 1
    /// Through the shared NAT's public address (it hairpins).
    case hairpin = 2
    /// UDP simultaneous punching to server-reflexive candidates.
    case punch = 3
    /// Punching to predicted ports of a sequentially allocating NAT.
    case predict = 4
    /// Many-port ("birthday") probing: one side opens many mappings, the other probes random ports.
    case manyPort = 5
    /// TCP simultaneous open.
    case tcpSimultaneousOpen = 6
    /// Through a RELAY.
    case relay = 7

    public var description: String {
        switch self {
        case .lan: "lan"
        case .hairpin: "hairpin"
        case .punch: "punch"
        case .predict: "predict"
        case .manyPort: "many-port"
        case .tcpSimultaneousOpen: "tcp-simultaneous-open"
        case .relay: "relay"
        }
    }
}

/// Whether a tunnel goes straight between the peers.
public enum TunnelPath: UInt8, Sendable, Codable, CustomStringConvertible {
    case direct = 1
    case relayed = 2
    /// No tunnel could be made.
    case failed = 3

    public var description: String {
        switch self {
        case .direct: "direct"
        case .relayed: "relayed"
        case .failed: "failed"
        }
    }
}

/// `traversalOffer`: one side's candidates, NAT profile and tunnel key share.
public struct TraversalOffer: Equatable, Sendable {
    public var initiator: PeerID
    public var acceptor: PeerID
    public var requestID: UInt64
    public var transport: TunnelTransport
    public var role: TraversalRole
    public var candidates: [TraversalCandidate]
    public var profile: NATProfile
    /// The side's tunnel key share (`ControlLimits.keyShareBytes`, opaque to the HANDSHAKE).
    public var keyShare: [UInt8]
    /// This side asks for a raw (unencrypted) tunnel; the tunnel is raw only if both sides ask.
    public var rawTunnel: Bool

    public init(initiator: PeerID, acceptor: PeerID, requestID: UInt64, transport: TunnelTransport, role: TraversalRole,
                candidates: [TraversalCandidate], profile: NATProfile, keyShare: [UInt8], rawTunnel: Bool = false) {
        self.rawTunnel = rawTunnel
        self.initiator = initiator
        self.acceptor = acceptor
        self.requestID = requestID
        self.transport = transport
        self.role = role
        self.candidates = candidates
        self.profile = profile
        self.keyShare = keyShare
    }
}

/// Addresses to probe: `count` ports from `endpoint.port`, `step` apart.
public struct TraversalTarget: Hashable, Sendable {
    /// The technique this target belongs to (reported as the tunnel's method if it wins).
    public var method: TraversalMethod
    public var endpoint: PeerEndpoint
    public var count: UInt16
    public var step: Int16

    public init(method: TraversalMethod, endpoint: PeerEndpoint, count: UInt16 = 1, step: Int16 = 1) {
        self.method = method
        self.endpoint = endpoint
        self.count = count
        self.step = step
    }

    /// Every address this target names, in order (ports outside 1...65535 are skipped).
    public var endpoints: [PeerEndpoint] {
        (0..<Int(count)).compactMap { i in
            let port = Int(endpoint.port) + i * Int(step)
            guard (1...65535).contains(port) else { return nil }
            return PeerEndpoint(ip: endpoint.ip, port: UInt16(port))
        }
    }
}

/// Probe `count` random ports of `address` (many-port probing's easy side).
public struct TraversalSpray: Hashable, Sendable {
    public var address: PeerEndpoint
    public var count: UInt16

    public init(address: PeerEndpoint, count: UInt16) {
        self.address = address
        self.count = count
    }
}

/// A relay allocation's side for one peer: where to bind and with which token.
public struct RelayGrant: Hashable, Sendable {
    public var udp: PeerEndpoint?
    public var tcp: PeerEndpoint?
    /// This side's token (`ControlLimits.relayTokenBytes`).
    public var token: [UInt8]
    /// Other TCP endpoints that take the same bind as `tcp`, tried in order after it: the relay's
    /// supernode's shared TCP port (its CHECKPOINT's, which hands connections starting with
    /// "PWRB" to the relay), for networks that let only that one port out. At most
    /// `ControlLimits.maximumRelayAlternatives`.
    public var alternatives: [PeerEndpoint]

    public init(udp: PeerEndpoint?, tcp: PeerEndpoint?, token: [UInt8], alternatives: [PeerEndpoint] = []) {
        self.udp = udp
        self.tcp = tcp
        self.token = token
        self.alternatives = alternatives
    }

    /// Every TCP endpoint that takes this grant's bind, in the order to try them: `tcp`, then
    /// the alternatives (each once).
    public var tcpEndpoints: [PeerEndpoint] {
        var seen: Set<PeerEndpoint> = []
        return ([tcp].compactMap { $0 } + alternatives).filter { seen.insert($0).inserted }
    }
}

/// `traversalPlan`: what one side does, pushed to both sides in the same instant.
public struct TraversalPlan: Equatable, Sendable {
    public var initiator: PeerID
    public var acceptor: PeerID
    public var requestID: UInt64
    public var transport: TunnelTransport
    /// The technique the HANDSHAKE expects to work (the result reports the one that did).
    public var method: TraversalMethod
    /// Milliseconds to try direct paths before using the relay (0: relay at once).
    public var directWindowMillis: UInt32
    /// Sockets to probe from (more than 1 only on many-port probing's hard side).
    public var localSockets: UInt16
    /// The other side's key share (empty when the other side never offered).
    public var remoteKeyShare: [UInt8]
    public var targets: [TraversalTarget]
    public var spray: TraversalSpray?
    public var relay: RelayGrant?
    /// Why no tunnel can be made (empty when the plan can run).
    public var failure: String
    /// The tunnel is raw (unencrypted): both sides asked for it. Otherwise it is encrypted.
    public var rawTunnel: Bool

    public init(initiator: PeerID, acceptor: PeerID, requestID: UInt64, transport: TunnelTransport, method: TraversalMethod,
                directWindowMillis: UInt32, localSockets: UInt16 = 1, remoteKeyShare: [UInt8], targets: [TraversalTarget],
                spray: TraversalSpray? = nil, relay: RelayGrant? = nil, failure: String = "", rawTunnel: Bool = false) {
        self.rawTunnel = rawTunnel
        self.initiator = initiator
        self.acceptor = acceptor
        self.requestID = requestID
        self.transport = transport
        self.method = method
        self.directWindowMillis = directWindowMillis
        self.localSockets = localSockets
        self.remoteKeyShare = remoteKeyShare
        self.targets = targets
        self.spray = spray
        self.relay = relay
        self.failure = failure
    }
}

/// `traversalResult`: how one side's tunnel came out, for the HANDSHAKE to learn from.
public struct TraversalResult: Equatable, Sendable {
    public var initiator: PeerID
    public var acceptor: PeerID
    public var requestID: UInt64
    public var role: TraversalRole
    public var path: TunnelPath
    public var method: TraversalMethod
    public var millis: UInt32

    public init(initiator: PeerID, acceptor: PeerID, requestID: UInt64, role: TraversalRole, path: TunnelPath,
                method: TraversalMethod, millis: UInt32) {
        self.initiator = initiator
        self.acceptor = acceptor
        self.requestID = requestID
        self.role = role
        self.path = path
        self.method = method
        self.millis = millis
    }
}
