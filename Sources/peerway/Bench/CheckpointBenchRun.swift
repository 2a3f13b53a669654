#if canImport(Glibc)
import Glibc
#endif
import CPeerwayLinux
import Foundation
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN

/*
 The checkpoint load generator's loop: one thread, epoll over all sockets, recvmmsg/sendmmsg.

     registering  registrations started on idle sockets (at most `handshakesInFlight`), hellos
                  and registers retransmitted after `handshakeTimeout`; ends when all peers are
                  registered or after `registerTimeout`
     steady       `duration` seconds of keepalives only: acks/s and the server's CPU
     messaging    `messageDuration` seconds of sendMessage between `messagePairs` pairs, each with
                  at most `window` in flight, paced to `messageRate` or as fast as answered

 Keepalives run from the first registration to the end: a sweep over the peer numbers, one full
 pass every `keepaliveSeconds`, sends one to each registered peer it passes, so the load is
 spread uniformly. Every phase is bounded in time and the whole run by `deadline`.
*/

extension CheckpointLoad {
    // MARK: - Receiving

    mutating func receive(_ s: Int, now: UInt64) {
        let batch = CheckpointLoadConfiguration.batch
        let fd = fds[s], buffers = recvBuffers, slot = recvSlot
        for _ in 0..<4 {
            let got = Int(recvLengths.withUnsafeMutableBufferPointer { lengths in
                cpeerway_receive_batch(fd, buffers, slot, UInt32(batch), lengths.baseAddress)
            })
            guard got > 0 else { return }
            for k in 0..<got {
                datagram.clear()
                datagram.writeBytes(UnsafeRawBufferPointer(start: recvBuffers + k * recvSlot, count: Int(recvLengths[k])))
                handle(socket: s, now: now)
            }
            if got < batch { return }
        }
    }

    mutating func handle(socket s: Int, now: UInt64) {
        var buffer = datagram
        guard let packet = try? buffer.readControlPacket() else {
            result.errors["malformed", default: 0] += 1
            return
        }
        switch packet {
        case .cookie(let cookie): acceptCookie(cookie, socket: s, now: now)
        case .helloReply(let reply): acceptHelloReply(reply, socket: s, now: now)
        case .sessionUnknown(let sid):
            result.sessionUnknown += 1
            if let p = peerOfSession[sid] {
                let p = Int(p)
                if hsPeer[s] == Int32(p) { endHandshake(s) }
                requeue(p)
            }
        case .sealed(let sealed): handleSealed(sealed, socket: s, now: now)
        case .hello: result.errors["unexpected hello", default: 0] += 1
        }
    }

    mutating func handleSealed(_ sealed: ControlSealed, socket s: Int, now: UInt64) {
        guard let p32 = peerOfSession[sealed.sessionID] else {
            result.unknownSessionPackets += 1
            return
        }
        let p = Int(p32)
        guard replays[p].check(sealed.counter) else {
            result.replays += 1
            return
        }
        guard var plain = try? ControlCipher.openPacket(sealed, key: receiveKeys[p]) else {
            result.authenticationFailures += 1
            return
        }
        replays[p].record(sealed.counter)
        guard let envelope = try? plain.readControlFrame() else {
            result.errors["malformed frame", default: 0] += 1
            return
        }
        switch envelope.frame {
        case .registered:
            if peerPhase[p] != 2 {
                peerPhase[p] = 2
                registered += 1
                lastRegistrationAt = now
                registrationTimes?.append(now)
            }
            if hsPeer[s] == p32, hsStage[s] == 3 {
                timeStep(s, now: now)
                endHandshake(s)
            }
        case .keepaliveAck:
            keepaliveAcks += 1
            if keepaliveSentAt[p] != 0, envelope.id == keepaliveIDs[p] {
                if recordKeepaliveLatency { keepaliveLatencies.append(micros(now &- keepaliveSentAt[p])) }
                keepaliveSentAt[p] = 0
            }
        case .deliver, .status, .connectRequested, .connectAnswered, .messageStatus:
            send(.ack, id: envelope.id, peer: p)
        case .messageOutcome(let outcome):
            messageAnswered(peer: p, id: envelope.id, outcome: outcome, now: now)
        case .lookupResult, .searchResult:
            queryAnswered(id: envelope.id, frame: envelope.frame, now: now)
        case .error(let failure):
            result.errors["\(failure.code)", default: 0] += 1
            if envelope.id & CheckpointLoadConfiguration.messageTag != 0 {
                messageRefused(peer: p, id: envelope.id)
            } else if CheckpointLoadQueries.isQuery(envelope.id) {
                queryRefused(id: envelope.id)
            } else if envelope.id == CheckpointLoadConfiguration.registerID, hsPeer[s] == p32, hsStage[s] == 3,
                      failure.code != .rateLimited {
                peerPhase[p] = 3
                endHandshake(s)
            }
        default:
            result.errors["unexpected \(envelope.frame.kind)", default: 0] += 1
        }
    }

    func micros(_ nanos: UInt64) -> UInt32 { UInt32(min(UInt64(UInt32.max), nanos / 1000)) }

    // MARK: - Keepalives

    /// Sends the keepalives due by `now` (at most `budget`, so answers keep being read).
    mutating func sweepKeepalives(now: UInt64, budget: Int = 4096) {
        guard registered > 0 else { return }
        let period = Double(c.keepaliveSeconds) * 1e9
        let target = Int(Double(now &- keepaliveStart) / period * Double(n))
        var left = budget
        while keepalivePosition < target && left > 0 {
            let p = keepalivePosition % n
            keepalivePosition += 1
            guard peerPhase[p] == 2 else { continue }
            if keepaliveSentAt[p] != 0 { result.keepalivesUnanswered += 1 }
            keepaliveSequence &+= 1
            let id = CheckpointLoadConfiguration.keepaliveTag | (keepaliveSequence & 0x3FFF_FFFF)
            keepaliveIDs[p] = id
            keepaliveSentAt[p] = now
            send(.keepalive, id: id, peer: p)
            keepalivesSent += 1
            left -= 1
        }
    }

    // MARK: - Messages

    mutating func preparePairs() {
        pairs = max(0, min(c.messagePairs, n / 2))
        guard pairs > 0 else { return }
        pairStride = max(1, n / (2 * pairs))
        messageSentAt = Array(repeating: 0, count: pairs * c.window)
        messageIDOf = Array(repeating: 0, count: pairs * c.window)
        nextMessageID = Array(repeating: 1, count: pairs)
    }

    /// Uses these pairs (sender i sends to recipient i; senders distinct) instead of the default
    /// layout, with `c.window` messages in flight each; counters and latencies start from zero.
    mutating func usePairs(senders: [Int], recipients: [Int]) {
        precondition(senders.count == recipients.count, "one recipient per sender")
        var index: [Int: Int] = [:]
        for (i, p) in senders.enumerated() { index[p] = i }
        precondition(index.count == senders.count, "senders must be distinct")
        pairList = CheckpointLoadPairs(senders: senders, recipients: recipients, pairOfSender: index)
        pairs = senders.count
        messageSentAt = Array(repeating: 0, count: pairs * c.window)
        messageIDOf = Array(repeating: 0, count: pairs * c.window)
        if nextMessageID.count < pairs { nextMessageID = Array(repeating: 1, count: pairs) }
        messageLatencies = []
        messagesSent = 0
        messagesDelivered = 0
        messagesFailed = 0
        messagesTimedOut = 0
        messagesRefused = 0
        messageCursor = 0
    }

    func sender(_ i: Int) -> Int { pairList?.senders[i] ?? 2 * i * pairStride }
    func recipient(_ i: Int) -> Int { pairList?.recipients[i] ?? (2 * i + 1) * pairStride }

    func pair(ofSender p: Int) -> Int? {
        if let pairList { return pairList.pairOfSender[p] }
        guard p % (2 * pairStride) == 0 else { return nil }
        let i = p / (2 * pairStride)
        return i < pairs ? i : nil
    }

    mutating func sendMessage(pair i: Int, slot w: Int, now: UInt64) {
        let r = recipient(i)
        let id = nextMessageID[i]
        nextMessageID[i] += 1
        messageIDOf[i * c.window + w] = id
        messageSentAt[i * c.window + w] = now
        let message = OutgoingMessage(to: PeerID(high: peerHigh[r], low: peerLow[r]), messageID: id, text: messageText)
        send(.sendMessage(message), id: CheckpointLoadConfiguration.messageTag | UInt32(w), peer: sender(i))
        messagesSent += 1
    }

    mutating func messageAnswered(peer p: Int, id: UInt32, outcome: MessageOutcome, now: UInt64) {
        guard id & CheckpointLoadConfiguration.messageTag != 0, let i = pair(ofSender: p) else { return }
        let w = Int(id & 0xFFFF)
        guard w < c.window else { return }
        let slot = i * c.window + w
        guard messageSentAt[slot] != 0, messageIDOf[slot] == outcome.messageID else { return }
        switch outcome.outcome {
        case .queued: return
        case .delivered:
            messagesDelivered += 1
            messageLatencies.append(micros(now &- messageSentAt[slot]))
        case .offline, .timedOut:
            messagesFailed += 1
        }
        messageSentAt[slot] = 0
        if phase == .messaging && c.messageRate == 0 { sendMessage(pair: i, slot: w, now: now) }
    }

    mutating func messageRefused(peer p: Int, id: UInt32) {
        guard let i = pair(ofSender: p) else { return }
        let w = Int(id & 0xFFFF)
        guard w < c.window else { return }
        messagesRefused += 1
        messageSentAt[i * c.window + w] = 0
    }

    /// Times out lost messages and, unpaced, refills free window slots.
    mutating func maintainMessages(now: UInt64) {
        let timeout = UInt64(c.messageTimeout * 1e9)
        for slot in 0..<(pairs * c.window) {
            if messageSentAt[slot] != 0, now &- messageSentAt[slot] > timeout {
                messageSentAt[slot] = 0
                messagesTimedOut += 1
            }
            if messageSentAt[slot] == 0, phase == .messaging, c.messageRate == 0 {
                sendMessage(pair: slot / c.window, slot: slot % c.window, now: now)
            }
        }
    }

    /// Paced mode: sends the messages due by `now` from pairs with a free slot.
    mutating func paceMessages(now: UInt64, since start: UInt64, sentBefore: Int) {
        let due = Int(Double(now &- start) / 1e9 * Double(c.messageRate)) - (messagesSent - sentBefore)
        var left = min(due, 1024)
        var checked = 0
        let slots = pairs * c.window
        while left > 0 && checked < slots {
            let slot = messageCursor % slots
            messageCursor += 1
            checked += 1
            if messageSentAt[slot] == 0 {
                sendMessage(pair: slot / c.window, slot: slot % c.window, now: now)
                left -= 1
            }
        }
    }
}
