import PeerwayCheckpoint
import PeerwaySTUN

/*
 A UDP tunnel's paths once it is up, as a pure state machine (docs/traversal-protocol.md, Paths).
 Each side decides alone where it sends: every record is sealed end to end and names no path, so
 a receiver takes records from whichever path they come (the replay window drops duplicates).

   upgrading   relay first: the traversal machine runs on; its `established` on a direct pair
               is `use(direct)`, its `directAbandoned` leaves the tunnel on the relay
   direct      watched: while this side sends (or after 2 keepalives of silence) a path that
               was silent for `silenceMillis` is checked with requests every
               max(`checkIntervalMillis`, 2 × rtt); `checkAttempts` unanswered ─► use(relay),
               and direct is tried again after `firstRetryMillis`, doubling to `maximumRetryMillis`
   relay       a retry request answered on the direct pair ─► use(direct); a request or a record
               arriving over the direct pair brings the next retry forward to now
   relay lost  the relay path is watched the same way; when it fails too (or the host's
               network changed), the paths are recovered: the relay is bound again (it moves the
               side to the new address), this side's address is gathered anew and, when it
               changed, sent to the other side as a `candidate` over the relay; both sides then
               probe each other's current address (the punch), and the old direct pair is retried
   always      requests are answered (the other side's checks), late selects acked, a request
               from a new address of the other side is checked and, answered, becomes the direct
               pair (NAT rebinding, a roamed peer); a path without anything sent for
               `keepaliveMillis` gets a keepalive (the active one and, for a quick fallback, the relay)

 The machine sees only authenticated probes and records; the I/O (sockets, sealing) is the pump's.
*/

/// Where a UDP tunnel sends, and when it moves. Feed it probes, records and the time.
public struct TunnelPathMachine: Sendable {
    public typealias Pair = UDPTraversalMachine.Pair

    public enum Action: Equatable, Sendable {
        /// Send this probe from `socket` to `to` (`observed`: the request's source, in responses).
        case probe(UDPTraversalMachine.ProbeKind, txid: UInt64, socket: Int, to: PeerEndpoint, observed: PeerEndpoint?)
        /// Send a relay bind from socket 0 to the relay.
        case bindRelay(to: PeerEndpoint)
        /// Send a keepalive record on this pair.
        case keepalive(Pair)
        /// Send the tunnel's records on this pair from now on (a path event for the application).
        case use(Pair, path: TunnelPath, method: TraversalMethod, rttMillis: UInt64?)
        /// Relay first: no direct path was found in the traversal's window.
        case directAbandoned(String)
        /// Learn this side's server-reflexive address anew (a STUN request from socket 0);
        /// answer with `gathered`.
        case gather
    }

    public let role: TraversalRole
    var traversal: UDPTraversalMachine?
    var random: STUNSeededRandom
    /// The pair records go out on, and how it was found.
    public private(set) var active: Pair
    public private(set) var activePath: TunnelPath
    public private(set) var activeMethod: TraversalMethod
    /// The relay pair (socket 0 to the relay), when the plan had one.
    public let relay: Pair?
    var relayBound: Bool
    var relayBinds = 0
    var lastRelayBind: UInt64?
    /// The direct pair last known to work (kept while on the relay, for retries).
    public private(set) var direct: Pair?
    var directMethod: TraversalMethod = .punch
    var directRTT: UInt64?
    var lastHeard: [Pair: UInt64] = [:]
    var lastSent: [Pair: UInt64] = [:]
    var lastAppSend: UInt64?
    var since: UInt64
    var check: (txid: UInt64, sent: Int, last: UInt64)?
    var retryAt: UInt64?
    var retryDelay = TunnelPathLimits.firstRetryMillis
    var retry: (txid: UInt64, sent: UInt64)?
    /// Requests to a new address of the other side: the pair each checks.
    var learning: [UInt64: Pair] = [:]
    /// Moves so far (for diagnostics and tests).
    public private(set) var moves = 0
    /// The paths are being recovered (every path failed, or the host's network changed).
    public internal(set) var recovering = false
    var recoveryStarted: UInt64 = 0
    var nextRecovery: UInt64 = 0
    var recoveryBackoff = TunnelPathLimits.firstRecoveryBackoffMillis
    var lastGather: UInt64?
    /// This side's last known server-reflexive address, and sends of a new one still due.
    var reflexive: PeerEndpoint?
    var candidate: (address: PeerEndpoint, sent: Int, last: UInt64?)?

    /// - Parameters:
    ///   - traversal: the traversal machine the tunnel came from, right after its first
    ///     `established` (still running when relay first keeps probing direct pairs).
    ///   - established: the pair, method and path of that `established`.
    public init(traversal: UDPTraversalMachine, established: Pair, method: TraversalMethod, path: TunnelPath,
                relayBound: Bool, nowMillis: UInt64, seed: UInt64) {
        role = traversal.role
        self.traversal = traversal.isFinished ? nil : traversal
        random = STUNSeededRandom(seed: seed)
        active = established
        activePath = path
        activeMethod = method
        relay = traversal.relayEndpoint.map { Pair(socket: 0, remote: $0) }
        self.relayBound = relayBound || path == .relayed
        since = nowMillis
        if path == .direct {
            direct = established
            directMethod = method
            directRTT = traversal.roundTripMillis(of: established)
        }
        lastHeard[established] = nowMillis
        lastSent[established] = nowMillis
    }

    /// The traversal is still looking for a direct path (relay first).
    public var isUpgrading: Bool { traversal != nil }
    /// The measured round trip of the active path, when known.
    public var activeRTTMillis: UInt64? { activePath == .direct ? directRTT : traversal?.roundTripMillis(of: active) }

    // MARK: events

    /// The relay answered a bind.
    public mutating func relayAnswered() {
        relayBound = true
        traversal?.relayAnswered()
    }

    /// An authenticated record (data, keepalive) arrived on `socket` from `from`.
    public mutating func heard(socket: Int, from: PeerEndpoint, nowMillis now: UInt64) {
        let pair = Pair(socket: socket, remote: from)
        lastHeard[pair] = now
        // The other side reaches us directly while we are on the relay: try direct now.
        if traversal == nil, activePath == .relayed, pair == direct, retry == nil { retryAt = now }
    }

    /// An authenticated probe arrived on `socket` from `from`.
    /// `observed`: the endpoint a `candidate` carries (`received(candidate:...)`).
    public mutating func received(_ kind: UDPTraversalMachine.ProbeKind, txid: UInt64, socket: Int, from: PeerEndpoint,
                                  observed: PeerEndpoint? = nil, nowMillis now: UInt64) -> [Action] {
        let pair = Pair(socket: socket, remote: from)
        if var t = traversal {
            let out = t.received(kind, txid: txid, socket: socket, from: from, nowMillis: now)
            traversal = t
            return adopt(out, now: now)
        }
        lastHeard[pair] = now
        var out: [Action] = []
        switch kind {
        case .request:
            out.append(send(.probe(.response, txid: txid, socket: socket, to: from, observed: from), now))
            if let t = learning.first(where: { $0.value == pair })?.key {
                // Its own request came through: ours may now too (the punch).
                out.append(send(.probe(.request, txid: t, socket: socket, to: from, observed: nil), now))
            } else if pair != direct && pair != relay && pair != active && learning.count < TunnelPathLimits.maximumLearning {
                // A new address of the other side (its NAT mapped it anew): check it ourselves.
                let t = random.next()
                learning[t] = pair
                out.append(send(.probe(.request, txid: t, socket: socket, to: from, observed: nil), now))
            } else if pair == direct, activePath == .relayed, retry == nil {
                retryAt = now
            }
        case .select:
            out.append(send(.probe(.selectAck, txid: txid, socket: socket, to: from, observed: nil), now))
        case .response:
            if let c = check, c.txid == txid, pair == active {
                check = nil
                directRTT = now - min(now, c.last)
            } else if let r = retry, r.txid == txid, pair == direct {
                if recovering { endRecovery(found: true, now) }
                retry = nil
                retryDelay = TunnelPathLimits.firstRetryMillis
                directRTT = now - min(now, r.sent)
                out.append(move(to: pair, path: .direct, method: directMethod))
            } else if let learnt = learning.removeValue(forKey: txid), learnt == pair {
                direct = pair
                directRTT = nil
                check = nil
                if recovering { endRecovery(found: true, now) }
                retry = nil
                learning.removeAll()
                out.append(move(to: pair, path: .direct, method: directMethod))
            }
        case .candidate:
            // The other side's new address (it roamed): probe it from the direct socket.
            if let address = observed {
                let target = Pair(socket: direct?.socket ?? 0, remote: address)
                if target != direct, learning.count < TunnelPathLimits.maximumLearning, !learning.values.contains(target) {
                    let t = random.next()
                    learning[t] = target
                    out.append(send(.probe(.request, txid: t, socket: target.socket, to: address, observed: nil), now))
                }
            }
        case .selectAck:
            break
        }
        return out
    }

    /// Time passes: checks, fallbacks, retries, relay binds, keepalives.
    public mutating func tick(nowMillis now: UInt64) -> [Action] {
        var out: [Action] = []
        if var t = traversal {
            let actions = t.tick(nowMillis: now)
            traversal = t
            out += adopt(actions, now: now)
        }
        if traversal == nil {
            out += watchActive(now)
            if activePath == .relayed || recovering { out += retryDirect(now) }
            out += recover(now)
        }
        if let relay, !relayBound, traversal == nil, relayBinds < TunnelPathLimits.relayBindAttempts || recovering,
           lastRelayBind.map({ now >= $0 + TunnelPathLimits.relayBindIntervalMillis }) ?? true {
            relayBinds += 1
            lastRelayBind = now
            out.append(.bindRelay(to: relay.remote))
            lastSent[relay] = now
        }
        // Keepalives: the active path, and the relay kept ready for a fallback.
        if now >= (lastSent[active] ?? since) + TunnelPathLimits.keepaliveMillis {
            out.append(send(.keepalive(active), now))
        }
        if let relay, relayBound, relay != active, now >= (lastSent[relay] ?? since) + TunnelPathLimits.keepaliveMillis {
            out.append(send(.keepalive(relay), now))
        }
        return out
    }

    // MARK: inside

    /// Checks the active path when it fell silent; a dead direct path falls back to the relay, a
    /// dead relay path (or a relay fallback that is dead too) starts the recovery.
    mutating func watchActive(_ now: UInt64) -> [Action] {
        // Recovering, or a recovery found nothing lately: nothing to check until it may run again.
        guard !recovering, now >= nextRecovery else { return [] }
        let heard = lastHeard[active] ?? since
        if let c = check {
            let rtt = activePath == .direct ? (directRTT ?? 0) : 0
            let interval = max(TunnelPathLimits.checkIntervalMillis, 2 * rtt)
            guard now >= c.last + interval else { return [] }
            if c.sent >= TunnelPathLimits.checkAttempts {
                check = nil
                if activePath == .direct, let relay, relayBound, now < (lastHeard[relay] ?? since) + 2 * TunnelPathLimits.keepaliveMillis + TunnelPathLimits.silenceMillis {
                    retryAt = now + retryDelay
                    // The relay was heard lately: fall back to it (it is checked in turn if it is silent too).
                    lastHeard[relay] = now
                    return [move(to: relay, path: .relayed, method: .relay)]
                }
                return startRecovery(now)
            }
            check = (c.txid, c.sent + 1, now)
            return [send(.probe(.request, txid: c.txid, socket: active.socket, to: active.remote, observed: nil), now)]
        }
        if activePath == .direct, let r = retryAt, now < r { return [] }
        let sending = lastAppSend.map { now < $0 + TunnelPathLimits.sendingWindowMillis } ?? false
        let silent = now >= heard + TunnelPathLimits.silenceMillis
        let longSilent = now >= heard + 2 * TunnelPathLimits.keepaliveMillis + TunnelPathLimits.silenceMillis
        guard silent && (sending || longSilent) else { return [] }
        if activePath == .direct { retryAt = nil }
        let txid = random.next()
        check = (txid, 1, now)
        return [send(.probe(.request, txid: txid, socket: active.socket, to: active.remote, observed: nil), now)]
    }

    mutating func retryDirect(_ now: UInt64) -> [Action] {
        guard let direct else { return [] }
        if let r = retry {
            if recovering {
                // Punching: a request every `recoveryRetryMillis` while the other side does the same.
                guard now >= r.sent + TunnelPathLimits.recoveryRetryMillis else { return [] }
                retry = (r.txid, now)
                return [send(.probe(.request, txid: r.txid, socket: direct.socket, to: direct.remote, observed: nil), now)]
            }
            guard now >= r.sent + TunnelPathLimits.retryTimeoutMillis else { return [] }
            retry = nil
            retryDelay = min(retryDelay * 2, TunnelPathLimits.maximumRetryMillis)
            retryAt = now + retryDelay
            return []
        }
        guard let at = retryAt, now >= at else { return [] }
        let txid = random.next()
        retry = (txid, now)
        return [send(.probe(.request, txid: txid, socket: direct.socket, to: direct.remote, observed: nil), now)]
    }

    mutating func move(to pair: Pair, path: TunnelPath, method: TraversalMethod) -> Action {
        active = pair
        activePath = path
        activeMethod = method
        moves += 1
        if path == .direct { retryAt = nil }
        return .use(pair, path: path, method: method, rttMillis: path == .direct ? directRTT : nil)
    }

    /// The traversal machine's actions, as this machine's.
    mutating func adopt(_ actions: [UDPTraversalMachine.Action], now: UInt64) -> [Action] {
        var out: [Action] = []
        for action in actions {
            switch action {
            case .probe(let kind, let txid, let socket, let to, let observed):
                out.append(send(.probe(kind, txid: txid, socket: socket, to: to, observed: observed), now))
            case .bindRelay(let to):
                out.append(.bindRelay(to: to))
            case .established(let pair, let method, let path):
                if path == .direct {
                    direct = pair
                    directMethod = method
                    directRTT = traversal?.roundTripMillis(of: pair)
                    lastHeard[pair] = now
                    traversal = nil
                }
                out.append(move(to: pair, path: path, method: method))
            case .directAbandoned(let why):
                traversal = nil
                out.append(.directAbandoned(why))
            case .failed(let why):
                // The tunnel already has its relay path: the traversal ending is not the tunnel's.
                traversal = nil
                out.append(.directAbandoned(why))
            }
        }
        if let t = traversal, t.isFinished { traversal = nil }
        return out
    }

    /// Notes what goes out on which pair (keepalives are due only on quiet pairs).
    mutating func send(_ action: Action, _ now: UInt64) -> Action {
        switch action {
        case .probe(_, _, let socket, let to, _): lastSent[Pair(socket: socket, remote: to)] = now
        case .keepalive(let pair): lastSent[pair] = now
        default: break
        }
        return action
    }
}
