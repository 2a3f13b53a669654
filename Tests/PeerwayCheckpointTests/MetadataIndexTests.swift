import PeerwaySTUN
import Testing
@testable import PeerwayCheckpoint

@Suite("Metadata index")
struct MetadataIndexTests {
    // MARK: - Helpers

    private static func randomID(_ rng: inout STUNSeededRandom) -> PeerID {
        PeerID(high: rng.next(), low: rng.next())
    }

    private static let keys = ["app", "region", "score", "name", "and", "x.y"]
    private static let values = ["chat", "game", "eu-1", "eu-2", "eu-10", "us-1", "e", "eu", "", "5", "5.0", "-3",
                                 "1e2", "0", "-0", "7.25", "100", "inf", "nan", "abc", "ab", "a b", "\u{E9}", "e\u{301}",
                                 "\"q\"", "x\\y", "AND"]

    private static func randomMetadata(_ rng: inout STUNSeededRandom) -> PeerMetadata {
        var dictionary: [String: String] = [:]
        for _ in 0..<Int.random(in: 0...4, using: &rng) {
            let key = keys.randomElement(using: &rng)!
            dictionary[key] = Bool.random(using: &rng)
                ? values.randomElement(using: &rng)!
                : String(Int.random(in: -20...120, using: &rng))
        }
        return try! PeerMetadata(dictionary)
    }

    private static func quoted(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            if scalar == "\\" || scalar == "\"" { out.unicodeScalars.append("\\") }
            out.unicodeScalars.append(scalar)
        }
        return out + "\""
    }

    private static func randomTerm(_ rng: inout STUNSeededRandom) -> String {
        let key = keys.randomElement(using: &rng)!
        let value = values.randomElement(using: &rng)!
        let number = [String(Int.random(in: -25...125, using: &rng)), "5", "-0", "7.25", "1e2", "99.5"]
            .randomElement(using: &rng)!
        switch Int.random(in: 0..<10, using: &rng) {
        case 0: return "\(key)=\(quoted(value))"
        case 1: return "\(key)!=\(quoted(value))"
        case 2: return "\(key)^=\(quoted(String(decoding: value.utf8.prefix(Int.random(in: 0...2, using: &rng)), as: UTF8.self)))"
        case 3: return "\(key)>\(number)"
        case 4: return "\(key)>=\(number)"
        case 5: return "\(key)<\(number)"
        case 6: return "\(key)<=\(number)"
        case 7: return "\(key)?"
        case 8: return Int.random(in: 0..<4, using: &rng) == 0 ? "*" : "\(key)=\(String(Int.random(in: -20...120, using: &rng)))"
        default: return "\(key)=\(quoted(value))"
        }
    }

    private static func randomQueryText(_ rng: inout STUNSeededRandom, depth: Int = 0) -> String {
        let choice = depth >= 3 ? 0 : Int.random(in: 0..<6, using: &rng)
        switch choice {
        case 0, 1:
            return randomTerm(&rng)
        case 2, 3:
            let operands = (0..<Int.random(in: 2...3, using: &rng)).map { _ in randomQueryText(&rng, depth: depth + 1) }
            return "(" + operands.joined(separator: Bool.random(using: &rng) ? " AND " : " && ") + ")"
        case 4:
            let operands = (0..<Int.random(in: 2...3, using: &rng)).map { _ in randomQueryText(&rng, depth: depth + 1) }
            return "(" + operands.joined(separator: Bool.random(using: &rng) ? " or " : " || ") + ")"
        default:
            return "(" + randomTerm(&rng) + " AND NOT " + randomQueryText(&rng, depth: depth + 1) + ")"
        }
    }

    /// Every page of `query` with `limit` equals the brute-force answer, with `more` set on all
    /// pages but the last.
    private static func checkPaging(_ index: MetadataIndex, _ population: [PeerID: PeerMetadata],
                                    _ query: CheckpointQuery, limit: Int) {
        let expected = population.filter { query.matches($0.value) }.keys.sorted()
        var collected: [PeerID] = []
        var after: PeerID?
        var pages = 0
        while true {
            let page = index.search(query, after: after, limit: limit)
            #expect(page.peers.count <= limit)
            collected += page.peers
            pages += 1
            if !page.more { break }
            #expect(page.peers.count == limit, "\(query): a page with more must be full")
            after = page.peers.last
            if pages > expected.count + 1 { break }
        }
        #expect(collected == expected, "\(query) limit \(limit): \(collected.count) found, \(expected.count) expected")
    }

    // MARK: - Property test

    @Test func searchEqualsBruteForceThroughChurn() throws {
        var rng = STUNSeededRandom(seed: 42)
        var index = MetadataIndex()
        var population: [PeerID: PeerMetadata] = [:]
        for _ in 0..<3000 {
            let id = Self.randomID(&rng), metadata = Self.randomMetadata(&rng)
            index.insert(id, metadata: metadata)
            population[id] = metadata
        }
        #expect(index.count == population.count)
        #expect(index.inconsistency() == nil)

        var queries: [CheckpointQuery] = []
        while queries.count < 120 {
            let text = Self.randomQueryText(&rng)
            let query: CheckpointQuery
            do {
                query = try CheckpointQuery(parsing: text)
            } catch {
                #expect(error.kind == .noPositiveTerm, "\(text): \(error)")
                continue
            }
            queries.append(query)
        }
        for term in ["app=chat", "score>50", "name^=e", "region^=\"\"", "*", "score<=-0", "x.y!=abc",
                     "score>=5 AND score<=5", "app=chat OR app=game OR region?", "* AND NOT score<0"] {
            queries.append(try CheckpointQuery(parsing: term))
        }

        for round in 0..<4 {
            for (i, query) in queries.enumerated() {
                let limit = [1, 3, 7, 20, 100, 5000][(i + round) % 6]
                Self.checkPaging(index, population, query, limit: limit)
                // A cursor that is no indexed peer.
                let cursor = Self.randomID(&rng)
                let expected = population.filter { $0.key > cursor && query.matches($0.value) }.keys.sorted()
                let page = index.search(query, after: cursor, limit: 10)
                #expect(page.peers == Array(expected.prefix(10)))
                #expect(page.more == (expected.count > 10))
            }
            // Churn: remove a third, change a third, add new peers and re-insert some removed ones.
            let ids = population.keys.sorted()
            var removed: [PeerID] = []
            for id in ids {
                switch Int.random(in: 0..<3, using: &rng) {
                case 0:
                    index.remove(id)
                    population[id] = nil
                    removed.append(id)
                case 1:
                    let metadata = Self.randomMetadata(&rng)
                    index.insert(id, metadata: metadata)
                    population[id] = metadata
                default:
                    break
                }
            }
            for id in removed.prefix(removed.count / 2) {
                let metadata = Self.randomMetadata(&rng)
                index.insert(id, metadata: metadata)
                population[id] = metadata
            }
            for _ in 0..<300 {
                let id = Self.randomID(&rng), metadata = Self.randomMetadata(&rng)
                index.insert(id, metadata: metadata)
                population[id] = metadata
            }
            index.remove(Self.randomID(&rng))  // not indexed: no effect
            #expect(index.count == population.count, "round \(round)")
            #expect(index.inconsistency() == nil, "round \(round)")
            for (id, metadata) in population.prefix(50) {
                #expect(index.metadata(of: id) == metadata)
            }
            for id in removed.suffix(20) where population[id] == nil {
                #expect(index.metadata(of: id) == nil)
            }
        }
    }

    @Test func emptiedValuesLeaveNoTrace() throws {
        var rng = STUNSeededRandom(seed: 7)
        var index = MetadataIndex()
        var ids: [PeerID] = []
        for n in 0..<2000 {
            let id = Self.randomID(&rng)
            ids.append(id)
            index.insert(id, metadata: try PeerMetadata(["name": "peer-\(n)", "score": "\(n)", "app": "chat"]))
        }
        #expect(index.keys["name"]?.values.count == 2000)
        #expect(index.keys["score"]?.numbers.count == 2000)
        for id in ids.dropFirst() { index.remove(id) }
        #expect(index.inconsistency() == nil)
        #expect(index.keys["name"]?.values.elements == [ValueKey("peer-0")])
        #expect(index.keys["score"]?.numbers.count == 1)
        index.insert(ids[0], metadata: try PeerMetadata(["other": "1"]))
        #expect(index.keys.keys.sorted() == ["other"])
        index.remove(ids[0])
        #expect(index.count == 0)
        #expect(index.keys.isEmpty)
        #expect(index.ids.isEmpty)
        #expect(index.search(try CheckpointQuery(parsing: "*"), after: nil, limit: 10) == ([], false))
    }

    // MARK: - Paging edges

    private static func sampleIndex(_ n: Int) throws -> (MetadataIndex, [PeerID]) {
        var rng = STUNSeededRandom(seed: 3)
        var index = MetadataIndex()
        var ids: [PeerID] = []
        for i in 0..<n {
            let id = randomID(&rng)
            ids.append(id)
            index.insert(id, metadata: try PeerMetadata(["app": "chat", "even": i % 2 == 0 ? "yes" : "no"]))
        }
        return (index, ids.sorted())
    }

    @Test func pagingEdges() throws {
        let (index, ids) = try Self.sampleIndex(50)
        let all = try CheckpointQuery(parsing: "app=chat")
        let none = try CheckpointQuery(parsing: "app=game")

        #expect(index.search(all, after: nil, limit: 0) == ([], true))
        #expect(index.search(all, after: ids.last, limit: 0) == ([], false))
        #expect(index.search(all, after: nil, limit: -5) == ([], true))
        #expect(index.search(none, after: nil, limit: 0) == ([], false))
        #expect(index.search(none, after: nil, limit: 10) == ([], false))
        #expect(index.search(all, after: ids.last, limit: 10) == ([], false))
        #expect(index.search(all, after: PeerID(high: .max, low: .max), limit: 10) == ([], false))
        #expect(index.search(all, after: PeerID(high: 0, low: 0), limit: 3) == (Array(ids.prefix(3)), true))
        #expect(index.search(all, after: nil, limit: 50) == (ids, false))
        #expect(index.search(all, after: nil, limit: 49) == (Array(ids.prefix(49)), true))
        #expect(index.search(all, after: nil, limit: .max) == (ids, false))
        #expect(index.search(all, after: ids[47], limit: 2) == (Array(ids[48...]), false))
        #expect(index.search(all, after: ids[46], limit: 2) == (Array(ids[47...48]), true))
        #expect(MetadataIndex().search(all, after: nil, limit: 10) == ([], false))
    }

    @Test func replacingAndRemoving() throws {
        var index = MetadataIndex()
        let a = PeerID(high: 1, low: 0), b = PeerID(high: 2, low: 0)
        index.insert(a, metadata: try PeerMetadata(["app": "chat", "age": "30"]))
        index.insert(b, metadata: try PeerMetadata(["app": "chat", "age": "40"]))
        let over35 = try CheckpointQuery(parsing: "age>35")
        #expect(index.search(over35, after: nil, limit: 10) == ([b], false))
        index.insert(a, metadata: try PeerMetadata(["app": "chat", "age": "36"]))
        #expect(index.count == 2)
        #expect(index.search(over35, after: nil, limit: 10) == ([a, b], false))
        let copy = index
        index.remove(b)
        index.remove(b)
        #expect(index.search(over35, after: nil, limit: 10) == ([a], false))
        #expect(copy.search(over35, after: nil, limit: 10) == ([a, b], false), "value semantics")
        #expect(index.metadata(of: b) == nil)
        #expect(copy.metadata(of: b) == (try PeerMetadata(["app": "chat", "age": "40"])))
        #expect(index.inconsistency() == nil)
        #expect(copy.inconsistency() == nil)
    }

    /// Matches clustered at the high end of the PeerID order: the ordered scan runs out of its
    /// budget and enumeration finishes the page.
    @Test func orderedScanFallsBackToEnumeration() throws {
        var rng = STUNSeededRandom(seed: 11)
        var ids = (0..<2000).map { _ in Self.randomID(&rng) }
        ids.sort()
        var index = MetadataIndex()
        var population: [PeerID: PeerMetadata] = [:]
        for (i, id) in ids.enumerated() {
            let metadata: PeerMetadata
            switch i {
            case ..<500: metadata = try PeerMetadata(["tag": "a", "x": "1"])
            case ..<1500: metadata = try PeerMetadata(["other": "1"])
            default: metadata = try PeerMetadata(["tag": "a"])
            }
            index.insert(id, metadata: metadata)
            population[id] = metadata
        }
        let query = try CheckpointQuery(parsing: "tag? AND NOT x=1")
        #expect(index.search(query, after: nil, limit: 5) == (Array(ids[1500..<1505]), true))
        for limit in [1, 20, 499, 500, 501] {
            Self.checkPaging(index, population, query, limit: limit)
        }
    }

    @Test func sortedChunksStayOrdered() {
        var rng = STUNSeededRandom(seed: 5)
        var chunks = SortedChunks<Int>()
        var reference = Set<Int>()
        for _ in 0..<20_000 {
            let x = Int.random(in: 0..<5000, using: &rng)
            if Bool.random(using: &rng) {
                #expect(chunks.insert(x) == reference.insert(x).inserted)
            } else {
                #expect(chunks.remove(x) == (reference.remove(x) != nil))
            }
        }
        #expect(chunks.elements == reference.sorted())
        #expect(chunks.count == reference.count)
        let from = chunks.firstPosition { $0 >= 2500 }
        var seen: [Int] = []
        chunks.forEach(from: from) { seen.append($0); return $0 < 3000 }
        #expect(seen == reference.filter { $0 >= 2500 && $0 < 3000 }.sorted() + (reference.filter { $0 >= 3000 }.min().map { [$0] } ?? []))
    }
}
