import NIOCore

/// The round trip to the supernode as requests measure it (RFC 6298: smoothed RTT and its
/// variation, samples only from requests answered after a single send, as Karn's algorithm asks),
/// and the retransmission timeout it gives: a lost request costs a few round trips, not a fixed
/// half second (`CheckpointClientLimits.requestInitialInterval` until the first sample).
struct ClientRoundTrip: Sendable, Equatable {
    /// Smallest retransmission timeout: below it a late answer would cause spurious resends.
    static let minimumTimeout: TimeAmount = .milliseconds(100)
    /// Largest: the fixed schedule's first gap.
    static let maximumTimeout: TimeAmount = CheckpointClientLimits.requestInitialInterval
    /// Least room given to the variation term (a very steady path still jitters a little).
    static let minimumVariation: TimeAmount = .milliseconds(10)

    private(set) var smoothed: TimeAmount?
    private(set) var variation: TimeAmount = .zero

    /// A request sent once was answered `sample` after it was sent.
    mutating func add(_ sample: TimeAmount) {
        guard let srtt = smoothed else {
            smoothed = sample
            variation = .nanoseconds(sample.nanoseconds / 2)
            return
        }
        // RFC 6298 §2.3: rttvar = 3/4 rttvar + 1/4 |srtt - r|; srtt = 7/8 srtt + 1/8 r.
        let difference = abs(srtt.nanoseconds - sample.nanoseconds)
        variation = .nanoseconds((3 * variation.nanoseconds + difference) / 4)
        smoothed = .nanoseconds((7 * srtt.nanoseconds + sample.nanoseconds) / 8)
    }

    /// The gap before a request's first retransmission.
    var timeout: TimeAmount {
        guard let srtt = smoothed else { return Self.maximumTimeout }
        let rto = srtt + max(Self.minimumVariation, .nanoseconds(4 * variation.nanoseconds))
        return min(Self.maximumTimeout, max(Self.minimumTimeout, rto))
    }
}
