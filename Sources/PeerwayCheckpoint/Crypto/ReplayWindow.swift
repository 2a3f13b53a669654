/// Refuses replayed and too-old packet counters (RFC 6479-style sliding window).
///
/// Remembers the highest counter accepted and which of the `ControlLimits.replayWindow`
/// counters below it were seen. A counter is fresh if it is above the highest, or inside the
/// window and not seen yet. `check` does not record; `record` does, only after the packet
/// authenticated, so forged packets cannot move the window.
public struct ReplayWindow: Equatable, Sendable {
    /// Highest counter recorded; 0 until the first (counters start at 1).
    public private(set) var highest: UInt64 = 0
    /// Bit i set: counter `highest - i` was seen (bit 0 is `highest` itself).
    private var seen: UInt64 = 1

    public init() {}

    /// True when `counter` was not seen and is not too old.
    public func check(_ counter: UInt64) -> Bool {
        if counter > highest { return true }
        let age = highest - counter
        guard age < UInt64(ControlLimits.replayWindow) else { return false }
        return seen & (1 << age) == 0
    }

    /// Marks `counter` seen; call only after `check` returned true and the packet authenticated.
    public mutating func record(_ counter: UInt64) {
        if counter > highest {
            let shift = counter - highest
            seen = shift >= 64 ? 1 : (seen << shift) | 1
            highest = counter
        } else {
            seen |= 1 << (highest - counter)
        }
    }
}
