import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

/// Malformed packets and frames: each is refused with the right error, and nothing is consumed.
@Suite("Control malformed input")
struct ControlMalformedTests {
    typealias S = ControlSamples
    static let peerA = "0011223344556677 8899aabbccddeeff"
    static let v4 = "04 c0000201 1f90"

    /// The encoding of `frame` with `edit` applied.
    static func edited(_ frame: ControlFrame, id: UInt32 = 1, _ edit: (inout [UInt8]) -> Void) -> [UInt8] {
        var bytes = ControlTest.frameBytes(frame, id: id)
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

    // MARK: packets

    @Test("packet header: version, type, reserved byte, flags")
    func packetHeader() {
        let unknown = ControlTest.hex("01 05 00 00 0000000000000001")
        #expect(ControlTest.packetError(unknown) == nil)
        for version: UInt8 in [0, 2, 0xFF] {
            var b = unknown; b[0] = version
            #expect(ControlTest.packetError(b) == .unsupportedVersion(version))
        }
        for type: UInt8 in [0, 6, 0x10, 0xFF] {
            var b = unknown; b[1] = type
            #expect(ControlTest.packetError(b) == .unknownType(type))
        }
        for flags: UInt8 in [1, 2, 0x80] {
            var b = unknown; b[2] = flags
            #expect(ControlTest.invalidText(ControlTest.packetError(b))?.contains("flags") == true)
        }
        var reserved = unknown; reserved[3] = 1
        #expect(ControlTest.invalidText(ControlTest.packetError(reserved))?.contains("reserved") == true)
        // A hello may set bit 0 only.
        for flags: UInt8 in [2, 0x81, 0xFE] {
            var hello = ControlTest.packetBytes(S.packets[0].1); hello[2] = flags
            #expect(ControlTest.invalidText(ControlTest.packetError(hello))?.contains("flags") == true)
        }
        for (name, packet) in S.packets where packet.kind != .hello {
            var b = ControlTest.packetBytes(packet); b[2] = 1
            #expect(ControlTest.invalidText(ControlTest.packetError(b))?.contains("flags") == true, "\(name)")
        }
    }

    @Test("datagrams over 1200 bytes are too large, whatever they hold")
    func tooLarge() {
        let largest = ControlTest.packetBytes(S.packets[6].1)
        #expect(largest.count == ControlLimits.maximumDatagramBytes)
        #expect(ControlTest.packetError(largest) == nil)
        #expect(ControlTest.packetError(largest + [0]) == .tooLarge(bytes: 1201))
        #expect(ControlTest.packetError(Array(repeating: 0xFF, count: 5000)) == .tooLarge(bytes: 5000))
    }

    @Test("a hello under 256 bytes is invalid (dropped), at 256 accepted; a cookie flag needs no more")
    func shortHello() {
        let hello = ControlTest.packetBytes(S.packets[1].1)
        #expect(hello.count == 256 && ControlTest.packetError(hello) == nil)
        let error = ControlTest.packetError(Array(hello.dropLast()))
        #expect(error == .invalid(what: "hello of 255 bytes is under minimumHelloBytes (256)"))
        #expect(ControlTest.packetError(ControlTest.packetBytes(.hello(ControlHello(ephemeralKey: S.ephemeral, cookie: nil, paddedLength: 0))))
            == .invalid(what: "hello of 36 bytes is under minimumHelloBytes (256)"))
    }

    @Test("trailing bytes after fixed-size packets; ciphertexts shorter than the tag")
    func packetLengths() {
        #expect(ControlTest.packetError(ControlTest.packetBytes(S.packets[3].1) + [0]) == .trailingBytes(1))
        #expect(ControlTest.packetError(ControlTest.packetBytes(.sessionUnknown(sessionID: 1)) + [0, 0, 0]) == .trailingBytes(3))
        let sealed15 = ControlTest.hex("01 04 00 00 0000000000000001 0000000000000002") + Array(repeating: 7, count: 15)
        #expect(ControlTest.isTruncated(ControlTest.packetError(sealed15)))
        #expect(ControlTest.packetError(sealed15 + [7]) == nil)
        let reply15 = ControlTest.hex("01 03 00 00 0000000000000001") + Array(repeating: 1, count: 32 + 15)
        #expect(ControlTest.isTruncated(ControlTest.packetError(reply15)))
        #expect(ControlTest.packetError(reply15 + [1]) == nil)
    }

    // MARK: frames

    @Test("unknown frame kinds")
    func unknownKinds() {
        let known = Set(ControlFrame.Kind.allCases.map(\.rawValue))
        for kind in UInt8.min...UInt8.max where !known.contains(kind) {
            #expect(ControlTest.frameError([kind, 0, 0, 0, 1]) == .unknownType(kind))
        }
    }

    @Test("trailing bytes after every frame sample")
    func trailing() {
        for (name, frame, id) in S.frames {
            let bytes = ControlTest.frameBytes(frame, id: id)
            if Self.endsWithSupernodes(frame) {
                // Its supernode list is an optional trailer: what follows must be a whole one.
                #expect(ControlTest.frameError(bytes + [0]) != nil, "\(name): a present list is never empty")
                #expect(ControlTest.frameError(bytes + [1, 2, 3, 4]) != nil, "\(name)")
                continue
            }
            #expect(ControlTest.frameError(bytes + [0]) == .trailingBytes(1), "\(name)")
            #expect(ControlTest.frameError(bytes + [1, 2, 3, 4]) == .trailingBytes(4), "\(name)")
        }
    }

    /// Frames whose body may end with an optional list (supernodes, or a relay's other ways).
    static func endsWithSupernodes(_ frame: ControlFrame) -> Bool {
        switch frame {
        case .registered(let r): r.supernodes.isEmpty
        case .keepaliveAck(_, let supernodes): supernodes.isEmpty
        // A plan with a relay may end with the relay's other TCP ways (TraversalFrameBodies).
        case .traversalPlan(let plan): plan.relay != nil && plan.relay?.alternatives.isEmpty == true
        default: false
        }
    }

    @Test("boolean bytes other than 0 and 1")
    func booleans() {
        for bad: UInt8 in [2, 0x80, 0xFF] {
            // publish.replace, lookupResult.online, search.after's presence, answerConnect.accepted,
            // watchResult.online, publish's value presence.
            Self.expectInvalid(Self.edited(.publish(MetadataUpdate(replace: true, changes: []))) { $0[5] = bad }, mentioning: ["publish.replace", "boolean"])
            Self.expectInvalid(Self.edited(.lookupResult(LookupResult(peer: S.peerA, online: false, observed: nil, candidates: [], metadata: PeerMetadata()))) { $0[21] = bad },
                               mentioning: ["lookupResult.online"])
            Self.expectInvalid(Self.edited(.search(SearchRequest(query: "", limit: 1, after: nil))) { $0[9] = bad }, mentioning: ["search.after"])
            Self.expectInvalid(Self.edited(.searchResult(SearchResult(hits: [], next: nil))) { $0[6] = bad }, mentioning: ["searchResult.next"])
            Self.expectInvalid(Self.edited(.answerConnect(ConnectDecision(peer: S.peerA, requestID: 1, accepted: true, reason: ""))) { $0[29] = bad },
                               mentioning: ["answerConnect.accepted"])
            Self.expectInvalid(Self.edited(.watchResult([PeerStatus(peer: S.peerA, online: true)])) { $0[22] = bad }, mentioning: ["watchResult.online"])
            Self.expectInvalid(Self.edited(.publish(MetadataUpdate(replace: false, changes: [("a", nil)]))) { $0[9] = bad }, mentioning: ["publish.present"])
        }
    }

    @Test("endpoint families other than 4 and 6")
    func families() {
        for family: UInt8 in [0, 1, 2, 5, 16, 0xFF] {
            Self.expectInvalid(Self.edited(.keepaliveAck(observed: S.v4)) { $0[5] = family }, mentioning: ["keepaliveAck.observed", "family \(family)"])
            Self.expectInvalid(Self.edited(.register(S.register)) { $0[40] = family }, mentioning: ["register.candidates", "family"])
            Self.expectInvalid(Self.edited(.welcome(Welcome(observed: S.v6, keepaliveSeconds: 1, serverTimeMillis: 2))) { $0[5] = family }, mentioning: ["welcome.observed"])
        }
    }

    @Test("invalid UTF-8 in every text field", arguments: [
        "c3 28", "a0", "c0 af", "e0 80 af", "ed a0 80", "f4 90 80 80", "f5 80 80 80", "ff", "e2 82", "f0 9f 91",
    ])
    func badUTF8(badHex: String) {
        let bad = ControlTest.hex(badHex)
        let n = UInt8(bad.count)
        let texts: [(ControlFrame, String)] = [
            (.sendMessage(OutgoingMessage(to: S.peerA, messageID: 1, text: "")), "sendMessage.text"),
            (.deliver(IncomingMessage(from: S.peerA, messageID: 1, text: "")), "deliver.text"),
            (.connect(ConnectRequest(to: S.peerA, requestID: 1, transport: .udp, note: "")), "connect.note"),
            (.connectRequested(IncomingConnectRequest(from: S.peerA, requestID: 1, transport: .udp, note: "")), "connectRequested.note"),
            (.answerConnect(ConnectDecision(peer: S.peerA, requestID: 1, accepted: false, reason: "")), "answerConnect.reason"),
            (.connectAnswered(ConnectDecision(peer: S.peerA, requestID: 1, accepted: false, reason: "")), "connectAnswered.reason"),
            (.error(ControlFailure(.badRequest, "")), "error.text"),
        ]
        for (frame, field) in texts {
            // Each of these ends in an empty text: replace its zero length with the bad bytes.
            let bytes = Self.edited(frame) { $0[$0.count - 1] = n; $0 += bad }
            Self.expectInvalid(bytes, mentioning: [field, "UTF-8"])
        }
        Self.expectInvalid(ControlTest.hex("15 00000001 00") + [n] + bad + ControlTest.hex("0001 00"), mentioning: ["search.query", "UTF-8"])
        // A metadata value (status online with one entry "k" = bad).
        Self.expectInvalid(ControlTest.hex("51 00000001 \(Self.peerA) 01 01 01 6b") + [n] + bad, mentioning: ["status.metadata", "UTF-8"])
        Self.expectInvalid(ControlTest.hex("14 00000001 00 01 01 6b 01") + [n] + bad, mentioning: ["publish.value", "UTF-8"])
    }

    @Test("text lengths: at the limit accepted, one over refused, naming the limit")
    func textLimits() {
        let cases: [(Int, String, (String) -> ControlFrame)] = [
            (1024, "maximumMessageBytes", { .sendMessage(OutgoingMessage(to: S.peerA, messageID: 1, text: $0)) }),
            (1024, "maximumMessageBytes", { .deliver(IncomingMessage(from: S.peerA, messageID: 1, text: $0)) }),
            (256, "maximumNoteBytes", { .connect(ConnectRequest(to: S.peerA, requestID: 1, transport: .tcp, note: $0)) }),
            (256, "maximumNoteBytes", { .connectRequested(IncomingConnectRequest(from: S.peerA, requestID: 1, transport: .tcp, note: $0)) }),
            (256, "maximumNoteBytes", { .answerConnect(ConnectDecision(peer: S.peerA, requestID: 1, accepted: false, reason: $0)) }),
            (256, "maximumNoteBytes", { .connectAnswered(ConnectDecision(peer: S.peerA, requestID: 1, accepted: false, reason: $0)) }),
            (512, "maximumQueryBytes", { .search(SearchRequest(query: $0, limit: 1, after: nil)) }),
            (256, "maximumErrorTextBytes", { .error(ControlFailure(.tooLarge, $0)) }),
        ]
        for (limit, name, make) in cases {
            let atLimit = ControlTest.frameBytes(make(String(repeating: "x", count: limit)), id: 1)
            #expect(ControlTest.frameError(atLimit) == nil, "\(name)")
            let over = ControlTest.frameBytes(make(String(repeating: "x", count: limit + 1)), id: 1)
            Self.expectInvalid(over, mentioning: [name, "\(limit + 1) bytes"])
            // Also when counted in multi-byte characters.
            let wide = String(repeating: "é", count: limit / 2) + "x"
            Self.expectInvalid(ControlTest.frameBytes(make(wide), id: 1), mentioning: [name])
        }
        #expect(S.maxText.utf8.count == 1024)
    }

    @Test("list counts: at the limit accepted, one over refused")
    func countLimits() {
        func register(_ n: Int) -> ControlFrame {
            .register(RegisterRequest(publicKey: S.publicKey, keepaliveSeconds: 25, candidates: Array(repeating: S.v4, count: n), metadata: PeerMetadata(), signature: S.signature))
        }
        func lookup(_ n: Int) -> ControlFrame {
            .lookupResult(LookupResult(peer: S.peerA, online: true, observed: S.v4, candidates: Array(repeating: S.v6, count: n), metadata: PeerMetadata()))
        }
        func search(_ n: Int) -> ControlFrame {
            .searchResult(SearchResult(hits: S.peers(n).map { SearchHit(peer: $0, metadata: PeerMetadata()) }, next: nil))
        }
        let cases: [(Int, String, String, (Int) -> ControlFrame)] = [
            (8, "maximumCandidates", "register.candidates", register),
            (8, "maximumCandidates", "lookupResult.candidates", lookup),
            (32, "maximumWatchBatch", "watch.peers", { .watch(S.peers($0)) }),
            (32, "maximumWatchBatch", "unwatch.peers", { .unwatch(S.peers($0)) }),
            (32, "maximumWatchBatch", "watchResult.peers", { .watchResult(S.peers($0).map { PeerStatus(peer: $0, online: true) }) }),
            (100, "maximumSearchPage", "searchResult.hits", search),
        ]
        for (limit, name, field, make) in cases {
            #expect(ControlTest.frameError(ControlTest.frameBytes(make(limit), id: 1)) == nil, "\(field)")
            Self.expectInvalid(ControlTest.frameBytes(make(limit + 1), id: 1), mentioning: [field, name, "\(limit + 1) items"])
        }
    }

    @Test("metadata: entries, key alphabet and length, value length, total size, duplicate keys")
    func metadata() {
        // status(online) with the metadata given as raw entry bytes.
        func status(_ count: Int, _ entries: [UInt8]) -> [UInt8] {
            ControlTest.hex("51 00000001 \(Self.peerA) 01") + [UInt8(count)] + entries
        }
        func entry(_ key: String, _ value: String) -> [UInt8] {
            [UInt8(key.utf8.count)] + Array(key.utf8) + [UInt8(value.utf8.count)] + Array(value.utf8)
        }
        #expect(ControlTest.frameError(status(1, entry("ok", "v"))) == nil)
        Self.expectInvalid(status(17, (0..<17).flatMap { entry("k\($0)", "") }), mentioning: ["status.metadata", "maximumMetadataEntries", "17"])
        #expect(ControlTest.frameError(status(16, (0..<16).flatMap { entry("k\($0)", "") })) == nil)
        Self.expectInvalid(status(1, entry("Name", "x")), mentioning: ["status.metadata", "key"])
        Self.expectInvalid(status(1, entry("a b", "x")), mentioning: ["key"])
        Self.expectInvalid(status(1, entry("", "x")), mentioning: ["key"])
        Self.expectInvalid(status(1, entry(String(repeating: "k", count: 33), "x")), mentioning: ["key"])
        #expect(ControlTest.frameError(status(1, entry(String(repeating: "k", count: 32), "x"))) == nil)
        Self.expectInvalid(status(1, entry("k", String(repeating: "v", count: 129))), mentioning: ["status.metadata", "129", "\(PeerMetadata.maximumValueBytes)"])
        #expect(ControlTest.frameError(status(1, entry("k", String(repeating: "v", count: 128)))) == nil)
        // 4 entries of 1 + 128 bytes = 516 > 512; 4 × (1 + 127) = 512 accepted.
        Self.expectInvalid(status(4, (0..<4).flatMap { entry("\($0)", String(repeating: "v", count: 128)) }),
                           mentioning: ["516", "\(PeerMetadata.maximumTotalBytes)"])
        #expect(ControlTest.frameError(status(4, (0..<4).flatMap { entry("\($0)", String(repeating: "v", count: 127)) })) == nil)
        Self.expectInvalid(status(2, entry("k", "1") + entry("k", "2")), mentioning: ["duplicate", "'k'"])
    }

    @Test("publish: key checks, duplicates, value length; counts and totals are left to the checkpoint")
    func publish() {
        func publish(_ changes: [(String, String?)]) -> [UInt8] {
            ControlTest.frameBytes(.publish(MetadataUpdate(replace: false, changes: changes.map { (key: $0.0, value: $0.1) })), id: 1)
        }
        #expect(ControlTest.frameError(publish([("a", "1"), ("b", nil)])) == nil)
        Self.expectInvalid(publish([("a", "1"), ("a", nil)]), mentioning: ["publish", "duplicate"])
        Self.expectInvalid(publish([("A", "1")]), mentioning: ["publish.key"])
        Self.expectInvalid(publish([("", nil)]), mentioning: ["publish.key"])
        Self.expectInvalid(publish([("k", String(repeating: "v", count: 129))]), mentioning: ["publish.value", "129", "maximumValueBytes"])
        #expect(ControlTest.frameError(publish([("k", String(repeating: "v", count: 128))])) == nil)
        // An update that cannot fit any metadata still decodes: the checkpoint answers tooLarge.
        #expect(ControlTest.frameError(publish((0..<20).map { ("s\($0)", "v") } + (0..<20).map { ("r\($0)", nil) })) == nil)
        #expect(ControlTest.frameError(publish((0..<5).map { ("\($0)", String(repeating: "v", count: 128)) })) == nil)
    }

    @Test("unknown enum values: outcome, status change, transport, error code")
    func enums() {
        for raw: UInt8 in [0, 5, 0xFF] {
            Self.expectInvalid(Self.edited(.messageOutcome(MessageOutcome(to: S.peerA, messageID: 1, outcome: .delivered))) { $0[29] = raw },
                               mentioning: ["messageOutcome.outcome", "\(raw)"])
            Self.expectInvalid(Self.edited(.messageStatus(MessageOutcome(to: S.peerA, messageID: 1, outcome: .delivered))) { $0[29] = raw },
                               mentioning: ["messageStatus.outcome"])
            Self.expectInvalid(Self.edited(.status(StatusEvent(peer: S.peerA, change: .offline))) { $0[21] = raw }, mentioning: ["status.change"])
        }
        for raw: UInt8 in [2, 0xFF] {
            Self.expectInvalid(Self.edited(.connect(ConnectRequest(to: S.peerA, requestID: 1, transport: .udp, note: ""))) { $0[29] = raw },
                               mentioning: ["connect.transport", "\(raw)"])
            Self.expectInvalid(Self.edited(.connectRequested(IncomingConnectRequest(from: S.peerA, requestID: 1, transport: .udp, note: ""))) { $0[29] = raw },
                               mentioning: ["connectRequested.transport"])
        }
        for raw: UInt16 in [0, 17, 0xFFFF] {
            Self.expectInvalid(Self.edited(.error(ControlFailure(.badRequest, ""))) { $0[5] = UInt8(raw >> 8); $0[6] = UInt8(raw & 0xFF) },
                               mentioning: ["error.code", "\(raw)"])
        }
    }

    @Test("UTF-8 validation agrees with the standard library on random byte strings")
    func utf8AgreesWithStandardLibrary() {
        var g = STUNSeededRandom(seed: 0x0C7F_8000)
        let interesting: [UInt8] = [0x00, 0x41, 0x7F, 0x80, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF, 0x8F, 0x90]
        for _ in 0..<20_000 {
            // Runs of ASCII too, so that the eight-bytes-at-a-time path meets every position.
            let n = Int.random(in: 0...24, using: &g)
            let text = (0..<n).map { _ in Bool.random(using: &g) ? UInt8.random(in: 0..<0x80, using: &g) : interesting.randomElement(using: &g)! }
            let frame = ControlTest.hex("50 00000001 \(Self.peerA) 0000000000000001 00") + [UInt8(n)] + text
            let expected = String(validating: text, as: UTF8.self)
            switch ControlTest.decodeFrame(frame) {
            case .success(let envelope):
                #expect(expected != nil, "accepted invalid UTF-8 \(text)")
                #expect(envelope.frame == .deliver(IncomingMessage(from: S.peerA, messageID: 1, text: expected ?? "")))
            case .failure(let error):
                #expect(expected == nil, "refused valid UTF-8 \(text): \(error)")
            }
        }
    }
}
