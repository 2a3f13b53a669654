import NIOCore
import PeerwaySTUN

/// One observed mapping: a socket's local port, the public address a server saw for it, and the
/// destination the request went to.
public struct NetcheckPortSample: Hashable, Sendable, Codable {
    public var socket: NetcheckSocketID
    public var localPort: UInt16
    public var mappedAddress: STUNAddress
    public var destination: STUNAddress
    /// False when an earlier sample of the same socket already showed this mapped address (the
    /// NAT reused the mapping, so no new port was allocated).
    public var isNewMapping: Bool

    public var mappedPort: UInt16 { mappedAddress.port }

    public init(socket: NetcheckSocketID, localPort: UInt16, mappedAddress: STUNAddress, destination: STUNAddress, isNewMapping: Bool = true) {
        self.socket = socket
        self.localPort = localPort
        self.mappedAddress = mappedAddress
        self.destination = destination
        self.isNewMapping = isNewMapping
    }

    enum CodingKeys: String, CodingKey {
        case socket, localPort, mappedPort, mappedAddress, destination, isNewMapping
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        socket = try c.decode(NetcheckSocketID.self, forKey: .socket)
        localPort = try c.decode(UInt16.self, forKey: .localPort)
        mappedAddress = try c.decodeAddress(forKey: .mappedAddress)
        destination = try c.decodeAddress(forKey: .destination)
        isNewMapping = try c.decode(Bool.self, forKey: .isNewMapping)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(socket, forKey: .socket)
        try c.encode(localPort, forKey: .localPort)
        try c.encode(mappedPort, forKey: .mappedPort)
        try c.encode(mappedAddress.description, forKey: .mappedAddress)
        try c.encode(destination.description, forKey: .destination)
        try c.encode(isNewMapping, forKey: .isNewMapping)
    }
}

/// How the NAT picks the public port of a new mapping, from samples in the order their first
/// requests were sent.
public struct NetcheckPortAllocation: Hashable, Sendable, Codable {
    public enum Kind: String, Hashable, Sendable, Codable, CaseIterable {
        /// Every mapped port equals its local port (or there is no NAT).
        case preserved
        /// Consecutive new mappings differ by a constant small `delta`: the next port is predictable.
        case sequential
        /// No pattern: the next port cannot be predicted.
        case random
        /// Too few samples to tell.
        case unknown
    }

    public var kind: Kind
    /// The step between consecutive new mappings, for `sequential`.
    public var delta: Int?
    /// Every sample, in the order the requests were first sent.
    public var samples: [NetcheckPortSample]

    public init(kind: Kind, delta: Int? = nil, samples: [NetcheckPortSample]) {
        self.kind = kind
        self.delta = delta
        self.samples = samples
    }

    enum CodingKeys: String, CodingKey {
        case kind, delta, samples
    }

    /// Like the synthesized encoding, but `delta` is always present (null when not sequential).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind)
        try c.encode(delta, forKey: .delta)
        try c.encode(samples, forKey: .samples)
    }

    /// Classifies `samples` (in send order), marking which are new mappings:
    /// - `preserved` when every sample's mapped port equals its local port;
    /// - `sequential(delta)` when the deltas between consecutive new mappings are one constant
    ///   non-zero value with |delta| <= `NetcheckLimits.maximumSequentialDelta`, allowing
    ///   `allowedAllocationOutliers` other delta once there are `minimumDeltasForOutlier` deltas
    ///   (another host behind the same NAT may take a port between two of our probes; the majority
    ///   step is still what a peer should predict with), or with every delta small and of one
    ///   sign (a shared counter other flows advance too);
    /// - `random` otherwise; `unknown` with fewer than `minimumAllocationSamples` new mappings.
    public init(classifying input: [NetcheckPortSample]) {
        var samples = input
        var seen: [NetcheckSocketID: Set<STUNAddress>] = [:]
        for index in samples.indices {
            samples[index].isNewMapping = seen[samples[index].socket, default: []].insert(samples[index].mappedAddress).inserted
        }
        let fresh = samples.filter(\.isNewMapping).map(\.mappedPort)
        guard fresh.count >= NetcheckLimits.minimumAllocationSamples else {
            self.init(kind: .unknown, samples: samples)
            return
        }
        if samples.allSatisfy({ $0.mappedPort == $0.localPort }) {
            self.init(kind: .preserved, samples: samples)
            return
        }
        let deltas = zip(fresh, fresh.dropFirst()).map { Int(Int16(bitPattern: $1 &- $0)) }
        var counts: [Int: Int] = [:]
        for delta in deltas { counts[delta, default: 0] += 1 }
        // The most common delta; among equally common ones the smallest step (then the positive one).
        let mostCommon = counts.max { a, b in
            if a.value != b.value { return a.value < b.value }
            if abs(a.key) != abs(b.key) { return abs(a.key) > abs(b.key) }
            return a.key < b.key
        }
        guard let best = mostCommon else {
            self.init(kind: .unknown, samples: samples)
            return
        }
        let allowed = deltas.count >= NetcheckLimits.minimumDeltasForOutlier ? NetcheckLimits.allowedAllocationOutliers : 0
        // Every step small and in one direction: a counter that other flows through the same
        // NAT also advance (two hosts measuring at once interleave). A random allocator over
        // tens of thousands of ports does not produce that; the common step is the prediction.
        let oneWay = deltas.allSatisfy { $0 > 0 && $0 <= NetcheckLimits.maximumSequentialDelta }
            || deltas.allSatisfy { $0 < 0 && -$0 <= NetcheckLimits.maximumSequentialDelta }
        if best.key != 0, abs(best.key) <= NetcheckLimits.maximumSequentialDelta, deltas.count - best.value <= allowed || oneWay {
            self.init(kind: .sequential, delta: best.key, samples: samples)
        } else {
            self.init(kind: .random, samples: samples)
        }
    }

    /// One line: "sequential (+1)", "random", ...
    public var summary: String {
        switch kind {
        case .preserved: return "preserved: the public port of each mapping is its local port"
        case .sequential:
            let d = delta ?? 0
            return "sequential: each new mapping's port is the previous one \(d >= 0 ? "+" : "")\(d), so the next port is predictable"
        case .random: return "random: new mappings get unpredictable ports"
        case .unknown: return "unknown: too few mappings observed"
        }
    }
}
