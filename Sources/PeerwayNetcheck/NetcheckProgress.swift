import NIOCore
import PeerwaySTUN

/// Test sequencing: after every event, fire due timers, start whatever tests have become
/// possible, finish when nothing is pending, and ask for the next wake-up.
extension NetcheckRun {
    mutating func advance(now: NIODeadline, into actions: inout [NetcheckAction]) {
        guard !isTerminated else { return }
        if now >= deadlineOfRun {
            timeLimitReached = true
            abandonPendingWork()
        } else {
            fireTimers(now: now, into: &actions)
        }
        if primary == nil {
            choosePrimary(now: now, into: &actions)
            if isTerminated { return }
        }
        if primary != nil {
            if !behaviourTestsStarted { startBehaviourTests(now: now, into: &actions) }
            continueMappingTests(now: now, into: &actions)
            cancelRedundantFilteringTest()
            startHairpinIfReady(now: now, into: &actions)
        }
        if timeLimitReached || isComplete {
            if let report = makeReport(now: now) {
                isTerminated = true
                actions.append(.finished(report))
            } else {
                fail(noResponseError(now: now), into: &actions)
            }
            return
        }
        let next = transactions.lazy.filter(\.outcome.isPending).map(\.deadline).reduce(deadlineOfRun, min)
        if next != scheduledWakeUp {
            scheduledWakeUp = next
            actions.append(.wakeUp(at: next))
        }
    }

    private mutating func abandonPendingWork() {
        for index in transactions.indices where transactions[index].outcome.isPending {
            transactions[index].outcome = .abandoned
        }
        for (socket, state) in sockets where state == .opening {
            sockets[socket] = .failed("not opened before the time limit")
        }
    }

    /// Done when every socket asked for is open (or failed), every transaction is settled, and
    /// the hairpin test has run if it is wanted.
    private var isComplete: Bool {
        guard primary != nil, behaviourTestsStarted else { return false }
        guard !sockets.values.contains(.opening) else { return false }
        guard !transactions.contains(where: \.outcome.isPending) else { return false }
        return !hairpinWanted || transaction(.hairpin) != nil
    }

    // MARK: test I and the choice of primary server

    /// A socket just opened: start what it is for.
    mutating func socketReady(_ socket: NetcheckSocketID, now: NIODeadline, into actions: inout [NetcheckAction]) {
        switch socket {
        case .main:
            for (index, server) in servers.enumerated() {
                startTransaction(.binding(server: index), socket: .main, to: server, now: now, into: &actions)
            }
        case .filtering:
            guard let primary, let other = rfc5780OtherAddress else { return }
            let a = servers[primary]
            startTransaction(.filteringControl, socket: .filtering, to: a, now: now, into: &actions)
            startTransaction(
                .filteringTestII, socket: .filtering, to: a, expectedSource: other,
                change: STUNChangeRequest(changeIP: true, changePort: true), now: now, into: &actions)
            startTransaction(
                .filteringTestIII, socket: .filtering, to: a, expectedSource: a.with(port: other.port),
                change: STUNChangeRequest(changePort: true), now: now, into: &actions)
        default:
            guard let primary else { return }
            startTransaction(
                .allocationProbe(socket.rawValue - NetcheckSocketID.filtering.rawValue), socket: socket,
                to: servers[primary], now: now, into: &actions)
        }
    }

    /// The primary is the first server, in list order, that answered test I with a usable
    /// OTHER-ADDRESS; servers before it must have finished first, so the choice is deterministic.
    /// When none supports RFC 5780 it is the first that answered at all. When the time limit has
    /// come, the first that answered so far.
    private mutating func choosePrimary(now: NIODeadline, into actions: inout [NetcheckAction]) {
        guard sockets[.main]?.localAddress != nil else {
            if timeLimitReached { fail(noResponseError(now: now), into: &actions) }
            return
        }
        var firstAnswered: Int?
        for index in servers.indices {
            guard let outcome = outcome(.binding(server: index)) else { return }
            switch outcome {
            case .pending:
                if !timeLimitReached { return }
            case .answered(let answer):
                if usableOtherAddress(answer, server: servers[index]) != nil {
                    primary = index
                    return
                }
                if firstAnswered == nil { firstAnswered = index }
            default:
                continue
            }
        }
        if let firstAnswered {
            primary = firstAnswered
        } else {
            fail(noResponseError(now: now), into: &actions)
        }
    }

    private mutating func fail(_ error: NetcheckError, into actions: inout [NetcheckAction]) {
        isTerminated = true
        actions.append(.failed(error))
    }

    private func noResponseError(now: NIODeadline) -> NetcheckError {
        for index in servers.indices {
            if case .refused(let code) = outcome(.binding(server: index)) {
                return .serverRefused(server: servers[index], error: code)
            }
        }
        let sent = transactions.filter { if case .binding = $0.purpose { true } else { false } }.map(\.requestsSent).max() ?? 0
        return .noResponse(servers: servers, requests: sent, waited: now - startedAt)
    }

    /// OTHER-ADDRESS (or CHANGED-ADDRESS) if it names a different IP and port of the same family.
    func usableOtherAddress(_ answer: NetcheckAnswer, server: STUNAddress) -> STUNAddress? {
        guard let other = answer.otherAddress, other.family == server.family,
            other.ip != server.ip, other.port != server.port
        else { return nil }
        return other
    }

    /// The primary's answer to test I.
    var primaryAnswer: NetcheckAnswer? {
        guard let primary else { return nil }
        return outcome(.binding(server: primary))?.answer
    }

    /// The primary's OTHER-ADDRESS when the RFC 5780 tests can use it.
    var rfc5780OtherAddress: STUNAddress? {
        guard let primary, let answer = primaryAnswer else { return nil }
        return usableOtherAddress(answer, server: servers[primary])
    }

    // MARK: behaviour tests

    private mutating func startBehaviourTests(now: NIODeadline, into actions: inout [NetcheckAction]) {
        behaviourTestsStarted = true
        guard let primary, !timeLimitReached else { return }
        let a = servers[primary]
        if let other = rfc5780OtherAddress {
            startTransaction(.mappingTestII, socket: .main, to: other.with(port: a.port), now: now, into: &actions)
            sockets[.filtering] = .opening
            actions.append(.openSocket(.filtering, family: family))
        }
        for index in stride(from: 1, through: configuration.allocationProbeSockets, by: 1) {
            sockets[.allocationProbe(index)] = .opening
            actions.append(.openSocket(.allocationProbe(index), family: family))
        }
    }

    /// Test III goes out once test II shows the mapping changed with the destination IP.
    private mutating func continueMappingTests(now: NIODeadline, into actions: inout [NetcheckAction]) {
        guard !timeLimitReached, transaction(.mappingTestIII) == nil,
            let m1 = primaryAnswer?.mapped, let m2 = outcome(.mappingTestII)?.answer?.mapped, m2 != m1,
            let other = rfc5780OtherAddress
        else { return }
        startTransaction(.mappingTestIII, socket: .main, to: other, now: now, into: &actions)
    }

    /// An answer to filtering test II settles filtering (endpoint-independent): stop test III.
    private mutating func cancelRedundantFilteringTest() {
        guard outcome(.filteringTestII)?.answer != nil,
            let index = transactions.firstIndex(where: { $0.purpose == .filteringTestIII }),
            transactions[index].outcome.isPending
        else { return }
        transactions[index].outcome = .cancelled
    }

    // MARK: hairpinning

    /// Whether this host is on the public side: the mapped address is one of its own.
    var noNAT: Bool {
        guard let m1 = primaryAnswer?.mapped, let local = sockets[.main]?.localAddress else { return false }
        return m1.port == local.port && configuration.localIPs.contains(m1.ip)
    }

    /// Hairpinning is tested when asked for and there is a NAT to hairpin.
    var hairpinWanted: Bool {
        configuration.checksHairpinning && primaryAnswer != nil && !noNAT
    }

    /// The hairpin request goes out after the probe sockets have made their first mappings and the
    /// mapping tests have made theirs, so it cannot slip a mapping of its own between two samples.
    private mutating func startHairpinIfReady(now: NIODeadline, into actions: inout [NetcheckAction]) {
        guard hairpinWanted, !timeLimitReached, transaction(.hairpin) == nil, let m1 = primaryAnswer?.mapped else { return }
        let probesOpening = sockets.contains { $0.key > .filtering && $0.value == .opening }
        guard !probesOpening, !(outcome(.mappingTestII)?.isPending ?? false) else { return }
        if let m2 = outcome(.mappingTestII)?.answer?.mapped, m2 != m1, transaction(.mappingTestIII) == nil { return }
        startTransaction(.hairpin, socket: .main, to: m1, now: now, into: &actions)
    }
}
