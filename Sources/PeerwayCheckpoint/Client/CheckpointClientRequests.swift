import NIOCore

// Requests of `CheckpointClientMachine`: transaction ids, sending while the session allows it,
// retransmission with `CheckpointClientBackoff` from the measured round trip (`ClientRoundTrip`),
// and what a timeout means for each purpose.

/// The machine's state without its payload.
enum ClientPhase: Equatable, Sendable {
    case idle, handshaking, registering, registered, stopping, stopped
}

extension CheckpointClientMachine {
    /// Records a request and sends it if the session allows it now.
    @discardableResult
    mutating func issue(_ frame: ControlFrame, purpose: ClientRequest.Purpose, deadline: NIODeadline, now: NIODeadline) -> UInt32 {
        let id = nextTransaction
        nextTransaction = nextTransaction == .max ? 1 : nextTransaction + 1
        requests[id] = ClientRequest(purpose: purpose, frame: frame, deadline: deadline)
        if canSend(purpose) { transmit(id, now: now) }
        return id
    }

    func canSend(_ purpose: ClientRequest.Purpose) -> Bool {
        switch phase {
        case .registered: purpose != .unregister
        case .registering: purpose == .register
        case .stopping: purpose == .unregister
        case .idle, .handshaking, .stopped: false
        }
    }

    mutating func transmit(_ id: UInt32, now: NIODeadline) {
        guard var request = requests[id] else { return }
        request.sends += 1
        if request.sends > 1 { statistics.retransmissions += 1 } else { request.firstSentAt = now }
        // The first gap is the measured retransmission timeout; it doubles up to the schedule's maximum.
        let schedule = CheckpointClientBackoff(initialInterval: roundTrip.timeout, maximumInterval: CheckpointClientLimits.requestMaximumInterval,
                                               timeout: configuration.requestTimeout)
        request.nextSendAt = now + schedule.interval(afterSend: request.sends)
        requests[id] = request
        sendSealed(request.frame, id: id)
    }

    mutating func sendHeldRequests(now: NIODeadline) {
        for id in requests.keys.sorted() where requests[id]?.sends == 0 {
            if let purpose = requests[id]?.purpose, canSend(purpose) { transmit(id, now: now) }
        }
    }

    /// Retransmits what is due and times out what is over its deadline.
    mutating func fireRequests(now: NIODeadline) {
        for id in requests.keys.sorted() {
            guard let request = requests[id] else { continue }
            if now >= request.deadline {
                requests[id] = nil
                timedOut(request, now: now)
            } else if let due = request.nextSendAt, now >= due, canSend(request.purpose) {
                transmit(id, now: now)
            }
        }
    }

    mutating func timedOut(_ request: ClientRequest, now: NIODeadline) {
        switch request.purpose {
        case .register:
            if phase == .registered { sessionLost(.keepaliveTimedOut, now: now, moveOn: true) } else { attemptFailed(now: now) }
        case .keepalive:
            sessionLost(.keepaliveTimedOut, now: now, moveOn: true)
        case .rewatch:
            break
        case .unregister:
            finish(.requested)
        case .call(let token):
            complete(token, .failure(.timedOut))
        case .message(let to):
            messages.inFlight[to]?.transaction = nil
            finishMessage(to: to, .success(.messageOutcome(.timedOut)), now: now)
        }
    }

    /// A keepalive's answer: a new observed endpoint means registering again on this session.
    ///
    /// The same public IP with a new port, seen by a keepalive, means the NAT forgot the mapping
    /// while the peer was idle: its UDP timeout is shorter than the keepalive interval, and pushes
    /// sent meanwhile were lost. The interval is then halved (down to the smallest the checkpoint
    /// accepts) and registered, so the mapping lives from then on.
    mutating func keepaliveAnswered(_ frame: ControlFrame, now: NIODeadline) {
        guard case .keepaliveAck(let observed, let supernodes) = frame else {
            statistics.unexpected += 1
            return
        }
        learnSupernodes(supernodes, observed: observed)
        guard let registered = registration?.observed, observed != registered,
              !requests.values.contains(where: { $0.purpose == .register }) else { return }
        if observed.ip == registered.ip, keepaliveSeconds > ControlLimits.keepaliveSecondsRange.lowerBound {
            keepaliveSeconds = Self.clampKeepalive(keepaliveSeconds / 2)
            statistics.keepaliveShortened += 1
        }
        sendRegister(now: now)
    }
}
