import NIOCore

/// A token bucket per source IP address: a UDP service (the STUN pair, CHECKPOINT's handshakes)
/// answers at most `ratePerSecond` unauthenticated requests per second from one IP, with bursts
/// up to `burst`. Pure: the caller passes the time.
///
/// It bounds how much traffic anyone can reflect at one victim through a spoofed source address,
/// and how much of the server one host can take. The table of sources is bounded by
/// `maximumTrackedSources`; sources whose bucket has refilled are forgotten at each sweep. When the
/// table is full of active sources (a spoofing flood), new sources are admitted untracked and
/// counted (`untrackedAdmissions`): failing open keeps real clients served.
public struct SourceRateLimiter: Sendable {
    /// Default sustained requests per second from one source IP. A client's full RFC 5780 netcheck
    /// sends about 20 requests; this allows 5 concurrent checks per second behind one NAT.
    public static let defaultRatePerSecond = 100
    /// Default burst allowance per source IP.
    public static let defaultBurst = 200
    /// Most source IPs tracked at once (about 64 bytes each).
    public static let maximumTrackedSources = 200_000
    /// How often idle sources are swept from the table.
    public static let sweepInterval = TimeAmount.seconds(10)

    private struct Bucket {
        var tokens: Double
        var updated: NIODeadline
        /// Its last request was refused (the next refusal is the same episode).
        var limited = false
    }

    /// Requests per second per source; 0 disables limiting.
    public let ratePerSecond: Int
    public let burst: Int
    private var buckets: [STUNAddress.IP: Bucket] = [:]
    private var lastSweep: NIODeadline?
    /// Requests admitted without a bucket because the table was full.
    public private(set) var untrackedAdmissions = 0
    /// Times a source went over its limit: refusals that followed an admission (or a new
    /// bucket), so a source hammering for a minute counts once.
    public private(set) var limitedSources = 0

    public init(ratePerSecond: Int = defaultRatePerSecond, burst: Int = defaultBurst) {
        self.ratePerSecond = max(0, ratePerSecond)
        self.burst = max(1, burst)
    }

    /// Number of sources currently tracked.
    public var trackedSources: Int { buckets.count }

    /// Takes one token for `ip` at `now`; false means over the limit (drop the request).
    public mutating func admit(_ ip: STUNAddress.IP, now: NIODeadline) -> Bool {
        guard ratePerSecond > 0 else { return true }
        if let last = lastSweep {
            if now - last >= Self.sweepInterval { sweep(now: now) }
        } else {
            lastSweep = now
        }
        if var bucket = buckets[ip] {
            bucket.tokens = refilled(bucket, now: now)
            bucket.updated = now
            guard bucket.tokens >= 1 else {
                if !bucket.limited { limitedSources += 1 }
                bucket.limited = true
                buckets[ip] = bucket
                return false
            }
            bucket.tokens -= 1
            bucket.limited = false
            buckets[ip] = bucket
            return true
        }
        guard buckets.count < Self.maximumTrackedSources else {
            untrackedAdmissions += 1
            return true
        }
        buckets[ip] = Bucket(tokens: Double(burst) - 1, updated: now)
        return true
    }

    private func refilled(_ bucket: Bucket, now: NIODeadline) -> Double {
        let elapsed = Double(max(0, (now - bucket.updated).nanoseconds)) / 1e9
        return min(Double(burst), bucket.tokens + elapsed * Double(ratePerSecond))
    }

    /// Forgets every source whose bucket is full again: it is indistinguishable from a new one.
    public mutating func sweep(now: NIODeadline) {
        lastSweep = now
        buckets = buckets.filter { refilled($0.value, now: now) < Double(burst) }
    }
}
