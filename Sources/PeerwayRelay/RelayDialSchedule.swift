/// When to dial which of a relay's TCP endpoints (its own TCP port, then its supernode's shared
/// port, ...), as a pure state machine: the caller says what time it is and what happened to its
/// connection attempts, the schedule says which endpoint to dial or give up on.
///
/// The endpoints are tried in order, staggered rather than one after the other ("happy
/// eyeballs"): the first at once, each next one `staggerMillis` after the previous one started, or
/// at once when every started attempt has failed. A network that drops SYNs to a port answers
/// nothing, so an attempt that has not connected within `attemptTimeoutMillis` is abandoned and
/// its endpoint dialed again with a fresh connection; one refused (a RST, an ICMP error) is dialed
/// again `retryMillis` later. Attempts on earlier endpoints keep running while later ones start:
/// the first connection to complete wins. The caller bounds the whole by its own deadline.
public struct RelayDialSchedule: Sendable, Equatable {
    /// Milliseconds between starting one endpoint and starting the next.
    public static let staggerMillis = 1_000
    /// Milliseconds an attempt may take to connect before it is abandoned and made again (TCP's
    /// own SYN retransmissions wait 1, 3, 7 s: a fresh attempt resends sooner).
    public static let attemptTimeoutMillis = 4_000
    /// Milliseconds before an endpoint that refused is dialed again.
    public static let retryMillis = 400

    /// What the caller does now.
    public enum Action: Hashable, Sendable {
        /// Open a new connection to endpoint `index`.
        case dial(Int)
        /// Close the pending attempt on endpoint `index` (it took too long); a `dial` of it follows.
        case abandon(Int)
    }

    /// How many endpoints there are.
    public let endpoints: Int
    /// When each endpoint's pending attempt started (nil: none pending).
    private var pendingSince: [Int?]
    /// The earliest time each started endpoint may be dialed again.
    private var retryAt: [Int]
    /// Endpoints started so far (they start in order).
    private var started = 0
    /// When the last endpoint was started.
    private var lastStart = 0
    /// Endpoints never to dial again (a proxy refused them for good).
    private var retired: Set<Int> = []

    /// A schedule over `endpoints` endpoints (the order to try them in).
    public init(endpoints: Int) {
        self.endpoints = max(0, endpoints)
        pendingSince = Array(repeating: nil, count: self.endpoints)
        retryAt = Array(repeating: 0, count: self.endpoints)
    }

    /// The attempts to make or abandon at `now` (milliseconds on any monotonic clock).
    public mutating func actions(now: Int) -> [Action] {
        var out: [Action] = []
        for i in 0..<started {
            if let since = pendingSince[i], now - since >= Self.attemptTimeoutMillis {
                out.append(.abandon(i))
                pendingSince[i] = nil
                retryAt[i] = now
            }
        }
        for i in 0..<started where pendingSince[i] == nil && now >= retryAt[i] && !retired.contains(i) {
            out.append(.dial(i))
            pendingSince[i] = now
        }
        while started < endpoints && (started == 0 || now - lastStart >= Self.staggerMillis || !pendingSince.contains { $0 != nil }) {
            out.append(.dial(started))
            pendingSince[started] = now
            lastStart = now
            started += 1
        }
        return out
    }

    /// The attempt on endpoint `index` failed at `now` (refused, unreachable): it is dialed again
    /// after `retryMillis`, and the next endpoint may start at once.
    public mutating func failed(_ index: Int, now: Int) {
        guard pendingSince.indices.contains(index) else { return }
        pendingSince[index] = nil
        retryAt[index] = now + Self.retryMillis
    }

    /// The attempt on endpoint `index` failed in a way that will not change (an HTTP proxy
    /// refused `CONNECT` to it): it is never dialed again, and the next endpoint may start at once.
    public mutating func retire(_ index: Int) {
        guard pendingSince.indices.contains(index) else { return }
        pendingSince[index] = nil
        retired.insert(index)
    }

    /// Whether every endpoint was retired: nothing is left to try.
    public var exhausted: Bool { retired.count == endpoints }

    /// Milliseconds from `now` until `actions` has something to do (0: now); for the caller's poll timeout.
    public func wait(now: Int) -> Int {
        var next = Int.max
        for i in 0..<started {
            if let since = pendingSince[i] {
                next = min(next, since + Self.attemptTimeoutMillis)
            } else if !retired.contains(i) {
                next = min(next, retryAt[i])
            }
        }
        if started < endpoints {
            let idle = started == 0 || !pendingSince.contains { $0 != nil }
            next = min(next, idle ? now : lastStart + Self.staggerMillis)
        }
        return next == .max ? Self.attemptTimeoutMillis : max(0, next - now)
    }
}
