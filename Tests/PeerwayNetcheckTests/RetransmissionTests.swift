import NIOCore
import PeerwayNetcheck
import PeerwaySTUN
import Testing

@Suite("RFC 8489 §6.2.1 retransmission, loss and time limits")
struct RetransmissionTests {
    static func ms(_ values: [Int64]) -> [TimeAmount] { values.map { .milliseconds($0) } }

    @Test("the schedule before any RTT is known: every 500 ms, 8 requests, give up 1 s after the last")
    func initialSchedule() {
        let schedule = NetcheckRetransmission(rto: NetcheckLimits.initialRTO)
        #expect(schedule.requestOffsets == Self.ms([0, 500, 1_000, 1_500, 2_000, 2_500, 3_000, 3_500]))
        #expect(schedule.giveUpOffset == .milliseconds(4_500))
        #expect(schedule.interval(afterRequest: 0) == nil)
        #expect(schedule.interval(afterRequest: NetcheckLimits.requestCount) == nil)
    }

    @Test("a measured RTO doubles up to the cap")
    func measuredSchedule() {
        let schedule = NetcheckRetransmission(rto: .milliseconds(100))
        #expect(schedule.requestOffsets == Self.ms([0, 100, 300, 700, 1_200, 1_700, 2_200, 2_700]))
        #expect(schedule.giveUpOffset == .milliseconds(2_900))
        // An RTO above the cap is never shortened.
        let slow = NetcheckRetransmission(rto: .milliseconds(900))
        #expect(Array(slow.requestOffsets.prefix(3)) == Self.ms([0, 900, 1_800]))
    }

    @Test("RTO from RTT: 3 × RTT clamped to 100 ms ... 1 s; 500 ms when unknown")
    func rtoFromRTT() {
        #expect(NetcheckRetransmission.rto(measuredRTT: nil) == .milliseconds(500))
        #expect(NetcheckRetransmission.rto(measuredRTT: .microseconds(80)) == .milliseconds(100))
        #expect(NetcheckRetransmission.rto(measuredRTT: .milliseconds(50)) == .milliseconds(150))
        #expect(NetcheckRetransmission.rto(measuredRTT: .milliseconds(700)) == .seconds(1))
    }

    @Test("an unreachable server: exact retransmission times, one transaction id, give-up at 4.5 s")
    func unreachableServer() throws {
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent))
        sim.drop = { _ in true }
        let error = try #require(sim.run().failure)
        #expect(error == .noResponse(servers: [Sim.serverA], requests: 8, waited: .milliseconds(4_500)))
        #expect(error.description.contains("no response from STUN server 198.51.100.1:3478 after 8 requests over 4.5 s"))
        #expect(sim.sent.map(\.at) == Self.ms([0, 500, 1_000, 1_500, 2_000, 2_500, 3_000, 3_500]))
        #expect(Set(sim.sent.map(\.transactionID)).count == 1)
        #expect(sim.sent.allSatisfy { $0.socket == .main && $0.to == Sim.serverA })
        #expect(sim.endedAt == .milliseconds(4_500))
        // One wake-up for the run's time limit, then one per retransmission and the give-up.
        #expect(sim.wakeUps == Self.ms([10_000, 500, 1_000, 1_500, 2_000, 2_500, 3_000, 3_500, 4_500]))
    }

    @Test("negative filtering tests: resent at the measured RTO, same id, the run ends when they give up")
    func filteringRetransmissionTimes() throws {
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .addressAndPortDependent))
        let report = try sim.run().get()
        #expect(report.filteringBehavior == .addressAndPortDependent)
        // Test I answered at 20 ms: RTO = max(100 ms, 3 × 20 ms) = 100 ms from then on.
        let expected = Self.ms([20, 120, 320, 720, 1_220, 1_720, 2_220, 2_720])
        for change in [STUNChangeRequest(changeIP: true, changePort: true), STUNChangeRequest(changePort: true)] {
            let requests = sim.sent.filter { $0.change == change }
            #expect(requests.map(\.at) == expected)
            #expect(Set(requests.map(\.transactionID)).count == 1)
        }
        #expect(sim.endedAt == .milliseconds(2_920))
        #expect(report.duration == .milliseconds(2_920))
    }

    @Test("the first two requests lost: test I answered on the third, no RTT sample from it (Karn)")
    func lossOfFirstPackets() throws {
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .addressAndPortDependent))
        sim.drop = { $0.index < 2 }
        let report = try sim.run().get()
        let testI = sim.sent.filter { $0.to == Sim.serverA && $0.socket == .main }
        #expect(testI.map(\.at) == Self.ms([0, 500, 1_000]))
        #expect(Set(testI.map(\.transactionID)).count == 1)
        #expect(report.servers[0].rtt == nil, "a retransmitted transaction gives no RTT sample")
        #expect(report.rtt == .milliseconds(20), "mapping test II gave a clean sample")
        // The filtering tests started at 1020 ms, before any clean RTT: RTO 500 ms.
        let testII = sim.sent.filter { $0.change.changeIP }
        #expect(testII.map(\.at) == Self.ms([1_020, 1_520, 2_020, 2_520, 3_020, 3_520, 4_020, 4_520]))
        #expect(sim.endedAt == .milliseconds(5_520))
        #expect(report.mappingBehavior == .endpointIndependent)
        #expect(report.filteringBehavior == .addressAndPortDependent)
    }

    @Test("lost answers are recovered by retransmission")
    func lossOfAnswers() throws {
        let sim = Simulation(nat: SimNAT(mapping: .addressAndPortDependent, filtering: .addressDependent))
        var answersDropped = 0
        sim.drop = { packet in
            guard !packet.outbound, answersDropped < 4 else { return false }
            answersDropped += 1
            return true
        }
        let report = try sim.run().get()
        #expect(answersDropped == 4)
        #expect(report.mappingBehavior == .addressAndPortDependent)
        #expect(report.filteringBehavior == .addressDependent)
    }

    @Test("30 % loss each way: 8 requests keep misclassification rare (0.51^8 per test)")
    func heavyLoss() throws {
        var correct = 0
        let runs = 200
        for seed in 1...UInt64(runs) {
            let sim = Simulation(
                nat: SimNAT(mapping: .endpointIndependent, filtering: .addressDependent), overallTimeout: .seconds(30), seed: seed)
            var random = TestRandom(seed: seed &* 7919)
            sim.drop = { _ in random.next() % 100 < 30 }
            guard case .success(let report) = sim.run() else { continue }
            if report.mappingBehavior == .endpointIndependent && report.filteringBehavior == .addressDependent {
                correct += 1
            }
        }
        // Each of test I, mapping test II and filtering test III fails with p ≈ 0.0046: about
        // 1.4 % of runs go wrong, 3 of 200 on average.
        #expect(correct >= runs * 95 / 100)
    }

    @Test("the overall time limit ends the run with what is known")
    func timeLimit() throws {
        let sim = Simulation(
            nat: SimNAT(mapping: .endpointIndependent, filtering: .addressAndPortDependent), overallTimeout: .seconds(1))
        let report = try sim.run().get()
        #expect(sim.endedAt == .seconds(1))
        #expect(report.mappingBehavior == .endpointIndependent)
        #expect(report.filteringBehavior == .unknown)
        #expect(report.notes.contains { $0.contains("time limit ran out") })
    }

    @Test("the time limit without any answer is a no-response error")
    func timeLimitWithoutAnswer() throws {
        let sim = Simulation(nat: nil, overallTimeout: .seconds(2))
        sim.drop = { _ in true }
        let error = try #require(sim.run().failure)
        guard case .noResponse(_, let requests, let waited) = error else {
            Issue.record("expected noResponse, got \(error)")
            return
        }
        #expect(requests == 4, "sent at 0, 0.5, 1 and 1.5 s; at 2 s the limit comes before the fifth")
        #expect(waited == .seconds(2))
    }

    @Test("duplicate answers to retransmissions are counted, not treated as suspicious")
    func duplicates() throws {
        var server = SimSTUNServer.pair()
        server.duplicatesAnswers = true
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent), servers: [server])
        let report = try sim.run().get()
        #expect(report.ignoredDatagrams.duplicate > 0)
        #expect(report.ignoredDatagrams.suspicious == 0)
        #expect(report.filteringBehavior == .endpointIndependent)
    }
}
