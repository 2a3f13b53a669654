/// Wall-clock time as the relay sees it: unix milliseconds. Passed in by the owner (tests use
/// virtual time), compared with tokens' `expires` (unix seconds).
public struct RelayTime: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var millis: UInt64

    @inlinable public init(millis: UInt64) { self.millis = millis }

    public init(unixSeconds: UInt64) { millis = unixSeconds * 1000 }

    /// Whole unix seconds, as tokens carry them.
    @inlinable public var unixSeconds: UInt32 { UInt32(clamping: millis / 1000) }

    public static func < (a: RelayTime, b: RelayTime) -> Bool { a.millis < b.millis }

    /// `self` plus whole seconds.
    public func adding(seconds: UInt64) -> RelayTime { RelayTime(millis: millis + seconds * 1000) }

    public var description: String { "\(millis / 1000).\(String(millis % 1000 + 1000).dropFirst())" }
}

/// Why an allocation ended.
public enum RelayEnd: String, Equatable, Sendable, CaseIterable {
    /// Nothing forwarded for `idleTimeoutSeconds`.
    case idle
    /// Its byte limit was reached.
    case bytes
    /// Its token expired or it reached `maximumLifetimeSeconds`.
    case lifetime
    /// The other side did not bind within `bindTimeoutSeconds` of the first bind.
    case unbound
    /// One side went away (a TCP connection closed).
    case closed
}

/// What a relay did.
public struct RelayCounters: Equatable, Sendable {
    /// Allocations created (by a first valid bind).
    public var allocations = 0
    /// Sides bound.
    public var bindings = 0
    /// Binds answered, retransmissions included.
    public var answeredBinds = 0
    public var forwardedDatagrams = 0
    public var forwardedBytes: UInt64 = 0
    /// Datagrams from a bound side whose partner has not bound yet (dropped).
    public var waitingForPartner = 0
    /// Datagrams from addresses that are not bound and are no bind.
    public var unauthenticated = 0
    /// Binds refused, by reason.
    public var refused: [RelayError: Int] = [:]
    /// Allocations ended, by reason.
    public var ended: [RelayEnd: Int] = [:]
    /// UDP sides moved to a new address by a bind from there (a peer that roamed).
    public var moves = 0

    public init() {}

    /// Binds refused for any reason.
    public var refusedBinds: Int { refused.values.reduce(0, +) }
}

/// A side bound by `RelayTable.bind`.
public struct RelayBinding<Endpoint: Hashable & Sendable>: Equatable, Sendable {
    public var token: RelayToken
    /// The other side's endpoint, when it is bound too.
    public var partner: Endpoint?
    /// False when the same endpoint had bound this side before (a retransmitted bind).
    public var isNew: Bool
}

/// The raw relay's allocations as a pure state machine: binds, forwarding and ends. See
/// `RelayLimits` for the flow. No socket, no clock: the owner feeds datagrams (or, over TCP, byte
/// counts) and the time.
///
/// `Endpoint` is what a side is bound to: a `STUNAddress` for UDP, a connection id for TCP. The
/// forwarding path is one dictionary lookup and an array access; the table never holds payload.
public struct RelayTable<Endpoint: Hashable & Sendable>: Sendable {
    /// What the table enforces.
    public struct Configuration: Sendable {
        /// The transport its tokens must name.
        public var transport: RelayTransport
        public var byteLimit: UInt64
        public var maximumAllocations: Int
        public var maximumLifetimeSeconds: UInt64
        public var bindTimeoutSeconds: UInt64
        public var idleTimeoutSeconds: UInt64

        public init(transport: RelayTransport, byteLimit: UInt64 = RelayLimits.defaultByteLimit,
                    maximumAllocations: Int = RelayLimits.maximumAllocations,
                    maximumLifetimeSeconds: UInt64 = RelayLimits.maximumLifetimeSeconds,
                    bindTimeoutSeconds: UInt64 = RelayLimits.bindTimeoutSeconds,
                    idleTimeoutSeconds: UInt64 = RelayLimits.idleTimeoutSeconds) {
            self.transport = transport
            self.byteLimit = byteLimit
            self.maximumAllocations = maximumAllocations
            self.maximumLifetimeSeconds = maximumLifetimeSeconds
            self.bindTimeoutSeconds = bindTimeoutSeconds
            self.idleTimeoutSeconds = idleTimeoutSeconds
        }
    }

    /// What to do with one datagram.
    public enum Verdict: Equatable, Sendable {
        /// Send it, untouched, to this endpoint.
        case forward(to: Endpoint)
        /// It is a valid bind: send `RelayMessage.makeAnswer` of it back to its source.
        case answer
        /// Drop it (counted).
        case drop
    }

    @usableFromInline
    struct Entry: Sendable {
        @usableFromInline var allocation: UInt64
        @usableFromInline var tokens: (RelayToken?, RelayToken?)
        @usableFromInline var endpoints: (Endpoint?, Endpoint?)
        @usableFromInline var bytes: UInt64 = 0
        @usableFromInline var createdMillis: UInt64
        @usableFromInline var activeMillis: UInt64
        @usableFromInline var endMillis: UInt64
        /// When each side last sent something (a side silent for `moveIdleMillis` may move).
        @usableFromInline var heardMillis: (UInt64, UInt64) = (0, 0)

        @usableFromInline func endpoint(_ side: Int) -> Endpoint? { side == 0 ? endpoints.0 : endpoints.1 }
        func heard(_ side: Int) -> UInt64 { side == 0 ? heardMillis.0 : heardMillis.1 }
        func token(_ side: Int) -> RelayToken? { side == 0 ? tokens.0 : tokens.1 }
        var bothBound: Bool { endpoints.0 != nil && endpoints.1 != nil }
    }

    @usableFromInline
    struct Side: Sendable {
        @usableFromInline var slot: Int
        @usableFromInline var index: Int
    }

    public let configuration: Configuration
    private let minter: RelayTokenMinter
    @usableFromInline var slots: [Entry?] = []
    private var freeSlots: [Int] = []
    private var byAllocation: [UInt64: Int] = [:]
    @usableFromInline var byEndpoint: [Endpoint: Side] = [:]
    /// Ended allocations until their tokens expire (unix seconds), so a token cannot revive one.
    private var endedUntil: [UInt64: UInt32] = [:]
    @usableFromInline var _counters = RelayCounters()
    /// What the table did so far.
    public var counters: RelayCounters { _counters }

    public init(minter: RelayTokenMinter, configuration: Configuration) {
        self.minter = minter
        self.configuration = configuration
    }

    /// Allocations held.
    public var count: Int { byAllocation.count }

    /// The endpoints bound to an allocation's two sides (nil until bound); nil when there is no such allocation.
    public func endpoints(of allocation: UInt64) -> [Endpoint?]? {
        guard let slot = byAllocation[allocation], let e = slots[slot] else { return nil }
        return [e.endpoints.0, e.endpoints.1]
    }

    /// Bytes an allocation forwarded so far.
    public func bytes(of allocation: UInt64) -> UInt64? {
        byAllocation[allocation].flatMap { slots[$0]?.bytes }
    }

    /// The bound endpoint's partner, when both sides are bound.
    public func partner(of endpoint: Endpoint) -> Endpoint? {
        guard let side = byEndpoint[endpoint], let e = slots[side.slot] else { return nil }
        return e.endpoint(1 - side.index)
    }

    /// Whether `endpoint` is bound to a live allocation.
    public func isBound(_ endpoint: Endpoint) -> Bool { byEndpoint[endpoint] != nil }

    // MARK: datagrams

    /// Decides what to do with one datagram from `source`: forward it if `source` is a bound side
    /// whose partner is bound, answer it if it is a valid bind (a first bind or a retransmission
    /// from the bound address), drop it otherwise.
    @inlinable
    public mutating func receive(_ datagram: UnsafeRawBufferPointer, from source: Endpoint, now: RelayTime) -> Verdict {
        if let side = byEndpoint[source] {
            // A bind repeated by the bound side is answered again, not forwarded.
            if RelayMessage.isBind(datagram), isRetransmission(datagram, side: side) {
                _counters.answeredBinds += 1
                return .answer
            }
            return forward(datagram.count, side: side, now: now)
        }
        guard RelayMessage.isBind(datagram) else {
            _counters.unauthenticated += 1
            return .drop
        }
        do {
            _ = try bind(UnsafeRawBufferPointer(rebasing: datagram[5...]), from: source, now: now)
            return .answer
        } catch {
            return .drop
        }
    }

    /// `receive` for a datagram in an array (tests, tools).
    public mutating func receive(_ datagram: [UInt8], from source: Endpoint, now: RelayTime) -> Verdict {
        datagram.withUnsafeBytes { receive($0, from: source, now: now) }
    }

    /// Accounts `length` bytes from the bound endpoint `source` (a TCP read): `.forward(to:)` its
    /// partner when they may pass, `.drop` when the partner is not bound yet or the allocation just
    /// ended (bytes, lifetime; `isBound(source)` is then false) or `source` is not bound.
    @inlinable
    public mutating func account(_ length: Int, from source: Endpoint, now: RelayTime) -> Verdict {
        guard let side = byEndpoint[source] else { return .drop }
        return forward(length, side: side, now: now)
    }

    @inlinable
    mutating func forward(_ length: Int, side: Side, now: RelayTime) -> Verdict {
        guard let partner = slots[side.slot]!.endpoint(1 - side.index) else {
            _counters.waitingForPartner += 1
            return .drop
        }
        let size = UInt64(length)
        if now.millis >= slots[side.slot]!.endMillis {
            end(slot: side.slot, .lifetime)
            return .drop
        }
        guard slots[side.slot]!.bytes + size <= configuration.byteLimit else {
            end(slot: side.slot, .bytes)
            return .drop
        }
        slots[side.slot]!.bytes += size
        slots[side.slot]!.activeMillis = now.millis
        if side.index == 0 { slots[side.slot]!.heardMillis.0 = now.millis } else { slots[side.slot]!.heardMillis.1 = now.millis }
        _counters.forwardedDatagrams += 1
        _counters.forwardedBytes += size
        return .forward(to: partner)
    }

    @usableFromInline
    func isRetransmission(_ bind: UnsafeRawBufferPointer, side: Side) -> Bool {
        guard let mine = slots[side.slot]?.token(side.index) else { return false }
        return Array(bind[5...]) == mine.bytes
    }

    // MARK: binds

    /// Binds the side named by the 32 token bytes to `source`: the first valid bind of an
    /// allocation creates it; a bind repeated from the same endpoint is accepted again
    /// (`isNew == false`); anything else throws why it was refused (and counts it).
    public mutating func bind(_ tokenBytes: UnsafeRawBufferPointer, from source: Endpoint, now: RelayTime) throws(RelayError) -> RelayBinding<Endpoint> {
        do {
            return try bindVerified(tokenBytes, from: source, now: now)
        } catch {
            _counters.refused[error, default: 0] += 1
            throw error
        }
    }

    /// `bind` with the token bytes in an array.
    public mutating func bind(_ tokenBytes: [UInt8], from source: Endpoint, now: RelayTime) throws(RelayError) -> RelayBinding<Endpoint> {
        let result = tokenBytes.withUnsafeBytes { raw in
            Result { () throws(RelayError) -> RelayBinding<Endpoint> in try self.bind(raw, from: source, now: now) }
        }
        return try result.get()
    }

    private mutating func bindVerified(_ tokenBytes: UnsafeRawBufferPointer, from source: Endpoint, now: RelayTime) throws(RelayError) -> RelayBinding<Endpoint> {
        let token = try minter.verify(tokenBytes, now: now.unixSeconds)
        guard token.transport == configuration.transport else { throw .wrongTransport }
        let index = Int(token.side)
        if let existing = byEndpoint[source] {
            // This endpoint is bound already: only its own side's bind is a retransmission.
            guard let e = slots[existing.slot], e.allocation == token.allocation, existing.index == index else { throw .taken }
            _counters.answeredBinds += 1
            return RelayBinding(token: token, partner: e.endpoint(1 - index), isNew: false)
        }
        let slot: Int
        if let s = byAllocation[token.allocation] {
            slot = s
        } else {
            guard endedUntil[token.allocation] == nil else { throw .ended }
            guard byAllocation.count < configuration.maximumAllocations,
                  endedUntil.count < 2 * configuration.maximumAllocations else { throw .full }
            let lifetimeEnd = min(UInt64(token.expires) * 1000, now.millis + configuration.maximumLifetimeSeconds * 1000)
            let entry = Entry(allocation: token.allocation, tokens: (nil, nil), endpoints: (nil, nil),
                              createdMillis: now.millis, activeMillis: now.millis, endMillis: lifetimeEnd)
            if let free = freeSlots.popLast() {
                slot = free
                slots[free] = entry
            } else {
                slot = slots.count
                slots.append(entry)
            }
            byAllocation[token.allocation] = slot
            _counters.allocations += 1
        }
        if let old = slots[slot]!.endpoint(index) {
            // A UDP side that went silent may move to the address its bind comes from: the peer
            // roamed, or its NAT mapped it anew. (Whoever could see the token on the way could
            // see and drop the traffic anyway, and the payload is end-to-end encrypted.)
            guard configuration.transport == .udp, now.millis >= slots[slot]!.heard(index) + RelayLimits.moveIdleMillis else {
                throw .taken
            }
            byEndpoint[old] = nil
            _counters.moves += 1
        }
        if index == 0 {
            slots[slot]!.endpoints.0 = source
            slots[slot]!.tokens.0 = token
        } else {
            slots[slot]!.endpoints.1 = source
            slots[slot]!.tokens.1 = token
        }
        slots[slot]!.activeMillis = now.millis
        if index == 0 { slots[slot]!.heardMillis.0 = now.millis } else { slots[slot]!.heardMillis.1 = now.millis }
        byEndpoint[source] = Side(slot: slot, index: index)
        _counters.bindings += 1
        _counters.answeredBinds += 1
        return RelayBinding(token: token, partner: slots[slot]!.endpoint(1 - index), isNew: true)
    }

    // MARK: ends

    /// Ends the allocation `endpoint` is bound to (a TCP connection closed); returns its partner.
    @discardableResult
    public mutating func close(_ endpoint: Endpoint) -> Endpoint? {
        guard let side = byEndpoint[endpoint], let e = slots[side.slot] else { return nil }
        end(slot: side.slot, .closed)
        return e.endpoint(1 - side.index)
    }

    /// Ends allocations that are idle, over their lifetime, or whose partner never bound; forgets
    /// ended allocations whose tokens expired. Returns the endpoints of the allocations it ended.
    @discardableResult
    public mutating func tick(now: RelayTime) -> [Endpoint] {
        let ms = now.millis
        var ending: [(Int, RelayEnd)] = []
        for (slot, entry) in slots.enumerated() {
            guard let e = entry else { continue }
            if ms >= e.endMillis {
                ending.append((slot, .lifetime))
            } else if !e.bothBound, ms >= e.createdMillis + configuration.bindTimeoutSeconds * 1000 {
                ending.append((slot, .unbound))
            } else if e.bothBound, ms >= e.activeMillis + configuration.idleTimeoutSeconds * 1000 {
                ending.append((slot, .idle))
            }
        }
        var endpoints: [Endpoint] = []
        for (slot, why) in ending {
            if let e = slots[slot] {
                if let a = e.endpoints.0 { endpoints.append(a) }
                if let b = e.endpoints.1 { endpoints.append(b) }
            }
            end(slot: slot, why)
        }
        let seconds = now.unixSeconds
        endedUntil = endedUntil.filter { $0.value > seconds }
        return endpoints
    }

    @usableFromInline
    mutating func end(slot: Int, _ why: RelayEnd) {
        guard let e = slots[slot] else { return }
        slots[slot] = nil
        freeSlots.append(slot)
        byAllocation[e.allocation] = nil
        if let a = e.endpoints.0 { byEndpoint[a] = nil }
        if let b = e.endpoints.1 { byEndpoint[b] = nil }
        let expires = e.tokens.0?.expires ?? e.tokens.1?.expires ?? 0
        endedUntil[e.allocation] = expires
        _counters.ended[why, default: 0] += 1
    }
}
