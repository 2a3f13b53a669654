import NIOCore

/// One INDEX request on its way to the store: who asked (the registered PeerID, proved by its
/// signature; the session; the source address, for per-source login limits) and what.
public struct IndexCallContext: Equatable, Sendable {
    public var peer: PeerID
    /// The session it came in on (its answer goes back there, if it still exists).
    public var session: UInt64
    /// The request's transaction id.
    public var requestID: UInt32
    /// The address the request came from.
    public var source: PeerEndpoint
    public var call: IndexCall

    public init(peer: PeerID, session: UInt64, requestID: UInt32, source: PeerEndpoint, call: IndexCall) {
        self.peer = peer
        self.session = session
        self.requestID = requestID
        self.source = source
        self.call = call
    }
}

/// INDEX requests in flight and recently answered, per session and transaction id: a
/// retransmission of a request in flight is dropped (its answer is coming), one of an answered
/// request gets the same answer again; nothing runs twice.
struct IndexCallTable {
    struct Key: Hashable {
        var session: UInt64
        var request: UInt32
    }

    private var inFlight: Set<Key> = []
    private var inFlightPerSession: [UInt64: Int] = [:]
    private var answered = TimedMemory<Key, ControlFrame>(lifetimeMillis: CheckpointConfiguration.indexAnswerMemoryMillis,
                                                          capacity: CheckpointConfiguration.maximumRememberedIndexAnswers)

    enum Admission: Equatable {
        case run
        case inFlight
        case answered(ControlFrame)
        case tooMany
    }

    mutating func admit(_ key: Key) -> Admission {
        if let frame = answered[key] { return .answered(frame) }
        if inFlight.contains(key) { return .inFlight }
        guard inFlightPerSession[key.session, default: 0] < CheckpointConfiguration.maximumIndexCallsInFlight else { return .tooMany }
        inFlight.insert(key)
        inFlightPerSession[key.session, default: 0] += 1
        return .run
    }

    /// Records the answer; false when the request was not in flight (its session ended).
    mutating func finish(_ key: Key, answer: ControlFrame, ms: UInt64) -> Bool {
        guard inFlight.remove(key) != nil else { return false }
        release(key.session)
        answered.remember(answer, for: key, ms: ms)
        return true
    }

    mutating func removeSession(_ session: UInt64) {
        guard inFlightPerSession[session] != nil else { return }
        inFlight = inFlight.filter { $0.session != session }
        inFlightPerSession[session] = nil
    }

    mutating func forget(dueAt ms: UInt64) { answered.forget(dueAt: ms) }

    private mutating func release(_ session: UInt64) {
        let n = inFlightPerSession[session, default: 1] - 1
        inFlightPerSession[session] = n > 0 ? n : nil
    }
}

/// The INDEX over the control channel: the checkpoint authenticates, de-duplicates and
/// rate-limits; the store, outside this machine, decides (see IndexFrames.swift for the flow).
extension CheckpointMachine {
    mutating func indexRequest(_ call: IndexCall, from peer: PeerID, id: UInt32, session sid: UInt64, ms: UInt64,
                               into out: inout [CheckpointAction]) {
        guard configuration.index else {
            respond(.error(ControlFailure(.unavailable, "this supernode runs no INDEX; ask its operator, or use a supernode that does")),
                    id: id, session: sid, into: &out)
            return
        }
        switch indexCalls.admit(.init(session: sid, request: id)) {
        case .run:
            guard let source = sessions[sid]?.endpoint else { return }
            counters.indexCalls += 1
            out.append(.index(IndexCallContext(peer: peer, session: sid, requestID: id, source: source, call: call)))
        case .inFlight:
            break
        case .answered(let frame):
            respond(frame, id: id, session: sid, into: &out)
        case .tooMany:
            respond(.error(ControlFailure(.rateLimited, "\(CheckpointConfiguration.maximumIndexCallsInFlight) INDEX requests are already waiting; wait for their answers")),
                    id: id, session: sid, into: &out)
        }
    }

    /// Answers an INDEX request handed out as `.index(context)`. Dropped when its session ended
    /// meanwhile (the peer asks again on its new session).
    public mutating func answerIndex(_ context: IndexCallContext, with result: Result<IndexReply, ControlFailure>, now: NIODeadline,
                                     into out: inout [CheckpointAction]) {
        var frame: ControlFrame
        switch result {
        case .success(let reply): frame = .indexResult(reply)
        case .failure(let failure): frame = .error(failure)
        }
        var encoded = ByteBuffer()
        if encoded.writeControlFrame(frame, id: context.requestID) > ControlLimits.maximumFrameBytes {
            frame = .error(ControlFailure(.tooLarge, "the answer does not fit one control frame (\(ControlLimits.maximumFrameBytes) bytes); ask for a smaller page"))
        }
        guard indexCalls.finish(.init(session: context.session, request: context.requestID), answer: frame, ms: Self.millis(now)),
              sessions[context.session] != nil else { return }
        counters.indexAnswers += 1
        respond(frame, id: context.requestID, session: context.session, into: &out)
    }

    /// Pushes a network member's status change to `peer` (acknowledged and retransmitted like
    /// every push); false when `peer` is not registered here.
    @discardableResult
    public mutating func pushNetworkStatus(_ status: NetworkMemberStatus, to peer: PeerID, now: NIODeadline,
                                           into out: inout [CheckpointAction]) -> Bool {
        push(.networkStatus(status), to: peer, ms: Self.millis(now), into: &out)
    }
}
