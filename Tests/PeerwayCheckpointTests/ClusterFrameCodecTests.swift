import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwayCheckpoint

@Suite("Cluster frames: codec")
struct ClusterFrameCodecTests {
    static let a = PeerID(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C_0D0E_0F10)
    static let b = PeerID(high: 0x1111_1111_1111_1111, low: 0x2222_2222_2222_2222)
    static let v4 = PeerEndpoint(ip: .v4(0xCB00_7105), port: 40_000)
    static let v6 = PeerEndpoint(ip: .v6(high: 0x2001_0DB8_0000_0000, low: 1), port: 7)

    static let samples: [ClusterFrame] = [
        .peersUp([ClusterPeerRow(peer: a, observed: v4, candidates: [v4, v6], metadata: try! PeerMetadata(["app": "chat", "room": "42"]),
                                 version: 1_765_000_000_000),
                  ClusterPeerRow(peer: b, observed: v6, candidates: [], metadata: PeerMetadata(), version: 1)]),
        .peersUp([]),
        .peerDown(a, change: .offline),
        .peerDown(b, change: .expired),
        .snapshot(start: true),
        .snapshot(start: false),
        .push(id: 42, to: b, frame: .deliver(IncomingMessage(from: a, messageID: 7, text: "hello"))),
        .push(id: .max, to: a, frame: .connectRequested(IncomingConnectRequest(from: b, requestID: 3, transport: .tcp, note: "game?"))),
        .pushOutcome(id: 42, outcome: .delivered),
        .pushOutcome(id: 1, outcome: .timedOut),
        .forward(from: a, observed: v4, frame: .answerConnect(ConnectDecision(peer: b, requestID: 3, accepted: true, reason: ""))),
        .index(.loggedIn(peer: a, user: alice, networks: [])),
        .index(.loggedIn(peer: b, user: alice, networks: [0x0102, -1])),
        .index(.loggedOut(peer: b)),
        .index(.joined(user: alice, network: lab)),
        .index(.left(user: ClusterIndexName(id: .max, name: String(repeating: "u", count: IndexWireLimits.maximumNameBytes)), network: lab)),
        .index(.accountDeleted(user: alice, networks: [1, .max, 3])),
        .index(.accountDeleted(user: alice, networks: [])),
        .index(.accountDeleted(user: alice, networks: Array(1...Int64(ClusterFrameLimits.maximumNetworksPerIndexEvent)))),
        .index(.networkDeleted(network: lab)),
    ]
    static let alice = ClusterIndexName(id: 1, name: "alice")
    static let lab = ClusterIndexName(id: 0x0102, name: "lab")

    static func bytes(_ f: ClusterFrame) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeClusterFrame(f)
        return b
    }

    @Test("every frame round-trips")
    func roundTrip() throws {
        for f in Self.samples {
            var b = Self.bytes(f)
            #expect(try b.readClusterFrame() == f)
            #expect(b.readableBytes == 0)
        }
    }

    @Test("golden bytes of peerDown, pushOutcome and a push")
    func golden() {
        #expect(Array(Self.bytes(.peerDown(Self.a, change: .expired)).readableBytesView)
                == [2] + (1...16).map { UInt8($0) } + [3])
        #expect(Array(Self.bytes(.pushOutcome(id: 0x0102, outcome: .offline)).readableBytesView) == [5, 0, 0, 0, 0, 0, 0, 1, 2, 2])
        // push: kind 4, id(8), to(16), length(2), then the control frame as the control codec writes it with id 0.
        var control = ByteBuffer()
        control.writeControlFrame(.deliver(IncomingMessage(from: Self.a, messageID: 7, text: "hi")), id: 0)
        let push = Array(Self.bytes(.push(id: 1, to: Self.b, frame: .deliver(IncomingMessage(from: Self.a, messageID: 7, text: "hi")))).readableBytesView)
        #expect(push.prefix(9) == [4, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(Array(push[25..<27]) == [UInt8(control.readableBytes >> 8), UInt8(control.readableBytes & 0xFF)])
        #expect(Array(push[27...]) == Array(control.readableBytesView))
    }

    @Test("golden bytes of INDEX events")
    func goldenIndex() {
        // kind 7, event 1 (loggedIn): the peer, user id(8) name(1+5), count(2), network ids(8 each).
        #expect(Array(Self.bytes(.index(.loggedIn(peer: Self.a, user: Self.alice, networks: [2]))).readableBytesView)
                == [7, 1] + (1...16).map { UInt8($0) } + [0, 0, 0, 0, 0, 0, 0, 1, 5] + Array("alice".utf8) + [0, 1, 0, 0, 0, 0, 0, 0, 0, 2])
        // kind 7, event 2 (loggedOut), the peer.
        #expect(Array(Self.bytes(.index(.loggedOut(peer: Self.a))).readableBytesView) == [7, 2] + (1...16).map { UInt8($0) })
        // kind 7, event 3 (joined): user id(8) name(1+5), network id(8) name(1+3).
        #expect(Array(Self.bytes(.index(.joined(user: Self.alice, network: Self.lab))).readableBytesView)
                == [7, 3, 0, 0, 0, 0, 0, 0, 0, 1, 5] + Array("alice".utf8) + [0, 0, 0, 0, 0, 0, 1, 2, 3] + Array("lab".utf8))
        // kind 7, event 5 (accountDeleted): user, count(2), ids(8 each).
        #expect(Array(Self.bytes(.index(.accountDeleted(user: Self.alice, networks: [9]))).readableBytesView)
                == [7, 5, 0, 0, 0, 0, 0, 0, 0, 1, 5] + Array("alice".utf8) + [0, 1, 0, 0, 0, 0, 0, 0, 0, 9])
    }

    @Test("INDEX events: unknown events, empty or long names and too many networks are refused")
    func malformedIndex() {
        var unknown = ByteBuffer(bytes: [7, 9])
        #expect(throws: ClusterFrameError.malformed(.invalid(what: "index event: unknown event 9 (a newer supernode? upgrade this one)"))) { try unknown.readClusterFrame() }
        var zero = ByteBuffer(bytes: [7, 0])
        #expect(throws: ClusterFrameError.self) { try zero.readClusterFrame() }
        // networkDeleted with an empty name, and with one over IndexWireLimits.maximumNameBytes.
        var empty = ByteBuffer(bytes: [7, 6, 0, 0, 0, 0, 0, 0, 0, 1, 0])
        #expect(throws: ClusterFrameError.self) { try empty.readClusterFrame() }
        let long = IndexWireLimits.maximumNameBytes + 1
        var overlong = ByteBuffer(bytes: [7, 6, 0, 0, 0, 0, 0, 0, 0, 1, UInt8(long)] + Array(repeating: UInt8(ascii: "x"), count: long))
        #expect(throws: ClusterFrameError.self) { try overlong.readClusterFrame() }
        // A name that is not UTF-8.
        var binary = ByteBuffer(bytes: [7, 6, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0xC3, 0x28])
        #expect(throws: ClusterFrameError.self) { try binary.readClusterFrame() }
        // accountDeleted naming one network more than allowed (the count is checked before the ids are read).
        let over = ClusterFrameLimits.maximumNetworksPerIndexEvent + 1
        var tooMany = ByteBuffer(bytes: [7, 5, 0, 0, 0, 0, 0, 0, 0, 1, 5] + Array("alice".utf8) + [UInt8(over >> 8), UInt8(over & 0xFF)])
        #expect(throws: ClusterFrameError.malformed(.invalid(what: "accountDeleted.count: \(over) networks, over maximumNetworksPerIndexEvent (\(over - 1))"))) {
            try tooMany.readClusterFrame()
        }
        // Trailing bytes after an event.
        var trailing = Self.bytes(.index(.loggedOut(peer: Self.b)))
        trailing.writeInteger(0 as UInt8)
        #expect(throws: ClusterFrameError.malformed(.trailingBytes(1))) { try trailing.readClusterFrame() }
    }

    @Test("every truncation of every frame is an error that leaves the reader where it was")
    func truncated() {
        for f in Self.samples {
            let full = Array(Self.bytes(f).readableBytesView)
            for n in 0..<full.count {
                var b = ByteBuffer(bytes: full.prefix(n))
                #expect(throws: ClusterFrameError.self) { try b.readClusterFrame() }
                #expect(b.readableBytes == n)
            }
        }
    }

    @Test("unknown kinds, trailing bytes and forbidden values are refused with what was wrong")
    func malformed() {
        var unknown = ByteBuffer(bytes: [99, 0])
        #expect(throws: ClusterFrameError.unknownKind(99)) { try unknown.readClusterFrame() }
        var trailing = Self.bytes(.snapshot(start: true))
        trailing.writeInteger(0 as UInt8)
        #expect(throws: ClusterFrameError.malformed(.trailingBytes(1))) { try trailing.readClusterFrame() }
        var online = ByteBuffer(bytes: [2] + Array(repeating: 0, count: 16) + [1])
        #expect(throws: ClusterFrameError.self) { try online.readClusterFrame() }
        var queued = ByteBuffer(bytes: [5, 0, 0, 0, 0, 0, 0, 0, 1, 3])
        #expect(throws: ClusterFrameError.self) { try queued.readClusterFrame() }
        var badBool = ByteBuffer(bytes: [3, 2])
        #expect(throws: ClusterFrameError.self) { try badBool.readClusterFrame() }
        var tooMany = ByteBuffer(bytes: [1, 0x01, 0x01])
        #expect(throws: ClusterFrameError.self) { try tooMany.readClusterFrame() }
        var empty = ByteBuffer()
        #expect(throws: ClusterFrameError.empty) { try empty.readClusterFrame() }
        // An embedded control frame whose length runs past the end.
        var long = ByteBuffer(bytes: [4] + Array(repeating: 0, count: 24) + [0xFF, 0xFF, 0x01])
        #expect(throws: ClusterFrameError.self) { try long.readClusterFrame() }
    }
}
