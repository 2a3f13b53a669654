import NIOCore

/*
 The peer's side of CHECKPOINT (flow in `ControlLimits`) as a socket-free, clock-free state machine.

 The driver owns the socket and the clock: it feeds `start`, `datagramReceived` (with the index of
 the supernode it came from), `wakeUp` and the API calls, always with the current time, and performs
 the returned `CheckpointClientAction`s in order.

   idle ──start──▶ handshaking ──helloReply──▶ registering ──registered──▶ registered ──stop──▶ stopping ──▶ stopped
                    ▲   │ hello, cookie,           │ register request       │ keepalive every          unregister
                    │   │ hello+cookie             │ (signed over the       │ keepaliveSeconds          (best effort,
                    │   │                          │  session transcript)   │                           unregisterTimeout)
                    │   └─ attempt timed out ──────┴─ register timed out    │
                    │      (fresh ephemeral next attempt; after          │
                    │       handshakeAttemptsPerSupernode failures: next  │
                    │       supernode in the failover order, `disconnected`)
                    └── session lost: sessionUnknown for our session, `error(notRegistered)`:
                        `disconnected`, new handshake at the same supernode; a keepalive
                        unanswered for `keepaliveTimeout` (half the interval, 4-8 s): the same at
                        the next supernode in the failover order. Then `reregistered`, the watch
                        list and held calls sent again.
 Failover order: the configured supernodes; each `registered` answer lists the network's other
 supernodes in this peer's own order (ClusterFailover.swift), which the machine adds to
 `supernodes` (new indices, `supernodesLearned`) and puts right after the current one.
 `error(superseded)`: the identity registered elsewhere; every call fails, `stopped(.superseded)`.
 A keepalive answer with another observed endpoint than registered: `register` again on the same
 session, then `reregistered(.addressChanged)`.

 Sealed packets: own counter from 1; received counters checked against the replay window before
 the AEAD opens them and recorded after it did. Anything that fails is dropped silently (counted in
 `statistics`). Requests carry increasing transaction ids and are re-sealed (a new counter, the same
 id) on each retransmission: gaps of 0.5, 1, 2, 2, ... s until `requestTimeout`. Requests made while
 no session is registered are held and sent once one is; their deadline runs all the same.
 Pushes are acknowledged every time they arrive and delivered once (recent push ids per session).

 Messages: at most one in flight per destination, the rest wait (bounded) in order. `sendMessage` is
 answered with `messageOutcome`: `delivered` / `offline` are final; `queued` waits for the
 `messageStatus` push. `messageTimeout` after it was sent, a message completes as `timedOut`.
 Connection requests complete with the pushed `connectAnswered`, or fail after `connectAnswerTimeout`.
*/

/// Every timeout and limit of the client side of CHECKPOINT, named (the flow and the reasoning
/// are in the comment above).
public enum CheckpointClientLimits {
    // MARK: handshake

    /// Gap between the first hello and its first retransmission; it doubles after each send.
    public static let helloInitialInterval: TimeAmount = .milliseconds(500)
    /// Largest gap between two hellos of one attempt.
    public static let helloMaximumInterval: TimeAmount = .seconds(2)
    /// One handshake attempt (hellos at 0, 0.5, 1.5, 3.5 s) fails after this long without a
    /// hello reply. The clock restarts once when the cookie arrives.
    public static let helloAttemptTimeout: TimeAmount = .seconds(5)
    /// Failed handshake attempts (each with a fresh ephemeral key) at one supernode before the
    /// machine moves on to the next configured supernode (round robin).
    public static let handshakeAttemptsPerSupernode = 1

    // MARK: requests

    /// Gap between a request and its first retransmission; it doubles after each send.
    public static let requestInitialInterval: TimeAmount = .milliseconds(500)
    /// Largest gap between two sends of one request: short, so that a request still gets
    /// through 30% loss each way (nine sends: all lost with probability 0.51^9, 0.2%).
    public static let requestMaximumInterval: TimeAmount = .seconds(1)
    /// A request without a response fails with `.timedOut` this long after it was made
    /// (sends at 0, 0.5, 1.5, 2.5, ... 7.5 s). A keepalive that times out ends the session.
    public static let defaultRequestTimeout: TimeAmount = .seconds(8)
    /// An instant message whose final outcome has not arrived this long after it was sent
    /// completes with `MessageOutcome.Outcome.timedOut` (covers the `queued` wait).
    public static let defaultMessageTimeout: TimeAmount = .seconds(15)
    /// A connection request whose answer has not been pushed this long after it was forwarded
    /// fails with `.timedOut` (the other side may be asking a human).
    public static let defaultConnectAnswerTimeout: TimeAmount = .seconds(60)
    /// Shortest time a keepalive waits for its answer (sends at 0, 0.5, 1.5, 2.5, 3.5 s: five
    /// tries, so 30% loss each way rarely ends a healthy session).
    public static let minimumKeepaliveTimeout: TimeAmount = .seconds(4)
    /// Supernodes a machine remembers (configured and learned from registrations); more
    /// learned ones are ignored.
    public static let maximumKnownSupernodes = 32
    /// `stop()` waits at most this long for the `unregister` to be acknowledged.
    public static let unregisterTimeout: TimeAmount = .seconds(2)

    // MARK: bounds

    /// Messages to one destination waiting behind the one in flight; more fail with `.queueFull`.
    public static let maximumQueuedMessagesPerDestination = 64
    /// Calls (requests, queued messages, connection requests waiting for their answer) that
    /// may be unfinished at once; more fail with `.tooManyPendingCalls`.
    public static let maximumPendingCalls = 1024
    /// Push ids remembered per session to recognise a retransmitted push.
    public static let rememberedPushIDs = 256
}

extension CheckpointClientLimits {
    /// How long a keepalive waits for its answer before the session counts as lost and the
    /// machine moves on to its next supernode: half the keepalive interval, at least
    /// `minimumKeepaliveTimeout`, at most `requestTimeout`. So a dead supernode is left within
    /// about 1.5 keepalive intervals plus one handshake (25 s: 33 s; 15 s: 22.5 s; 5 s: 9 s),
    /// inside the two intervals after which its peers count as gone.
    public static func keepaliveTimeout(keepaliveSeconds: UInt16, requestTimeout: TimeAmount) -> TimeAmount {
        let half = TimeAmount.milliseconds(Int64(keepaliveSeconds) * 500)
        return min(max(half, minimumKeepaliveTimeout), max(requestTimeout, minimumKeepaliveTimeout))
    }
}

/// A send schedule: sends at 0, `initialInterval`, then doubling gaps capped at
/// `maximumInterval`, until `timeout` after the first send.
public struct CheckpointClientBackoff: Hashable, Sendable {
    /// Gap between the first and the second send.
    public var initialInterval: TimeAmount
    /// Largest gap between two sends (the doubling stops here).
    public var maximumInterval: TimeAmount
    /// Time from the first send after which the exchange gives up.
    public var timeout: TimeAmount

    /// A schedule; `maximumInterval` is raised to `initialInterval` if smaller.
    public init(initialInterval: TimeAmount, maximumInterval: TimeAmount, timeout: TimeAmount) {
        self.initialInterval = initialInterval
        self.maximumInterval = max(initialInterval, maximumInterval)
        self.timeout = timeout
    }

    /// The hello schedule of one handshake attempt.
    public static let hello = CheckpointClientBackoff(
        initialInterval: CheckpointClientLimits.helloInitialInterval,
        maximumInterval: CheckpointClientLimits.helloMaximumInterval,
        timeout: CheckpointClientLimits.helloAttemptTimeout)

    /// The request schedule with a given overall timeout.
    public static func request(timeout: TimeAmount) -> CheckpointClientBackoff {
        CheckpointClientBackoff(initialInterval: CheckpointClientLimits.requestInitialInterval,
                                maximumInterval: CheckpointClientLimits.requestMaximumInterval,
                                timeout: timeout)
    }

    /// The gap after the `sent`-th send (1-based) before the next one.
    public func interval(afterSend sent: Int) -> TimeAmount {
        var gap = initialInterval
        var n = 1
        while n < sent, gap < maximumInterval {
            gap = gap * 2
            n += 1
        }
        return min(gap, maximumInterval)
    }

    /// When each send happens, counted from the first (all strictly before `timeout`).
    public var sendOffsets: [TimeAmount] {
        var offsets: [TimeAmount] = [.zero]
        var t = TimeAmount.zero
        while true {
            t = t + interval(afterSend: offsets.count)
            guard t < timeout else { return offsets }
            offsets.append(t)
        }
    }
}
