import PeerwayRelay
import Testing

/// `RelayDialSchedule`: which of a relay's TCP endpoints to dial when, under virtual time.
@Suite("Relay dial schedule")
struct RelayDialScheduleTests {
    typealias S = RelayDialSchedule

    @Test("the first endpoint at once, the next one a stagger later while the first is still pending")
    func staggered() {
        var s = S(endpoints: 3)
        #expect(s.actions(now: 0) == [.dial(0)])
        #expect(s.wait(now: 0) == S.staggerMillis)
        #expect(s.actions(now: S.staggerMillis - 1) == [])
        #expect(s.actions(now: S.staggerMillis) == [.dial(1)])
        #expect(s.actions(now: 2 * S.staggerMillis) == [.dial(2)])
        // Everything started: the next thing to happen is the first attempt's timeout.
        #expect(s.wait(now: 2 * S.staggerMillis) == S.attemptTimeoutMillis - 2 * S.staggerMillis)
    }

    @Test("a refused endpoint starts the next one at once and is dialed again after retryMillis")
    func refused() {
        var s = S(endpoints: 2)
        #expect(s.actions(now: 0) == [.dial(0)])
        s.failed(0, now: 10)
        #expect(s.actions(now: 10) == [.dial(1)])
        #expect(s.actions(now: 10 + S.retryMillis - 1) == [])
        #expect(s.actions(now: 10 + S.retryMillis) == [.dial(0)])
    }

    @Test("an unanswered attempt is abandoned after attemptTimeoutMillis and made again")
    func abandoned() {
        var s = S(endpoints: 1)
        #expect(s.actions(now: 0) == [.dial(0)])
        #expect(s.actions(now: S.attemptTimeoutMillis - 1) == [])
        #expect(s.actions(now: S.attemptTimeoutMillis) == [.abandon(0), .dial(0)])
        #expect(s.wait(now: S.attemptTimeoutMillis) == S.attemptTimeoutMillis)
    }

    @Test("every endpoint refused at once: all are started, then retried; bounded actions per call")
    func allRefused() {
        var s = S(endpoints: 3)
        var now = 0
        var dials = 0
        for _ in 0..<100 {
            for case .dial(let i) in s.actions(now: now) {
                dials += 1
                s.failed(i, now: now)
            }
            now += max(1, s.wait(now: now))
        }
        // Each endpoint about once per retry interval, never more than one attempt each at a time.
        #expect(dials >= 3 && dials <= 3 * (now / S.retryMillis + 1), "\(dials) dials in \(now) ms")
    }

    @Test("no endpoints: nothing to do; out-of-range failures are ignored")
    func empty() {
        var s = S(endpoints: 0)
        #expect(s.actions(now: 0).isEmpty)
        s.failed(3, now: 0)
        #expect(s.wait(now: 0) == S.attemptTimeoutMillis)
    }
}

extension RelayDialScheduleTests {
    @Test("a retired endpoint (a proxy refused it) is never dialed again; the next starts at once; all retired is exhausted")
    func retired() {
        var s = S(endpoints: 2)
        #expect(s.actions(now: 0) == [.dial(0)])
        s.retire(0)
        #expect(s.actions(now: 5) == [.dial(1)])
        #expect(s.actions(now: 10 * S.attemptTimeoutMillis).filter { $0 == .dial(0) }.isEmpty)
        #expect(!s.exhausted)
        s.retire(1)
        #expect(s.exhausted)
        #expect(s.actions(now: 20 * S.attemptTimeoutMillis).isEmpty)
    }
}
