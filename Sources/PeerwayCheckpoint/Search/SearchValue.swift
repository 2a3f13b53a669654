/// How search reads metadata values: as UTF-8 bytes for equality, prefixes and order, and as
/// finite `Double`s for numeric comparisons. The query's reference semantics and the index
/// both use these, so they cannot disagree.
enum SearchValue {
    /// The value as a number when Swift's `Double(_:)` parses all of it to a finite number.
    static func number(_ text: String) -> Double? {
        guard let number = Double(text), number.isFinite else { return nil }
        return number
    }
}

/// A metadata value compared, hashed and ordered by its UTF-8 bytes (`String`'s own `==` and
/// `<` follow Unicode canonical equivalence, which would make `^=` ranges non-contiguous).
struct ValueKey: Hashable, Comparable, Sendable {
    let text: String

    init(_ text: String) { self.text = text }

    static func == (a: ValueKey, b: ValueKey) -> Bool {
        a.text.utf8.elementsEqual(b.text.utf8)
    }

    static func < (a: ValueKey, b: ValueKey) -> Bool {
        a.text.utf8.lexicographicallyPrecedes(b.text.utf8)
    }

    func hash(into hasher: inout Hasher) {
        let done: Void? = text.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if done == nil {
            for byte in text.utf8 { hasher.combine(byte) }
        }
        hasher.combine(0xFF as UInt8)  // terminator: no UTF-8 byte is 0xFF
    }

    /// Whether the value starts with `prefix`'s bytes.
    func hasPrefix(_ prefix: ValueKey) -> Bool {
        text.utf8.starts(with: prefix.text.utf8)
    }
}

/// A distinct numeric value of a key: ordered by number, then by the text it was written as
/// (`5` and `5.0` are two values with the same number).
struct NumericValue: Comparable, Sendable {
    let number: Double
    let value: ValueKey

    static func < (a: NumericValue, b: NumericValue) -> Bool {
        a.number != b.number ? a.number < b.number : a.value < b.value
    }

    static func == (a: NumericValue, b: NumericValue) -> Bool {
        a.number == b.number && a.value == b.value
    }
}

/// A peer of the index (by slot) and its id, ordered by id: the index's PeerID order.
struct SlottedPeer: Comparable, Sendable {
    let id: PeerID
    let slot: UInt32

    static func < (a: SlottedPeer, b: SlottedPeer) -> Bool { a.id < b.id }
    static func == (a: SlottedPeer, b: SlottedPeer) -> Bool { a.id == b.id }
}

/// The slots of the peers holding one (key, value), or one key: a single slot stays inline,
/// since many values (names, addresses) are held by one peer each.
enum Posting: Sendable {
    case one(UInt32)
    case many(Set<UInt32>)

    var count: Int {
        switch self {
        case .one: return 1
        case .many(let slots): return slots.count
        }
    }

    mutating func insert(_ slot: UInt32) {
        switch self {
        case .one(let existing):
            if existing != slot { self = .many([existing, slot]) }
        case .many(var slots):
            self = .one(0)  // drops the reference so that the set is mutated in place
            slots.insert(slot)
            self = .many(slots)
        }
    }

    /// Removes `slot`; `false` when the posting is now empty (the caller drops it).
    mutating func remove(_ slot: UInt32) -> Bool {
        switch self {
        case .one(let existing):
            return existing != slot
        case .many(var slots):
            self = .one(0)
            slots.remove(slot)
            if slots.count == 1 {
                self = .one(slots.first!)
            } else {
                self = .many(slots)
            }
            return !slots.isEmpty
        }
    }

    func contains(_ slot: UInt32) -> Bool {
        switch self {
        case .one(let only): return only == slot
        case .many(let slots): return slots.contains(slot)
        }
    }

    func forEach(_ body: (UInt32) -> Void) {
        switch self {
        case .one(let slot): body(slot)
        case .many(let slots): for slot in slots { body(slot) }
        }
    }
}
