import NIOCore

/// Instant messages and connection negotiation on the checkpoint.
///
/// A message goes `sender → sendMessage → checkpoint → deliver push → recipient → ack →
/// checkpoint → messageOutcome(delivered) → sender`: the sender's request is answered only when
/// the recipient's library acknowledged, so the common case costs four datagrams. If the sender
/// retransmits meanwhile it is told `queued` and the outcome follows as a `messageStatus` push.
/// The recipient deduplicates pushes by id, so each message is delivered once; the sender's
/// library sends the next message to the same recipient only after the previous outcome, so
/// messages arrive in order per pair.
extension CheckpointMachine {
    mutating func sendMessage(_ message: OutgoingMessage, from peer: PeerID, id: UInt32, session sid: UInt64, ms: UInt64,
                              into out: inout [CheckpointAction]) {
        let key = SenderMessageKey(session: sid, messageID: message.messageID)
        if markQueued(key) {
            respond(.messageOutcome(MessageOutcome(to: message.to, messageID: message.messageID, outcome: .queued)),
                    id: id, session: sid, into: &out)
            return
        }
        if let done = recentOutcomes[key] {
            respond(.messageOutcome(MessageOutcome(to: message.to, messageID: message.messageID, outcome: done)),
                    id: id, session: sid, into: &out)
            return
        }
        guard let sender = sessions[sid] else { return }
        guard Int(sender.messagesInFlight) < CheckpointConfiguration.maximumMessagesInFlightPerSender else {
            respond(.error(ControlFailure(.limitReached, "at most \(CheckpointConfiguration.maximumMessagesInFlightPerSender) messages in flight per peer")),
                    id: id, session: sid, into: &out)
            return
        }
        let flight = MessageFlight(senderSession: sid, transaction: id, to: message.to, messageID: message.messageID)
        let delivered = push(.deliver(IncomingMessage(from: peer, messageID: message.messageID, text: message.text)),
                             to: message.to, flight: flight, ms: ms, into: &out)
        if delivered {
            sessions[sid]!.messagesInFlight += 1
        } else {
            remember(key, .offline, ms: ms)
            counters.messagesFailed += 1
            counters.messagesOffline += 1
            respond(.messageOutcome(MessageOutcome(to: message.to, messageID: message.messageID, outcome: .offline)),
                    id: id, session: sid, into: &out)
        }
    }

    /// Marks the message in flight under `key` (here or through another supernode) as answered
    /// `queued`, so its outcome goes out as a push; false when it is not in flight.
    private mutating func markQueued(_ key: SenderMessageKey) -> Bool {
        if let remote = remoteFlightsBySender[key], remotePushes[remote] != nil {
            remotePushes[remote]!.flight!.answeredQueued = true
            return true
        }
        if let local = flightsBySender[key], pushes[local] != nil {
            pushes[local]!.flight!.answeredQueued = true
            return true
        }
        return false
    }

    private mutating func remember(_ key: SenderMessageKey, _ outcome: MessageOutcome.Outcome, ms: UInt64) {
        recentOutcomes.remember(outcome, for: key, ms: ms)
    }

    /// A push was acknowledged.
    mutating func handleAck(pushID: UInt32, session sid: UInt64, ms: UInt64, into out: inout [CheckpointAction]) {
        guard let pending = pushes.removeValue(forKey: PushKey(session: sid, push: pushID)) else { return }
        settle(pending, .delivered, ms: ms, into: &out)
    }

    /// Tells a message's sender its final outcome.
    mutating func finish(_ flight: MessageFlight, outcome: MessageOutcome.Outcome, ms: UInt64, into out: inout [CheckpointAction]) {
        let key = SenderMessageKey(session: flight.senderSession, messageID: flight.messageID)
        flightsBySender[key] = nil
        remoteFlightsBySender[key] = nil
        remember(key, outcome, ms: ms)
        if outcome == .delivered { counters.messagesDelivered += 1 } else { counters.messagesFailed += 1 }
        if outcome == .offline { counters.messagesOffline += 1 }
        guard let sender = sessions[flight.senderSession] else { return }
        sessions[flight.senderSession]!.messagesInFlight = sender.messagesInFlight > 0 ? sender.messagesInFlight - 1 : 0
        let result = MessageOutcome(to: flight.to, messageID: flight.messageID, outcome: outcome)
        if flight.answeredQueued, let senderPeer = sender.peer {
            push(.messageStatus(result), to: senderPeer, ms: ms, into: &out)
        } else {
            respond(.messageOutcome(result), id: flight.transaction, session: flight.senderSession, into: &out)
        }
    }

    // MARK: - Negotiation

    mutating func connect(_ request: ConnectRequest, from peer: PeerID, id: UInt32, session sid: UInt64, ms: UInt64,
                          into out: inout [CheckpointAction]) {
        let key = NegotiationKey(requester: peer, callee: request.to, requestID: request.requestID)
        if negotiations[key] != nil {
            respond(.ok, id: id, session: sid, into: &out)
            return
        }
        guard directory.entry(for: request.to) != nil else {
            respond(.error(ControlFailure(.peerOffline, "\(request.to) is not online")), id: id, session: sid, into: &out)
            return
        }
        guard let s = sessions[sid], Int(s.openConnectRequests) < CheckpointConfiguration.maximumOpenConnectRequests else {
            respond(.error(ControlFailure(.limitReached, "at most \(CheckpointConfiguration.maximumOpenConnectRequests) open connection requests per peer")),
                    id: id, session: sid, into: &out)
            return
        }
        sessions[sid]!.openConnectRequests += 1
        negotiations[key] = Negotiation(requesterSession: sid, answered: false,
                                        deadlineMillis: ms + CheckpointConfiguration.connectAnswerTimeoutMillis)
        push(.connectRequested(IncomingConnectRequest(from: peer, requestID: request.requestID, transport: request.transport,
                                                      note: request.note)), to: request.to, ms: ms, into: &out)
        respond(.ok, id: id, session: sid, into: &out)
    }

    mutating func answerConnect(_ decision: ConnectDecision, by peer: PeerID, id: UInt32, session sid: UInt64, ms: UInt64,
                                into out: inout [CheckpointAction]) {
        let key = NegotiationKey(requester: decision.peer, callee: peer, requestID: decision.requestID)
        if negotiations[key] == nil, forwardToHome(of: decision.peer, .answerConnect(decision), from: peer, session: sid, into: &out) {
            respond(.ok, id: id, session: sid, into: &out)
            return
        }
        guard let negotiation = negotiations[key] else {
            respond(.error(ControlFailure(.unknownRequest, "no open connection request \(decision.requestID) from \(decision.peer)")),
                    id: id, session: sid, into: &out)
            return
        }
        if !negotiation.answered {
            close(key, ms: ms, accepted: decision.accepted)
            push(.connectAnswered(ConnectDecision(peer: peer, requestID: decision.requestID, accepted: decision.accepted,
                                                  reason: decision.reason)), to: decision.peer, ms: ms, into: &out)
        }
        respond(.ok, id: id, session: sid, into: &out)
    }

    /// Marks a negotiation answered (remembered a while for retransmitted answers).
    private mutating func close(_ key: NegotiationKey, ms: UInt64, accepted: Bool = false) {
        guard let n = negotiations[key], !n.answered else { return }
        negotiations[key] = Negotiation(requesterSession: n.requesterSession, answered: true, accepted: accepted,
                                        deadlineMillis: ms + CheckpointConfiguration.connectMemoryMillis)
        if let s = sessions[n.requesterSession], s.openConnectRequests > 0 {
            sessions[n.requesterSession]!.openConnectRequests -= 1
        }
    }

    /// Answers `refused` for every open negotiation `peer` was the callee of (it went away), and
    /// drops the ones it asked for.
    mutating func refuseNegotiations(involving peer: PeerID, ms: UInt64, into out: inout [CheckpointAction]) {
        guard !negotiations.isEmpty else { return }
        for (key, n) in negotiations where !n.answered && (key.callee == peer || key.requester == peer) {
            close(key, ms: ms)
            if key.callee == peer {
                push(.connectAnswered(ConnectDecision(peer: peer, requestID: key.requestID, accepted: false,
                                                      reason: "peer went offline")), to: key.requester, ms: ms, into: &out)
            }
        }
    }

    mutating func timeOutNegotiations(ms: UInt64, into out: inout [CheckpointAction]) {
        guard !negotiations.isEmpty else { return }
        for (key, n) in negotiations where n.deadlineMillis <= ms {
            if n.answered {
                negotiations[key] = nil
            } else {
                close(key, ms: ms)
                push(.connectAnswered(ConnectDecision(peer: key.callee, requestID: key.requestID, accepted: false,
                                                      reason: "no answer within \(CheckpointConfiguration.connectAnswerTimeoutMillis / 1000) s")),
                     to: key.requester, ms: ms, into: &out)
            }
        }
    }
}
