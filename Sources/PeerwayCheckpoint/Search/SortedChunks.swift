/// A sorted set kept as a list of sorted chunks of at most `chunkCapacity` elements: insertion
/// and removal move at most one chunk's elements (plus, on a split or a merge, the list of
/// chunks), so a million distinct elements stay cheap to maintain, unlike one sorted array.
///
/// Used for the index's distinct values per key (prefix ranges), numeric values per key
/// (numeric ranges) and all peers in PeerID order (cursors).
struct SortedChunks<Element: Comparable & Sendable>: Sendable {
    /// Most elements of one chunk; a full chunk splits in two.
    static var chunkCapacity: Int { 512 }
    /// A chunk this small merges with its successor when both fit in one.
    static var mergeThreshold: Int { chunkCapacity / 4 }

    /// Non-empty sorted chunks, each wholly before the next.
    private var chunks: [[Element]] = []
    /// Elements in all chunks.
    private(set) var count = 0

    /// Where an element is, or would go.
    struct Position {
        var chunk: Int
        var offset: Int
    }

    var isEmpty: Bool { count == 0 }

    /// The position of the first element for which `isAfter` is true; `isAfter` must be false
    /// for a prefix of the elements and true for the rest.
    func firstPosition(where isAfter: (Element) -> Bool) -> Position {
        var low = 0, high = chunks.count
        while low < high {
            let mid = (low + high) / 2
            if isAfter(chunks[mid][chunks[mid].count - 1]) { high = mid } else { low = mid + 1 }
        }
        guard low < chunks.count else { return Position(chunk: chunks.count, offset: 0) }
        return Position(chunk: low, offset: Self.partition(chunks[low], isAfter))
    }

    private static func partition(_ chunk: [Element], _ isAfter: (Element) -> Bool) -> Int {
        var low = 0, high = chunk.count
        while low < high {
            let mid = (low + high) / 2
            if isAfter(chunk[mid]) { high = mid } else { low = mid + 1 }
        }
        return low
    }

    /// The stored element equal to `element`, if any.
    func member(equalTo element: Element) -> Element? {
        let at = firstPosition { $0 >= element }
        guard at.chunk < chunks.count, chunks[at.chunk][at.offset] == element else { return nil }
        return chunks[at.chunk][at.offset]
    }

    /// Calls `body` on the elements from `start` in order while it returns `true`.
    func forEach(from start: Position, _ body: (Element) -> Bool) {
        var chunk = start.chunk, offset = start.offset
        while chunk < chunks.count {
            let elements = chunks[chunk]
            while offset < elements.count {
                if !body(elements[offset]) { return }
                offset += 1
            }
            chunk += 1
            offset = 0
        }
    }

    /// Inserts `element`; `false` when an equal one is already there (nothing changes).
    @discardableResult
    mutating func insert(_ element: Element) -> Bool {
        guard !chunks.isEmpty else {
            chunks = [[element]]
            count = 1
            return true
        }
        var at = firstPosition { $0 >= element }
        if at.chunk == chunks.count {
            at = Position(chunk: chunks.count - 1, offset: chunks[chunks.count - 1].count)
        } else if chunks[at.chunk][at.offset] == element {
            return false
        }
        chunks[at.chunk].insert(element, at: at.offset)
        count += 1
        if chunks[at.chunk].count > Self.chunkCapacity {
            // Two fresh halves with room to fill up to the capacity without reallocating (a
            // shrunk array would keep the doubled allocation its last insertion made).
            let full = chunks[at.chunk], half = full.count / 2
            var lower: [Element] = [], upper: [Element] = []
            lower.reserveCapacity(Self.chunkCapacity + 1)
            upper.reserveCapacity(Self.chunkCapacity + 1)
            lower.append(contentsOf: full[..<half])
            upper.append(contentsOf: full[half...])
            chunks[at.chunk] = lower
            chunks.insert(upper, at: at.chunk + 1)
        }
        return true
    }

    /// Removes the element equal to `element`; `false` when there is none.
    @discardableResult
    mutating func remove(_ element: Element) -> Bool {
        let at = firstPosition { $0 >= element }
        guard at.chunk < chunks.count, chunks[at.chunk][at.offset] == element else { return false }
        chunks[at.chunk].remove(at: at.offset)
        count -= 1
        if chunks[at.chunk].isEmpty {
            chunks.remove(at: at.chunk)
        } else if chunks[at.chunk].count < Self.mergeThreshold, at.chunk + 1 < chunks.count,
                  chunks[at.chunk].count + chunks[at.chunk + 1].count <= Self.chunkCapacity {
            let next = chunks.remove(at: at.chunk + 1)
            chunks[at.chunk].append(contentsOf: next)
        }
        return true
    }

    /// All elements in order (for tests and consistency checks).
    var elements: [Element] { chunks.flatMap { $0 } }
}
