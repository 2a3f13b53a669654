import Foundation
import NIOCore
import Peerway
import PeerwayCheckpoint
import PeerwaySupernode
import Testing

/// Issue 12: "PostgreSQL stopped for a minute: supernodes keep serving their own peers and what
/// they can of the rest, say clearly what is unavailable, and recover by themselves when it is back."
@Suite("A network of supernodes while its PostgreSQL is stopped for a minute", .serialized, .timeLimit(.minutes(4)))
struct ClusterOutageTests {
    /// How long PostgreSQL stays stopped.
    static let outage: Duration = .seconds(60)
    /// Keepalives of supernodes and peers: many go by during the outage.
    static let keepaliveSeconds: UInt16 = 5
    /// Time between two rounds of lookups, searches and messages during the outage.
    static let roundInterval: Duration = .seconds(5)
    /// Longest an INDEX call may take to be refused while the database is down: the client's
    /// default request timeout (the test's peers wait longer, to see what the supernode answers).
    static let refusalBound: Duration = .seconds(Double(CheckpointClientLimits.defaultRequestTimeout.nanoseconds) / 1e9)
    /// Longest the supernodes may take to notice the outage, and to recover once PostgreSQL is
    /// back (heartbeat 2 s, calls bounded at 3 s; generous for a loaded machine).
    static let settleBound: Duration = .seconds(45)

    @Test("peers keep registering, finding and messaging each other; INDEX calls are refused as unavailable; all recovers by itself")
    func postgresStoppedForAMinute() async throws {
        guard let server = try await PrivatePostgres.start() else { return }
        var nodes: [Supernode] = []
        var peers: [Peer] = []
        do {
            try await outage(server, &nodes, &peers)
        } catch {
            Issue.record("the outage test ended with \(error)")
        }
        for p in peers { await p.stop() }
        for n in nodes { await n.stop() }
        await server.remove()
    }

    private func outage(_ server: PrivatePostgres, _ nodes: inout [Supernode], _ peers: inout [Peer]) async throws {
        for n in 0..<2 { nodes.append(try await ClusterIndexScene.supernode(n, url: server.url, keepaliveSeconds: Self.keepaliveSeconds)) }
        try await ClusterIndexScene.waitLinked(nodes)
        func peer(_ identity: PeerIdentity = PeerIdentity(), on n: Int) async throws -> Peer {
            var o = PeerOptions()
            o.bindHost = "127.0.0.1"
            o.measuresNAT = false
            o.keepaliveSeconds = Self.keepaliveSeconds
            o.requestTimeout = .seconds(30)
            let p = try await Peer.start(identity: identity, supernodes: [nodes[n].address], metadata: ["app": "outage"], options: o)
            peers.append(p)
            return p
        }

        // Alice and carol on supernode 0, bob and dave on 1: alice owns "lab" and watches it (and
        // bob's presence), the others are members; dave is offline when PostgreSQL stops.
        let alice = try await peer(on: 0), carol = try await peer(on: 0), bob = try await peer(on: 1)
        let daveIdentity = PeerIdentity()
        let dave = try await peer(daveIdentity, on: 1)
        let aliceLog = EventLog(alice), bobLog = EventLog(bob)
        _ = try await alice.signup(username: "alice", password: "alice-password")
        _ = try await alice.createNetwork("lab")
        for (p, name) in [(bob, "bob"), (carol, "carol"), (dave, "dave")] {
            _ = try await p.signup(username: name, password: "\(name)-password")
            _ = try await p.joinNetwork("lab")
        }
        await dave.stop()
        try await ClusterIndexScene.waitKnown([bob.id, carol.id], by: alice)
        // Supernode 0 has heard all of it (dave gone, the joins) before alice starts watching.
        let settled = ContinuousClock.now + Self.settleBound
        while ContinuousClock.now < settled, (try? await alice.lookup(daveIdentity.peerID))?.online != false {
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .seconds(1))
        _ = try await alice.watchNetwork("lab")
        #expect(try await alice.watch([bob.id]).allSatisfy(\.online))
        let heardBefore = await aliceLog.notices("lab").count

        try await server.stop()
        let stopped = ContinuousClock.now
        print("cluster outage: PostgreSQL stopped")

        // INDEX calls are refused at once, clearly, on either supernode.
        for (p, n) in [(alice, 0), (bob, 1)] {
            let started = ContinuousClock.now
            await expectUnavailable("supernode \(n)") { _ = try await p.myNetworks() }
            let took = ContinuousClock.now - started
            print("cluster outage: an INDEX call on supernode \(n) was refused after \(took)")
            #expect(took < Self.refusalBound, "refused after \(took)")
        }
        // The supernodes say the membership database is unreachable.
        var deadline = ContinuousClock.now + Self.settleBound
        while ContinuousClock.now < deadline, !nodes.allSatisfy({ $0.cluster?.status.unavailable != nil }) {
            try await Task.sleep(for: .milliseconds(200))
        }
        for (n, node) in nodes.enumerated() {
            let status = node.cluster?.status
            #expect(status?.unavailable?.contains("cluster database is unreachable") == true, "supernode \(n): \(String(describing: status?.unavailable))")
            print("cluster outage: supernode \(n) status: \(status?.unavailable ?? "available")")
            #expect(status?.members.count == 2 && status?.linked == 1, "supernode \(n) keeps its last members and links")
        }

        // Peers keep working for the whole outage: registration (a new peer, and dave, logged in,
        // comes back), keepalives, lookup, search and messages on one supernode and across.
        var erin: Peer?
        var round = 0
        while ContinuousClock.now - stopped < Self.outage {
            round += 1
            if round == 2 {
                erin = try await peer(on: 1)
                _ = try await peer(daveIdentity, on: 1)
                // Carol goes offline: alice is told once the INDEX can say which networks carol is in.
                await carol.stop()
            }
            let everyone = [alice.id, bob.id] + (erin.map { [$0.id, daveIdentity.peerID] } ?? [carol.id])
            try await ClusterIndexScene.waitKnown(everyone, by: alice)
            try await ClusterIndexScene.waitKnown(everyone, by: bob)
            for id in everyone {
                #expect(try await alice.lookup(id).online, "round \(round): alice (supernode 0) finds \(id)")
                #expect(try await bob.lookup(id).online, "round \(round): bob (supernode 1) finds \(id)")
            }
            for (p, n) in [(alice, 0), (bob, 1)] {
                let found = try await Self.search(p, count: everyone.count)
                #expect(Set(found) == Set(everyone), "round \(round): search from supernode \(n) found \(found)")
            }
            #expect(try await alice.send("across \(round)", to: bob.id) == .delivered, "round \(round): message across supernodes")
            #expect(try await bob.send("back \(round)", to: alice.id) == .delivered, "round \(round): message back")
            if let erin { #expect(try await erin.send("same \(round)", to: bob.id) == .delivered, "round \(round): message on one supernode") }
            if round % 4 == 0 { await expectUnavailable("round \(round)") { _ = try await bob.members(of: "lab") } }
            try await Task.sleep(for: Self.roundInterval)
        }
        // Keepalives went through all along: nobody had to register again.
        for (log, name) in [(aliceLog, "alice"), (bobLog, "bob")] {
            let again = await log.events.contains { if case .reregistered = $0 { return true }; return false }
            #expect(!again, "\(name) registered again during the outage")
        }
        let heardDuring = await aliceLog.notices("lab").dropFirst(heardBefore)
        #expect(heardDuring.isEmpty, "no notice can be told during the outage, heard \(Array(heardDuring))")

        try await server.restart()
        let restarted = ContinuousClock.now
        print("cluster outage: PostgreSQL back after \(restarted - stopped)")

        // Everything recovers by itself: INDEX calls, the status, the delayed notices.
        deadline = restarted + Self.settleBound
        var networks: [String]?
        while ContinuousClock.now < deadline, networks == nil {
            networks = try? await alice.myNetworks().map(\.name)
            if networks == nil { try await Task.sleep(for: .milliseconds(200)) }
        }
        print("cluster outage: the first INDEX call succeeded \(ContinuousClock.now - restarted) after the restart")
        #expect(networks == ["lab"])
        while ContinuousClock.now < deadline, !nodes.allSatisfy({ $0.cluster?.status.unavailable == nil }) {
            try await Task.sleep(for: .milliseconds(200))
        }
        for (n, node) in nodes.enumerated() { #expect(node.cluster?.status.unavailable == nil, "supernode \(n) recovered") }
        let dave2 = MemberNotice(name: "dave", peer: daveIdentity.peerID, online: true)
        let carolGone = MemberNotice(name: "carol", peer: carol.id, online: false)
        while ContinuousClock.now < deadline, Set(await aliceLog.notices("lab").dropFirst(heardBefore)) != [dave2, carolGone] {
            try await Task.sleep(for: .milliseconds(200))
        }
        let heardAfter = Array(await aliceLog.notices("lab").dropFirst(heardBefore))
        #expect(Set(heardAfter) == [dave2, carolGone] && heardAfter.count == 2, "alice hears of dave and carol once the INDEX is back: \(heardAfter)")
        let members = Dictionary(uniqueKeysWithValues: try await alice.members(of: "lab").map { ($0.name, $0.online) })
        #expect(members == ["alice": true, "bob": true, "carol": false, "dave": true])
        #expect(try await bob.members(of: "lab").first { $0.name == "dave" }?.online == true)

        // A supernode started after the outage joins the network.
        nodes.append(try await ClusterIndexScene.supernode(2, url: server.url, keepaliveSeconds: Self.keepaliveSeconds))
        try await ClusterIndexScene.waitLinked(nodes)
        let frank = try await peer(on: 2)
        try await ClusterIndexScene.waitKnown([alice.id, bob.id], by: frank)
        #expect(try await frank.send("hello from the new one", to: alice.id) == .delivered)
        _ = try await frank.signup(username: "frank", password: "frank-password")
        #expect(try await frank.myNetworks().isEmpty)

        // Bob never looked offline to alice: the outage cost no peer its presence.
        let bobOffline = await aliceLog.events.contains { if case .status(bob.id, false, _, _) = $0 { return true }; return false }
        #expect(!bobOffline, "alice saw bob go offline")
    }

    /// `peer`'s search for the test's peers, once it finds `count` of them (a peer that just
    /// left may still be listed for a moment on the other supernode), or after 10 s.
    static func search(_ peer: Peer, count: Int) async throws -> [PeerID] {
        let deadline = ContinuousClock.now + .seconds(10)
        var found = try await peer.search("app=outage").map(\.peer)
        while ContinuousClock.now < deadline, found.count != count {
            try await Task.sleep(for: .milliseconds(100))
            found = try await peer.search("app=outage").map(\.peer)
        }
        return found
    }

    /// Expects `body` to be refused with `unavailable`, in words that name the INDEX's database.
    private func expectUnavailable(_ label: String, sourceLocation: SourceLocation = #_sourceLocation,
                                   _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("\(label): the INDEX call succeeded with PostgreSQL stopped", sourceLocation: sourceLocation)
        } catch let error as PeerError {
            guard case .refused(let failure) = error else {
                Issue.record("\(label): expected a refusal, got \(error)", sourceLocation: sourceLocation)
                return
            }
            #expect(failure.code == .unavailable, "\(label): \(failure.code) \(failure.text)", sourceLocation: sourceLocation)
            #expect(failure.text.contains("INDEX database") && failure.text.contains("unreachable"),
                    "\(label): '\(failure.text)'", sourceLocation: sourceLocation)
            print("cluster outage: \(label): refused: \(failure.text)")
        } catch {
            Issue.record("\(label): \(error)", sourceLocation: sourceLocation)
        }
    }
}
