import NIOCore
import PeerwayNetcheck
import PeerwaySTUN
import Testing

@Suite("Unrelated, spoofed and malformed datagrams are ignored and counted")
struct RobustnessTests {
    static let easyNAT = SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent)
    static let spoofer = STUNAddress(parsing: "192.0.2.66:3478")!
    static let fakeMapped = STUNAddress(parsing: "198.18.6.6:666")!

    /// Runs the easy-NAT scenario with `inject` called on the main socket's test I request.
    static func run(_ inject: @escaping (SentRequest, Simulation) -> Void) throws -> NetcheckReport {
        let sim = Simulation(nat: easyNAT)
        sim.onSend = { request, sim in
            if request.socket == .main, request.to == Sim.serverA, request.at == .zero { inject(request, sim) }
        }
        let report = try sim.run().get()
        // Whatever was injected, the real findings stand.
        #expect(report.mappedAddress == STUNAddress(ip: Sim.natPublicIP, port: 61_000))
        #expect(report.mappingBehavior == .endpointIndependent)
        #expect(report.filteringBehavior == .endpointIndependent)
        return report
    }

    static func answer(_ id: STUNTransactionID, mapped: STUNAddress? = fakeMapped) -> ByteBuffer {
        STUNMessage(type: .bindingSuccess, transactionID: id, attributes: mapped.map { [.xorMappedAddress($0)] } ?? []).encoded()
    }

    @Test("non-STUN bytes, a truncated message and a bad FINGERPRINT are malformed")
    func malformed() throws {
        let report = try Self.run { request, sim in
            sim.inject(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"), on: .main, from: Sim.serverA, after: .milliseconds(1))
            var truncated = Self.answer(request.transactionID)
            truncated.moveWriterIndex(to: truncated.writerIndex - 4)
            sim.inject(truncated, on: .main, from: Sim.serverA, after: .milliseconds(2))
            var corrupted = STUNMessage(type: .bindingSuccess, transactionID: request.transactionID, attributes: [.xorMappedAddress(Self.fakeMapped)])
                .encoded(options: STUNEncodingOptions(fingerprint: true))
            corrupted.setInteger(UInt8(0xFF), at: corrupted.writerIndex - 1)
            sim.inject(corrupted, on: .main, from: Sim.serverA, after: .milliseconds(3))
            sim.inject(ByteBuffer(), on: .main, from: Sim.serverA, after: .milliseconds(4))
        }
        #expect(report.ignoredDatagrams == NetcheckIgnoredDatagrams(malformed: 4, duplicate: 1))
        #expect(report.notes.contains { $0.hasPrefix("Ignored 4 datagrams: 4 malformed") })
    }

    @Test("a success answer without a mapped address is malformed; the real one is still taken")
    func noMappedAddress() throws {
        let report = try Self.run { request, sim in
            sim.inject(Self.answer(request.transactionID, mapped: nil), on: .main, from: Sim.serverA, after: .milliseconds(5))
        }
        #expect(report.ignoredDatagrams.malformed == 1)
    }

    @Test("a valid answer with an unknown transaction id, an indication and a foreign request are ignored")
    func unknownTransactions() throws {
        let report = try Self.run { _, sim in
            sim.inject(Self.answer(STUNTransactionID.random()), on: .main, from: Sim.serverA, after: .milliseconds(1))
            sim.inject(STUNMessage(type: .bindingIndication).encoded(), on: .main, from: Sim.serverA, after: .milliseconds(2))
            sim.inject(STUNMessage(type: .bindingRequest).encoded(), on: .filtering, from: Self.spoofer, after: .milliseconds(30))
        }
        #expect(report.ignoredDatagrams == NetcheckIgnoredDatagrams(unknownTransaction: 3, duplicate: 1))
    }

    @Test("an answer with the right id from the wrong source, or on the wrong socket, is ignored")
    func spoofedSource() throws {
        let report = try Self.run { request, sim in
            sim.inject(Self.answer(request.transactionID), on: .main, from: Self.spoofer, after: .milliseconds(1))
            sim.inject(Self.answer(request.transactionID), on: .main, from: Sim.serverA.with(port: 3479), after: .milliseconds(2))
            sim.inject(Self.answer(request.transactionID), on: .allocationProbe(1), from: Sim.serverA, after: .milliseconds(25))
        }
        #expect(report.ignoredDatagrams == NetcheckIgnoredDatagrams(unexpectedSource: 3, duplicate: 1))
        #expect(report.notes.contains { $0.contains("3 from an unexpected source") })
    }

    @Test("an error answer to test I from the server is a clear failure")
    func refused() throws {
        let sim = Simulation(nat: Self.easyNAT)
        sim.onSend = { request, sim in
            guard request.at == .zero else { return }
            let error = STUNMessage(type: .bindingError, transactionID: request.transactionID, attributes: [.errorCode(.unauthenticated)])
            sim.inject(error.encoded(), on: .main, from: Sim.serverA, after: .milliseconds(5))
        }
        let error = try #require(sim.run().failure)
        #expect(error == .serverRefused(server: Sim.serverA, error: .unauthenticated))
        #expect(error.description.contains("refused the Binding request (401 Unauthenticated)"))
        #expect(sim.endedAt == .milliseconds(5))
    }

    @Test("a CHANGE-REQUEST refused with 420 makes filtering unknown")
    func changeRequestRefused() throws {
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .addressAndPortDependent))
        sim.onSend = { request, sim in
            guard request.change.changeIP else { return }
            let error = STUNMessage(type: .bindingError, transactionID: request.transactionID, attributes: [.errorCode(.changeRequestUnsupported)])
            sim.inject(error.encoded(), on: .filtering, from: Sim.serverA, after: .milliseconds(5))
        }
        let report = try sim.run().get()
        #expect(report.filteringBehavior == .unknown)
        #expect(report.notes.contains { $0.contains("refused CHANGE-REQUEST (420") })
    }
}

@Suite("NetcheckMachine API")
struct MachineAPITests {
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test("start asks for the main socket and the run's time limit; a second start does nothing")
    func start() {
        var machine = NetcheckMachine(configuration: NetcheckConfiguration(servers: [Sim.serverA]))
        #expect(machine.start(now: Self.t0) == [.openSocket(.main, family: .ipv4), .wakeUp(at: Self.t0 + .seconds(10))])
        #expect(machine.start(now: Self.t0).isEmpty)
        #expect(!machine.isFinished)
    }

    @Test("an IPv6 server asks for an IPv6 socket")
    func ipv6() {
        var machine = NetcheckMachine(configuration: NetcheckConfiguration(servers: [STUNAddress(parsing: "[::1]:3478")!]))
        #expect(machine.start(now: Self.t0).first == .openSocket(.main, family: .ipv6))
    }

    @Test("test I is a plain Binding request with FINGERPRINT; seeded ids are reproducible")
    func testIRequest() throws {
        func firstSend(seed: UInt64) -> [NetcheckAction] {
            var machine = NetcheckMachine(configuration: NetcheckConfiguration(servers: [Sim.serverA]), randomSeed: seed)
            _ = machine.start(now: Self.t0)
            return machine.socketOpened(.main, localAddress: STUNAddress(parsing: "0.0.0.0:40000")!, now: Self.t0)
        }
        let actions = firstSend(seed: 7)
        #expect(actions == firstSend(seed: 7))
        #expect(actions != firstSend(seed: 8))
        guard case .send(let socket, let destination, let bytes) = actions.first else {
            Issue.record("expected a send, got \(actions)")
            return
        }
        #expect(socket == .main)
        #expect(destination == Sim.serverA)
        let request = try STUNMessage(datagram: bytes)
        #expect(request.type == .bindingRequest)
        #expect(!request.isClassic)
        #expect(request.attributes.map(\.type) == [.fingerprint])
        #expect(actions.last == .wakeUp(at: Self.t0 + .milliseconds(500)))
    }

    @Test("invalid configurations fail at start", arguments: [
        (NetcheckConfiguration(servers: []), NetcheckError.noServers),
        (NetcheckConfiguration(servers: [Sim.serverA], allocationProbeSockets: 33),
         .invalidConfiguration("allocation probe sockets must be 0...32, got 33")),
        (NetcheckConfiguration(servers: Array(repeating: Sim.serverA, count: 9)), .invalidConfiguration("at most 8 STUN servers, got 9")),
        (NetcheckConfiguration(servers: [Sim.serverA], overallTimeout: .zero), .invalidConfiguration("the overall timeout must be positive")),
    ])
    func invalid(configuration: NetcheckConfiguration, error: NetcheckError) {
        var machine = NetcheckMachine(configuration: configuration)
        #expect(machine.start(now: Self.t0) == [.failed(error)])
        #expect(machine.isFinished)
    }

    @Test("the main socket failing ends the run; events after the end do nothing")
    func mainSocketFails() {
        var machine = NetcheckMachine(configuration: NetcheckConfiguration(servers: [Sim.serverA]))
        _ = machine.start(now: Self.t0)
        #expect(machine.socketFailed(.main, reason: "EACCES", now: Self.t0) == [.failed(.socketFailed(socket: .main, reason: "EACCES"))])
        #expect(machine.isFinished)
        #expect(machine.wakeUp(now: Self.t0 + .seconds(1)).isEmpty)
        #expect(machine.datagramReceived(on: .main, from: Sim.serverA, bytes: ByteBuffer(), now: Self.t0).isEmpty)
    }

    @Test("a probe socket failing is noted and the run completes without it")
    func probeSocketFails() throws {
        let sim = Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent))
        sim.onSend = { request, sim in
            guard request.socket == .filtering, request.change.changeIP else { return }
            sim.feed { machine, now in machine.socketFailed(.allocationProbe(2), reason: "too many open files", now: now) }
        }
        let report = try sim.run().get()
        #expect(report.notes.contains("Could not open the probe-2 socket (too many open files); the tests that need it are unknown."))
        #expect(!report.portAllocation.samples.contains { $0.socket == .allocationProbe(2) })
    }

    @Test("socket ids name themselves")
    func socketNames() {
        #expect([NetcheckSocketID.main, .filtering, .allocationProbe(1), .allocationProbe(5)].map(\.description) == ["main", "filtering", "probe-1", "probe-5"])
    }

    @Test("durations print in human units")
    func durations() {
        #expect(NetcheckFormatting.duration(.microseconds(123)) == "0.123 ms")
        #expect(NetcheckFormatting.duration(.microseconds(12_345)) == "12.3 ms")
        #expect(NetcheckFormatting.duration(.milliseconds(4_500)) == "4.5 s")
        #expect(NetcheckFormatting.duration(.nanoseconds(999_999)) == "1.0 ms")
    }
}
