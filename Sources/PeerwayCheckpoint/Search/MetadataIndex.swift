/// The live peers' metadata, indexed so that `CheckpointQuery` searches touch the peers that can
/// match rather than every peer. A value type: copies are independent (copy-on-write).
///
/// Layout, chosen to keep the cost per peer small (a checkpoint holds a million peers):
/// - each peer gets a compact `UInt32` slot; postings hold slots, not 16-byte `PeerID`s. Freed
///   slots are reused. `ids` and `metadata` are arrays by slot.
/// - `order`: every peer as (PeerID, slot), sorted by PeerID in `SortedChunks`: the lookup of a
///   peer's slot (no separate dictionary), the ascending result order and the `after` cursor.
/// - per key: equality postings per distinct value; a presence posting; the distinct values
///   sorted by bytes (a `^=` prefix is one contiguous range, found by binary search); the
///   distinct values that parse as finite numbers, sorted by number (a `>`, `>=`, `<`, `<=` is
///   one range). Distinct values whose posting empties are dropped from all three.
///
/// Searches are described on `search(_:after:limit:)`.
public struct MetadataIndex: Sendable {
    /// What the index holds about one key.
    struct KeyIndex: Sendable {
        /// Slots holding each distinct value.
        var postings: [ValueKey: Posting] = [:]
        /// Slots holding the key at all.
        var present: Set<UInt32> = []
        /// The distinct values, in byte order.
        var values = SortedChunks<ValueKey>()
        /// The distinct values that are finite numbers, in numeric order.
        var numbers = SortedChunks<NumericValue>()
    }

    /// Index of every key held by some peer.
    var keys: [String: KeyIndex] = [:]
    /// Every peer with its slot, in PeerID order.
    var order = SortedChunks<SlottedPeer>()
    /// The peer in each slot (meaningless for free slots).
    var ids: [PeerID] = []
    /// The metadata of the peer in each slot (empty for free slots).
    var metadataBySlot: [PeerMetadata] = []
    /// Slots free for reuse.
    var freeSlots: [UInt32] = []

    /// An empty index.
    public init() {}

    /// Peers indexed.
    public var count: Int { order.count }

    /// The metadata indexed for `peer`, or `nil` when the peer is not indexed.
    public func metadata(of peer: PeerID) -> PeerMetadata? {
        slot(of: peer).map { metadataBySlot[Int($0)] }
    }

    /// Indexes `peer` with `metadata`, replacing what was indexed for it before.
    public mutating func insert(_ peer: PeerID, metadata: PeerMetadata) {
        if let slot = slot(of: peer) {
            let old = metadataBySlot[Int(slot)]
            if old == metadata { return }
            unindex(slot: slot, old)
            metadataBySlot[Int(slot)] = metadata
            index(slot: slot, metadata)
            return
        }
        let slot: UInt32
        if let free = freeSlots.popLast() {
            slot = free
            ids[Int(slot)] = peer
            metadataBySlot[Int(slot)] = metadata
        } else {
            precondition(ids.count < Int(UInt32.max), "MetadataIndex: more than 2^32 - 1 peers")
            slot = UInt32(ids.count)
            ids.append(peer)
            metadataBySlot.append(metadata)
        }
        order.insert(SlottedPeer(id: peer, slot: slot))
        index(slot: slot, metadata)
    }

    /// Removes `peer` and its metadata; nothing happens when it is not indexed.
    public mutating func remove(_ peer: PeerID) {
        guard let slot = slot(of: peer) else { return }
        unindex(slot: slot, metadataBySlot[Int(slot)])
        order.remove(SlottedPeer(id: peer, slot: slot))
        metadataBySlot[Int(slot)] = PeerMetadata()
        if order.isEmpty {
            self = MetadataIndex()  // the last peer left: give all memory back
        } else if Int(slot) == ids.count - 1 {
            ids.removeLast()
            metadataBySlot.removeLast()
        } else {
            freeSlots.append(slot)
        }
    }

    // MARK: - Maintenance

    func slot(of peer: PeerID) -> UInt32? {
        order.member(equalTo: SlottedPeer(id: peer, slot: 0))?.slot
    }

    private mutating func index(slot: UInt32, _ metadata: PeerMetadata) {
        for (key, text) in metadata {
            let value = ValueKey(text)
            modifyKey(key) { entry in
                entry.present.insert(slot)
                if entry.postings[value]?.insert(slot) == nil {
                    entry.postings[value] = .one(slot)
                    entry.values.insert(value)
                    if let number = SearchValue.number(text) {
                        entry.numbers.insert(NumericValue(number: number, value: value))
                    }
                }
            }
        }
    }

    private mutating func unindex(slot: UInt32, _ metadata: PeerMetadata) {
        for (key, text) in metadata {
            let value = ValueKey(text)
            var keyEmpty = false
            modifyKey(key) { entry in
                entry.present.remove(slot)
                if entry.postings[value]?.remove(slot) == false {
                    entry.postings[value] = nil
                    entry.values.remove(value)
                    if let number = SearchValue.number(text) {
                        entry.numbers.remove(NumericValue(number: number, value: value))
                    }
                }
                keyEmpty = entry.present.isEmpty
            }
            if keyEmpty { keys[key] = nil }
        }
    }

    /// Mutates the entry of `key` in place (creating it when absent).
    private mutating func modifyKey(_ key: String, _ body: (inout KeyIndex) -> Void) {
        body(&keys[key, default: KeyIndex()])
    }

    // MARK: - Consistency (tests)

    /// Checks every structure against the stored metadata; the first inconsistency found, or
    /// `nil`. Linear in the size of the index: for tests.
    func inconsistency() -> String? {
        guard order.count + freeSlots.count == ids.count, ids.count == metadataBySlot.count else {
            return "slot table: \(order.count) peers + \(freeSlots.count) free != \(ids.count) slots"
        }
        var expected: [String: [ValueKey: Set<UInt32>]] = [:]
        for peer in order.elements {
            guard ids[Int(peer.slot)] == peer.id else { return "slot \(peer.slot) holds another id" }
            for (key, text) in metadataBySlot[Int(peer.slot)] {
                expected[key, default: [:]][ValueKey(text), default: []].insert(peer.slot)
            }
        }
        guard Set(expected.keys) == Set(keys.keys) else { return "keys differ" }
        for (key, values) in expected {
            let entry = keys[key]!
            guard entry.present == values.values.reduce(into: Set<UInt32>(), { $0.formUnion($1) }) else {
                return "presence of \(key) differs"
            }
            guard entry.postings.count == values.count else { return "postings of \(key) differ" }
            for (value, slots) in values {
                var stored = Set<UInt32>()
                entry.postings[value]?.forEach { stored.insert($0) }
                guard stored == slots else { return "posting \(key)=\(value.text) differs" }
            }
            guard entry.values.elements == values.keys.sorted() else { return "distinct values of \(key) differ" }
            let numbers = values.keys.compactMap { v in SearchValue.number(v.text).map { NumericValue(number: $0, value: v) } }
            guard entry.numbers.elements == numbers.sorted() else { return "numeric values of \(key) differ" }
        }
        return nil
    }
}
