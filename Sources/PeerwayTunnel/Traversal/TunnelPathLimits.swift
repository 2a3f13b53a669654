/// Timers of a tunnel's path watching and recovery (the flow: `TunnelPathMachine`).
public enum TunnelPathLimits {
    /// Milliseconds of silence on the active direct path, while this side sends, before it is checked.
    public static let silenceMillis: UInt64 = 1_000
    /// Least milliseconds between two checks of a silent path (at least twice its round trip).
    public static let checkIntervalMillis: UInt64 = 300
    /// Unanswered checks after which the direct path counts as dead (about 1.5 s more).
    public static let checkAttempts = 5
    /// Milliseconds after an application send during which this side counts as sending.
    public static let sendingWindowMillis: UInt64 = 2_000
    /// Milliseconds without anything sent on a path before a keepalive goes out on it: inside the
    /// UDP mapping timeout of common NATs (RFC 4787 REQ-5 asks 2 minutes; many keep 30 s).
    public static let keepaliveMillis: UInt64 = 15_000
    /// Milliseconds before a dead direct path is tried again; each failed retry doubles it.
    public static let firstRetryMillis: UInt64 = 1_000
    /// Longest wait between two retries of the direct path.
    public static let maximumRetryMillis: UInt64 = 32_000
    /// Milliseconds a retry request waits for its answer.
    public static let retryTimeoutMillis: UInt64 = 1_000
    /// Milliseconds between two relay binds while the relay has not answered (a tunnel that went
    /// direct at once binds it afterwards, to have it for a fallback).
    public static let relayBindIntervalMillis: UInt64 = 250
    /// Relay binds sent before the relay counts as unavailable.
    public static let relayBindAttempts = 20
    /// Milliseconds between two gatherings of this side's address while the paths are recovered.
    public static let gatherIntervalMillis: UInt64 = 2_000
    /// Times a new address is sent to the other side (over the relay, then directly).
    public static let candidateSends = 5
    /// Milliseconds between two sends of a new address.
    public static let candidateIntervalMillis: UInt64 = 300
    /// Milliseconds between retries of the direct pair while the paths are recovered (the punch
    /// needs both sides to send while the other does).
    public static let recoveryRetryMillis: UInt64 = 250
    /// Most addresses of the other side checked at once.
    public static let maximumLearning = 16
    /// Milliseconds a recovery lasts (relay binds, gathering, quick direct retries) before the
    /// paths are watched again.
    public static let recoveryWindowMillis: UInt64 = 10_000
    /// Least milliseconds from the end of a recovery that found nothing to the next one; each
    /// such recovery doubles it up to `maximumRecoveryBackoffMillis` (a network change resets it).
    public static let firstRecoveryBackoffMillis: UInt64 = 10_000
    public static let maximumRecoveryBackoffMillis: UInt64 = 300_000
}
