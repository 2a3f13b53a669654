@testable import PeerwayCheckpoint
import PeerwaySTUN
import Testing

@Suite("CHECKPOINT session table")
struct CheckpointSessionTableTests {
    static func session(_ id: UInt64) -> CheckpointSession {
        let k = ControlKey(bytes: [UInt8](repeating: 1, count: 32))
        return CheckpointSession(id: id, receiveKey: k, sendKey: k, transcript: k,
                                 endpoint: PeerEndpoint(ip: .v4(1), port: 1), lastHeardMillis: 0, keepaliveSeconds: 25,
                                 tokens: 1, tokensAtMillis: 0)
    }

    @Test("ids find their session; a removed session's id misses even when its slot is reused")
    func reuse() {
        var table = CheckpointSessionTable()
        var rng = STUNSeededRandom(seed: 3)
        var ids: [UInt64] = []
        for _ in 0..<10_000 {
            let id = table.newID(using: &rng)
            table[id] = Self.session(id)
            ids.append(id)
        }
        #expect(table.count == 10_000)
        #expect(Set(ids).count == 10_000)
        #expect(ids.allSatisfy { table[$0]?.id == $0 })
        let gone = ids[1234]
        #expect(table.removeValue(forKey: gone)?.id == gone)
        #expect(table[gone] == nil)
        #expect(table.count == 9_999)
        let reused = table.newID(using: &rng)
        #expect(reused >> 32 == gone >> 32) // the freed slot comes back...
        #expect(reused != gone)            // ...under a new id
        table[reused] = Self.session(reused)
        #expect(table[gone] == nil)
        #expect(table[reused]?.id == reused)
        // An id from newID that is never stored goes back to the free list.
        let unused = table.newID(using: &rng)
        table.release(unused)
        #expect(table.newID(using: &rng) >> 32 == unused >> 32)
        // Ids beyond any chunk miss without trapping.
        #expect(table[UInt64(UInt32.max) << 32 | 5] == nil)
        table[UInt64(UInt32.max) << 32 | 5] = nil
        #expect(table.count == 10_000)
    }
}
