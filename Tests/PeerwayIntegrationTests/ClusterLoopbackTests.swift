import Foundation
import NIOCore
import Peerway
import PeerwayCheckpoint
import PeerwaySTUN
import PeerwaySupernode
import Testing

/// Issue 12 on loopback: three `Supernode`s in this process sharing one throwaway PostgreSQL (the
/// membership and the INDEX), peers on different supernodes acting as if there were one.
@Suite("A network of three supernodes on loopback, one PostgreSQL", .serialized, .timeLimit(.minutes(4)))
struct ClusterLoopbackTests {
    /// Supernode n on 127.0.0.(n+1), every service, the cluster and the INDEX in PostgreSQL.
    static func network(_ url: String, count: Int = 3) async throws -> [Supernode] {
        var nodes: [Supernode] = []
        for n in 0..<count {
            let host = STUNAddress(ip: .v4(0x7F00_0001 + UInt32(n) * 16), port: 0)
            let stun = STUNPairConfiguration(layout: try STUNPairLayout(primary: host, alternate: STUNAddress(ip: .v4(0x7F00_0002 + UInt32(n) * 16), port: 0)),
                                             ratePerSecond: 0, workers: 1)
            var c = SupernodeConfiguration(listen: host, stun: stun, relay: .init(udp: host, tcp: host), index: .postgres(url: url))
            c.cluster = ClusterConfiguration(url: url, linkListen: host)
            nodes.append(try await Supernode.start(c))
        }
        // Linked: every supernode has a link to each other one.
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline, !nodes.allSatisfy({ $0.cluster?.status.linked == count - 1 }) {
            try await Task.sleep(for: .milliseconds(50))
        }
        for n in nodes { #expect(n.cluster?.status.linked == count - 1, "\(n.address) is not linked to every other supernode") }
        return nodes
    }

    static func options(_ s: Supernode, keepalive: UInt16 = 25) -> PeerOptions {
        var o = PeerOptions()
        o.bindHost = "127.0.0.1"
        o.keepaliveSeconds = keepalive
        o.stunServer = s.stunLayout?.primary
        return o
    }

    /// p50 and p99 of `samples` in milliseconds.
    static func percentiles(_ samples: [Duration]) -> (p50: Double, p99: Double) {
        let ms = samples.map { Double($0.components.attoseconds) / 1e15 + Double($0.components.seconds) * 1000 }.sorted()
        return (ms[ms.count / 2], ms[min(ms.count - 1, Int(Double(ms.count) * 0.99))])
    }

    @Test("peers on different supernodes find each other, message, watch, negotiate and get a tunnel")
    func actAsOne() async throws {
        guard let url = try await IndexCLITests.postgres() else { return }
        let nodes = try await Self.network(url)
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [nodes[0].address], metadata: ["app": "chat", "n": "0"],
                                     options: Self.options(nodes[0]))
        let a2 = try await Peer.start(identity: PeerIdentity(), supernodes: [nodes[0].address], metadata: ["app": "chat", "n": "3"],
                                      options: Self.options(nodes[0]))
        let b = try await Peer.start(identity: PeerIdentity(), supernodes: [nodes[1].address], metadata: ["app": "chat", "n": "1"],
                                     options: Self.options(nodes[1]))
        let c = try await Peer.start(identity: PeerIdentity(), supernodes: [nodes[2].address], metadata: ["app": "chat", "n": "2"],
                                     options: Self.options(nodes[2]))
        let aLog = EventLog(a), bLog = EventLog(b), cLog = EventLog(c)

        // Lookup and search from any supernode see every peer of the network.
        var seen = false
        for _ in 0..<100 where !seen {
            let online = (try? await a.lookup(c.id))?.online == true
            let hits = (try? await c.search("app=chat"))?.count
            seen = online && hits == 4
            if !seen { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(seen, "the peers of every supernode are in each directory")
        let info = try await b.lookup(a.id)
        #expect(info.online && info.metadata["n"] == "0")
        #expect(try await c.search("app=chat and n<2").map(\.peer) == [a.id, b.id].sorted())

        // Acknowledged messages across supernodes, and watches.
        #expect(try await a.send("hello b", to: b.id) == .delivered)
        #expect(await bLog.waitFor { if case .message(a.id, "hello b") = $0 { return true }; return false } != nil)
        #expect(try await c.send("hello a", to: a.id) == .delivered)
        #expect(await aLog.waitFor { if case .message(c.id, "hello a") = $0 { return true }; return false } != nil)
        #expect(try await a.watch([b.id, c.id]).allSatisfy { $0.online })

        // Cross-supernode against same-supernode message latency (debug build, loopback).
        var cross: [Duration] = [], same: [Duration] = []
        for i in 0..<100 {
            let t0 = ContinuousClock.now
            #expect(try await a.send("x\(i)", to: b.id) == .delivered)
            let t1 = ContinuousClock.now
            #expect(try await a.send("y\(i)", to: a2.id) == .delivered)
            cross.append(t1 - t0)
            same.append(ContinuousClock.now - t1)
        }
        let (cp, sp) = (Self.percentiles(cross), Self.percentiles(same))
        print(String(format: "cluster loopback messages: cross-node p50 %.2f p99 %.2f ms, same-node p50 %.2f p99 %.2f ms", cp.p50, cp.p99, sp.p50, sp.p99))

        // A tunnel between peers on different supernodes: one HANDSHAKE plans both sides.
        let accepting = TunnelPeerTests.acceptAndEcho(c, cLog)
        let tunnel = try await a.connect(to: c.id, transport: .udp, options: TunnelPeerTests.loopbackTunnels)
        let payload = (0..<200).map { UInt8(truncatingIfNeeded: $0 * 7) }
        #expect(TunnelPeerTests.roundTrip(tunnel.fileDescriptor, payload) == payload)
        #expect(tunnel.isEncrypted)
        let planned = nodes.map { $0.checkpoint.statistics().handshake.planned }
        #expect(planned == [1, 0, 0], "the initiator's supernode coordinates the traversal")
        tunnel.close()
        await accepting.value?.close()

        // C leaves: A, watching from another supernode, is told.
        await c.stop()
        #expect(await aLog.waitFor { if case .status(c.id, false, .offline, _) = $0 { return true }; return false } != nil)
        #expect(try await a.send("gone?", to: c.id) == .offline)

        await a.stop(); await a2.stop(); await b.stop()
        for n in nodes { await n.stop() }
    }
}
