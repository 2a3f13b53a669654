import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PeerwayCheckpoint
import PeerwaySTUN
import Testing
@testable import PeerwaySupernode

/// Cluster meshes on loopback: links between members, ordering, refusals, removal, stop and restart.
@Suite("Cluster mesh: authenticated links between supernodes on loopback", .serialized, .timeLimit(.minutes(2)))
struct ClusterMeshTests {
    /// What one mesh's callbacks saw, and what its logger said.
    final class Recorder: Sendable {
        struct Seen {
            var received: [[UInt8]: [ByteBuffer]] = [:]
            var changes: [(peer: [UInt8], up: Bool)] = []
            var logs: [String] = []
            var lastReceive: ContinuousClock.Instant?
            /// Keys of unlisted supernodes that dialed in (`onStranger`).
            var strangers: [[UInt8]] = []
        }
        let seen = NIOLockedValueBox(Seen())

        func received(from peer: [UInt8]) -> [ByteBuffer] { seen.withLockedValue { $0.received[peer] ?? [] } }
        var totalReceived: Int { seen.withLockedValue { $0.received.values.reduce(0) { $0 + $1.count } } }
        func changes(_ peer: [UInt8]) -> [Bool] { seen.withLockedValue { $0.changes.filter { $0.peer == peer }.map(\.up) } }
        var changeCount: Int { seen.withLockedValue { $0.changes.count } }
        var logs: [String] { seen.withLockedValue { $0.logs } }
        var lastReceive: ContinuousClock.Instant? { seen.withLockedValue { $0.lastReceive } }
        var strangers: [[UInt8]] { seen.withLockedValue { $0.strangers } }
    }

    /// A log handler keeping "message reason" lines (notice and above) for the assertions.
    struct CapturingLogHandler: LogHandler {
        let recorder: Recorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .notice
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let reason = event.metadata?["cluster.reason"].map { " \($0)" } ?? ""
            recorder.seen.withLockedValue { $0.logs.append("\(event.message)\(reason)") }
        }
    }

    struct Node {
        let key: SupernodeKey
        let mesh: ClusterMesh
        let recorder: Recorder
        let address: STUNAddress
        var pub: [UInt8] { Array(key.publicKey.rawRepresentation) }
        var member: (key: [UInt8], link: String) { (pub, "127.0.0.1:\(address.port)") }
    }

    static func key(_ seed: UInt8) throws -> SupernodeKey {
        try SupernodeKey(seed: (0..<32).map { UInt8(truncatingIfNeeded: Int(seed) &* 41 &+ $0 &* 3) })
    }

    /// Keys from `seeds`, sorted by public key (so a test knows who dials whom).
    static func sortedKeys(_ seeds: [UInt8]) throws -> [SupernodeKey] {
        try seeds.map(key).sorted {
            Array($0.publicKey.rawRepresentation).lexicographicallyPrecedes(Array($1.publicKey.rawRepresentation))
        }
    }

    static func start(_ key: SupernodeKey, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> Node {
        let recorder = Recorder()
        let logger = Logger(label: "test.cluster") { _ in CapturingLogHandler(recorder: recorder) }
        let mesh = ClusterMesh(
            key: key, listen: STUNAddress(ip: .v4(0x7F00_0001), port: 0), logger: logger,
            onReceive: { from, payload in
                let now = ContinuousClock.now
                recorder.seen.withLockedValue {
                    $0.received[from, default: []].append(payload)
                    $0.lastReceive = now
                }
            },
            onLinkChange: { peer, up in recorder.seen.withLockedValue { $0.changes.append((peer, up)) } },
            onStranger: { peer in recorder.seen.withLockedValue { $0.strangers.append(peer) } },
            group: group)
        let address = try await mesh.start()
        #expect(address.port != 0)
        return Node(key: key, mesh: mesh, recorder: recorder, address: address)
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes; records an issue then.
    @discardableResult
    static func waitUntil(_ what: String, timeout: Duration = .seconds(5), sourceLocation: SourceLocation = #_sourceLocation,
                          _ condition: () -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !condition() {
            if clock.now >= deadline {
                Issue.record("timed out after \(timeout): \(what)", sourceLocation: sourceLocation)
                return false
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// Starts meshes for `keys`, runs `body`, and stops every mesh whatever happened.
    static func withNodes(_ keys: [SupernodeKey], _ body: (inout [Node]) async throws -> Void) async throws {
        var nodes: [Node] = []
        do {
            for key in keys { nodes.append(try await start(key)) }
            try await body(&nodes)
        } catch {
            for node in nodes { await node.mesh.stop() }
            throw error
        }
        for node in nodes { await node.mesh.stop() }
    }

    static func linkAll(_ nodes: [Node]) async {
        let members = nodes.map(\.member)
        for node in nodes { node.mesh.setMembers(members) }
        await waitUntil("every mesh linked to the \(nodes.count - 1) others") {
            nodes.allSatisfy { $0.mesh.connectedPeers.count == nodes.count - 1 }
        }
    }

    static func numbered(_ i: Int, size: Int = 200) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(UInt32(i))
        b.writeRepeatingByte(UInt8(truncatingIfNeeded: i), count: size - 4)
        return b
    }

    // MARK: tests

    @Test func threeMeshesLinkEveryPairOnceAndDeliverInOrder() async throws {
        try await Self.withNodes(try Self.sortedKeys([1, 2, 3])) { nodes in
            await Self.linkAll(nodes)
            for node in nodes {
                let others = nodes.filter { $0.pub != node.pub }.map(\.pub).sorted { $0.lexicographicallyPrecedes($1) }
                #expect(node.mesh.connectedPeers == others)
                // Exactly one link per pair: one "up" per peer, never replaced or dropped.
                for other in others { #expect(node.recorder.changes(other) == [true]) }
            }
            let (a, b, c) = (nodes[0], nodes[1], nodes[2])

            // 1,000 payloads of 200 bytes from a to b (a dialed b) and back, in order.
            let count = 1_000
            let clock = ContinuousClock()
            let started = clock.now
            let sent = (0..<count).filter { b.mesh.send(Self.numbered($0), to: a.pub) }.count
            #expect(sent == count)
            await Self.waitUntil("b's 1,000 payloads at a") { a.recorder.received(from: b.pub).count >= count }
            let elapsed = (a.recorder.lastReceive ?? clock.now) - started
            print("ClusterMesh: \(count) payloads of 200 bytes across one loopback link in \(elapsed) (send to last onReceive)")
            #expect((0..<count).filter { a.mesh.send(Self.numbered($0), to: b.pub) }.count == count)
            await Self.waitUntil("a's 1,000 payloads at b") { b.recorder.received(from: a.pub).count >= count }
            for (receiver, sender) in [(a, b), (b, a)] {
                let got = receiver.recorder.received(from: sender.pub)
                #expect(got.count == count)
                #expect(got.map { $0.getInteger(at: $0.readerIndex, as: UInt32.self) } == (0..<count).map { UInt32($0) })
                #expect(got.allSatisfy { $0.readableBytes == 200 })
                #expect(got.last == Self.numbered(count - 1))
            }

            // Broadcast from c reaches a and b.
            #expect(c.mesh.broadcast(ByteBuffer(string: "to everyone")) == 2)
            await Self.waitUntil("c's broadcast at a and b") {
                a.recorder.received(from: c.pub).count == 1 && b.recorder.received(from: c.pub).count == 1
            }
            #expect(a.recorder.received(from: c.pub) == [ByteBuffer(string: "to everyone")])
            #expect(b.recorder.received(from: c.pub) == [ByteBuffer(string: "to everyone")])

            // No link to an unknown key; an oversize payload is not sent.
            #expect(!a.mesh.send(ByteBuffer(string: "x"), to: [UInt8](repeating: 7, count: 32)))
            #expect(!a.mesh.send(ByteBuffer(repeating: 0, count: ClusterLinkLimits.maximumRecordPayloadBytes + 1), to: b.pub))
            // The largest payload goes through.
            #expect(a.mesh.send(ByteBuffer(repeating: 9, count: ClusterLinkLimits.maximumRecordPayloadBytes), to: c.pub))
            await Self.waitUntil("1 MiB payload at c") { c.recorder.received(from: a.pub).count == 1 }
            #expect(c.recorder.received(from: a.pub).first?.readableBytes == ClusterLinkLimits.maximumRecordPayloadBytes)
        }
    }

    @Test func nonMemberCannotConnect() async throws {
        // The smallest key dials everyone it lists: make it the outsider.
        let keys = try Self.sortedKeys([4, 5, 6])
        try await Self.withNodes(keys) { nodes in
            let (outsider, a, b) = (nodes[0], nodes[1], nodes[2])
            a.mesh.setMembers([a.member, b.member])
            b.mesh.setMembers([a.member, b.member])
            outsider.mesh.setMembers(nodes.map(\.member))
            await Self.waitUntil("a and b linked") { a.mesh.connectedPeers == [b.pub] && b.mesh.connectedPeers == [a.pub] }
            // The outsider's dials reach a and b, which refuse them from the hello.
            await Self.waitUntil("a and b refused the outsider") {
                a.recorder.logs.contains { $0.contains("refused") && $0.contains("not a member") }
                    && b.recorder.logs.contains { $0.contains("refused") && $0.contains("not a member") }
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(outsider.mesh.connectedPeers.isEmpty)
            // Each refusal told the owner, who may read the membership again (SupernodeCluster does).
            #expect(a.recorder.strangers.contains(outsider.pub) && b.recorder.strangers.contains(outsider.pub))
            #expect(!a.recorder.strangers.contains(b.pub), "a listed member is no stranger")
            #expect(outsider.recorder.changeCount == 0)
            #expect(a.recorder.changes(outsider.pub).isEmpty && b.recorder.changes(outsider.pub).isEmpty)
            #expect(!outsider.mesh.send(ByteBuffer(string: "inject"), to: a.pub))
            #expect(outsider.mesh.broadcast(ByteBuffer(string: "inject")) == 0)
            #expect(a.recorder.totalReceived == 0 && b.recorder.totalReceived == 0)
            #expect(a.mesh.connectedPeers == [b.pub] && b.mesh.connectedPeers == [a.pub])
        }
    }

    @Test func removingAMemberClosesItsLink() async throws {
        try await Self.withNodes(try Self.sortedKeys([7, 8, 9])) { nodes in
            await Self.linkAll(nodes)
            let (a, b, c) = (nodes[0], nodes[1], nodes[2])
            // a (the smallest, the dialer) drops c from its list: the link closes on both sides.
            a.mesh.setMembers([a.member, b.member])
            await Self.waitUntil("a-c link down on both sides") {
                a.recorder.changes(c.pub) == [true, false] && c.recorder.changes(a.pub) == [true, false]
            }
            #expect(a.mesh.connectedPeers == [b.pub])
            #expect(c.mesh.connectedPeers == [b.pub])
            #expect(!a.mesh.send(ByteBuffer(string: "x"), to: c.pub))
            #expect(c.mesh.broadcast(ByteBuffer(string: "only b")) == 1)

            // c (greater key) does not dial a; b (smaller than c) keeps its link. Now c drops b,
            // while b, the dialer, still lists c: b's redials are refused.
            c.mesh.setMembers([c.member])
            await Self.waitUntil("b-c link down on both sides") {
                b.recorder.changes(c.pub) == [true, false] && c.recorder.changes(b.pub) == [true, false]
            }
            try await Task.sleep(for: .milliseconds(500))
            #expect(c.mesh.connectedPeers.isEmpty)
            #expect(b.recorder.changes(c.pub) == [true, false])
            #expect(c.recorder.logs.contains { $0.contains("refused") })

            // Listed again, both links come back.
            c.mesh.setMembers(nodes.map(\.member))
            a.mesh.setMembers(nodes.map(\.member))
            await Self.waitUntil("c relinked to a and b") { c.mesh.connectedPeers.count == 2 }
            #expect(a.recorder.changes(c.pub) == [true, false, true])
            #expect(b.recorder.changes(c.pub) == [true, false, true])
        }
    }

    @Test func stoppedMeshIsReportedDownAndRelinksAfterRestart() async throws {
        let keys = try Self.sortedKeys([10, 11, 12])
        try await Self.withNodes(keys) { nodes in
            await Self.linkAll(nodes)
            // Stop the middle one: it dials the greatest key and accepts the smallest.
            let stopped = nodes[1]
            await stopped.mesh.stop()
            #expect(stopped.mesh.connectedPeers.isEmpty)
            #expect(stopped.recorder.changes(nodes[0].pub) == [true, false])
            #expect(stopped.recorder.changes(nodes[2].pub) == [true, false])
            await Self.waitUntil("the others report it down within a second", timeout: .seconds(1)) {
                nodes[0].recorder.changes(stopped.pub) == [true, false]
                    && nodes[2].recorder.changes(stopped.pub) == [true, false]
            }
            #expect(nodes[0].mesh.connectedPeers == [nodes[2].pub])

            // Restarted with the same key on a new port, announced through the member list.
            let restarted = try await Self.start(stopped.key)
            nodes[1] = restarted
            #expect(restarted.address.port != stopped.address.port)
            await Self.linkAll(nodes)
            #expect(nodes[0].recorder.changes(stopped.pub) == [true, false, true])
            #expect(nodes[2].recorder.changes(stopped.pub) == [true, false, true])
            #expect(restarted.mesh.send(ByteBuffer(string: "back"), to: nodes[0].pub))
            #expect(restarted.mesh.send(ByteBuffer(string: "back"), to: nodes[2].pub))
            await Self.waitUntil("payloads from the restarted mesh") {
                nodes[0].recorder.received(from: stopped.pub).count == 1 && nodes[2].recorder.received(from: stopped.pub).count == 1
            }
        }
    }

    @Test func queueOverflowClosesTheLinkToAPeerThatDoesNotRead() async throws {
        let frozenGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let keys = try Self.sortedKeys([14, 15])
        let a = try await Self.start(keys[0])
        let b = try await Self.start(keys[1], group: frozenGroup)
        await Self.linkAll([a, b])
        // b's loop stops reading for 3 s: a's queue fills instead of its memory growing.
        frozenGroup.next().execute { Thread.sleep(forTimeInterval: 3) }
        let payload = ByteBuffer(repeating: 1, count: ClusterLinkLimits.maximumRecordPayloadBytes)
        var accepted = 0
        while accepted < 200, a.mesh.send(payload, to: b.pub) { accepted += 1 }
        let limit = ClusterLinkLimits.maximumQueuedBytes / ClusterLinkLimits.maximumRecordPayloadBytes
        #expect(accepted >= limit - 1 && accepted < 200, "\(accepted) sends of 1 MiB accepted")
        await Self.waitUntil("a reports b down") { a.recorder.changes(b.pub) == [true, false] }
        #expect(a.recorder.logs.contains { $0.contains("queued for a peer that does not read") })
        #expect(!a.mesh.send(payload, to: b.pub))
        await Self.waitUntil("b reports a down once it reads again") { b.recorder.changes(a.pub).prefix(2) == [true, false] }
        await a.mesh.stop()
        await b.mesh.stop()
        try await frozenGroup.shutdownGracefully()
    }

    @Test func frozenPeerAndSilentConnectionAreClosed() async throws {
        let frozenGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let keys = try Self.sortedKeys([16, 17])
        let a = try await Self.start(keys[0])
        let b = try await Self.start(keys[1], group: frozenGroup)
        await Self.linkAll([a, b])
        // A connection that never sends a hello is closed after the handshake timeout.
        let silent = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: Int(a.address.port)).get()
        let clock = ContinuousClock()
        let start = clock.now
        // b freezes (its loop blocked) longer than the idle timeout: a notices without any FIN.
        let idle = Double(ClusterLinkLimits.idleTimeout.nanoseconds) / 1e9
        frozenGroup.next().execute { Thread.sleep(forTimeInterval: idle + 2) }
        await Self.waitUntil("the silent connection closed", timeout: .seconds(8)) { !silent.isActive }
        let handshakeClosed = clock.now - start
        #expect(handshakeClosed >= .seconds(4.5) && handshakeClosed < .seconds(7), "closed after \(handshakeClosed)")
        await Self.waitUntil("a reports frozen b down", timeout: .seconds(idle + 1.5)) { a.recorder.changes(b.pub) == [true, false] }
        let idleClosed = clock.now - start
        #expect(idleClosed >= .seconds(idle - 3.5), "down after \(idleClosed)")
        #expect(a.recorder.logs.contains { $0.contains("nothing heard for") })
        await a.mesh.stop()
        await b.mesh.stop()
        try await frozenGroup.shutdownGracefully()
    }

    @Test func stopIsFinalAndStartOnlyOnce() async throws {
        let node = try await Self.start(try Self.key(13))
        await #expect(throws: ClusterMeshError.alreadyStarted) { try await node.mesh.start() }
        await node.mesh.stop()
        node.mesh.setMembers([(key: [UInt8](repeating: 0xFF, count: 32), link: "127.0.0.1:1")])
        try await Task.sleep(for: .milliseconds(50))
        #expect(node.mesh.connectedPeers.isEmpty)
    }

    @Test func memberAddresses() {
        #expect(ClusterMesh.parse("127.0.0.1:4000")! == ("127.0.0.1", 4000))
        #expect(ClusterMesh.parse("[::1]:4000")! == ("::1", 4000))
        #expect(ClusterMesh.parse("node-2.example:1")! == ("node-2.example", 1))
        for bad in ["", "127.0.0.1", "::1:4000", "[::1]", "[::1]4000", "h:0", "h:65536", ":4000", "h:x"] {
            #expect(ClusterMesh.parse(bad) == nil, "\(bad)")
        }
    }
}
