import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN

/*
 The registrations of the checkpoint load's peers (state in CheckpointBenchLoad.swift): a socket
 runs one at a time, hello -> cookie -> hello with cookie -> hello reply -> signed register ->
 registered, retransmitting after max(`handshakeTimeout`, 4x the smoothed answer time) and
 starting over with a fresh key after four tries.
*/

extension CheckpointLoad {
    /// The next peer socket `s` should register, if any.
    mutating func nextPeer(of s: Int) -> Int? {
        while let p = redo[s].popLast() {
            if peerPhase[Int(p)] == 0 { return Int(p) }
        }
        let end = min(n, (s + 1) * block)
        while blockCursor[s] < end {
            let p = blockCursor[s]
            blockCursor[s] += 1
            if peerPhase[p] == 0 { return p }
        }
        return nil
    }

    /// Starts registrations on idle sockets up to the in-flight bound.
    mutating func startHandshakes(now: UInt64) {
        while activeHandshakes < c.handshakesInFlight, let s32 = idleSockets.popLast() {
            let s = Int(s32)
            isIdle[s] = false
            guard let p = nextPeer(of: s) else { continue }
            peerPhase[p] = 1
            hsPeer[s] = Int32(p)
            hsStage[s] = 1
            hsTries[s] = 0
            hsInitiator[s] = initiator(forSocket: s)
            activeHandshakes += 1
            sendHello(s, now: now)
        }
    }

    /// Frees socket `s` for its next registration.
    mutating func endHandshake(_ s: Int) {
        if hsStage[s] != 0 { activeHandshakes -= 1 }
        hsStage[s] = 0
        hsPeer[s] = -1
        hsInitiator[s] = nil
        hsRegister[s] = nil
        if !isIdle[s] {
            isIdle[s] = true
            idleSockets.append(Int32(s))
        }
    }

    /// Peer `p` must handshake again (its session is unknown to the checkpoint).
    mutating func requeue(_ p: Int) {
        if peerPhase[p] == 2 { registered -= 1 }
        peerPhase[p] = 0
        peerOfSession[sessionIDs[p]] = nil
        let s = socketOf(p)
        redo[s].append(Int32(p))
        if !isIdle[s] && hsStage[s] == 0 {
            isIdle[s] = true
            idleSockets.append(Int32(s))
        }
    }

    /// Retransmits hellos and registers that got no answer in time.
    mutating func retransmitHandshakes(now: UInt64) {
        let timeout = UInt64(max(c.handshakeTimeout * 1e9, 4 * stepNanos))
        for s in 0..<socketCount where hsStage[s] != 0 && now &- hsSentAt[s] > timeout {
            hsTries[s] += 1
            let p = Int(hsPeer[s])
            if hsTries[s] > 4 {
                // Start over with a fresh key: the cookie may be stale or the session gone.
                result.handshakeRestarts += 1
                if hsStage[s] == 3 { peerOfSession[sessionIDs[p]] = nil }
                hsStage[s] = 1
                hsTries[s] = 0
                hsRegister[s] = nil
                hsInitiator[s] = initiator(forSocket: s)
                sendHello(s, now: now)
            } else if hsStage[s] == 3, let plain = hsRegister[s] {
                result.registerRetransmits += 1
                sendPlain(plain, peer: p)
                hsSentAt[s] = now
            } else {
                result.handshakeRetransmits += 1
                sendHello(s, now: now)
            }
        }
    }

    /// Feeds the answer time of socket `s`'s current step into `stepNanos` (first tries only).
    mutating func timeStep(_ s: Int, now: UInt64) {
        guard hsTries[s] == 0 else { return }
        let t = Double(now &- hsSentAt[s])
        stepNanos = stepNanos == 0 ? t : 0.99 * stepNanos + 0.01 * t
    }

    mutating func acceptCookie(_ cookie: ControlCookie, socket s: Int, now: UInt64) {
        guard hsStage[s] == 1 || hsStage[s] == 2, var initiator = hsInitiator[s], initiator.accept(cookie) else { return }
        timeStep(s, now: now)
        hsInitiator[s] = initiator
        hsStage[s] = 2
        sendHello(s, now: now)
    }

    /// Completes the key exchange and sends the signed registration.
    mutating func acceptHelloReply(_ reply: ControlHelloReply, socket s: Int, now: UInt64) {
        guard hsStage[s] == 1 || hsStage[s] == 2, let initiator = hsInitiator[s] else { return }
        guard let (keys, _) = try? initiator.complete(reply) else {
            result.authenticationFailures += 1
            return
        }
        timeStep(s, now: now)
        let p = Int(hsPeer[s])
        sessionIDs[p] = reply.sessionID
        sendKeys[p] = keys.peerToCheckpoint
        receiveKeys[p] = keys.checkpointToPeer
        sendCounters[p] = 0
        replays[p] = ReplayWindow()
        peerOfSession[reply.sessionID] = Int32(p)
        let identity = Self.identity(p)
        let metadata = c.metadata ? ((try? PeerMetadata(["name": "peer-\(p)"])) ?? PeerMetadata()) : PeerMetadata()
        var request = RegisterRequest(
            publicKey: Array(identity.publicKey.rawRepresentation), keepaliveSeconds: UInt16(c.keepaliveSeconds),
            candidates: [STUNAddress(ip: .v4(socketIPs[s]), port: socketPorts[s])], metadata: metadata, signature: [])
        request.signature = (try? identity.signature(for: request.signedBytes(transcript: keys.transcript))) ?? []
        let id = identity.peerID
        peerHigh[p] = id.high
        peerLow[p] = id.low
        var plain = ByteBuffer()
        plain.writeControlFrame(.register(request), id: CheckpointLoadConfiguration.registerID)
        hsRegister[s] = plain
        hsStage[s] = 3
        hsTries[s] = 0
        hsSentAt[s] = now
        sendPlain(plain, peer: p)
    }
}
