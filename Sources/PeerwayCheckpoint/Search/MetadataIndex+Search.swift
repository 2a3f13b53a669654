extension MetadataIndex {
    /// Peers matching `query` in ascending PeerID order, strictly after `after` when given, at
    /// most `limit` (a negative limit counts as 0; the index does not clamp to
    /// `ControlLimits.maximumSearchPage`, the protocol layer does); `more` is true when further
    /// matches exist after the last returned one (with `limit` 0: after `after`).
    ///
    /// How: every query has a positive term (see `CheckpointQuery`), so the index estimates from
    /// its postings how many candidates the query has (a term: its posting sizes, a range summed
    /// over its distinct values; AND: its smallest positive operand; OR: the sum) and how many
    /// matches (AND: operands' selectivities multiplied). Then either
    /// - *enumeration*: walk the candidates (AND: only its most selective operand's, intersected
    ///   with the postings of its other equality and presence operands, the rest checked against
    ///   the peer's stored metadata; OR: each operand's, skipping peers an earlier operand
    ///   matched, so none twice) and keep the `limit + 1` smallest PeerIDs after `after` in a
    ///   bounded max-heap: O(candidates · log limit), no sort of all matches; or
    /// - *ordered scan*, when matches are so many that the next `limit + 1` of them are expected
    ///   within fewer peers than there are candidates (`app=chat`, `*`): walk the peers in PeerID
    ///   order from `after`, checking each (by posting lookups alone when the query has only
    ///   equality and presence terms), for at most as many peers as there are candidates; if
    ///   that budget runs out, enumeration finishes from the last peer looked at. So a search
    ///   never costs much more than twice its enumeration.
    public func search(_ query: CheckpointQuery, after: PeerID?, limit: Int) -> (peers: [PeerID], more: Bool) {
        let root = query.root
        let limit = max(limit, 0)
        guard count > 0 else { return ([], false) }
        // One more than is returned, so that `more` is known.
        let need = min(limit, count) + 1
        var found: [PeerID] = []
        var resume = after

        let estimate = root.isAnchored ? self.estimate(root, cap: count) : nil
        if let estimate, estimate.candidates == 0 { return ([], false) }
        // Postings every match is in, checked before the peer's metadata is fetched.
        guard let required = requiredPostings(root, skipping: nil) else { return ([], false) }
        let expectedScan = Double(need) * Double(count) / max(estimate?.matches ?? 1, 1)
        if estimate == nil || expectedScan <= Double(estimate!.candidates) {
            var budget = estimate?.candidates ?? Int.max
            // Decide by posting lookups rather than metadata (a cache miss or two per peer)
            // when the bitmaps of the query's ranges cost less than the metadata checks.
            var rangeBudget = Int(min(expectedScan * Double(Self.rangeSlotsPerScannedPeer), Double(count)))
            let byPostings = postingPredicate(root, rangeBudget: &rangeBudget)
            let start = after.map { cursor in order.firstPosition { $0.id > cursor } }
                ?? order.firstPosition { _ in true }
            var exhausted = true
            order.forEach(from: start) { peer in
                if budget == 0 { exhausted = false; return false }
                budget -= 1
                resume = peer.id
                let matched: Bool
                if let byPostings {
                    matched = byPostings.matches(peer.slot)
                } else {
                    matched = required.allSatisfy { $0.contains(peer.slot) } && root.matches(metadataBySlot[Int(peer.slot)])
                }
                if matched {
                    found.append(peer.id)
                    if found.count == need { exhausted = false; return false }
                }
                return true
            }
            if exhausted || found.count == need { return finish(found, limit: limit) }
        }

        var heap = PeerHeap(capacity: need - found.count)
        let exact = root.isExact
        // An AND enumerates its most selective operand: intersect with the other operands'
        // postings (hash lookups in small sets) before touching the peer's id or metadata.
        var filters: [Posting] = []
        if !exact, case .and(let operands) = root {
            filters = requiredPostings(root, skipping: mostSelective(operands)) ?? []
        }
        forEachCandidate(root) { slot in
            for posting in filters where !posting.contains(slot) { return }
            let id = ids[Int(slot)]
            if let resume, id <= resume { return }
            guard heap.admits(id) else { return }
            if exact || root.matches(metadataBySlot[Int(slot)]) { heap.insert(id) }
        }
        found += heap.sorted()
        return finish(found, limit: limit)
    }

    /// Slots of prefix or numeric ranges an ordered scan puts in bitmaps per peer it expects to
    /// examine: setting a bit costs about this much less than fetching and checking a peer's
    /// metadata.
    static var rangeSlotsPerScannedPeer: Int { 32 }

    private func finish(_ found: [PeerID], limit: Int) -> (peers: [PeerID], more: Bool) {
        (Array(found.prefix(limit)), found.count > limit)
    }

    // MARK: - Planning

    /// Candidates a node's enumeration yields (an upper bound on its matches, exact for a single
    /// term) and the matches expected. Range sums stop once above `cap`: a larger figure only
    /// tells the planner not to use that operand.
    struct Estimate {
        var candidates: Int
        var matches: Double
    }

    /// Only for anchored nodes (`QueryNode.isAnchored`).
    func estimate(_ node: QueryNode, cap: Int) -> Estimate {
        switch node {
        case .all:
            return Estimate(candidates: count, matches: Double(count))
        case .term(let key, let test):
            guard let entry = keys[key] else { return Estimate(candidates: 0, matches: 0) }
            let n: Int
            switch test {
            case .present:
                n = entry.present.count
            case .equal(let v):
                n = entry.postings[ValueKey(v)]?.count ?? 0
            case .notEqual(let v):
                n = entry.present.count - (entry.postings[ValueKey(v)]?.count ?? 0)
                return Estimate(candidates: entry.present.count, matches: Double(n))
            default:
                var sum = 0
                entry.forEachValue(matching: test) { value in
                    sum += entry.postings[value]!.count
                    return sum <= cap
                }
                n = sum
            }
            return Estimate(candidates: n, matches: Double(n))
        case .and(let operands):
            var best = Int.max
            var selectivity = 1.0
            for operand in operands where operand.isAnchored {
                let e = estimate(operand, cap: min(cap, best))
                best = min(best, e.candidates)
                selectivity *= e.matches / Double(count)
            }
            return Estimate(candidates: best, matches: min(Double(best), selectivity * Double(count)))
        case .or(let operands):
            var sum = 0
            var matches = 0.0
            for operand in operands {
                let e = estimate(operand, cap: cap)
                sum += e.candidates
                matches += e.matches
            }
            return Estimate(candidates: sum, matches: min(matches, Double(count)))
        case .not:
            preconditionFailure("MetadataIndex: estimate of an unanchored node")
        }
    }

    /// The position of the anchored operand of an AND with the fewest candidates.
    func mostSelective(_ operands: [QueryNode]) -> Int? {
        var best: Int?
        var bestCount = Int.max
        for (i, operand) in operands.enumerated() where operand.isAnchored {
            let n = estimate(operand, cap: bestCount).candidates
            if n < bestCount { best = i; bestCount = n }
        }
        return best
    }

    /// The postings every match of `node` is in: those of its equality and presence terms (a
    /// `!=` term's key presence), the node's own or its AND operands' except the one at
    /// `skipping`. `nil` when one of them is empty: nothing matches.
    func requiredPostings(_ node: QueryNode, skipping: Int?) -> [Posting]? {
        var required: [Posting] = []
        let operands: [QueryNode]
        if case .and(let all) = node { operands = all } else { operands = [node] }
        for (i, operand) in operands.enumerated() where i != skipping {
            if case .term(let key, .notEqual) = operand {
                guard let entry = keys[key] else { return nil }
                required.append(.many(entry.present))
            } else if case .some(let posting) = termPosting(operand) {
                guard let posting else { return nil }
                required.append(posting)
            }
        }
        // Smallest first: the likeliest to reject.
        return required.sorted { $0.count < $1.count }
    }

    /// `node` as posting lookups without the peers' metadata: equality and presence terms by
    /// their postings, `!=` as presence less equality, and prefix and numeric ranges by a bitmap
    /// of their slots built here, as long as these ranges hold at most `rangeBudget` slots in
    /// all. `nil` when that budget does not suffice.
    func postingPredicate(_ node: QueryNode, rangeBudget: inout Int) -> PostingPredicate? {
        switch node {
        case .all:
            return .all
        case .term(let key, let test):
            if case .some(let posting) = termPosting(node) { return .posting(posting) }
            guard let entry = keys[key] else { return .posting(nil) }
            if case .notEqual(let v) = test {
                return .and([.posting(.many(entry.present)), .not(.posting(entry.postings[ValueKey(v)]))])
            }
            var size = 0
            let budget = rangeBudget
            entry.forEachValue(matching: test) { value in
                size += entry.postings[value]!.count
                return size <= budget
            }
            guard size <= budget else { return nil }
            rangeBudget -= size
            var bitmap = SlotBitmap(slots: ids.count)
            entry.forEachValue(matching: test) { value in
                entry.postings[value]!.forEach { bitmap.insert($0) }
                return true
            }
            return .bitmap(bitmap)
        case .and(let operands), .or(let operands):
            var parts: [PostingPredicate] = []
            for operand in operands {
                guard let part = postingPredicate(operand, rangeBudget: &rangeBudget) else { return nil }
                parts.append(part)
            }
            if case .and = node { return .and(parts) }
            return .or(parts)
        case .not(let operand):
            return postingPredicate(operand, rangeBudget: &rangeBudget).map { .not($0) }
        }
    }

    /// For an equality or presence term, the posting of exactly its matches (`.some(nil)`:
    /// none); `nil` for any other node.
    func termPosting(_ node: QueryNode) -> Posting?? {
        guard case .term(let key, let test) = node else { return nil }
        switch test {
        case .equal(let v): return .some(keys[key]?.postings[ValueKey(v)])
        case .present: return .some(keys[key].map { .many($0.present) })
        default: return nil
        }
    }

    /// Calls `body` once with every slot that may match `node` (an anchored node): a superset
    /// of the matches, exactly the matches when `node.isExact`.
    func forEachCandidate(_ node: QueryNode, _ body: (UInt32) -> Void) {
        switch node {
        case .all:
            order.forEach(from: order.firstPosition { _ in true }) { peer in
                body(peer.slot)
                return true
            }
        case .term(let key, let test):
            guard let entry = keys[key] else { return }
            switch test {
            case .present, .notEqual:
                for slot in entry.present { body(slot) }
            case .equal(let v):
                entry.postings[ValueKey(v)]?.forEach(body)
            default:
                entry.forEachValue(matching: test) { value in
                    entry.postings[value]!.forEach(body)
                    return true
                }
            }
        case .and(let operands):
            if let best = mostSelective(operands) { forEachCandidate(operands[best], body) }
        case .or(let operands):
            // A candidate is yielded by the first operand it matches: each operand's candidates
            // are checked against it (unless exact) and against the operands before it.
            // Equality and presence operands are tested by posting lookups, the others against
            // the peer's metadata.
            let postings = operands.map { termPosting($0) }
            for (i, operand) in operands.enumerated() {
                let exact = operand.isExact
                forEachCandidate(operand) { slot in
                    var metadata: PeerMetadata?
                    func matches(_ j: Int) -> Bool {
                        if case .some(let posting) = postings[j] { return posting?.contains(slot) ?? false }
                        if metadata == nil { metadata = metadataBySlot[Int(slot)] }
                        return operands[j].matches(metadata!)
                    }
                    if !exact && !matches(i) { return }
                    for earlier in 0..<i where matches(earlier) { return }
                    body(slot)
                }
            }
        case .not:
            preconditionFailure("MetadataIndex: candidates of an unanchored node")
        }
    }
}

extension MetadataIndex.KeyIndex {
    /// Calls `body` with the distinct values a prefix or numeric `test` matches, in order,
    /// while it returns `true`: one binary search, then a walk of the matching range only.
    func forEachValue(matching test: QueryTest, _ body: (ValueKey) -> Bool) {
        func numeric(from start: SortedChunks<NumericValue>.Position, while inRange: (Double) -> Bool) {
            numbers.forEach(from: start) { inRange($0.number) && body($0.value) }
        }
        let first = SortedChunks<NumericValue>.Position(chunk: 0, offset: 0)
        switch test {
        case .prefix(let p):
            let prefix = ValueKey(p)
            values.forEach(from: values.firstPosition { $0 >= prefix }) { $0.hasPrefix(prefix) && body($0) }
        case .greater(let n):
            numeric(from: numbers.firstPosition { $0.number > n }) { _ in true }
        case .greaterOrEqual(let n):
            numeric(from: numbers.firstPosition { $0.number >= n }) { _ in true }
        case .less(let n):
            numeric(from: first) { $0 < n }
        case .lessOrEqual(let n):
            numeric(from: first) { $0 <= n }
        case .equal, .notEqual, .present:
            preconditionFailure("MetadataIndex: not a range test")
        }
    }
}

extension QueryNode {
    /// Whether every match satisfies a positive term the index can enumerate candidates from.
    var isAnchored: Bool {
        switch self {
        case .all, .term: return true
        case .and(let operands): return operands.contains { $0.isAnchored }
        case .or(let operands): return operands.allSatisfy { $0.isAnchored }
        case .not: return false
        }
    }

    /// Whether `MetadataIndex.forEachCandidate` yields exactly the matches (no check needed).
    var isExact: Bool {
        switch self {
        case .all: return true
        case .term(_, let test):
            if case .notEqual = test { return false }
            return true
        case .and, .not: return false
        case .or: return true
        }
    }
}
