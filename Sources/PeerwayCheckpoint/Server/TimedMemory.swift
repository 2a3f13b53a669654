/// Values remembered for a fixed time after they were first stored, then forgotten oldest first.
///
/// Every entry lives the same time, so the order of first storing is the order of forgetting: a
/// FIFO of keys with their deadlines, consumed from `head` (compacted now and then). Storing a key
/// again replaces its value and keeps its first deadline. At most `capacity` values are held:
/// past it the oldest are forgotten before their time.
struct TimedMemory<Key: Hashable, Value> {
    let lifetimeMillis: UInt64
    let capacity: Int
    private var values: [Key: Value] = [:]
    private var order: [(key: Key, forgetMillis: UInt64)] = []
    private var head = 0

    init(lifetimeMillis: UInt64, capacity: Int = .max) {
        self.lifetimeMillis = lifetimeMillis
        self.capacity = max(capacity, 1)
    }

    subscript(key: Key) -> Value? { values[key] }

    var count: Int { values.count }

    mutating func remember(_ value: Value, for key: Key, ms: UInt64) {
        if values.updateValue(value, forKey: key) == nil {
            order.append((key, ms + lifetimeMillis))
        }
        while values.count > capacity { dropOldest() }
    }

    /// Forgets what is due at `ms`.
    mutating func forget(dueAt ms: UInt64) {
        while head < order.count, order[head].forgetMillis <= ms { dropOldest() }
        if head > 4096, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    private mutating func dropOldest() {
        guard head < order.count else { return }
        values[order[head].key] = nil
        head += 1
    }
}
