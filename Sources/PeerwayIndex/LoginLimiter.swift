/// Rate-limits login attempts per username and per source (a peer's address or PeerID), as a
/// pure value: the caller passes the time (`now`, from any clock it injects) and records outcomes.
///
/// Each username and each source has a token bucket of failures: `burst` failed attempts at once,
/// then one more per `refill`. An attempt is allowed only when both buckets hold a token; a failure
/// takes one from each, a success refills the username's bucket (the user proved who they are) but
/// not the source's (one source guessing many usernames stays limited). Tables are bounded by
/// `maximumTracked`: full buckets are dropped first, then the longest-untouched ones.
public struct LoginLimiter<Source: Hashable & Sendable>: Sendable {
    /// One bucket's shape.
    public struct Rule: Hashable, Sendable {
        /// Failed attempts allowed at once.
        public var burst: Int
        /// Time to earn back one attempt.
        public var refill: Duration

        public init(burst: Int, refill: Duration) {
            self.burst = max(burst, 1)
            self.refill = refill > .zero ? refill : .seconds(1)
        }
    }

    /// 5 failures, then one per 30 s, per username.
    public static var defaultPerUser: Rule { Rule(burst: 5, refill: .seconds(30)) }
    /// 20 failures, then one per 5 s, per source.
    public static var defaultPerSource: Rule { Rule(burst: 20, refill: .seconds(5)) }
    /// Most usernames and sources tracked each.
    public static var defaultMaximumTracked: Int { 100_000 }

    public let perUser: Rule
    public let perSource: Rule
    public let maximumTracked: Int

    struct Bucket: Sendable {
        var tokens: Double
        var at: ContinuousClock.Instant
    }

    private var users: [String: Bucket] = [:]
    private var sources: [Source: Bucket] = [:]

    public init(perUser: Rule = defaultPerUser, perSource: Rule = defaultPerSource, maximumTracked: Int = defaultMaximumTracked) {
        self.perUser = perUser
        self.perSource = perSource
        self.maximumTracked = max(maximumTracked, 1)
    }

    /// Whether an attempt for `user` from `source` may go ahead now; when not, `.rateLimited`
    /// says in how many seconds one will.
    public func check(user: String, source: Source, now: ContinuousClock.Instant) throws(IndexError) {
        let waitUser = Self.wait(users[user], rule: perUser, now: now)
        let waitSource = Self.wait(sources[source], rule: perSource, now: now)
        let wait = max(waitUser, waitSource)
        if wait > .zero {
            let seconds = wait.components.seconds + (wait.components.attoseconds > 0 ? 1 : 0)
            throw .rateLimited(retryAfterSeconds: Int(max(seconds, 1)))
        }
    }

    /// Records a failed attempt (wrong password or unknown user).
    public mutating func recordFailure(user: String, source: Source, now: ContinuousClock.Instant) {
        Self.take(&users, user, rule: perUser, now: now, limit: maximumTracked)
        Self.take(&sources, source, rule: perSource, now: now, limit: maximumTracked)
    }

    /// Records a successful login: the username's failures are forgiven.
    public mutating func recordSuccess(user: String, source: Source, now: ContinuousClock.Instant) {
        users[user] = nil
    }

    /// Usernames and sources currently tracked.
    public var trackedCount: (users: Int, sources: Int) { (users.count, sources.count) }

    static func tokens(_ bucket: Bucket?, rule: Rule, now: ContinuousClock.Instant) -> Double {
        guard let bucket else { return Double(rule.burst) }
        let earned = max(now - bucket.at, .zero) / rule.refill
        return min(Double(rule.burst), bucket.tokens + earned)
    }

    static func wait(_ bucket: Bucket?, rule: Rule, now: ContinuousClock.Instant) -> Duration {
        let have = tokens(bucket, rule: rule, now: now)
        if have >= 1 { return .zero }
        return rule.refill * (1 - have)
    }

    static func take<Key: Hashable>(_ table: inout [Key: Bucket], _ key: Key, rule: Rule, now: ContinuousClock.Instant, limit: Int) {
        let have = tokens(table[key], rule: rule, now: now)
        table[key] = Bucket(tokens: max(have - 1, 0), at: now)
        guard table.count > limit else { return }
        // Full buckets carry no information: drop them first.
        table = table.filter { tokens($0.value, rule: rule, now: now) < Double(rule.burst) }
        while table.count > limit, let oldest = table.min(by: { $0.value.at < $1.value.at })?.key {
            table[oldest] = nil
        }
    }
}
