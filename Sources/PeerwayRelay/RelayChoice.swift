/// What one relay reports of its load, for HANDSHAKE to pick among relays.
public struct RelayLoad: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The relay's name among its peers (e.g. its supernode's address).
    public var id: String
    /// Its UDP address ("IP:PORT").
    public var endpoint: String
    /// Its TCP address, when it relays over TCP.
    public var tcpEndpoint: String?
    /// Its supernode's shared TCP address ("IP:PORT": CHECKPOINT's TCP port, which hands relay
    /// binds to it), when it has one: another way to reach it, for networks that let only that
    /// port out.
    public var sharedTCPEndpoint: String?
    /// Allocations it holds now.
    public var allocations: Int
    /// Most allocations it takes: a relay at its capacity is never chosen.
    public var capacity: Int
    /// Bytes per second it forwarded lately (both transports).
    public var bytesPerSecond: Double

    public init(id: String, endpoint: String, tcpEndpoint: String? = nil, sharedTCPEndpoint: String? = nil, allocations: Int,
                capacity: Int = RelayLimits.maximumAllocations, bytesPerSecond: Double) {
        self.id = id
        self.endpoint = endpoint
        self.tcpEndpoint = tcpEndpoint
        self.sharedTCPEndpoint = sharedTCPEndpoint
        self.allocations = allocations
        self.capacity = capacity
        self.bytesPerSecond = bytesPerSecond
    }

    public var description: String {
        "\(id) \(endpoint): \(allocations)/\(capacity) allocations, \(Int(bytesPerSecond)) B/s"
    }
}

/// Choosing a relay.
public enum RelayChoice {
    /// The least-loaded relay that has room: fewest allocations in use relative to its capacity,
    /// then fewest bytes per second, then the smallest id (so every caller picks the same one).
    /// Nil when `loads` is empty or every relay is full.
    public static func leastLoaded(_ loads: [RelayLoad]) -> RelayLoad? {
        loads.filter { $0.capacity > 0 && $0.allocations < $0.capacity }.min { a, b in
            // Cross-multiplied so that no division rounds: a.allocations/a.capacity vs b's.
            let left = a.allocations * b.capacity, right = b.allocations * a.capacity
            if left != right { return left < right }
            if a.bytesPerSecond != b.bytesPerSecond { return a.bytesPerSecond < b.bytesPerSecond }
            return a.id < b.id
        }
    }
}
