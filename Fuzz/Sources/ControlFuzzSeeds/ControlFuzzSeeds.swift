import Foundation
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN

// Writes the seed corpus for ControlDecoderFuzzer into the directory given as the only argument.
// Each seed is one selector byte (0: a datagram, 1: the plaintext of a sealed packet) followed by
// encoder output: every packet type, and frames covering every body encoding (endpoints of both
// families, metadata, optional peer ids, texts, lists, enums). Deterministic: same files each run.

@main
struct ControlFuzzSeeds {
    static func main() throws {
        guard CommandLine.arguments.count == 2 else {
            FileHandle.standardError.write(Data("usage: ControlFuzzSeeds <corpus-directory>\n".utf8))
            exit(2)
        }
        let directory = URL(fileURLWithPath: CommandLine.arguments[1], isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)

        let a = PeerID(high: 0x0011_2233_4455_6677, low: 0x8899_AABB_CCDD_EEFF)
        let b = PeerID(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C_0D0E_0F10)
        let v4 = STUNAddress(parsing: "192.0.2.1:8080")!
        let v6 = STUNAddress(parsing: "[2001:db8::1]:7400")!
        let metadata = try PeerMetadata(["name": "alice", "age": "30", "city": "oslo"])
        let key = (0..<32).map { UInt8($0) }
        let register = RegisterRequest(publicKey: key, keepaliveSeconds: 25, candidates: [v4, v6], metadata: metadata,
                                       signature: (0..<64).map { UInt8(0x80 + $0) })

        func frame(_ frame: ControlFrame, id: UInt32) -> [UInt8] {
            var buffer = ByteBuffer()
            buffer.writeControlFrame(frame, id: id)
            return Array(buffer.readableBytesView)
        }
        func packet(_ packet: ControlPacket) -> [UInt8] {
            var buffer = ByteBuffer()
            buffer.writeControlPacket(packet)
            return Array(buffer.readableBytesView)
        }

        let welcome = frame(.welcome(Welcome(observed: v6, keepaliveSeconds: 25, serverTimeMillis: 1_763_719_200_123)), id: 0)
        let ephemeral = (0..<32).map { UInt8(0xA0 + $0) }
        let cookie = (0..<16).map { UInt8(0x30 + $0) }
        let packets: [(String, [UInt8])] = [
            ("packet-hello", packet(.hello(ControlHello(ephemeralKey: ephemeral, cookie: nil)))),
            ("packet-hello-cookie", packet(.hello(ControlHello(ephemeralKey: ephemeral, cookie: cookie)))),
            ("packet-cookie", packet(.cookie(ControlCookie(echo: Array(ephemeral.prefix(8)), cookie: cookie)))),
            ("packet-hello-reply", packet(.helloReply(ControlHelloReply(sessionID: 7, ephemeralKey: key, sealedWelcome: ByteBuffer(bytes: welcome + [UInt8](repeating: 0, count: 16)))))),
            ("packet-sealed-register", packet(.sealed(ControlSealed(sessionID: 7, counter: 1, ciphertext: ByteBuffer(bytes: frame(.register(register), id: 1)))))),
            ("packet-session-unknown", packet(.sessionUnknown(sessionID: 7))),
        ]
        let frames: [(String, [UInt8])] = [
            ("frame-register", frame(.register(register), id: 1)),
            ("frame-publish", frame(.publish(MetadataUpdate(replace: false, changes: [("name", "bob"), ("age", nil)])), id: 2)),
            ("frame-search", frame(.search(SearchRequest(query: "age>30 city=oslo", limit: 20, after: a)), id: 3)),
            ("frame-send-message", frame(.sendMessage(OutgoingMessage(to: b, messageID: 42, text: "héllo ✓ 👋")), id: 4)),
            ("frame-watch", frame(.watch([a, b]), id: 5)),
            ("frame-connect", frame(.connect(ConnectRequest(to: b, requestID: 9, transport: .tcp, note: "ssh?")), id: 6)),
            ("frame-registered", frame(.registered(Registered(peer: a, observed: v4, keepaliveSeconds: 25, expiryMisses: 3)), id: 1)),
            ("frame-lookup-result", frame(.lookupResult(LookupResult(peer: b, online: true, observed: v4, candidates: [v6, v4], metadata: metadata)), id: 7)),
            ("frame-search-result", frame(.searchResult(SearchResult(hits: [SearchHit(peer: a, metadata: metadata), SearchHit(peer: b, metadata: PeerMetadata())], next: b)), id: 3)),
            ("frame-watch-result", frame(.watchResult([PeerStatus(peer: a, online: true), PeerStatus(peer: b, online: false)]), id: 5)),
            ("frame-error", frame(.error(ControlFailure(.badQuery, "unexpected ) at 7")), id: 3)),
            ("frame-status", frame(.status(StatusEvent(peer: a, change: .metadataChanged, metadata: metadata)), id: 0x5000_0001)),
            ("frame-connect-answered", frame(.connectAnswered(ConnectDecision(peer: b, requestID: 9, accepted: false, reason: "busy")), id: 0x5000_0002)),
            ("frame-message-status", frame(.messageStatus(MessageOutcome(to: b, messageID: 42, outcome: .timedOut)), id: 0x5000_0003)),
            ("frame-welcome", welcome),
            // INDEX (IndexFrames.swift): requests with names, passwords, metadata, updates, pages; replies.
            ("frame-index-signup", frame(.indexRequest(.signup(username: "alice", password: "correct horse", metadata: metadata)), id: 8)),
            ("frame-index-update-network", frame(.indexRequest(.updateNetwork(name: "lab", access: nil,
                metadata: MetadataUpdate(replace: true, changes: [("topic", "nat"), ("old", nil)]))), id: 9)),
            ("frame-index-members", frame(.indexRequest(.members(network: "lab", page: IndexPageRequest(after: "41", limit: 20))), id: 10)),
            ("frame-index-search-users", frame(.indexRequest(.searchUsers(query: "city=oslo or age>30", page: IndexPageRequest())), id: 11)),
            ("frame-index-set-role", frame(.indexRequest(.setRole(network: "lab", user: "bob", role: .admin)), id: 12)),
            ("frame-index-user", frame(.indexResult(.user(IndexUserEntry(id: 42, name: "alice", metadata: metadata))), id: 8)),
            ("frame-index-members-result", frame(.indexResult(.members(network: "lab", IndexEntryPage(items: [
                IndexMemberEntry(user: 42, name: "alice", role: .owner, onlinePeers: [a, b]),
                IndexMemberEntry(user: 43, name: "bob", role: .member, onlinePeers: [])], next: "43"))), id: 10)),
            ("frame-index-networks-result", frame(.indexResult(.networks(IndexEntryPage(items: [
                IndexNetworkEntry(id: 7, name: "lab", owner: "alice", access: .inviteOnly, role: nil, metadata: metadata)], next: nil))), id: 11)),
            ("frame-network-status", frame(.networkStatus(NetworkMemberStatus(network: "lab", user: 43, name: "bob", peer: b, online: true)), id: 0x5000_0004)),
        ]
        var count = 0
        for (name, bytes) in packets {
            try Data([0] + bytes).write(to: directory.appendingPathComponent(name + ".bin"))
            count += 1
        }
        for (name, bytes) in frames {
            try Data([1] + bytes).write(to: directory.appendingPathComponent(name + ".bin"))
            count += 1
        }
        print("wrote \(count) seeds to \(directory.path)")
    }
}
