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
    ]

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
