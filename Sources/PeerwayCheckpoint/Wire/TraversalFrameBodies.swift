import NIOCore
import PeerwaySTUN

// Body encodings of the HANDSHAKE's frames (layouts in TraversalFrames.swift).

extension ByteBuffer {
    mutating func writeWireOptionalEndpoint(_ endpoint: PeerEndpoint?) {
        if let endpoint {
            writeInteger(1 as UInt8)
            writeWireEndpoint(endpoint)
        } else {
            writeInteger(0 as UInt8)
        }
    }

    mutating func writeWireTraversalHeader(_ initiator: PeerID, _ acceptor: PeerID, _ requestID: UInt64) {
        writeWirePeerID(initiator)
        writeWirePeerID(acceptor)
        writeInteger(requestID)
    }
}

extension ControlWireReader {
    mutating func optionalEndpoint(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> PeerEndpoint? {
        try bool("\(what()).present") ? try endpoint(what()) : nil
    }

    mutating func enumValue<E: RawRepresentable>(_ type: E.Type, _ what: @autoclosure () -> String) throws(ControlDecodingError) -> E
    where E.RawValue == UInt8 {
        let raw = try u8(what())
        guard let value = E(rawValue: raw) else { throw .invalid(what: "\(what()): unknown value \(raw)") }
        return value
    }

    mutating func i16(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> Int16 {
        Int16(bitPattern: try u16(what()))
    }
}

extension TraversalOffer {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWireTraversalHeader(initiator, acceptor, requestID)
        buffer.writeInteger(transport.rawValue)
        buffer.writeInteger(role.rawValue)
        buffer.writeWireCount(candidates.count, "traversal candidates")
        for c in candidates {
            buffer.writeInteger(c.kind.rawValue)
            buffer.writeInteger(c.transport.rawValue)
            buffer.writeWireEndpoint(c.endpoint)
        }
        buffer.writeInteger(profile.mapping.rawValue)
        buffer.writeInteger(profile.filtering.rawValue)
        buffer.writeInteger(UInt16(bitPattern: profile.portDelta))
        var flags: UInt8 = 0
        if profile.preservesPort { flags |= 1 }
        if profile.hairpins { flags |= 2 }
        if profile.udpBlocked { flags |= 4 }
        if rawTunnel { flags |= 8 }
        buffer.writeInteger(flags)
        buffer.writeWireFixed(keyShare, count: ControlLimits.keyShareBytes, "traversal key share")
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let initiator = try r.peerID("traversalOffer.initiator")
        let acceptor = try r.peerID("traversalOffer.acceptor")
        let requestID = try r.u64("traversalOffer.requestID")
        let transport = try r.enumValue(TunnelTransport.self, "traversalOffer.transport")
        let role = try r.enumValue(TraversalRole.self, "traversalOffer.role")
        let n = try r.count("traversalOffer.candidates", limit: ControlLimits.maximumTraversalCandidates,
                            limitName: "maximumTraversalCandidates")
        var candidates: [TraversalCandidate] = []
        candidates.reserveCapacity(n)
        for _ in 0..<n {
            let kind = try r.enumValue(TraversalCandidateKind.self, "traversalOffer.candidate.kind")
            let t = try r.enumValue(TunnelTransport.self, "traversalOffer.candidate.transport")
            candidates.append(TraversalCandidate(kind: kind, transport: t, endpoint: try r.endpoint("traversalOffer.candidate.endpoint")))
        }
        let mapping = try r.enumValue(NATProfile.Mapping.self, "traversalOffer.profile.mapping")
        let filtering = try r.enumValue(NATProfile.Filtering.self, "traversalOffer.profile.filtering")
        let delta = try r.i16("traversalOffer.profile.portDelta")
        let flags = try r.u8("traversalOffer.profile.flags")
        guard flags & ~15 == 0 else { throw .invalid(what: "traversalOffer.profile.flags: unknown bits in \(flags)") }
        let profile = NATProfile(mapping: mapping, filtering: filtering, portDelta: delta, preservesPort: flags & 1 != 0,
                                 hairpins: flags & 2 != 0, udpBlocked: flags & 4 != 0)
        let share = try r.array(ControlLimits.keyShareBytes, "traversalOffer.keyShare")
        self.init(initiator: initiator, acceptor: acceptor, requestID: requestID, transport: transport, role: role,
                  candidates: candidates, profile: profile, keyShare: share, rawTunnel: flags & 8 != 0)
    }
}

extension TraversalPlan {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWireTraversalHeader(initiator, acceptor, requestID)
        buffer.writeInteger(transport.rawValue)
        buffer.writeInteger(method.rawValue)
        buffer.writeInteger(rawTunnel ? 1 as UInt8 : 0)
        buffer.writeInteger(directWindowMillis)
        buffer.writeInteger(localSockets)
        precondition(remoteKeyShare.isEmpty || remoteKeyShare.count == ControlLimits.keyShareBytes, "a key share is 128 bytes")
        buffer.writeInteger(UInt8(remoteKeyShare.count))
        buffer.writeBytes(remoteKeyShare)
        buffer.writeWireCount(targets.count, "traversal targets")
        for t in targets {
            buffer.writeInteger(t.method.rawValue)
            buffer.writeWireEndpoint(t.endpoint)
            buffer.writeInteger(t.count)
            buffer.writeInteger(UInt16(bitPattern: t.step))
        }
        if let spray {
            buffer.writeInteger(1 as UInt8)
            buffer.writeWireEndpoint(spray.address)
            buffer.writeInteger(spray.count)
        } else {
            buffer.writeInteger(0 as UInt8)
        }
        if let relay {
            buffer.writeInteger(1 as UInt8)
            buffer.writeWireOptionalEndpoint(relay.udp)
            buffer.writeWireOptionalEndpoint(relay.tcp)
            buffer.writeWireFixed(relay.token, count: ControlLimits.relayTokenBytes, "relay token")
        } else {
            buffer.writeInteger(0 as UInt8)
        }
        buffer.writeWireText(failure)
        if let relay, !relay.alternatives.isEmpty {
            precondition(relay.alternatives.count <= ControlLimits.maximumRelayAlternatives,
                         "a relay grant has at most \(ControlLimits.maximumRelayAlternatives) alternatives")
            buffer.writeWireCount(relay.alternatives.count, "relay alternatives")
            for endpoint in relay.alternatives { buffer.writeWireEndpoint(endpoint) }
        }
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let initiator = try r.peerID("traversalPlan.initiator")
        let acceptor = try r.peerID("traversalPlan.acceptor")
        let requestID = try r.u64("traversalPlan.requestID")
        let transport = try r.enumValue(TunnelTransport.self, "traversalPlan.transport")
        let method = try r.enumValue(TraversalMethod.self, "traversalPlan.method")
        let planFlags = try r.u8("traversalPlan.flags")
        guard planFlags & ~1 == 0 else { throw .invalid(what: "traversalPlan.flags: unknown bits in \(planFlags)") }
        let window = try r.u32("traversalPlan.directWindowMillis")
        let sockets = try r.u16("traversalPlan.localSockets")
        guard (1...ControlLimits.maximumPlanSockets).contains(sockets) else {
            throw .invalid(what: "traversalPlan.localSockets: \(sockets), not 1...\(ControlLimits.maximumPlanSockets) (maximumPlanSockets)")
        }
        let shareLength = Int(try r.u8("traversalPlan.remoteKeyShare.length"))
        guard shareLength == 0 || shareLength == ControlLimits.keyShareBytes else {
            throw .invalid(what: "traversalPlan.remoteKeyShare: \(shareLength) bytes, not 0 or \(ControlLimits.keyShareBytes)")
        }
        let share = try r.array(shareLength, "traversalPlan.remoteKeyShare")
        let n = try r.count("traversalPlan.targets", limit: ControlLimits.maximumTraversalTargets, limitName: "maximumTraversalTargets")
        var targets: [TraversalTarget] = []
        for _ in 0..<n {
            let m = try r.enumValue(TraversalMethod.self, "traversalPlan.target.method")
            let e = try r.endpoint("traversalPlan.target.endpoint")
            let count = try r.u16("traversalPlan.target.count")
            guard (1...ControlLimits.maximumTargetPorts).contains(count) else {
                throw .invalid(what: "traversalPlan.target.count: \(count), not 1...\(ControlLimits.maximumTargetPorts) (maximumTargetPorts)")
            }
            targets.append(TraversalTarget(method: m, endpoint: e, count: count, step: try r.i16("traversalPlan.target.step")))
        }
        var spray: TraversalSpray?
        if try r.bool("traversalPlan.spray.present") {
            let address = try r.endpoint("traversalPlan.spray.address")
            let count = try r.u16("traversalPlan.spray.count")
            guard count <= ControlLimits.maximumSprayPorts else {
                throw .invalid(what: "traversalPlan.spray.count: \(count), over maximumSprayPorts (\(ControlLimits.maximumSprayPorts))")
            }
            spray = TraversalSpray(address: address, count: count)
        }
        var relay: RelayGrant?
        if try r.bool("traversalPlan.relay.present") {
            let udp = try r.optionalEndpoint("traversalPlan.relay.udp")
            let tcp = try r.optionalEndpoint("traversalPlan.relay.tcp")
            relay = RelayGrant(udp: udp, tcp: tcp, token: try r.array(ControlLimits.relayTokenBytes, "traversalPlan.relay.token"))
        }
        let failure = try r.text("traversalPlan.failure", limit: ControlLimits.maximumErrorTextBytes, limitName: "maximumErrorTextBytes")
        // Only a plan with a relay may go on (anything after another plan is trailing bytes).
        if relay != nil, r.remaining > 0 {
            let n = try r.count("traversalPlan.relay.alternatives", limit: ControlLimits.maximumRelayAlternatives,
                                limitName: "maximumRelayAlternatives")
            guard n > 0 else { throw .invalid(what: "traversalPlan.relay.alternatives: a present list is empty") }
            for _ in 0..<n { relay?.alternatives.append(try r.endpoint("traversalPlan.relay.alternative")) }
        }
        self.init(initiator: initiator, acceptor: acceptor, requestID: requestID, transport: transport, method: method,
                  directWindowMillis: window, localSockets: sockets, remoteKeyShare: share, targets: targets, spray: spray,
                  relay: relay, failure: failure, rawTunnel: planFlags & 1 != 0)
    }
}

extension TraversalResult {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWireTraversalHeader(initiator, acceptor, requestID)
        buffer.writeInteger(role.rawValue)
        buffer.writeInteger(path.rawValue)
        buffer.writeInteger(method.rawValue)
        buffer.writeInteger(millis)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let initiator = try r.peerID("traversalResult.initiator")
        let acceptor = try r.peerID("traversalResult.acceptor")
        let requestID = try r.u64("traversalResult.requestID")
        self.init(initiator: initiator, acceptor: acceptor, requestID: requestID,
                  role: try r.enumValue(TraversalRole.self, "traversalResult.role"),
                  path: try r.enumValue(TunnelPath.self, "traversalResult.path"),
                  method: try r.enumValue(TraversalMethod.self, "traversalResult.method"),
                  millis: try r.u32("traversalResult.millis"))
    }
}
