import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

/// Fixed sample values for the HANDSHAKE's frames (`traversalOffer`, `traversalPlan`,
/// `traversalResult`).
enum TraversalSamples {
    typealias S = ControlSamples
    /// 00 01 … 7f.
    static let keyShare: [UInt8] = (0..<128).map { UInt8($0) }
    static let otherKeyShare: [UInt8] = (0..<128).map { UInt8(0xFF - $0) }
    /// c0 c1 … df.
    static let token: [UInt8] = (0..<32).map { UInt8(0xC0 + $0) }

    static func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ port: UInt16) -> PeerEndpoint {
        PeerEndpoint(ip: .v4(UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)), port: port)
    }

    /// 10.0.1.5:5000
    static let host4 = v4(10, 0, 1, 5, 5000)
    /// 203.0.113.7:40001
    static let reflexive4 = v4(203, 0, 113, 7, 40001)
    /// 203.0.113.9:40002
    static let reflexive4b = v4(203, 0, 113, 9, 40002)
    /// 198.51.100.1:7401
    static let relayUDP = v4(198, 51, 100, 1, 7401)
    /// [2001:db8::1]:7400
    static let v6 = S.v6
    /// [2001:db8::2]:7400
    static let v6b = PeerEndpoint(ip: .v6(high: 0x2001_0DB8_0000_0000, low: 2), port: 7400)

    static let candidates: [TraversalCandidate] = [
        TraversalCandidate(kind: .host, transport: .udp, endpoint: host4),
        TraversalCandidate(kind: .serverReflexive, transport: .udp, endpoint: reflexive4),
        TraversalCandidate(kind: .mapped, transport: .tcp, endpoint: v6),
    ]
    /// `maximumTraversalCandidates` candidates, every kind and transport, both families.
    static let fullCandidates: [TraversalCandidate] = (0..<ControlLimits.maximumTraversalCandidates).map { i in
        let kind = TraversalCandidateKind.allCases[i % 3]
        let endpoint = i % 2 == 0 ? host4.with(port: UInt16(5000 + i)) : v6.with(port: UInt16(6000 + i))
        return TraversalCandidate(kind: kind, transport: i % 4 < 2 ? .udp : .tcp, endpoint: endpoint)
    }

    static func offer(role: TraversalRole = .initiator, transport: TunnelTransport = .udp,
                      candidates: [TraversalCandidate] = candidates, profile: NATProfile = NATProfile(),
                      requestID: UInt64 = 99) -> TraversalOffer {
        TraversalOffer(initiator: S.peerA, acceptor: S.peerB, requestID: requestID, transport: transport, role: role,
                       candidates: candidates, profile: profile, keyShare: keyShare)
    }

    static func target(_ i: Int) -> TraversalTarget {
        let method = TraversalMethod.allCases[i % TraversalMethod.allCases.count]
        let endpoint = i % 2 == 0 ? reflexive4.with(port: UInt16(40_000 + i)) : v6.with(port: UInt16(7000 + i))
        return TraversalTarget(method: method, endpoint: endpoint, count: UInt16(1 + i * 10), step: Int16(i % 3 - 1))
    }

    static func plan(method: TraversalMethod = .punch, window: UInt32 = 4000, sockets: UInt16 = 1,
                     share: [UInt8] = otherKeyShare, targets: [TraversalTarget] = [TraversalTarget(method: .punch, endpoint: reflexive4)],
                     spray: TraversalSpray? = nil, relay: RelayGrant? = nil, failure: String = "",
                     transport: TunnelTransport = .udp) -> TraversalPlan {
        TraversalPlan(initiator: S.peerA, acceptor: S.peerB, requestID: 99, transport: transport, method: method,
                      directWindowMillis: window, localSockets: sockets, remoteKeyShare: share, targets: targets,
                      spray: spray, relay: relay, failure: failure)
    }

    static func result(role: TraversalRole = .initiator, path: TunnelPath = .direct, method: TraversalMethod = .punch,
                       millis: UInt32 = 812) -> TraversalResult {
        TraversalResult(initiator: S.peerA, acceptor: S.peerB, requestID: 99, role: role, path: path, method: method, millis: millis)
    }

    static func e(_ name: String, _ frame: ControlFrame, _ id: UInt32) -> (String, ControlFrame, UInt32) { (name, frame, id) }

    static let frames: [(String, ControlFrame, UInt32)] = [
        e("offer", .traversalOffer(offer()), 1),
        e("offer acceptor tcp", .traversalOffer(offer(role: .acceptor, transport: .tcp,
            profile: NATProfile(mapping: .addressDependent, filtering: .endpointIndependent, portDelta: 2))), 2),
        e("offer no candidates", .traversalOffer(offer(candidates: [], profile: NATProfile(mapping: .none, udpBlocked: true))), 3),
        e("offer IPv6 only", .traversalOffer(offer(candidates: [TraversalCandidate(kind: .serverReflexive, transport: .udp, endpoint: v6b)])), 4),
        e("offer full", .traversalOffer(offer(candidates: fullCandidates,
            profile: NATProfile(mapping: .addressAndPortDependent, filtering: .addressAndPortDependent, portDelta: .min,
                                preservesPort: true, hairpins: true, udpBlocked: true), requestID: .max)), .max),
        e("offer negative delta", .traversalOffer(offer(profile: NATProfile(mapping: .endpointIndependent, filtering: .unknown,
                                                                             portDelta: -1, hairpins: true))), 0),
        e("plan punch", .traversalPlan(plan()), 0x5000_0001),
        e("plan no targets", .traversalPlan(plan(method: .relay, window: 0, targets: [],
            relay: RelayGrant(udp: relayUDP, tcp: nil, token: token))), 0x5000_0002),
        e("plan IPv6 targets", .traversalPlan(plan(targets: [TraversalTarget(method: .punch, endpoint: v6),
                                                             TraversalTarget(method: .predict, endpoint: v6b, count: 24, step: -2)])), 0x5000_0003),
        e("plan spray", .traversalPlan(plan(method: .manyPort, window: 6000,
            targets: [TraversalTarget(method: .manyPort, endpoint: reflexive4b)],
            spray: TraversalSpray(address: reflexive4b, count: 2048))), 0x5000_0004),
        e("plan spray IPv6 empty", .traversalPlan(plan(spray: TraversalSpray(address: v6, count: 0))), 0x5000_0005),
        e("plan many sockets", .traversalPlan(plan(method: .manyPort, sockets: 256)), 0x5000_0006),
        e("plan relay both", .traversalPlan(plan(relay: RelayGrant(udp: relayUDP, tcp: v6b, token: token))), 0x5000_0007),
        e("plan relay tcp only", .traversalPlan(plan(relay: RelayGrant(udp: nil, tcp: relayUDP.with(port: 7400), token: token),
                                                     transport: .tcp)), 0x5000_0008),
        e("plan relay neither", .traversalPlan(plan(relay: RelayGrant(udp: nil, tcp: nil, token: token))), 0x5000_0009),
        e("plan failed", .traversalPlan(plan(method: .relay, window: 0, share: [], targets: [],
                                             failure: "the other peer sent no traversal offer within 10 s")), 0x5000_000A),
        e("plan full", .traversalPlan(plan(method: .lan, window: .max, sockets: ControlLimits.maximumPlanSockets,
            targets: (0..<ControlLimits.maximumTraversalTargets).map(target),
            spray: TraversalSpray(address: v6, count: ControlLimits.maximumSprayPorts),
            relay: RelayGrant(udp: v6, tcp: v6b, token: token),
            failure: String(repeating: "é", count: ControlLimits.maximumErrorTextBytes / 2))), .max),
        e("result direct", .traversalResult(result()), 5),
        e("result relayed", .traversalResult(result(role: .acceptor, path: .relayed, method: .relay, millis: .max)), 6),
        e("result failed", .traversalResult(result(path: .failed, method: .relay, millis: 0)), 7),
    ] + TraversalMethod.allCases.map { e("result \($0)", .traversalResult(result(method: $0)), 8) }
}

/// The HANDSHAKE's frames on the wire: round trips, golden bytes, truncation, invalid values.
@Suite("Traversal codec")
struct TraversalCodecTests {
    typealias T = TraversalSamples
    static let peerA = "0011223344556677 8899aabbccddeeff"
    static let peerB = "0102030405060708 090a0b0c0d0e0f10"
    static let keyShare = """
        000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f 202122232425262728292a2b2c2d2e2f 303132333435363738393a3b3c3d3e3f
        404142434445464748494a4b4c4d4e4f 505152535455565758595a5b5c5d5e5f 606162636465666768696a6b6c6d6e6f 707172737475767778797a7b7c7d7e7f
        """
    static let token = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"

    /// Written out from the layouts in TraversalFrames.swift.
    static let golden: [(String, [UInt8], ControlEnvelope)] = [
        ("offer",
         ControlTest.hex("""
            1b | 00000021 | \(peerA) | \(peerB) | 0000000000000063 | 00 | 00
            | 03 | 01 00 04 0a000105 1388 | 02 00 04 cb007107 9c41 | 03 01 06 20010db800000000 0000000000000001 1ce8
            | 04 02 fffe 05 | \(keyShare)
            """),
         ControlEnvelope(id: 33, frame: .traversalOffer(T.offer(
            profile: NATProfile(mapping: .addressAndPortDependent, filtering: .addressDependent, portDelta: -2,
                                preservesPort: true, udpBlocked: true))))),
        ("plan",
         ControlTest.hex("""
            55 | 50000010 | \(peerA) | \(peerB) | 0000000000000063 | 00 | 05 | 00 | 00001770 | 0100 | 80 \(keyShare)
            | 01 | 05 04 cb007107 9c41 0018 ffff
            | 01 04 cb007109 9c42 0800
            | 01 | 01 04 c6336401 1ce9 | 01 06 20010db800000000 0000000000000002 1ce8 | \(token)
            | 0004 6e6f6e65
            """),
         ControlEnvelope(id: 0x5000_0010, frame: .traversalPlan(TraversalPlan(
            initiator: ControlSamples.peerA, acceptor: ControlSamples.peerB, requestID: 99, transport: .udp, method: .manyPort,
            directWindowMillis: 6000, localSockets: 256, remoteKeyShare: T.keyShare,
            targets: [TraversalTarget(method: .manyPort, endpoint: T.reflexive4, count: 24, step: -1)],
            spray: TraversalSpray(address: T.reflexive4b, count: 2048),
            relay: RelayGrant(udp: T.relayUDP, tcp: T.v6b, token: T.token), failure: "none")))),
        ("failed plan",
         ControlTest.hex("55 | 00000001 | \(peerA) | \(peerB) | 0000000000000063 | 01 | 07 | 00 | 00000000 | 0001 | 00 | 00 | 00 | 00 | 0002 6e6f"),
         ControlEnvelope(id: 1, frame: .traversalPlan(TraversalPlan(
            initiator: ControlSamples.peerA, acceptor: ControlSamples.peerB, requestID: 99, transport: .tcp, method: .relay,
            directWindowMillis: 0, remoteKeyShare: [], targets: [], failure: "no")))),
        ("result",
         ControlTest.hex("1c | 00000022 | \(peerA) | \(peerB) | 0000000000000063 | 01 | 02 | 07 | 000004d2"),
         ControlEnvelope(id: 34, frame: .traversalResult(T.result(role: .acceptor, path: .relayed, method: .relay, millis: 1234)))),
    ]

    static func edited(_ frame: ControlFrame, _ edit: (inout [UInt8]) -> Void) -> [UInt8] {
        var bytes = ControlTest.frameBytes(frame, id: 1)
        edit(&bytes)
        return bytes
    }

    static func expectInvalid(_ bytes: [UInt8], mentioning words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let error = ControlTest.frameError(bytes)
        guard let text = ControlTest.invalidText(error) else {
            Issue.record("expected .invalid, got \(String(describing: error))", sourceLocation: sourceLocation)
            return
        }
        for word in words { #expect(text.contains(word), "'\(text)' does not mention \(word)", sourceLocation: sourceLocation) }
    }

    static func accepted(_ frame: ControlFrame, sourceLocation: SourceLocation = #_sourceLocation) {
        let bytes = ControlTest.frameBytes(frame, id: 1)
        #expect(ControlTest.decodeFrame(bytes) == .success(ControlEnvelope(id: 1, frame: frame)), sourceLocation: sourceLocation)
    }

    // MARK: round trips

    @Test("the samples cover the three traversal kinds, every method, path, candidate kind and both families")
    func coverage() {
        #expect(Set(T.frames.map { $0.1.kind }) == [.traversalOffer, .traversalPlan, .traversalResult])
        #expect(ControlFrame.Kind.traversalOffer.rawValue == 0x1B)
        #expect(ControlFrame.Kind.traversalResult.rawValue == 0x1C)
        #expect(ControlFrame.Kind.traversalPlan.rawValue == 0x55)
        var methods = Set<TraversalMethod>(), paths = Set<TunnelPath>(), kinds = Set<TraversalCandidateKind>()
        var families = Set<UInt8>()
        for (_, frame, _) in T.frames {
            switch frame {
            case .traversalOffer(let o):
                for c in o.candidates { kinds.insert(c.kind); families.insert(c.endpoint.family.rawValue) }
            case .traversalPlan(let p):
                methods.insert(p.method)
                for t in p.targets { families.insert(t.endpoint.family.rawValue) }
            case .traversalResult(let r):
                methods.insert(r.method)
                paths.insert(r.path)
            default: Issue.record("not a traversal frame: \(frame)")
            }
        }
        #expect(methods == Set(TraversalMethod.allCases))
        #expect(paths == [.direct, .relayed, .failed])
        #expect(kinds == Set(TraversalCandidateKind.allCases))
        #expect(families.count == 2)
    }

    @Test("every traversal sample round-trips and fits a sealed packet", arguments: TraversalSamples.frames.map { ($0.0, $0.1, $0.2) })
    func roundTrip(name: String, frame: ControlFrame, id: UInt32) throws {
        let bytes = ControlTest.frameBytes(frame, id: id)
        #expect(bytes.first == frame.kind.rawValue)
        #expect(bytes.count <= ControlLimits.maximumFrameBytes, "\(name): \(bytes.count) bytes")
        let decoded = try ControlTest.decodeFrame(bytes).get()
        #expect(decoded == ControlEnvelope(id: id, frame: frame), "\(name)")
        #expect(ControlTest.frameBytes(decoded.frame, id: decoded.id) == bytes, "\(name): not a fixed point")
        // Also inside a sealed packet of the largest size it allows.
        let sealed = ControlPacket.sealed(ControlSealed(sessionID: 1, counter: 1,
                                                        ciphertext: ByteBuffer(bytes: bytes + Array(repeating: 0, count: ControlLimits.tagBytes))))
        #expect(try ControlTest.decodePacket(ControlTest.packetBytes(sealed)).get() == sealed, "\(name)")
    }

    @Test("every profile flag combination and port delta sign round-trips")
    func profiles() {
        for flags in 0..<8 {
            for delta: Int16 in [0, 1, -1, 2, .max, .min] {
                for mapping in [NATProfile.Mapping.unknown, .none, .endpointIndependent, .addressDependent, .addressAndPortDependent] {
                    let profile = NATProfile(mapping: mapping, filtering: .addressAndPortDependent, portDelta: delta,
                                             preservesPort: flags & 1 != 0, hairpins: flags & 2 != 0, udpBlocked: flags & 4 != 0)
                    Self.accepted(.traversalOffer(T.offer(profile: profile)))
                }
            }
        }
        for filtering in [NATProfile.Filtering.unknown, .endpointIndependent, .addressDependent, .addressAndPortDependent] {
            Self.accepted(.traversalOffer(T.offer(profile: NATProfile(filtering: filtering))))
        }
    }

    // MARK: golden bytes

    @Test("golden bytes decode to their value and the value encodes to exactly them", arguments: golden.indices)
    func goldenBytes(index: Int) throws {
        let (name, bytes, envelope) = Self.golden[index]
        #expect(ControlTest.frameBytes(envelope.frame, id: envelope.id) == bytes, "\(name): the encoding changed")
        #expect(try ControlTest.decodeFrame(bytes).get() == envelope, "\(name)")
    }

    @Test("sizes: an offer is 52 + 9|21 per candidate + 5 + 128 bytes, a result 52")
    func sizes() {
        #expect(ControlTest.frameBytes(.traversalOffer(T.offer(candidates: [])), id: 0).count == 5 + 40 + 2 + 1 + 5 + 128)
        #expect(ControlTest.frameBytes(.traversalOffer(T.offer()), id: 0).count == 5 + 40 + 2 + 1 + 9 + 9 + 21 + 5 + 128)
        #expect(ControlTest.frameBytes(.traversalResult(T.result()), id: 0).count == 52)
        #expect(Self.golden[0].1.count == 5 + 40 + 2 + 1 + 9 + 9 + 21 + 5 + 128)
    }

    // MARK: truncation and trailing bytes

    static let encodings: [(String, [UInt8])] =
        golden.map { ($0.0, $0.1) } + TraversalSamples.frames.map { ($0.0, ControlTest.frameBytes($0.1, id: $0.2)) }

    @Test("every strict prefix is truncated and leaves the reader index where it was", arguments: encodings.indices)
    func prefixes(index: Int) {
        let (name, bytes) = Self.encodings[index]
        for cut in 0..<bytes.count {
            // ControlTest.decodeFrame checks that a failed decode does not move the reader index.
            let error = ControlTest.frameError(Array(bytes[0..<cut]))
            #expect(ControlTest.isTruncated(error), "\(name) cut at \(cut): \(String(describing: error))")
        }
        #expect(ControlTest.frameError(bytes) == nil, "\(name)")
    }

    @Test("a truncation names the traversal field it ended in")
    func truncationNamesTheField() {
        let offer = Self.golden[0].1, plan = Self.golden[1].1, result = Self.golden[3].1
        #expect(ControlTest.frameError(Array(offer.dropLast())) == .truncated(what: "traversalOffer.keyShare"))
        #expect(ControlTest.frameError(Array(offer.prefix(30))) == .truncated(what: "traversalOffer.acceptor"))
        #expect(ControlTest.frameError(Array(offer.prefix(50))) == .truncated(what: "traversalOffer.candidate.endpoint"))
        #expect(ControlTest.frameError(Array(plan.dropLast())) == .truncated(what: "traversalPlan.failure"))
        #expect(ControlTest.frameError(Array(plan.prefix(55 + 64))) == .truncated(what: "traversalPlan.remoteKeyShare"))
        #expect(ControlTest.frameError(Array(result.dropLast())) == .truncated(what: "traversalResult.millis"))
    }

    @Test("trailing bytes after every traversal frame")
    func trailing() {
        for (name, frame, id) in T.frames {
            let bytes = ControlTest.frameBytes(frame, id: id)
            if case .traversalPlan(let plan) = frame, plan.relay != nil {
                // After a relay's plan they are its alternatives (RelayAlternativesCodecTests).
                #expect(ControlTest.invalidText(ControlTest.frameError(bytes + [0]))?.contains("alternatives") == true, "\(name)")
                continue
            }
            #expect(ControlTest.frameError(bytes + [0]) == .trailingBytes(1), "\(name)")
            #expect(ControlTest.frameError(bytes + [1, 2, 3]) == .trailingBytes(3), "\(name)")
        }
    }

    // MARK: invalid values

    @Test("unknown enum values in every traversal field are invalid")
    func unknownEnums() {
        // Offer with one host candidate: transport 45, role 46, count 47, candidate kind 48 and
        // transport 49, endpoint 50-56, mapping 57, filtering 58.
        let offer = ControlFrame.traversalOffer(T.offer(candidates: [TraversalCandidate(kind: .host, transport: .udp, endpoint: T.host4)]))
        let plan = ControlFrame.traversalPlan(T.plan(share: []))  // transport 45, method 46, flags 47, target method 56
        let result = ControlFrame.traversalResult(T.result())     // role 45, path 46, method 47
        let cases: [(ControlFrame, Int, [UInt8], String)] = [
            (offer, 45, [2, 0xFF], "traversalOffer.transport"),
            (offer, 46, [2, 0xFF], "traversalOffer.role"),
            (offer, 48, [0, 4, 0xFF], "traversalOffer.candidate.kind"),
            (offer, 49, [2, 0xFF], "traversalOffer.candidate.transport"),
            (offer, 57, [5, 0xFF], "traversalOffer.profile.mapping"),
            (offer, 58, [4, 0xFF], "traversalOffer.profile.filtering"),
            (plan, 45, [2, 0xFF], "traversalPlan.transport"),
            (plan, 46, [0, 8, 0xFF], "traversalPlan.method"),
            (plan, 56, [0, 8, 0xFF], "traversalPlan.target.method"),
            (result, 45, [2, 0xFF], "traversalResult.role"),
            (result, 46, [0, 4, 0xFF], "traversalResult.path"),
            (result, 47, [0, 8, 0xFF], "traversalResult.method"),
        ]
        for (frame, offset, values, field) in cases {
            for raw in values {
                Self.expectInvalid(Self.edited(frame) { $0[offset] = raw }, mentioning: [field, "unknown value \(raw)"])
            }
        }
        // Endpoint families and presence bytes.
        Self.expectInvalid(Self.edited(offer) { $0[50] = 5 }, mentioning: ["traversalOffer.candidate.endpoint", "family 5"])
        Self.expectInvalid(Self.edited(plan) { $0[57] = 0 }, mentioning: ["traversalPlan.target.endpoint", "family 0"])
        let bare = ControlTest.frameBytes(.traversalPlan(T.plan(share: [], targets: [])), id: 1)
        #expect(bare.count == 56 + 2 + 2)  // targets count 55, spray 56, relay 57, failure 58-59
        for bad: UInt8 in [2, 0xFF] {
            var spray = bare; spray[56] = bad
            Self.expectInvalid(spray, mentioning: ["traversalPlan.spray.present", "boolean"])
            var relay = bare; relay[57] = bad
            Self.expectInvalid(relay, mentioning: ["traversalPlan.relay.present", "boolean"])
            var optional = ControlTest.frameBytes(.traversalPlan(T.plan(share: [], targets: [], relay: RelayGrant(udp: nil, tcp: nil, token: T.token))), id: 1)
            optional[58] = bad
            Self.expectInvalid(optional, mentioning: ["traversalPlan.relay.udp.present"])
        }
    }

    @Test("localSockets must be 1...maximumPlanSockets")
    func localSockets() {
        Self.accepted(.traversalPlan(T.plan(sockets: 1)))
        Self.accepted(.traversalPlan(T.plan(sockets: ControlLimits.maximumPlanSockets)))
        for bad: UInt16 in [0, ControlLimits.maximumPlanSockets + 1, .max] {
            Self.expectInvalid(ControlTest.frameBytes(.traversalPlan(T.plan(sockets: bad)), id: 1),
                               mentioning: ["traversalPlan.localSockets", "\(bad)", "maximumPlanSockets"])
        }
    }

    @Test("a target's port count must be 1...maximumTargetPorts; its step may be anything")
    func targetCount() {
        for good: UInt16 in [1, ControlLimits.maximumTargetPorts] {
            for step: Int16 in [0, -1, .min, .max] {
                Self.accepted(.traversalPlan(T.plan(targets: [TraversalTarget(method: .predict, endpoint: T.reflexive4, count: good, step: step)])))
            }
        }
        for bad: UInt16 in [0, ControlLimits.maximumTargetPorts + 1, .max] {
            let frame = ControlFrame.traversalPlan(T.plan(targets: [TraversalTarget(method: .punch, endpoint: T.v6),
                                                                    TraversalTarget(method: .predict, endpoint: T.reflexive4, count: bad)]))
            Self.expectInvalid(ControlTest.frameBytes(frame, id: 1), mentioning: ["traversalPlan.target.count", "\(bad)", "maximumTargetPorts"])
        }
    }

    @Test("a spray of more than maximumSprayPorts ports is invalid")
    func sprayLimit() {
        Self.accepted(.traversalPlan(T.plan(spray: TraversalSpray(address: T.reflexive4, count: ControlLimits.maximumSprayPorts))))
        for bad: UInt16 in [ControlLimits.maximumSprayPorts + 1, .max] {
            let frame = ControlFrame.traversalPlan(T.plan(spray: TraversalSpray(address: T.reflexive4, count: bad)))
            Self.expectInvalid(ControlTest.frameBytes(frame, id: 1), mentioning: ["traversalPlan.spray.count", "\(bad)", "maximumSprayPorts"])
        }
    }

    @Test("a plan's key share is 0 or 128 bytes, nothing else")
    func keyShareLength() {
        Self.accepted(.traversalPlan(T.plan(share: [])))
        Self.accepted(.traversalPlan(T.plan(share: T.keyShare)))
        let empty = ControlTest.frameBytes(.traversalPlan(T.plan(share: [])), id: 1)
        #expect(empty[54] == 0)
        for length: UInt8 in [1, 32, 64, 127, 129, 255] {
            // The length byte and that many bytes of share: well-formed but for the length.
            var bytes = empty
            bytes[54] = length
            bytes.insert(contentsOf: Array(repeating: 0x77, count: Int(length)), at: 55)
            Self.expectInvalid(bytes, mentioning: ["traversalPlan.remoteKeyShare", "\(length) bytes"])
        }
    }

    @Test("unknown profile flag bits are invalid")
    func profileFlags() {
        let frame = ControlFrame.traversalOffer(T.offer(profile: NATProfile(preservesPort: true, hairpins: true, udpBlocked: true)))
        let bytes = ControlTest.frameBytes(frame, id: 1)
        let flags = bytes.count - ControlLimits.keyShareBytes - 1
        #expect(bytes[flags] == 7)
        for bad: UInt8 in [0x10, 0x1F, 0x80, 0xFF] {
            var b = bytes
            b[flags] = bad
            Self.expectInvalid(b, mentioning: ["traversalOffer.profile.flags", "\(bad)"])
        }
        // Bit 3 is the raw-tunnel request.
        var raw = bytes
        raw[flags] = 0x0F
        #expect(ControlTest.frameError(raw) == nil)
    }

    @Test("the raw-tunnel request round-trips in the offer and the plan; unknown plan flag bits are invalid")
    func rawTunnelFlags() throws {
        var offer = T.offer()
        offer.rawTunnel = true
        Self.accepted(.traversalOffer(offer))
        var plan = T.plan(share: [])
        plan.rawTunnel = true
        let bytes = ControlTest.frameBytes(.traversalPlan(plan), id: 1)
        #expect(bytes[47] == 1)
        Self.accepted(.traversalPlan(plan))
        for bad: UInt8 in [2, 0x80, 0xFF] {
            var b = bytes
            b[47] = bad
            Self.expectInvalid(b, mentioning: ["traversalPlan.flags", "\(bad)"])
        }
    }

    @Test("candidates and targets: at the limit accepted, one over refused")
    func listLimits() {
        let candidates = (0...ControlLimits.maximumTraversalCandidates).map {
            TraversalCandidate(kind: .host, transport: .udp, endpoint: T.host4.with(port: UInt16(1000 + $0)))
        }
        Self.accepted(.traversalOffer(T.offer(candidates: Array(candidates.dropLast()))))
        Self.expectInvalid(ControlTest.frameBytes(.traversalOffer(T.offer(candidates: candidates)), id: 1),
                           mentioning: ["traversalOffer.candidates", "maximumTraversalCandidates", "\(ControlLimits.maximumTraversalCandidates + 1) items"])
        let targets = (0...ControlLimits.maximumTraversalTargets).map(T.target)
        Self.accepted(.traversalPlan(T.plan(targets: Array(targets.dropLast()))))
        Self.expectInvalid(ControlTest.frameBytes(.traversalPlan(T.plan(targets: targets)), id: 1),
                           mentioning: ["traversalPlan.targets", "maximumTraversalTargets", "\(ControlLimits.maximumTraversalTargets + 1) items"])
    }

    @Test("failure text: at maximumErrorTextBytes accepted, one over refused, bad UTF-8 refused")
    func failureText() {
        Self.accepted(.traversalPlan(T.plan(failure: String(repeating: "x", count: ControlLimits.maximumErrorTextBytes))))
        Self.expectInvalid(ControlTest.frameBytes(.traversalPlan(T.plan(failure: String(repeating: "x", count: ControlLimits.maximumErrorTextBytes + 1))), id: 1),
                           mentioning: ["traversalPlan.failure", "maximumErrorTextBytes"])
        let bytes = Self.edited(.traversalPlan(T.plan(failure: ""))) { $0[$0.count - 1] = 2; $0 += [0xC3, 0x28] }
        Self.expectInvalid(bytes, mentioning: ["traversalPlan.failure", "UTF-8"])
    }
}
