@testable import PeerwayCheckpoint
import Testing

@Suite("TimedMemory: values forgotten after their lifetime, oldest first, within a capacity")
struct TimedMemoryTests {
    @Test("a value lives its lifetime from when it was first stored; storing again keeps that deadline")
    func lifetime() {
        var m = TimedMemory<Int, String>(lifetimeMillis: 1000)
        m.remember("a", for: 1, ms: 0)
        m.remember("b", for: 2, ms: 500)
        m.remember("a2", for: 1, ms: 900)
        m.forget(dueAt: 999)
        #expect(m[1] == "a2" && m[2] == "b")
        m.forget(dueAt: 1000)
        #expect(m[1] == nil && m[2] == "b")
        m.forget(dueAt: 1500)
        #expect(m.count == 0)
        // Forgotten keys can be stored again and live a full lifetime.
        m.remember("c", for: 1, ms: 2000)
        m.forget(dueAt: 2999)
        #expect(m[1] == "c")
    }

    @Test("past its capacity the oldest values go first; many entries compact without losing any")
    func capacity() {
        var m = TimedMemory<Int, Int>(lifetimeMillis: 10_000, capacity: 3)
        for k in 0..<5 { m.remember(k, for: k, ms: UInt64(k)) }
        #expect(m.count == 3)
        #expect(m[0] == nil && m[1] == nil && m[2] == 2 && m[4] == 4)
        var big = TimedMemory<Int, Int>(lifetimeMillis: 100)
        for k in 0..<20_000 {
            big.remember(k, for: k, ms: UInt64(k))
            big.forget(dueAt: UInt64(k))
        }
        #expect(big.count == 100)
        #expect(big[19_999] == 19_999 && big[19_900] == 19_900 && big[19_899] == nil)
    }
}
