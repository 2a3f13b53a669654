import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

/// Wire bytes written out by hand from the layouts in the doc comments of `ControlPacket`,
/// `ControlFrame` and the body types (not produced by the encoder): each must decode to its value
/// and the value must encode to exactly these bytes.
@Suite("Control golden bytes")
struct ControlGoldenBytesTests {
    typealias S = ControlSamples
    static let key = "a0a1a2a3a4a5a6a7 a8a9aaabacadaeaf b0b1b2b3b4b5b6b7 b8b9babbbcbdbebf"
    static let cookie = "3031323334353637 38393a3b3c3d3e3f"
    static let peerA = "0011223344556677 8899aabbccddeeff"
    static let peerB = "0102030405060708 090a0b0c0d0e0f10"
    static let publicKey = "0001020304050607 08090a0b0c0d0e0f 1011121314151617 18191a1b1c1d1e1f"
    static let signature = """
        8081828384858687 88898a8b8c8d8e8f 9091929394959697 98999a9b9c9d9e9f
        a0a1a2a3a4a5a6a7 a8a9aaabacadaeaf b0b1b2b3b4b5b6b7 b8b9babbbcbdbebf
        """
    static let v4 = "04 c0000201 1f90"
    static let v6 = "06 20010db800000000 0000000000000001 1ce8"
    /// `count(1)` then `age`=`30`, `name`=`alice` (sorted by key, as the encoder writes them).
    static let smallMetadata = "02 | 03 616765 02 3330 | 04 6e616d65 05 616c696365"

    static let packets: [(String, [UInt8], ControlPacket)] = [
        ("hello without cookie",
         ControlTest.hex("01 01 00 00 | \(key)") + Array(repeating: 0, count: 256 - 36),
         .hello(ControlHello(ephemeralKey: S.ephemeral, cookie: nil, paddedLength: 256))),
        ("hello with cookie",
         ControlTest.hex("01 01 01 00 | \(key) | \(cookie)") + Array(repeating: 0, count: 256 - 52),
         .hello(ControlHello(ephemeralKey: S.ephemeral, cookie: S.cookie, paddedLength: 256))),
        ("hello padded to 300",
         ControlTest.hex("01 01 00 00 | \(key)") + Array(repeating: 0, count: 300 - 36),
         .hello(ControlHello(ephemeralKey: S.ephemeral, cookie: nil, paddedLength: 300))),
        ("cookie",
         ControlTest.hex("01 02 00 00 | a0a1a2a3a4a5a6a7 | \(cookie)"),
         .cookie(ControlCookie(echo: Array(S.ephemeral.prefix(8)), cookie: S.cookie))),
        ("helloReply",
         ControlTest.hex("01 03 00 00 | 1122334455667788 | \(publicKey) | c0c1c2c3c4c5c6c7 c8c9cacbcccdcecf d0d1d2d3"),
         .helloReply(ControlHelloReply(sessionID: 0x1122_3344_5566_7788, ephemeralKey: S.publicKey,
                                       sealedWelcome: ByteBuffer(bytes: (0..<20).map { UInt8(0xC0 + $0) })))),
        ("sealed",
         ControlTest.hex("01 04 00 00 | 0000000000000001 | 0000000000000002 | abababababababab abababababababab"),
         .sealed(ControlSealed(sessionID: 1, counter: 2, ciphertext: ByteBuffer(repeating: 0xAB, count: 16)))),
        ("sealed with a frame's worth",
         ControlTest.hex("01 04 00 00 | fedcba9876543210 | 00000000000003e8 | 3100000013 | 00112233445566778899aabbccddeeff"),
         .sealed(ControlSealed(sessionID: 0xFEDC_BA98_7654_3210, counter: 1000,
                               ciphertext: ByteBuffer(bytes: ControlTest.hex("3100000013 00112233445566778899aabbccddeeff"))))),
        ("sessionUnknown",
         ControlTest.hex("01 05 00 00 | deadbeef00000001"),
         .sessionUnknown(sessionID: 0xDEAD_BEEF_0000_0001)),
    ]

    static let frames: [(String, [UInt8], ControlEnvelope)] = [
        ("register",
         ControlTest.hex("10 | 00000007 | \(publicKey) | 0019 | 02 | \(v4) | \(v6) | \(smallMetadata) | \(signature)"),
         ControlEnvelope(id: 7, frame: .register(S.register))),
        ("sendMessage",
         ControlTest.hex("16 | 00000008 | \(peerB) | 000000000000002a | 0007 | 686920 f09f918b"),
         ControlEnvelope(id: 8, frame: .sendMessage(OutgoingMessage(to: S.peerB, messageID: 42, text: "hi 👋")))),
        ("deliver",
         ControlTest.hex("50 | 50000001 | \(peerA) | 0000000000000007 | 000a | 68 c3a9 6c 6c 6f 20 e29c93"),
         ControlEnvelope(id: 0x5000_0001, frame: .deliver(IncomingMessage(from: S.peerA, messageID: 7, text: "héllo ✓")))),
        ("searchResult",
         ControlTest.hex("34 | 00000019 | 02 | \(peerA) | \(smallMetadata) | \(peerB) | 00 | 01 \(peerB)"),
         ControlEnvelope(id: 25, frame: .searchResult(SearchResult(hits: [SearchHit(peer: S.peerA, metadata: S.smallMetadata),
                                                                         SearchHit(peer: S.peerB, metadata: PeerMetadata())], next: S.peerB)))),
        ("searchResult empty",
         ControlTest.hex("34 | 00000000 | 00 | 00"),
         ControlEnvelope(id: 0, frame: .searchResult(SearchResult(hits: [], next: nil)))),
        ("error",
         ControlTest.hex("3f | 0000001f | 0006 | 0011 | 756e6578706563746564 20 29 20 6174 20 37"),
         ControlEnvelope(id: 31, frame: .error(ControlFailure(.badQuery, "unexpected ) at 7")))),
        ("keepaliveAck IPv6",
         ControlTest.hex("32 | 00000015 | \(v6)"),
         ControlEnvelope(id: 21, frame: .keepaliveAck(observed: S.v6))),
        ("welcome",
         ControlTest.hex("60 | 00000000 | \(v4) | 0019 | 0000019a12345678"),
         ControlEnvelope(id: 0, frame: .welcome(Welcome(observed: S.v4, keepaliveSeconds: 25, serverTimeMillis: 0x19A_1234_5678)))),
        ("registered",
         ControlTest.hex("30 | 00000012 | \(peerA) | \(v6) | 0019 | 03"),
         ControlEnvelope(id: 18, frame: .registered(Registered(peer: S.peerA, observed: S.v6, keepaliveSeconds: 25, expiryMisses: 3)))),
        ("lookupResult online",
         ControlTest.hex("33 | 00000016 | \(peerB) | 01 | \(v4) | 01 \(v6) | \(smallMetadata)"),
         ControlEnvelope(id: 22, frame: .lookupResult(LookupResult(peer: S.peerB, online: true, observed: S.v4, candidates: [S.v6],
                                                                   metadata: S.smallMetadata)))),
        ("lookupResult offline",
         ControlTest.hex("33 | 00000018 | \(peerB) | 00"),
         ControlEnvelope(id: 24, frame: .lookupResult(LookupResult(peer: S.peerB, online: false, observed: nil, candidates: [],
                                                                   metadata: PeerMetadata())))),
        ("publish",
         ControlTest.hex("14 | 00000004 | 00 | 02 | 04 6e616d65 01 03 626f62 | 03 616765 00"),
         ControlEnvelope(id: 4, frame: .publish(MetadataUpdate(replace: false, changes: [("name", "bob"), ("age", nil)])))),
        ("search",
         ControlTest.hex("15 | 00000006 | 0005 | 6167653e33 | 0032 | 01 \(peerA)"),
         ControlEnvelope(id: 6, frame: .search(SearchRequest(query: "age>3", limit: 50, after: S.peerA)))),
        ("watch",
         ControlTest.hex("17 | 0000000b | 02 | \(peerA) | \(peerB)"),
         ControlEnvelope(id: 11, frame: .watch([S.peerA, S.peerB]))),
        ("watchResult",
         ControlTest.hex("36 | 0000001e | 02 | \(peerA) 01 | \(peerB) 00"),
         ControlEnvelope(id: 30, frame: .watchResult([PeerStatus(peer: S.peerA, online: true), PeerStatus(peer: S.peerB, online: false)]))),
        ("connect",
         ControlTest.hex("19 | 0000000e | \(peerB) | 0000000000000063 | 00 | 0003 | 686579"),
         ControlEnvelope(id: 14, frame: .connect(ConnectRequest(to: S.peerB, requestID: 99, transport: .udp, note: "hey")))),
        ("connectAnswered",
         ControlTest.hex("53 | 50000007 | \(peerB) | 0000000000000005 | 00 | 0004 | 62757379"),
         ControlEnvelope(id: 0x5000_0007, frame: .connectAnswered(ConnectDecision(peer: S.peerB, requestID: 5, accepted: false, reason: "busy")))),
        ("messageOutcome",
         ControlTest.hex("35 | 0000001c | \(peerB) | 000000000000002a | 03"),
         ControlEnvelope(id: 28, frame: .messageOutcome(MessageOutcome(to: S.peerB, messageID: 42, outcome: .queued)))),
        ("status online",
         ControlTest.hex("51 | 50000002 | \(peerA) | 01 | \(smallMetadata)"),
         ControlEnvelope(id: 0x5000_0002, frame: .status(StatusEvent(peer: S.peerA, change: .online, metadata: S.smallMetadata)))),
        ("status expired",
         ControlTest.hex("51 | 50000004 | \(peerA) | 03"),
         ControlEnvelope(id: 0x5000_0004, frame: .status(StatusEvent(peer: S.peerA, change: .expired)))),
        ("keepalive", ControlTest.hex("11 | 00000001"), ControlEnvelope(id: 1, frame: .keepalive)),
        ("ack", ControlTest.hex("7f | ffffffff"), ControlEnvelope(id: .max, frame: .ack)),
    ]

    @Test("packets decode from hand-written bytes and encode to them", arguments: packets)
    func packet(name: String, bytes: [UInt8], packet: ControlPacket) throws {
        #expect(try ControlTest.decodePacket(bytes).get() == packet, "\(name)")
        #expect(ControlTest.packetBytes(packet) == bytes, "\(name)")
    }

    @Test("frames decode from hand-written bytes and encode to them", arguments: frames)
    func frame(name: String, bytes: [UInt8], envelope: ControlEnvelope) throws {
        #expect(try ControlTest.decodeFrame(bytes).get() == envelope, "\(name)")
        #expect(ControlTest.frameBytes(envelope.frame, id: envelope.id) == bytes, "\(name)")
    }

    @Test("sizes from the protocol description: hello 256, cookie 28, sessionUnknown 12")
    func sizes() {
        #expect(ControlTest.packetBytes(S.packets[0].1).count == ControlLimits.minimumHelloBytes)
        #expect(ControlTest.packetBytes(S.packets[3].1).count == 28)
        #expect(ControlTest.packetBytes(.sessionUnknown(sessionID: 1)).count == 12)
        #expect(ControlTest.packetBytes(S.packets[5].1).count == ControlLimits.sealedHeaderBytes + ControlLimits.tagBytes)
    }

    @Test("a hello's padding content is not checked; its paddedLength is the datagram's length")
    func helloPadding() throws {
        let bytes = ControlTest.hex("01 01 00 00 | \(Self.key)") + Array(repeating: 0x5A, count: 400 - 36)
        let packet = try ControlTest.decodePacket(bytes).get()
        #expect(packet == .hello(ControlHello(ephemeralKey: S.ephemeral, cookie: nil, paddedLength: 400)))
        #expect(ControlTest.packetBytes(packet) == Array(bytes.prefix(36)) + Array(repeating: 0, count: 400 - 36))
    }

    @Test("the decoded ciphertext is the bytes after the sealed header, whatever the buffer's reader index")
    func sealedSlice() throws {
        let bytes = Self.packets[6].1
        var buffer = ByteBuffer(bytes: Array(repeating: 0xFF, count: 9) + bytes)
        buffer.moveReaderIndex(forwardBy: 9)
        guard case .sealed(let sealed) = try buffer.readControlPacket() else { Issue.record("not sealed"); return }
        #expect(Array(sealed.ciphertext.readableBytesView) == Array(bytes[20...]))
    }
}
