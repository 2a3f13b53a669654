import Foundation
import PeerwayCheckpoint
import Testing
@testable import PeerwayIndex

/// Conformance: metadata search against the CHECKPOINT's reference semantics.
extension IndexStoreConformanceTests {
    // MARK: Search

    /// Metadata chosen so that every operator has matches, non-matches and edge cases.
    static let people: [(String, [String: String])] = [
        ("ann", ["city": "paris", "age": "31", "lang": "fr", "role": "dev"]),
        ("ben", ["city": "paris", "age": "45", "role": "ops"]),
        ("cat", ["city": "pari", "age": "31.0", "lang": "en"]),
        ("dan", ["city": "parisienne", "age": "-2.5"]),
        ("eve", ["city": "lyon", "age": "thirty", "lang": "fr"]),
        ("fay", ["city": "Paris", "age": "1e2"]),
        ("gus", ["city": "zürich", "age": "0x10", "tag": "a b\"c"]),
        ("hal", ["lang": "de"]),
        ("ivy", [:]),
        ("jon", ["city": "paris\u{10FFFF}x", "age": "30"]),
    ]

    static let queries: [String] = [
        "*", "city=paris", "city!=paris", "city^=pari", "city^=paris", "city^=\"zü\"", "city^=Z",
        "age>30", "age>=31", "age<31", "age<=31", "age>-3", "age<0", "age>=100", "age=31", "age?", "lang?",
        "city=paris AND age>40", "city=paris OR lang=fr", "lang? AND NOT lang=fr", "* AND NOT city?",
        "(city^=par OR lang=de) AND NOT (age<31 OR role=ops)", "tag=\"a b\\\"c\"", "city=nowhere", "nokey?",
        "city=paris AND city!=paris", "(lang=fr OR lang=en) AND age>=31 AND NOT role?",
    ]

    @Test(arguments: StoreKind.allCases)
    func searchAgreesWithTheCheckpointSemantics(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            var byName: [String: IndexUser] = [:]
            for (name, metadata) in Self.people {
                byName[name] = try await store.createUser(name: name, password: "password1", metadata: metadata)
            }
            for text in Self.queries {
                let query = try IndexQuery(parsing: text)
                let expected = Self.people.filter { query.checkpointQuery.matches(try! PeerMetadata($0.1)) }.map(\.0)
                let found = try await store.searchUsers(query, after: nil, limit: 100).items.map(\.name)
                #expect(found == expected, "query \(text)")
            }
            // Spot checks, so that the reference itself is what we think.
            let paris = try await store.searchUsers(IndexQuery(parsing: "city=paris"), after: nil, limit: nil).items.map(\.name)
            #expect(paris == ["ann", "ben"])
            let prefix = try await store.searchUsers(IndexQuery(parsing: "city^=paris"), after: nil, limit: nil).items.map(\.name)
            #expect(prefix == ["ann", "ben", "dan", "jon"])
            let older = try await store.searchUsers(IndexQuery(parsing: "age>=31"), after: nil, limit: nil).items.map(\.name)
            #expect(older == ["ann", "ben", "cat", "fay"])
            // Refusals of the language, as IndexError.
            for bad in ["", "city=", "NOT city=paris", "age>abc", "Bad=1", "(a=1"] {
                do {
                    _ = try IndexQuery(parsing: bad)
                    Issue.record("query '\(bad)' was accepted")
                } catch {
                    guard case IndexError.invalidQuery(let why)? = error as? IndexError else { Issue.record("unexpected \(error)"); continue }
                    #expect(why.hasPrefix("query: "))
                }
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func networksAreSearchedByTheirMetadata(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let alice = try await store.createUser(name: "alice", password: "password1", metadata: ["game": "quake"])
            let a = try await store.createNetwork(name: "net-a", owner: alice.id, access: .open, metadata: ["game": "quake", "slots": "8"], by: .user(alice.id))
            let b = try await store.createNetwork(name: "net-b", owner: alice.id, access: .inviteOnly, metadata: ["game": "doom", "slots": "16"], by: .user(alice.id))
            _ = try await store.createNetwork(name: "net-c", owner: alice.id, access: .open, metadata: [:], by: .user(alice.id))
            #expect(try await store.searchNetworks(IndexQuery(parsing: "game=quake"), after: nil, limit: nil).items == [a])
            #expect(try await store.searchNetworks(IndexQuery(parsing: "slots>8"), after: nil, limit: nil).items == [b])
            #expect(try await store.searchNetworks(IndexQuery(parsing: "game?"), after: nil, limit: nil).items.map(\.id) == [a.id, b.id])
            #expect(try await store.searchNetworks(IndexQuery(parsing: "game=doom OR slots<10"), after: nil, limit: nil).items == [a, b])
            #expect(try await store.searchNetworks(IndexQuery(parsing: "slots>=8 AND slots<16"), after: nil, limit: nil).items == [a])
            #expect(try await store.searchNetworks(IndexQuery(parsing: "game^=qu OR game^=do"), after: nil, limit: 1).items == [a])
            #expect(try await store.listNetworks(after: nil, limit: nil).items.map(\.name) == ["net-a", "net-b", "net-c"])
            // Users and networks have separate metadata.
            #expect(try await store.searchUsers(IndexQuery(parsing: "slots?"), after: nil, limit: nil).items.isEmpty)
        }
    }

    // MARK: Search plans

    /// Metadata of user `i` of `planUsers`: enough users that every way a search reads its
    /// candidates is taken (counts reach `IndexQuery.collectLimit`), with values whose order by
    /// text and by number differ.
    static func planMetadata(_ i: Int) -> [String: String] {
        var metadata = ["all": "yes", "n": "\(i)", "k": "\(i % 10)", "h": "h\(i)",
                        "g": i % 7 == 0 ? "rare" : (i % 2 == 0 ? "even" : "odd")]
        if i % 50 == 0 { metadata["s"] = i % 100 == 0 ? "x" : "y\(i)" }
        if i % 13 == 0 { metadata["k"] = "ten" }  // a value that is not a number
        return metadata
    }

    static let planUsers = 2_600

    /// Query shapes and the plan their first branch takes on `planUsers` users (nil: not checked).
    static let planQueries: [(String, IndexEngine.BranchPlan?)] = [
        ("all=yes", .walk(.init(key: "all", tests: [.equal("yes")], covers: [0]))),
        ("g=rare", nil),
        ("k>=3 AND k<4", nil),                                   // one range of two bounds, collected
        ("k>=1", nil),                                           // many: the primary key walked in order
        ("k>2 AND k<=2", .empty),
        ("n>=100 AND n<150", nil),
        ("n>=10 AND n<=2000 AND g=odd", nil),
        ("g=even AND k>=3 AND k<4", nil),
        ("h^=h1", nil),                                          // 1,111 by prefix, collected
        ("h^=h", nil),                                           // all by prefix, walked
        ("h^=h1 AND g=even", nil),
        ("h^=h25 AND NOT k<5", nil),
        ("s?", nil), ("s? AND NOT g=rare", nil), ("s!=x", nil), ("k!=3 AND k?", nil),
        ("g=rare OR k>=9", nil), ("g=rare OR s?", nil), ("h^=h12 OR n<5 OR g=nothing", nil),
        ("(g=rare OR g=even) AND k<2", nil), ("* AND NOT g=even", .scan), ("all=yes AND NOT (k<5 OR g=rare)", nil),
        ("g=rare OR (* AND NOT all=yes)", nil), ("n>2590 OR n<3", nil), ("n<0", .empty), ("g=nothing", nil),
        ("k>=2 AND k<=2.5 AND n>1000", nil), ("n>=0 AND g=odd AND k>=5", nil), ("n>=1e3 AND n<1.1e3", nil),
    ]

    @Test(arguments: StoreKind.allCases)
    func searchPlansAgreeWithTheReferenceAcrossPages(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let record = try PasswordHasher.testing.record(for: "password1")
            var people: [(id: UserID, metadata: PeerMetadata)] = []
            for start in stride(from: 0, to: Self.planUsers, by: 1000) {
                let batch = (start..<min(start + 1000, Self.planUsers)).map { (name: "plan\($0)", password: record, metadata: Self.planMetadata($0)) }
                _ = try await store.importUsers(batch)
            }
            var cursor: IndexCursor?
            repeat {
                let page = try await store.listUsers(after: cursor, limit: 1000)
                people += page.items.map { ($0.id, $0.metadata) }
                cursor = page.next
            } while cursor != nil
            #expect(people.count == Self.planUsers)
            try await store.analyze()

            for (text, plan) in Self.planQueries {
                let query = try IndexQuery(parsing: text)
                let expected = people.filter { query.checkpointQuery.matches($0.metadata) }.map(\.id)
                // Every page of the largest size, in order, each but the last full and with a cursor.
                var found: [UserID] = []
                var pages = 0
                cursor = nil
                repeat {
                    let page = try await store.searchUsers(query, after: cursor, limit: 100)
                    found += page.items.map(\.id)
                    if page.next != nil { #expect(page.items.count == 100, "query \(text)") }
                    cursor = page.next.flatMap { IndexCursor($0.description) }
                    pages += 1
                } while cursor != nil && pages <= Self.planUsers / 100 + 1
                #expect(found == expected, "query \(text): \(found.count) found, \(expected.count) expected")
                #expect(pages == max(1, (expected.count + 99) / 100), "query \(text)")
                // Small pages: the first three, and the matches stored after a cursor in the middle.
                var small: [UserID] = []
                cursor = nil
                for _ in 0..<3 {
                    let page = try await store.searchUsers(query, after: cursor, limit: 7)
                    small += page.items.map(\.id)
                    cursor = page.next
                    if cursor == nil { break }
                }
                #expect(small == Array(expected.prefix(21)), "query \(text), pages of 7")
                if let middle = expected.dropFirst(expected.count / 2).first {
                    let page = try await store.searchUsers(query, after: IndexCursor([middle.rawValue]), limit: 7)
                    #expect(page.items.map(\.id) == Array(expected.drop { $0 <= middle }.prefix(7)), "query \(text), after the middle")
                }
                if let plan {
                    let chosen = try await store.read { engine, db in
                        try engine.plan(db, entity: .users, branches: query.branches)
                    }
                    #expect(chosen.first == plan, "query \(text)")
                }
            }

            // The plans each way of reading candidates takes, as the counts decide.
            func plans(_ text: String) async throws -> [String] {
                let query = try IndexQuery(parsing: text)
                return try await store.read { engine, db in
                    try engine.plan(db, entity: .users, branches: query.branches).map { plan in
                        switch plan {
                        case .empty: return "empty"
                        case .walk: return "walk"
                        case .collect: return "collect"
                        case .ownerWalk: return "ownerWalk"
                        case .scan: return "scan"
                        }
                    }
                }
            }
            #expect(try await plans("g=rare") == ["walk"])
            #expect(try await plans("k>=3 AND k<4") == ["collect"])
            #expect(try await plans("k>=1") == ["ownerWalk"])
            #expect(try await plans("h^=h1") == ["collect"])
            #expect(try await plans("h^=h") == ["ownerWalk"])
            #expect(try await plans("h^=h1 AND g=even") == ["collect"])
            #expect(try await plans("n>=10 AND n<=2000 AND g=odd") == ["walk"])
            #expect(try await plans("s?") == ["collect"])
            #expect(try await plans("g=rare OR s? OR n<0") == ["walk", "collect", "empty"])
            #expect(try await plans("g=rare OR (* AND NOT all=yes)") == ["walk", "scan"])
        }
    }
}
