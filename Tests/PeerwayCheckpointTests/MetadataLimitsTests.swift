import PeerwayCheckpoint
import Testing

@Suite("PeerMetadata limits")
struct MetadataLimitsTests {
    @Test("16 entries accepted, 17 refused")
    func entries() throws {
        let sixteen = Dictionary(uniqueKeysWithValues: (0..<16).map { ("k\($0)", "v") })
        #expect(try PeerMetadata(sixteen).count == 16)
        var seventeen = sixteen
        seventeen["k16"] = "v"
        #expect(throws: MetadataError.tooManyEntries(17)) { try PeerMetadata(seventeen) }
    }

    @Test("keys: 1-32 bytes of a-z 0-9 _ . -")
    func keys() throws {
        #expect(try PeerMetadata(["a-z_0.9": "x", String(repeating: "k", count: 32): ""]).count == 2)
        for bad in ["", String(repeating: "k", count: 33), "Name", "a b", "é", "a/b", "a=b", "a:b"] {
            #expect(throws: MetadataError.badKey(bad), "\(bad)") { try PeerMetadata([bad: "x"]) }
        }
    }

    @Test("values: at most 128 bytes of UTF-8")
    func values() throws {
        #expect(try PeerMetadata(["k": String(repeating: "v", count: 128)])["k"]?.utf8.count == 128)
        #expect(throws: MetadataError.valueTooLong(key: "k", bytes: 129)) { try PeerMetadata(["k": String(repeating: "v", count: 129)]) }
        #expect(throws: MetadataError.valueTooLong(key: "k", bytes: 130)) { try PeerMetadata(["k": String(repeating: "é", count: 65)]) }
    }

    @Test("total: at most 512 bytes of keys and values")
    func total() throws {
        // 4 × (1 + 127) = 512.
        let full = try PeerMetadata(Dictionary(uniqueKeysWithValues: (0..<4).map { ("\($0)", String(repeating: "v", count: 127)) }))
        #expect(full.totalBytes == 512)
        #expect(throws: MetadataError.tooLarge(bytes: 516)) {
            try PeerMetadata(Dictionary(uniqueKeysWithValues: (0..<4).map { ("\($0)", String(repeating: "v", count: 128)) }))
        }
    }

    @Test("entries are sorted by key; equality ignores insertion order")
    func order() throws {
        let m = try PeerMetadata(["zeta": "1", "alpha": "2", "mid": "3"])
        #expect(m.entries.map(\.key) == ["alpha", "mid", "zeta"])
        #expect(m == (try PeerMetadata(["mid": "3", "zeta": "1", "alpha": "2"])))
        #expect(m["mid"] == "3" && m["nope"] == nil)
        #expect(m.dictionary == ["zeta": "1", "alpha": "2", "mid": "3"])
    }

    @Test("apply sets and removes, all or nothing")
    func apply() throws {
        var m = try PeerMetadata(["a": "1", "b": "2"])
        try m.apply(["a": "9", "b": nil, "c": "3"])
        #expect(m.dictionary == ["a": "9", "c": "3"])
        let before = m
        #expect(throws: MetadataError.badKey("Bad")) { try m.apply(["d": "4", "Bad": "x"]) }
        #expect(m == before)
        let many = Dictionary(uniqueKeysWithValues: (0..<15).map { ("n\($0)", Optional("v")) })
        #expect(throws: MetadataError.tooManyEntries(17)) { try m.apply(many) }
        #expect(m == before)
    }
}
