// Small structures of a search in progress (see `MetadataIndex.search(_:after:limit:)`).

/// A query resolved to the postings of its terms, evaluated per slot without the metadata.
indirect enum PostingPredicate {
    case all
    /// `nil`: a term nobody matches.
    case posting(Posting?)
    /// The slots of a range term.
    case bitmap(SlotBitmap)
    case and([PostingPredicate])
    case or([PostingPredicate])
    case not(PostingPredicate)

    func matches(_ slot: UInt32) -> Bool {
        switch self {
        case .all: return true
        case .posting(let posting): return posting?.contains(slot) ?? false
        case .bitmap(let bitmap): return bitmap.contains(slot)
        case .and(let parts): return parts.allSatisfy { $0.matches(slot) }
        case .or(let parts): return parts.contains { $0.matches(slot) }
        case .not(let part): return !part.matches(slot)
        }
    }
}

/// A set of slots as one bit each.
struct SlotBitmap {
    private var words: [UInt64]

    init(slots: Int) {
        words = Array(repeating: 0, count: (slots + 63) / 64)
    }

    mutating func insert(_ slot: UInt32) {
        words[Int(slot >> 6)] |= 1 << UInt64(slot & 63)
    }

    func contains(_ slot: UInt32) -> Bool {
        words[Int(slot >> 6)] & (1 << UInt64(slot & 63)) != 0
    }
}

/// The `capacity` smallest PeerIDs offered, kept in a max-heap so that a larger one is turned
/// away with one comparison.
struct PeerHeap {
    let capacity: Int
    private var items: [PeerID] = []

    init(capacity: Int) {
        self.capacity = capacity
        items.reserveCapacity(capacity)
    }

    /// Whether `id` would be kept.
    func admits(_ id: PeerID) -> Bool {
        items.count < capacity || id < items[0]
    }

    /// Keeps `id`, dropping the largest when full; `id` must be admitted.
    mutating func insert(_ id: PeerID) {
        if items.count < capacity {
            items.append(id)
            var child = items.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard items[parent] < items[child] else { break }
                items.swapAt(parent, child)
                child = parent
            }
        } else {
            items[0] = id
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var largest = parent
                if left < items.count, items[largest] < items[left] { largest = left }
                if right < items.count, items[largest] < items[right] { largest = right }
                if largest == parent { break }
                items.swapAt(parent, largest)
                parent = largest
            }
        }
    }

    func sorted() -> [PeerID] { items.sorted() }
}
