import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

/// Shared helpers and sample values for the control codec tests.
///
/// The decode helpers put three junk bytes before the input and move the reader index past them,
/// then check the contract on the reader index: all readable bytes consumed on success, none on
/// failure.
enum ControlTest {
    /// Bytes from hex text; spaces, newlines and `|` (field separators in the tests) are ignored.
    static func hex(_ text: String) -> [UInt8] {
        let digits = text.unicodeScalars.filter { !" \n\t|".unicodeScalars.contains($0) }
        precondition(digits.count % 2 == 0, "odd number of hex digits in \(text)")
        var out: [UInt8] = []
        var high: UInt8?
        for d in digits {
            guard let v = UInt8(String(d), radix: 16) else { preconditionFailure("bad hex digit \(d)") }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return out
    }

    static func ascii(_ text: String) -> [UInt8] { Array(text.utf8) }

    static func frameBytes(_ frame: ControlFrame, id: UInt32) -> [UInt8] {
        var buffer = ByteBuffer()
        let written = buffer.writeControlFrame(frame, id: id)
        #expect(written == buffer.readableBytes)
        return Array(buffer.readableBytesView)
    }

    static func packetBytes(_ packet: ControlPacket) -> [UInt8] {
        var buffer = ByteBuffer()
        let written = buffer.writeControlPacket(packet)
        #expect(written == buffer.readableBytes)
        return Array(buffer.readableBytesView)
    }

    static func decodeFrame(_ bytes: [UInt8]) -> Result<ControlEnvelope, ControlDecodingError> {
        var buffer = ByteBuffer(bytes: [0xEE, 0xEE, 0xEE] + bytes)
        buffer.moveReaderIndex(forwardBy: 3)
        do {
            let envelope = try buffer.readControlFrame()
            #expect(buffer.readableBytes == 0, "a decoded frame must consume every readable byte")
            return .success(envelope)
        } catch {
            #expect(buffer.readerIndex == 3 && buffer.readableBytes == bytes.count, "a failed decode must not move the reader index")
            return .failure(error)
        }
    }

    static func decodePacket(_ bytes: [UInt8]) -> Result<ControlPacket, ControlDecodingError> {
        var buffer = ByteBuffer(bytes: [0xEE, 0xEE, 0xEE] + bytes)
        buffer.moveReaderIndex(forwardBy: 3)
        do {
            let packet = try buffer.readControlPacket()
            #expect(buffer.readableBytes == 0, "a decoded packet must consume every readable byte")
            return .success(packet)
        } catch {
            #expect(buffer.readerIndex == 3 && buffer.readableBytes == bytes.count, "a failed decode must not move the reader index")
            return .failure(error)
        }
    }

    static func frameError(_ bytes: [UInt8]) -> ControlDecodingError? {
        if case .failure(let e) = decodeFrame(bytes) { return e }
        return nil
    }

    static func packetError(_ bytes: [UInt8]) -> ControlDecodingError? {
        if case .failure(let e) = decodePacket(bytes) { return e }
        return nil
    }

    /// The text of an `.invalid` error, `nil` for anything else.
    static func invalidText(_ error: ControlDecodingError?) -> String? {
        if case .invalid(let what)? = error { return what }
        return nil
    }

    static func isTruncated(_ error: ControlDecodingError?) -> Bool {
        if case .truncated? = error { return true }
        return false
    }
}

/// Fixed sample values: peers, endpoints, metadata and one or more frames of every kind.
enum ControlSamples {
    static let peerA = PeerID(high: 0x0011_2233_4455_6677, low: 0x8899_AABB_CCDD_EEFF)
    static let peerB = PeerID(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C_0D0E_0F10)
    /// 192.0.2.1:8080
    static let v4 = PeerEndpoint(ip: .v4(0xC000_0201), port: 8080)
    /// [2001:db8::1]:7400
    static let v6 = PeerEndpoint(ip: .v6(high: 0x2001_0DB8_0000_0000, low: 1), port: 7400)
    static let publicKey: [UInt8] = (0..<32).map { UInt8($0) }
    static let signature: [UInt8] = (0..<64).map { UInt8(0x80 + $0) }
    static let transcript: [UInt8] = (0..<32).map { UInt8(0xF0 &- $0) }

    static let smallMetadata = try! PeerMetadata(["name": "alice", "age": "30"])
    /// 16 entries, 512 bytes: every metadata limit reached exactly (keys of 3 bytes, values of 29
    /// bytes ending in a 2-byte character).
    static let fullMetadata = try! PeerMetadata(Dictionary(uniqueKeysWithValues: (0..<16).map {
        (String(format2: $0), String(repeating: "v", count: 27) + "é")
    }))

    static func peers(_ n: Int) -> [PeerID] { (0..<n).map { PeerID(high: UInt64($0), low: UInt64($0) &* 0x1_0000_0001) } }

    static let maxText = String(repeating: "é", count: 512)  // 1024 bytes

    static let register = RegisterRequest(publicKey: publicKey, keepaliveSeconds: 25, candidates: [v4, v6],
                                          metadata: smallMetadata, signature: signature)

    static let eightCandidates: [PeerEndpoint] = (0..<8).map { (i: Int) -> PeerEndpoint in
        i % 2 == 0 ? v4.with(port: UInt16(1000 + i)) : v6.with(port: UInt16(2000 + i))
    }
    static let hundredHits: [SearchHit] = peers(100).map { SearchHit(peer: $0, metadata: PeerMetadata()) }

    static func e(_ name: String, _ frame: ControlFrame, _ id: UInt32) -> (String, ControlFrame, UInt32) { (name, frame, id) }
    static func p(_ name: String, _ packet: ControlPacket) -> (String, ControlPacket) { (name, packet) }

    /// One or more frames of every kind, with their ids.
    static let frames: [(String, ControlFrame, UInt32)] = [
        e("register", .register(register), 7),
        e("register full", .register(RegisterRequest(publicKey: publicKey, keepaliveSeconds: 300,
            candidates: eightCandidates,
            metadata: fullMetadata, signature: signature)), 0),
        e("register empty", .register(RegisterRequest(publicKey: publicKey, keepaliveSeconds: 0, candidates: [],
            metadata: PeerMetadata(), signature: signature)), .max),
        e("keepalive", .keepalive, 1),
        e("unregister", .unregister, 2),
        e("lookup", .lookup(peerB), 3),
        e("publish", .publish(MetadataUpdate(replace: false, changes: [("name", "bob"), ("age", nil), ("emoji", "🙂")])), 4),
        e("publish replace empty", .publish(MetadataUpdate(replace: true, changes: [])), 5),
        e("search", .search(SearchRequest(query: "age>30 city=oslo", limit: 50, after: nil)), 6),
        e("search after", .search(SearchRequest(query: String(repeating: "q", count: 512), limit: .max, after: peerA)), 7),
        e("sendMessage", .sendMessage(OutgoingMessage(to: peerB, messageID: 42, text: "hi 👋")), 8),
        e("sendMessage 1024", .sendMessage(OutgoingMessage(to: peerA, messageID: .max, text: maxText)), 9),
        e("sendMessage empty", .sendMessage(OutgoingMessage(to: peerA, messageID: 0, text: "")), 10),
        e("watch", .watch([peerA, peerB]), 11),
        e("watch none", .watch([]), 12),
        e("unwatch 32", .unwatch(peers(32)), 13),
        e("connect", .connect(ConnectRequest(to: peerB, requestID: 99, transport: .udp, note: "game night?")), 14),
        e("connect tcp", .connect(ConnectRequest(to: peerA, requestID: 0, transport: .tcp, note: String(repeating: "n", count: 256))), 15),
        e("answerConnect yes", .answerConnect(ConnectDecision(peer: peerA, requestID: 99, accepted: true, reason: "")), 16),
        e("answerConnect no", .answerConnect(ConnectDecision(peer: peerA, requestID: 98, accepted: false, reason: "busy")), 17),
        e("registered", .registered(Registered(peer: peerA, observed: v6, keepaliveSeconds: 25, expiryMisses: 3)), 18),
        e("ok", .ok, 19),
        e("keepaliveAck v4", .keepaliveAck(observed: v4), 20),
        e("keepaliveAck v6", .keepaliveAck(observed: v6), 21),
        e("lookupResult online", .lookupResult(LookupResult(peer: peerB, online: true, observed: v4, candidates: [v6, v4],
                                                           metadata: smallMetadata)), 22),
        e("lookupResult online bare", .lookupResult(LookupResult(peer: peerB, online: true, observed: v6, candidates: [],
                                                                metadata: PeerMetadata())), 23),
        e("lookupResult offline", .lookupResult(LookupResult(peer: peerB, online: false, observed: nil, candidates: [],
                                                            metadata: PeerMetadata())), 24),
        e("searchResult", .searchResult(SearchResult(hits: [SearchHit(peer: peerA, metadata: smallMetadata),
                                                           SearchHit(peer: peerB, metadata: PeerMetadata())], next: peerB)), 25),
        e("searchResult empty", .searchResult(SearchResult(hits: [], next: nil)), 26),
        e("searchResult 100", .searchResult(SearchResult(hits: hundredHits, next: nil)), 27),
        e("messageOutcome delivered", .messageOutcome(MessageOutcome(to: peerB, messageID: 42, outcome: .delivered)), 28),
        e("messageOutcome queued", .messageOutcome(MessageOutcome(to: peerB, messageID: 43, outcome: .queued)), 29),
        e("watchResult", .watchResult([PeerStatus(peer: peerA, online: true), PeerStatus(peer: peerB, online: false)]), 30),
        e("error", .error(ControlFailure(.badQuery, "unexpected ) at 7")), 31),
        e("error long", .error(ControlFailure(.unknownRequest, String(repeating: "e", count: 256))), 32),
        e("deliver", .deliver(IncomingMessage(from: peerA, messageID: 7, text: "héllo ✓")), 0x5000_0001),
        e("status online", .status(StatusEvent(peer: peerA, change: .online, metadata: smallMetadata)), 0x5000_0002),
        e("status offline", .status(StatusEvent(peer: peerA, change: .offline)), 0x5000_0003),
        e("status expired", .status(StatusEvent(peer: peerA, change: .expired)), 0x5000_0004),
        e("status metadataChanged", .status(StatusEvent(peer: peerB, change: .metadataChanged, metadata: fullMetadata)), 0x5000_0005),
        e("connectRequested", .connectRequested(IncomingConnectRequest(from: peerB, requestID: 5, transport: .tcp, note: "ssh")), 0x5000_0006),
        e("connectAnswered", .connectAnswered(ConnectDecision(peer: peerB, requestID: 5, accepted: false, reason: "not now")), 0x5000_0007),
        e("messageStatus timedOut", .messageStatus(MessageOutcome(to: peerA, messageID: 9, outcome: .timedOut)), 0x5000_0008),
        e("messageStatus offline", .messageStatus(MessageOutcome(to: peerA, messageID: 10, outcome: .offline)), 0x5000_0009),
        e("ack", .ack, 0x5000_000A),
        e("welcome", .welcome(Welcome(observed: v4, keepaliveSeconds: 25, serverTimeMillis: 1_763_719_200_123)), 0),
    ] + TraversalSamples.frames
        + IndexSamples.frames.enumerated().map { e("index \($0.offset)", $0.element, UInt32($0.offset)) }

    static let ephemeral: [UInt8] = (0..<32).map { UInt8(0xA0 + $0) }
    static let cookie: [UInt8] = (0..<16).map { UInt8(0x30 + $0) }

    static let packets: [(String, ControlPacket)] = [
        p("hello", .hello(ControlHello(ephemeralKey: ephemeral, cookie: nil))),
        p("hello cookie", .hello(ControlHello(ephemeralKey: ephemeral, cookie: cookie))),
        p("hello 1200", .hello(ControlHello(ephemeralKey: ephemeral, cookie: cookie, paddedLength: 1200))),
        p("cookie", .cookie(ControlCookie(echo: Array(ephemeral.prefix(8)), cookie: cookie))),
        p("helloReply", .helloReply(ControlHelloReply(sessionID: 0x1122_3344_5566_7788, ephemeralKey: publicKey,
                                                     sealedWelcome: ByteBuffer(bytes: (0..<40).map { UInt8($0 * 3 & 0xFF) })))),
        p("sealed minimum", .sealed(ControlSealed(sessionID: 1, counter: 0, ciphertext: ByteBuffer(repeating: 0xAB, count: 16)))),
        p("sealed maximum", .sealed(ControlSealed(sessionID: .max, counter: .max, ciphertext: ByteBuffer(bytes: (0..<1180).map { UInt8($0 & 0xFF) })))),
        p("sessionUnknown", .sessionUnknown(sessionID: 0xDEAD_BEEF_0000_0001)),
    ]
}

extension String {
    /// "k00" … "k15".
    init(format2 n: Int) { self = n < 10 ? "k0\(n)" : "k\(n)" }
}
