import NIOCore
import PeerwaySTUN

/// The state of one running netcheck: sockets, transactions and what has been learnt.
/// `NetcheckMachine` wraps it; the test sequencing lives in NetcheckProgress.swift and the
/// report in NetcheckReportBuilder.swift.
struct NetcheckRun: Sendable {
    enum SocketState: Hashable, Sendable {
        case opening
        case open(STUNAddress)
        case failed(String)

        var localAddress: STUNAddress? {
            if case .open(let a) = self { return a }
            return nil
        }
    }

    let configuration: NetcheckConfiguration
    /// The servers probed: the configured ones of the first one's family, in order.
    let servers: [STUNAddress]
    let family: STUNAddress.Family
    let startedAt: NIODeadline
    var ids: TransactionIDSource
    var sockets: [NetcheckSocketID: SocketState] = [:]
    /// Every transaction, in the order it was started.
    var transactions: [NetcheckTransaction] = []
    /// Index into `servers` of the server the RFC 5780 tests use, once chosen.
    var primary: Int?
    var behaviourTestsStarted = false
    /// The largest clean RTT sample so far (the RTO of later transactions derives from it).
    var largestCleanRTT: TimeAmount?
    var ignored = NetcheckIgnoredDatagrams()
    var notes: [String] = []
    var scheduledWakeUp: NIODeadline?
    var timeLimitReached = false
    var isTerminated = false

    static func validate(_ configuration: NetcheckConfiguration) -> NetcheckError? {
        if configuration.servers.isEmpty { return .noServers }
        if configuration.servers.count > NetcheckLimits.maximumServers {
            return .invalidConfiguration("at most \(NetcheckLimits.maximumServers) STUN servers, got \(configuration.servers.count)")
        }
        if !(0...NetcheckLimits.maximumAllocationProbeSockets).contains(configuration.allocationProbeSockets) {
            return .invalidConfiguration(
                "allocation probe sockets must be 0...\(NetcheckLimits.maximumAllocationProbeSockets), got \(configuration.allocationProbeSockets)")
        }
        if configuration.overallTimeout <= .zero {
            return .invalidConfiguration("the overall timeout must be positive")
        }
        return nil
    }

    init(configuration: NetcheckConfiguration, ids: TransactionIDSource, now: NIODeadline) {
        self.configuration = configuration
        self.family = configuration.servers[0].family
        let family = self.family
        self.servers = configuration.servers.filter { $0.family == family }
        self.ids = ids
        self.startedAt = now
        for skipped in configuration.servers where skipped.family != family {
            notes.append("Skipped \(skipped): one run probes one address family, that of the first server (\(servers[0])).")
        }
    }

    var deadlineOfRun: NIODeadline { startedAt + configuration.overallTimeout }

    // MARK: events

    mutating func start(now: NIODeadline) -> [NetcheckAction] {
        sockets[.main] = .opening
        var actions: [NetcheckAction] = [.openSocket(.main, family: family)]
        advance(now: now, into: &actions)
        return actions
    }

    mutating func socketOpened(_ socket: NetcheckSocketID, localAddress: STUNAddress, now: NIODeadline) -> [NetcheckAction] {
        var actions: [NetcheckAction] = []
        if sockets[socket] == .opening {
            sockets[socket] = .open(localAddress)
            socketReady(socket, now: now, into: &actions)
        }
        advance(now: now, into: &actions)
        return actions
    }

    mutating func socketFailed(_ socket: NetcheckSocketID, reason: String, now: NIODeadline) -> [NetcheckAction] {
        var actions: [NetcheckAction] = []
        guard sockets[socket] == .opening else {
            advance(now: now, into: &actions)
            return actions
        }
        sockets[socket] = .failed(reason)
        if socket == .main {
            isTerminated = true
            return [.failed(.socketFailed(socket: socket, reason: reason))]
        }
        notes.append("Could not open the \(socket) socket (\(reason)); the tests that need it are unknown.")
        advance(now: now, into: &actions)
        return actions
    }

    mutating func wakeUp(now: NIODeadline) -> [NetcheckAction] {
        var actions: [NetcheckAction] = []
        scheduledWakeUp = nil
        advance(now: now, into: &actions)
        return actions
    }

    mutating func datagramReceived(on socket: NetcheckSocketID, from source: STUNAddress, bytes: ByteBuffer, now: NIODeadline) -> [NetcheckAction] {
        var actions: [NetcheckAction] = []
        handleDatagram(on: socket, from: source, bytes: bytes, now: now)
        advance(now: now, into: &actions)
        return actions
    }

    // MARK: datagrams

    private mutating func handleDatagram(on socket: NetcheckSocketID, from source: STUNAddress, bytes: ByteBuffer, now: NIODeadline) {
        guard bytes.readableBytes <= STUNLimits.maximumDatagramSize,
            let message = try? STUNMessage(datagram: bytes),
            message.type.method == .binding
        else {
            ignored.malformed += 1
            return
        }
        guard let index = transactions.firstIndex(where: { $0.id == message.transactionID }) else {
            ignored.unknownTransaction += 1
            return
        }
        if message.type.messageClass == .request {
            receivedRequest(transaction: index)
            return
        }
        guard message.type.messageClass != .indication, transactions[index].purpose != .hairpin else {
            ignored.unknownTransaction += 1
            return
        }
        guard transactions[index].socket == socket else {
            ignored.unexpectedSource += 1
            return
        }
        guard transactions[index].outcome.isPending else {
            ignored.duplicate += 1
            return
        }
        let transaction = transactions[index]
        if message.type.messageClass == .errorResponse {
            // A server that cannot honour CHANGE-REQUEST answers 420 from where the request went.
            guard source == transaction.expectedSource || source == transaction.destination else {
                ignored.unexpectedSource += 1
                return
            }
            let code = message.errorCode ?? STUNErrorCode(code: 500, reason: "error response without ERROR-CODE")
            transactions[index].outcome = .refused(code)
            return
        }
        guard source == transaction.expectedSource else {
            if transaction.purpose.isFilteringChangeTest, serverAddresses.contains(source) {
                transactions[index].outcome = .wrongOrigin(source)
            } else {
                ignored.unexpectedSource += 1
            }
            return
        }
        guard let mapped = message.mappedAddress, mapped.family == family else {
            ignored.malformed += 1
            return
        }
        var rtt: TimeAmount?
        if transaction.requestsSent == 1 {
            let sample = now - transaction.firstSentAt
            rtt = sample
            largestCleanRTT = max(largestCleanRTT ?? sample, sample)
        }
        transactions[index].outcome = .answered(
            NetcheckAnswer(
                mapped: mapped, otherAddress: message.otherAddress, responseOrigin: message.responseOrigin,
                source: source, rtt: rtt))
    }

    /// A request carrying one of our transaction ids came to one of our sockets: the hairpin test
    /// succeeded if it is the hairpin request; anything else is not ours to answer.
    private mutating func receivedRequest(transaction index: Int) {
        guard transactions[index].purpose == .hairpin else {
            ignored.unknownTransaction += 1
            return
        }
        guard transactions[index].outcome.isPending else {
            ignored.duplicate += 1
            return
        }
        transactions[index].outcome = .hairpinned
    }

    /// Every address the primary server pair answers from (used to recognise a server that
    /// answered a CHANGE-REQUEST from the wrong address).
    var serverAddresses: Set<STUNAddress> {
        guard let primary else { return [] }
        let a = servers[primary]
        guard let other = rfc5780OtherAddress else { return [a] }
        return [a, other, a.with(port: other.port), other.with(port: a.port)]
    }

    // MARK: transactions

    func transaction(_ purpose: NetcheckPurpose) -> NetcheckTransaction? {
        transactions.first { $0.purpose == purpose }
    }

    func outcome(_ purpose: NetcheckPurpose) -> NetcheckOutcome? {
        transaction(purpose)?.outcome
    }

    /// The RTO for a transaction started now.
    var currentRTO: TimeAmount { NetcheckRetransmission.rto(measuredRTT: largestCleanRTT) }

    mutating func startTransaction(
        _ purpose: NetcheckPurpose, socket: NetcheckSocketID, to destination: STUNAddress,
        expectedSource: STUNAddress? = nil, change: STUNChangeRequest? = nil,
        now: NIODeadline, into actions: inout [NetcheckAction]
    ) {
        let id = ids.next()
        var message = STUNMessage(type: .bindingRequest, transactionID: id)
        if let change { message.attributes.append(.changeRequest(change)) }
        // FINGERPRINT lets the server (and us) tell STUN from other traffic on a shared port.
        let bytes = message.encoded(options: STUNEncodingOptions(fingerprint: true))
        let schedule = NetcheckRetransmission(rto: currentRTO)
        transactions.append(
            NetcheckTransaction(
                id: id, purpose: purpose, socket: socket, destination: destination,
                expectedSource: expectedSource ?? destination, bytes: bytes, schedule: schedule,
                firstSentAt: now, sequence: transactions.count, requestsSent: 1,
                deadline: now + (schedule.interval(afterRequest: 1) ?? schedule.finalWait),
                outcome: .pending))
        actions.append(.send(socket: socket, to: destination, bytes: bytes))
    }

    /// Retransmits or gives up every transaction whose deadline has come.
    mutating func fireTimers(now: NIODeadline, into actions: inout [NetcheckAction]) {
        for index in transactions.indices where transactions[index].outcome.isPending && transactions[index].deadline <= now {
            if let bytes = transactions[index].fire(now: now) {
                actions.append(.send(socket: transactions[index].socket, to: transactions[index].destination, bytes: bytes))
            }
        }
    }
}

/// Datagrams the run ignored, by reason (reported so a misbehaving path or server is visible).
public struct NetcheckIgnoredDatagrams: Hashable, Sendable, Codable {
    /// Not a well-formed STUN Binding message (or a success answer without a mapped address).
    public var malformed: Int
    /// A STUN message whose transaction id is not one of ours.
    public var unknownTransaction: Int
    /// An answer from another address (or to another socket) than the request was sent to.
    public var unexpectedSource: Int
    /// A second answer to a transaction already settled (normal after retransmissions).
    public var duplicate: Int

    public init(malformed: Int = 0, unknownTransaction: Int = 0, unexpectedSource: Int = 0, duplicate: Int = 0) {
        self.malformed = malformed
        self.unknownTransaction = unknownTransaction
        self.unexpectedSource = unexpectedSource
        self.duplicate = duplicate
    }

    /// Everything but duplicates: what deserves a note.
    public var suspicious: Int { malformed + unknownTransaction + unexpectedSource }
}
