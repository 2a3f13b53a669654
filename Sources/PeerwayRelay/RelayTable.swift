import NIOCore
import PeerwaySTUN

/// A relay token: 16 random bytes that let one side bind to one allocation, once.
public struct RelayToken: Hashable, Sendable, CustomStringConvertible {
    public let high: UInt64
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A fresh random token.
    public static func random(using rng: inout some RandomNumberGenerator) -> RelayToken {
        RelayToken(high: rng.next(), low: rng.next())
    }

    /// The 16 bytes, big-endian.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) } + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// What an allocation may use.
public struct RelayAllocationLimits: Equatable, Sendable {
    /// Bytes forwarded in both directions together.
    public var bytes: UInt64
    /// Seconds from allocation to its end.
    public var lifetimeSeconds: UInt64

    public init(bytes: UInt64 = RelayLimits.defaultByteLimit, lifetimeSeconds: UInt64 = RelayLimits.defaultLifetimeSeconds) {
        self.bytes = bytes
        self.lifetimeSeconds = lifetimeSeconds
    }
}

/// A new allocation: its id and the token each side binds with.
public struct RelayAllocation: Equatable, Sendable {
    public var id: UInt32
    public var tokens: [RelayToken]
}

/// Why an allocation ended.
public enum RelayEnd: String, Equatable, Sendable, CaseIterable {
    /// Nothing forwarded for `RelayLimits.idleTimeoutSeconds`.
    case idle
    /// Its byte limit was reached.
    case bytes
    /// Its lifetime was over.
    case lifetime
    /// Both sides did not bind within `RelayLimits.bindTimeoutSeconds`.
    case unbound
}

/// What the relay wants done.
public enum RelayAction: Equatable, Sendable {
    /// Send these bytes (a forwarded payload, untouched, or a bind's answer).
    case send(ByteBuffer, to: STUNAddress)
}

/// What a relay did.
public struct RelayCounters: Equatable, Sendable {
    public var allocations = 0, bindings = 0
    public var forwardedDatagrams = 0, forwardedBytes: UInt64 = 0
    /// Datagrams from a bound side whose partner has not bound yet.
    public var waitingForPartner = 0
    /// Binds with an unknown token, or a token bound to another address.
    public var refusedBinds = 0
    /// Datagrams from addresses that are not bound and are no bind.
    public var unauthenticated = 0
    public var ended: [RelayEnd: Int] = [:]

    public init() {}
}

/// Why an allocation could not be made.
public enum RelayError: Error, Equatable, Sendable, CustomStringConvertible {
    case full(Int)

    public var description: String {
        switch self {
        case .full(let n): return "the relay holds \(n) allocations, its limit; pick another relay"
        }
    }
}

/// The raw relay's UDP side as a pure state machine: allocations, binds and forwarding.
/// See `RelayLimits` for the flow. No socket, no clock: the owner feeds datagrams and the time.
public struct RelayTable: Sendable {
    private struct Entry {
        var tokens: [RelayToken]
        var endpoints: [STUNAddress?] = [nil, nil]
        var limits: RelayAllocationLimits
        var bytes: UInt64 = 0
        var createdMillis: UInt64
        var activeMillis: UInt64
    }

    private struct Side: Hashable {
        var allocation: UInt32
        var index: Int
    }

    private var entries: [UInt32: Entry] = [:]
    private var byToken: [RelayToken: Side] = [:]
    private var byEndpoint: [STUNAddress: Side] = [:]
    private var nextID: UInt32 = 1
    public private(set) var counters = RelayCounters()

    public init() {}

    static func millis(_ t: NIODeadline) -> UInt64 { t.uptimeNanoseconds / 1_000_000 }

    /// Allocations held.
    public var count: Int { entries.count }

    /// The addresses bound to an allocation's two sides (nil until bound); nil when it ended.
    public func endpoints(of id: UInt32) -> [STUNAddress?]? { entries[id]?.endpoints }

    /// Bytes an allocation forwarded so far.
    public func bytes(of id: UInt32) -> UInt64? { entries[id]?.bytes }

    /// A new allocation with a fresh token for each side.
    public mutating func allocate(limits: RelayAllocationLimits = RelayAllocationLimits(), now: NIODeadline,
                                  using rng: inout some RandomNumberGenerator) throws(RelayError) -> RelayAllocation {
        guard entries.count < RelayLimits.maximumAllocations else { throw .full(entries.count) }
        var id = nextID
        while entries[id] != nil || id == 0 { id &+= 1 }
        nextID = id &+ 1
        var tokens: [RelayToken] = []
        while tokens.count < 2 {
            let t = RelayToken.random(using: &rng)
            if byToken[t] == nil, !tokens.contains(t) { tokens.append(t) }
        }
        let ms = Self.millis(now)
        entries[id] = Entry(tokens: tokens, limits: limits, createdMillis: ms, activeMillis: ms)
        for (i, t) in tokens.enumerated() { byToken[t] = Side(allocation: id, index: i) }
        counters.allocations += 1
        return RelayAllocation(id: id, tokens: tokens)
    }

    /// Handles one datagram from `source`: forwards it if `source` is a bound side, answers it
    /// if it is a valid bind, and drops it otherwise.
    public mutating func receive(_ datagram: ByteBuffer, from source: STUNAddress, now: NIODeadline,
                                 into out: inout [RelayAction]) {
        if let side = byEndpoint[source], var entry = entries[side.allocation] {
            // A retransmitted bind from a bound side is answered again, not forwarded.
            if let token = Self.bindToken(datagram), token == entry.tokens[side.index] {
                out.append(.send(Self.bound(token), to: source))
                return
            }
            guard let partner = entry.endpoints[1 - side.index] else {
                counters.waitingForPartner += 1
                return
            }
            let size = UInt64(datagram.readableBytes)
            guard entry.bytes + size <= entry.limits.bytes else {
                end(side.allocation, .bytes)
                return
            }
            entry.bytes += size
            entry.activeMillis = Self.millis(now)
            entries[side.allocation] = entry
            counters.forwardedDatagrams += 1
            counters.forwardedBytes += size
            out.append(.send(datagram, to: partner))
            return
        }
        guard let token = Self.bindToken(datagram) else {
            counters.unauthenticated += 1
            return
        }
        guard let side = byToken[token], var entry = entries[side.allocation] else {
            counters.refusedBinds += 1
            return
        }
        if let bound = entry.endpoints[side.index], bound != source {
            counters.refusedBinds += 1  // each token binds once: a third party cannot take the side
            return
        }
        if entry.endpoints[side.index] == nil {
            entry.endpoints[side.index] = source
            entry.activeMillis = Self.millis(now)
            entries[side.allocation] = entry
            byEndpoint[source] = side
            counters.bindings += 1
        }
        out.append(.send(Self.bound(token), to: source))
    }

    /// Ends allocations that are idle, over their lifetime, or never bound.
    public mutating func tick(now: NIODeadline) {
        let ms = Self.millis(now)
        var ending: [(UInt32, RelayEnd)] = []
        for (id, e) in entries {
            let bound = e.endpoints.allSatisfy { $0 != nil }
            if ms >= e.createdMillis + e.limits.lifetimeSeconds * 1000 {
                ending.append((id, .lifetime))
            } else if !bound, ms >= e.createdMillis + RelayLimits.bindTimeoutSeconds * 1000 {
                ending.append((id, .unbound))
            } else if bound, ms >= e.activeMillis + RelayLimits.idleTimeoutSeconds * 1000 {
                ending.append((id, .idle))
            }
        }
        for (id, why) in ending { end(id, why) }
    }

    private mutating func end(_ id: UInt32, _ why: RelayEnd) {
        guard let e = entries.removeValue(forKey: id) else { return }
        for t in e.tokens { byToken[t] = nil }
        for case let endpoint? in e.endpoints { byEndpoint[endpoint] = nil }
        counters.ended[why, default: 0] += 1
    }

    /// The token of a bind (`"PWRB" version token`), or nil when the datagram is not one.
    static func bindToken(_ datagram: ByteBuffer) -> RelayToken? {
        guard datagram.readableBytes == RelayLimits.bindBytes,
              datagram.getBytes(at: datagram.readerIndex, length: 4) == RelayLimits.bindMagic,
              datagram.getInteger(at: datagram.readerIndex + 4, as: UInt8.self) == RelayLimits.version,
              let high = datagram.getInteger(at: datagram.readerIndex + 5, as: UInt64.self),
              let low = datagram.getInteger(at: datagram.readerIndex + 13, as: UInt64.self)
        else { return nil }
        return RelayToken(high: high, low: low)
    }

    /// A bind for `token`, as a peer sends it.
    public static func bind(_ token: RelayToken) -> ByteBuffer {
        message(RelayLimits.bindMagic, token)
    }

    /// The answer to a bind for `token`.
    public static func bound(_ token: RelayToken) -> ByteBuffer {
        message(RelayLimits.boundMagic, token)
    }

    private static func message(_ magic: [UInt8], _ token: RelayToken) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(RelayLimits.bindBytes)
        b.writeBytes(magic)
        b.writeInteger(RelayLimits.version)
        b.writeInteger(token.high)
        b.writeInteger(token.low)
        return b
    }
}
