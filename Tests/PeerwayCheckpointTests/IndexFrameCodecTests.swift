import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

/// One sample of every INDEX frame body.
enum IndexSamples {
    typealias S = ControlSamples
    static let page = IndexPageRequest(after: "41", limit: 20)
    static let update = MetadataUpdate(replace: true, changes: [(key: "city", value: "paris"), (key: "old", value: nil)])

    static let calls: [IndexCall] = [
        .signup(username: "alice", password: "correct horse", metadata: S.smallMetadata),
        .login(username: "alice", password: "correct horse"),
        .logout,
        .changePassword(old: "correct horse", new: "battery staple"),
        .whoami,
        .updateProfile(update),
        .deleteAccount(password: "correct horse"),
        .createNetwork(name: "lab", access: .inviteOnly, metadata: S.fullMetadata),
        .updateNetwork(name: "lab", access: nil, metadata: update),
        .updateNetwork(name: "lab", access: .open, metadata: MetadataUpdate(replace: false, changes: [])),
        .deleteNetwork(name: "lab"),
        .join(network: "lab"),
        .invite(network: "lab", user: "bob"),
        .remove(network: "lab", user: "bob"),
        .leave(network: "lab"),
        .members(network: "lab", page: page),
        .members(network: "lab", page: IndexPageRequest()),
        .watchNetwork("lab"),
        .unwatchNetwork("lab"),
        .setRole(network: "lab", user: "bob", role: .admin),
        .searchUsers(query: "city=paris and age>30", page: page),
        .searchNetworks(query: "topic~rust", page: IndexPageRequest(after: nil, limit: 100)),
        .myNetworks(page),
        .invitations,
    ]

    static let user = IndexUserEntry(id: 42, name: "alice", metadata: S.smallMetadata)
    static let network = IndexNetworkEntry(id: 7, name: "lab", owner: "alice", access: .open, role: .owner, metadata: S.smallMetadata)
    static let stranger = IndexNetworkEntry(id: -5, name: "far", owner: "zed", access: .inviteOnly, role: nil, metadata: PeerMetadata())
    static let member = IndexMemberEntry(user: 42, name: "alice", role: .owner, onlinePeers: [S.peerA, S.peerB])
    static let offline = IndexMemberEntry(user: 43, name: "bob", role: .member, onlinePeers: [])

    static let replies: [IndexReply] = [
        .done,
        .user(user),
        .network(network),
        .network(stranger),
        .members(network: "lab", IndexEntryPage(items: [member, offline], next: "43")),
        .members(network: "lab", IndexEntryPage(items: [], next: nil)),
        .users(IndexEntryPage(items: [user], next: nil)),
        .networks(IndexEntryPage(items: [network, stranger], next: "9")),
    ]

    static let status = NetworkMemberStatus(network: "lab", user: 43, name: "bob", peer: S.peerB, online: true)

    static var frames: [ControlFrame] {
        calls.map { .indexRequest($0) } + replies.map { .indexResult($0) } + [.networkStatus(status)]
    }
}

@Suite("INDEX frames: round trip, golden bytes, byte-at-a-time and malformed input")
struct IndexFrameCodecTests {
    typealias T = ControlTest

    @Test("every request, reply and push survives a round trip")
    func roundTrip() throws {
        for frame in IndexSamples.frames {
            let bytes = T.frameBytes(frame, id: 0x0102_0304)
            let decoded = try T.decodeFrame(bytes).get()
            #expect(decoded == ControlEnvelope(id: 0x0102_0304, frame: frame), "\(frame)")
        }
        // Every operation and reply kind is covered by the samples.
        #expect(Set(IndexSamples.calls.map(\.operation)) == Set(IndexCall.Operation.allCases))
        #expect(Set(IndexSamples.replies.map(\.kind)) == Set(IndexReply.Kind.allCases))
    }

    @Test("golden bytes: login request, user reply, member status push")
    func golden() {
        #expect(T.frameBytes(.indexRequest(.login(username: "al", password: "pw")), id: 1) == T.hex("""
            1d | 00000001 | 02 | 02 616c | 0002 7077
            """))
        #expect(T.frameBytes(.indexResult(.user(IndexUserEntry(id: 5, name: "al", metadata: try! PeerMetadata(["k": "v"])))), id: 2) == T.hex("""
            37 | 00000002 | 01 | 0000000000000005 | 02 616c | 01 01 6b 01 76
            """))
        #expect(T.frameBytes(.networkStatus(NetworkMemberStatus(network: "n1", user: 3, name: "bo", peer: ControlSamples.peerA, online: false)), id: 3) == T.hex("""
            56 | 00000003 | 02 6e31 | 0000000000000003 | 02 626f | 0011223344556677 8899aabbccddeeff | 00
            """))
        #expect(T.frameBytes(.indexRequest(.members(network: "n1", page: IndexPageRequest(after: "7", limit: 5))), id: 4) == T.hex("""
            1d | 00000004 | 17 | 02 6e31 | 01 37 | 0005
            """))
    }

    @Test("every prefix of every frame is refused as truncated without moving the reader")
    func byteAtATime() {
        for frame in IndexSamples.frames {
            let bytes = T.frameBytes(frame, id: 9)
            for cut in 0..<bytes.count {
                let error = T.frameError(Array(bytes.prefix(cut)))
                #expect(T.isTruncated(error), "\(frame) cut at \(cut): \(String(describing: error))")
            }
        }
    }

    @Test("malformed: unknown operation and reply, bad access and role codes, over-long names and cursors, page limit, trailing bytes")
    func malformed() {
        func invalid(_ bytes: [UInt8], _ fragment: String) {
            let text = T.invalidText(T.frameError(bytes))
            #expect(text?.contains(fragment) == true, "\(String(describing: text)) should mention \(fragment)")
        }
        invalid(T.hex("1d 00000001 7e"), "unknown operation")
        invalid(T.hex("37 00000001 09"), "unknown reply")
        invalid(T.hex("1d 00000001 10 03 6c6162 02 00"), "access")
        invalid(T.hex("1d 00000001 11 03 6c6162 07 00 00"), "access")
        invalid(T.hex("1d 00000001 1a 03 6c6162 03 626f62 03"), "role")
        invalid(T.hex("1d 00000001 13 00"), "name of 0 bytes")
        invalid([0x1D, 0, 0, 0, 1, 0x13, 65] + Array(repeating: 0x61, count: 65), "name of 65 bytes")
        invalid([0x1D, 0, 0, 0, 1, 0x22, 41] + Array(repeating: 0x31, count: 41) + [0, 1], "cursor")
        invalid(T.hex("1d 00000001 22 00 0065"), "maximumPage")
        invalid(T.hex("1d 00000001 02 02 616c 0002 70ff"), "UTF-8")
        invalid(T.hex("1d 00000001 02 02 616c 0401") + Array(repeating: 0x61, count: 1025), "maximumPasswordBytes")
        invalid(T.hex("37 00000001 02 0000000000000007 03 6c6162 02 616c 00 05 00"), "network.role")
        invalid(T.hex("56 00000001 02 6e31 0000000000000003 02 626f 0011223344556677 8899aabbccddeeff 02"), "boolean")
        let member = T.hex("37 00000001 03 02 6e31 01 0000000000000001 02 616c 00 11") + Array(repeating: 0, count: 17 * 16) + [0]
        invalid(member, "maximumPeersPerMember")
        var trailing = T.frameBytes(.indexRequest(.whoami), id: 1)
        trailing.append(0)
        #expect(T.frameError(trailing) == .trailingBytes(1))
    }

    @Test("validation refuses what the wire cannot carry before it is encoded")
    func validation() {
        for call in IndexSamples.calls { #expect(call.validationFailure == nil, "\(call)") }
        let long = String(repeating: "a", count: 65)
        #expect(IndexCall.login(username: long, password: "x").validationFailure != nil)
        #expect(IndexCall.login(username: "", password: "x").validationFailure != nil)
        #expect(IndexCall.signup(username: "al", password: String(repeating: "p", count: 1025), metadata: PeerMetadata()).validationFailure != nil)
        #expect(IndexCall.updateProfile(MetadataUpdate(replace: false, changes: [(key: "k", value: String(repeating: "v", count: 300))])).validationFailure != nil)
        #expect(IndexCall.updateProfile(MetadataUpdate(replace: false, changes: [(key: "Bad Key", value: "v")])).validationFailure != nil)
        #expect(IndexCall.updateProfile(MetadataUpdate(replace: false, changes: [(key: "k", value: "1"), (key: "k", value: "2")])).validationFailure != nil)
        #expect(IndexCall.searchUsers(query: String(repeating: "q", count: 513), page: IndexPageRequest()).validationFailure != nil)
        #expect(IndexCall.myNetworks(IndexPageRequest(after: String(repeating: "1", count: 41))).validationFailure != nil)
        #expect(IndexCall.myNetworks(IndexPageRequest(limit: 101)).validationFailure != nil)
    }

    @Test("the largest user and network entries fit one frame with room for a page's framing")
    func largestEntriesFit() {
        let name = String(repeating: "n", count: IndexWireLimits.maximumNameBytes)
        let full = ControlSamples.fullMetadata
        let user = IndexUserEntry(id: .max, name: name, metadata: full)
        let network = IndexNetworkEntry(id: .max, name: name, owner: name, access: .open, role: .member, metadata: full)
        for frame in [ControlFrame.indexResult(.users(IndexEntryPage(items: [user], next: String(repeating: "9", count: 40)))),
                      .indexResult(.networks(IndexEntryPage(items: [network], next: String(repeating: "9", count: 40))))] {
            #expect(T.frameBytes(frame, id: 1).count <= ControlLimits.maximumFrameBytes)
        }
        #expect(user.wireBytes == T.frameBytes(.indexResult(.user(user)), id: 1).count - 6)
        #expect(network.wireBytes == T.frameBytes(.indexResult(.network(network)), id: 1).count - 6)
        let member = IndexSamples.member
        #expect(member.wireBytes + 6 + 4 + 1 + 1 == T.frameBytes(.indexResult(.members(network: "lab", IndexEntryPage(items: [member], next: nil))), id: 1).count)
    }
}
