import PeerwaySTUN

/*
 The STUN pair (RFC 5780 §3, RFC 3489 §8): one service, two IP addresses A and B, two ports p and p2,
 so four sockets:

        A:p  (primary)        A:p2 (change port)
        B:p  (change IP)      B:p2 (change IP and port; the "other address")

 A request that arrives on socket (ip, port) with CHANGE-REQUEST(changeIP, changePort) is answered
 from socket (ip XOR changeIP, port XOR changePort). Every success response says where it came from
 (RESPONSE-ORIGIN, classic SOURCE-ADDRESS) and where the diagonal socket is (OTHER-ADDRESS, classic
 CHANGED-ADDRESS): both flipped relative to the socket the request reached. A client compares the
 mapped addresses it sees from different sockets (mapping behaviour) and which changed-origin
 responses get through its NAT (filtering behaviour).

 Without an alternate address the service runs one socket, answers plain Binding requests, and
 refuses CHANGE-REQUEST with 420 (RFC 5780 §6.1) so clients know the tests are unavailable.
*/

/// Which of the four sockets of a STUN pair: relative to the primary address A:p.
public struct STUNSocketRole: Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// On address B rather than A.
    public var alternateIP: Bool
    /// On port p2 rather than p.
    public var alternatePort: Bool

    public init(alternateIP: Bool, alternatePort: Bool) {
        self.alternateIP = alternateIP
        self.alternatePort = alternatePort
    }

    public static let primary = STUNSocketRole(alternateIP: false, alternatePort: false)
    public static let allCases: [STUNSocketRole] = [
        .primary,
        STUNSocketRole(alternateIP: false, alternatePort: true),
        STUNSocketRole(alternateIP: true, alternatePort: false),
        STUNSocketRole(alternateIP: true, alternatePort: true),
    ]

    /// The socket a response goes out of for a request received here with `change`.
    public func applying(_ change: STUNChangeRequest) -> STUNSocketRole {
        STUNSocketRole(alternateIP: alternateIP != change.changeIP, alternatePort: alternatePort != change.changePort)
    }

    /// The diagonal socket: other IP and other port (what OTHER-ADDRESS names).
    public var diagonal: STUNSocketRole { STUNSocketRole(alternateIP: !alternateIP, alternatePort: !alternatePort) }

    /// Index 0-3, used to keep per-role tables in arrays.
    public var index: Int { (alternateIP ? 2 : 0) + (alternatePort ? 1 : 0) }

    public var description: String {
        (alternateIP ? "B" : "A") + ":" + (alternatePort ? "p2" : "p")
    }
}

/// The addresses of a STUN pair: the primary A:p and, for RFC 5780, the alternate B:p2.
public struct STUNPairLayout: Hashable, Sendable, CustomStringConvertible {
    /// A:p, the address clients are told about.
    public var primary: STUNAddress
    /// B:p2. `nil` runs a single socket without RFC 5780 support.
    public var alternate: STUNAddress?

    /// Creates a layout; the alternate must be of the same family and differ in IP and port.
    public init(primary: STUNAddress, alternate: STUNAddress?) throws(STUNPairLayoutError) {
        if let alternate {
            guard alternate.family == primary.family else { throw .familyMismatch(primary, alternate) }
            guard alternate.ip != primary.ip else { throw .sameIP(primary, alternate) }
            guard alternate.port != primary.port || (primary.port == 0 && alternate.port == 0) else {
                throw .samePort(primary, alternate)
            }
        }
        self.primary = primary
        self.alternate = alternate
    }

    /// Whether the four-socket RFC 5780 pair is configured.
    public var supportsChangeRequest: Bool { alternate != nil }

    /// The roles this layout runs sockets for.
    public var roles: [STUNSocketRole] { alternate == nil ? [.primary] : STUNSocketRole.allCases }

    /// The transport address of the socket with `role`; `nil` when the layout has no alternate.
    public func address(of role: STUNSocketRole) -> STUNAddress? {
        if role == .primary { return primary }
        guard let alternate else { return nil }
        return STUNAddress(
            ip: role.alternateIP ? alternate.ip : primary.ip,
            port: role.alternatePort ? alternate.port : primary.port)
    }

    public var description: String {
        guard let alternate else { return "\(primary) (single address, no RFC 5780)" }
        return "\(primary) + \(alternate)"
    }
}

/// Why a STUN pair layout is not usable.
public enum STUNPairLayoutError: Error, Hashable, Sendable, CustomStringConvertible {
    case familyMismatch(STUNAddress, STUNAddress)
    case sameIP(STUNAddress, STUNAddress)
    case samePort(STUNAddress, STUNAddress)

    public var description: String {
        switch self {
        case .familyMismatch(let p, let a):
            return "STUN alternate \(a) is not the same address family as \(p): use two IPv4 or two IPv6 addresses"
        case .sameIP(let p, let a):
            return "STUN alternate \(a) has the same IP as \(p): RFC 5780 needs a second IP address (on loopback use 127.0.0.2)"
        case .samePort(let p, let a):
            return "STUN alternate \(a) has the same port as \(p): pick a second port (e.g. \(p.port &+ 1))"
        }
    }
}
