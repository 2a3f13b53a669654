import PeerwayCheckpoint
import PeerwaySTUN

/// Recovery: every path failed, or the host's network changed (a roam). The relay is bound again
/// from the new address, this side's address is gathered anew and sent to the other side as a
/// `candidate`, and both sides punch to each other's current address.
extension TunnelPathMachine {
    /// The host's addresses changed (an interface came or went, another network): recover the
    /// paths at once rather than after the checks fail.
    public mutating func networkChanged(nowMillis now: UInt64) -> [Action] {
        guard traversal == nil else { return [] }
        recoveryBackoff = TunnelPathLimits.firstRecoveryBackoffMillis
        nextRecovery = 0
        return startRecovery(now)
    }

    /// Another address of this side the other side should probe (a port mapping made after the
    /// offer): sent as a `candidate` like a new address after a network change.
    public mutating func advertise(_ address: PeerEndpoint) {
        candidate = (address, 0, nil)
    }

    /// This side's server-reflexive address, as a `gather` found it (socket 0).
    public mutating func gathered(_ address: PeerEndpoint, nowMillis now: UInt64) {
        defer { reflexive = address }
        // A new address (or the first learnt, during a recovery): the other side must learn it
        // to punch to it; an address it already probes is skipped on its side.
        guard reflexive != address else { return }
        candidate = (address, 0, nil)
    }

    /// The application's record went out on the active pair.
    public mutating func sent(nowMillis now: UInt64) {
        lastAppSend = now
        lastSent[active] = now
    }


    /// The other side's `candidate` probe: `address` is its new server-reflexive address.
    public mutating func received(candidate address: PeerEndpoint, txid: UInt64, socket: Int, from: PeerEndpoint,
                                  nowMillis now: UInt64) -> [Action] {
        received(.candidate, txid: txid, socket: socket, from: from, observed: address, nowMillis: now)
    }

    /// Every path failed, or the network changed: bind the relay again (from this side's new
    /// address, if it has one), gather the address, and retry the direct pair quickly.
    @discardableResult
    mutating func startRecovery(_ now: UInt64) -> [Action] {
        recovering = true
        recoveryStarted = now
        check = nil
        retry = nil
        retryAt = now
        retryDelay = TunnelPathLimits.firstRetryMillis
        if relay != nil {
            relayBound = false
            relayBinds = 0
            lastRelayBind = nil
        }
        lastGather = nil
        if activePath == .direct, let relay {
            // Sends go over the relay while the direct path is recovered.
            return [move(to: relay, path: .relayed, method: .relay)]
        }
        return []
    }

    /// While recovering: gather this side's address now and then; send a new one to the other side.
    mutating func recover(_ now: UInt64) -> [Action] {
        var out: [Action] = []
        if recovering, now >= recoveryStarted + TunnelPathLimits.recoveryWindowMillis {
            // Nothing direct came back: watch again (the relay, if it was bound again) and back off.
            endRecovery(found: false, now)
        }
        if recovering, lastGather.map({ now >= $0 + TunnelPathLimits.gatherIntervalMillis }) ?? true {
            lastGather = now
            out.append(.gather)
        }
        if let c = candidate, c.sent < TunnelPathLimits.candidateSends,
           c.last.map({ now >= $0 + TunnelPathLimits.candidateIntervalMillis }) ?? true {
            candidate = (c.address, c.sent + 1, now)
            let txid = random.next()
            // Over the relay (bound again by now, or soon) and directly (the other side's NAT may let it in).
            if let relay, relayBound { out.append(send(.probe(.candidate, txid: txid, socket: 0, to: relay.remote, observed: c.address), now)) }
            if let direct { out.append(send(.probe(.candidate, txid: txid, socket: direct.socket, to: direct.remote, observed: c.address), now)) }
            if !relayBound { candidate = (c.address, c.sent, c.last) }  // not counted until the relay can carry it
        }
        return out
    }

    mutating func endRecovery(found: Bool, _ now: UInt64) {
        recovering = false
        retry = nil
        if found {
            recoveryBackoff = TunnelPathLimits.firstRecoveryBackoffMillis
            nextRecovery = 0
        } else {
            nextRecovery = now + recoveryBackoff
            recoveryBackoff = min(recoveryBackoff * 2, TunnelPathLimits.maximumRecoveryBackoffMillis)
            lastHeard[active] = now
            retryAt = now + retryDelay
        }
    }
}
