/// A peer's NAT in one word, from the `NATProfile` of its traversal offers: what operators call
/// NAT types (the classic cone names for endpoint-independent mappings, RFC 4787 terms beneath).
/// The HANDSHAKE counts offers by kind (`HandshakeCounters.offersByNAT`), a bounded tally: one
/// counter per case, never one per peer.
public enum NATKind: String, CaseIterable, Sendable, Codable, Hashable, CustomStringConvertible {
    /// No NAT: the peer's address is public.
    case open
    /// Endpoint-independent mapping and filtering: anyone may send to the mapping.
    case fullCone = "full-cone"
    /// Endpoint-independent mapping, address-dependent filtering.
    case restrictedCone = "restricted-cone"
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    case portRestrictedCone = "port-restricted-cone"
    /// Endpoint-independent mapping whose filtering was not measured.
    case cone
    /// A mapping per destination with predictable (sequential) ports.
    case symmetricPredictable = "symmetric-predictable"
    /// A mapping per destination with random ports.
    case symmetricRandom = "symmetric-random"
    /// UDP does not leave the peer's network (it reached the supernode over TCP).
    case udpBlocked = "udp-blocked"
    /// Not measured.
    case unknown

    /// The kind of `profile`.
    public init(_ profile: NATProfile) {
        if profile.udpBlocked {
            self = .udpBlocked
            return
        }
        switch profile.mapping {
        case .unknown: self = .unknown
        case .none: self = .open
        case .endpointIndependent:
            switch profile.filtering {
            case .endpointIndependent: self = .fullCone
            case .addressDependent: self = .restrictedCone
            case .addressAndPortDependent: self = .portRestrictedCone
            case .unknown: self = .cone
            }
        case .addressDependent, .addressAndPortDependent:
            self = profile.isPredictable ? .symmetricPredictable : .symmetricRandom
        }
    }

    public var description: String { rawValue }
}
