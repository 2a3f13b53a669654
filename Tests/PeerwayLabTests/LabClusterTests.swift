import Foundation
import PeerwayLab
import Testing

/// Issue 12 in the NAT lab: three supernodes on the lab's public host (one address each) form one
/// network through a PostgreSQL inside that host, and three peers behind three NATs are each given
/// a different one of them. Across supernodes they register, search, look up, exchange
/// acknowledged messages and make tunnels over UDP and TCP, direct where the two NATs allow it.
/// In the serialized lab suite: labs are machine-wide.
extension LabVerifyTests {
    /// One peer of the cluster test: its name, its site, and the one supernode it is given.
    struct ClusterMember: Sendable {
        let name: String
        let site: LabSiteSpec
        let supernode: Int
    }

    /// Alice and Carol behind two port-restricted NATs (endpoint-independent mapping: punching
    /// works between them), Bob behind a symmetric one (a random port per destination: against a
    /// port-restricted NAT only many-port probing gets through over UDP, and TCP is relayed).
    static let clusterMembers = [
        ClusterMember(name: "alice", site: LabSiteSpec(name: "home", preset: .portRestricted), supernode: 0),
        ClusterMember(name: "bob", site: LabSiteSpec(name: "office", preset: .symmetric), supernode: 1),
        ClusterMember(name: "carol", site: LabSiteSpec(name: "cafe", preset: .portRestricted), supernode: 2),
    ]
    /// How long a peer gets to register, a search to see every peer of the network, and a message
    /// to be acknowledged, seconds.
    static let clusterRegisterTimeout: TimeInterval = 30
    static let clusterSearchTimeout: TimeInterval = 20
    static let clusterMessageTimeout: TimeInterval = 20
    /// The metadata every peer of the test publishes, and the query that finds them all.
    static let clusterMeta = "lab=cluster"

    /// Whether a tunnel between these two presets must be direct. UDP: as the traversal matrix
    /// requires (`LabMatrix.directExpected`). TCP: simultaneous open when neither NAT picks a
    /// random port per destination (the HANDSHAKE plans no direct TCP path against one; it relays).
    static func clusterDirectExpected(_ a: LabPreset, _ b: LabPreset, _ transport: LabMatrixTransport) -> Bool {
        transport == .udp ? LabMatrix.directExpected(a, b, .udp) : a != .symmetric && b != .symmetric
    }

    @Test("lab: three supernodes as one network: peers behind three NATs, each on its own supernode, register, search, message and tunnel across them",
          .timeLimit(.minutes(5)))
    func clusterThroughNATs() async throws {
        guard Self.canRun() else { return }
        if let missing = LabPostgres.missingPrerequisite {
            if Self.inCI {
                Issue.record("the NAT lab's network of supernodes cannot run: \(missing); scripts/test installs it when run as root")
            } else {
                print("skipping the NAT lab's network of supernodes: \(missing)")
            }
            return
        }
        let started = Date()
        let members = Self.clusterMembers
        let topology = try LabTopology(LabConfiguration(sites: members.map(\.site)))
        let scene = try await LabClusterScene.start(members.flatMap { ["--site", "\($0.site.name)=\($0.site.preset.rawValue)"] })
        defer { scene.tearDown() }
        let peers = try members.map { m in
            try scene.peer(m.name, at: m.site.name, supernode: m.supernode, ["--meta", "name=\(m.name)", "--meta", Self.clusterMeta])
        }

        // Each registers on the supernode it was given, seen at its NAT's public address.
        var registered: [String] = []
        for (m, p) in zip(members, peers) {
            let event = await Self.event(p, "registered", timeout: Self.clusterRegisterTimeout)
            let fields = try #require(event, "\(m.name) did not register:\n\(scene.logs)")
            registered.append(try #require(fields["id"] as? String))
            let supernode = fields["supernode"] as? String ?? ""
            #expect(supernode.contains("@\(LabClusterScene.host(m.supernode)):"), "\(m.name) registered on \(supernode)")
            let wan = try #require(topology.site(named: m.site.name)).wanAddress
            #expect((fields["observed"] as? String)?.hasPrefix(wan + ":") == true, "\(m.name): \(fields)")
        }
        let ids = registered
        let (alice, bob, carol) = (peers[0], peers[1], peers[2])
        let (aliceID, bobID, carolID) = (ids[0], ids[1], ids[2])

        // Search on Alice's supernode finds the peers registered on the two others.
        let everyone = Set(ids)
        var found: Set<String> = []
        let searchDeadline = Date().addingTimeInterval(Self.clusterSearchTimeout)
        while found != everyone && Date() < searchDeadline {
            let results = await Self.command(alice, "search \(Self.clusterMeta)", answer: "search")?["results"] as? [[String: Any]]
            found = Set((results ?? []).compactMap { $0["id"] as? String })
            if found != everyone { try await Task.sleep(for: .milliseconds(500)) }
        }
        #expect(found == everyone, "alice's search found \(found.sorted()) of \(everyone.sorted())\n\(scene.logs)")
        // Lookup on Bob's supernode sees Carol, registered on the third, online with her metadata.
        let lookup = await Self.command(bob, "lookup \(carolID)", answer: "lookup")
        #expect(lookup?["online"] as? Bool == true, "bob's lookup of carol: \(String(describing: lookup))")
        #expect((lookup?["metadata"] as? [String: Any])?["name"] as? String == "carol", "\(String(describing: lookup))")

        // Acknowledged messages from each supernode's peer to another supernode's.
        for (from, to, toID, fromID, text) in [(alice, bob, bobID, aliceID, "hello office from home"),
                                               (bob, carol, carolID, bobID, "hello cafe from office"),
                                               (carol, alice, aliceID, carolID, "hello home from cafe")] {
            let outcome = await Self.command(from, "send \(toID) \(text)", answer: "delivered", orFailure: "failed",
                                             timeout: Self.clusterMessageTimeout)
            #expect(outcome?["event"] as? String == "delivered", "\(text): \(String(describing: outcome))\n\(scene.logs)")
            let received = await Self.event(to, "message", timeout: Self.clusterMessageTimeout) { $0["text"] as? String == text }
            #expect(received?["from"] as? String == fromID, "\(text) did not arrive")
        }

        // Tunnels across supernodes, over UDP and TCP, each carrying an echo of 64 KiB: Alice
        // to Carol (port-restricted both), Bob to Alice (symmetric against port-restricted). A
        // relayed one goes through the relay of any supernode of the network.
        for (initiator, acceptor, i, a) in [(alice, carol, 0, 2), (bob, alice, 1, 0)] {
            for transport in LabMatrixTransport.allCases {
                let outcome = try await LabThread.run {
                    LabMatrixTrial.run(initiator: initiator, acceptor: acceptor, acceptorID: ids[a], initiatorID: ids[i], transport: transport)
                }
                let (pa, pb) = (members[i].site.preset, members[a].site.preset)
                let what = "\(members[i].name) (\(pa.rawValue)) to \(members[a].name) (\(pb.rawValue)) over \(transport.rawValue)"
                let remote = Self.lastTunnelRemote(initiator, ids[a])
                print("lab cluster: \(what): \(outcome.path ?? "-") by \(outcome.method ?? "-") in \(outcome.ms.map { "\(Int($0)) ms" } ?? "-"), remote \(remote ?? "-")")
                #expect(outcome.succeeded, "\(what): \(outcome.error ?? "")\n\(scene.logs)")
                #expect(outcome.encrypted == true, "\(what)")
                #expect(outcome.direct == Self.clusterDirectExpected(pa, pb, transport), "\(what): \(outcome.path ?? "no tunnel")")
                if transport == .udp && (pa == .symmetric) != (pb == .symmetric) {
                    #expect(outcome.method == "many-port", "\(what): \(outcome.method ?? "-")")
                }
                if outcome.path == "relayed" {
                    // The network's relays: one on each supernode's address.
                    let relays = (0..<LabClusterScene.supernodeCount).map { "\(LabClusterScene.host($0)):" }
                    #expect(relays.contains { remote?.hasPrefix($0) == true }, "\(what): relayed through \(remote ?? "-")")
                }
            }
        }

        print("lab cluster: \(Int(Date().timeIntervalSince(started))) s")
        scene.tearDown()
        #expect(LabRunner.existingNamespaces().isEmpty, "lab namespaces left behind")
        #expect(!FileManager.default.fileExists(atPath: scene.postgres.directory), "PostgreSQL's files left behind")
    }

    /// The next JSON event named `name` (and matching `match`) that `peer` prints, as an object.
    static func event(_ peer: LabLineProcess, _ name: String, orFailure failure: String? = nil, after cursor: Int = 0,
                      timeout: TimeInterval, where match: @escaping @Sendable ([String: Any]) -> Bool = { _ in true }) async -> [String: Any]? {
        let line = try? await LabThread.run {
            peer.output.wait(after: cursor, timeout: timeout) { line -> String? in
                guard let fields = jsonObject(line), let event = fields["event"] as? String else { return nil }
                return (event == name && match(fields)) || event == failure ? line : nil
            }
        }
        return line.flatMap(jsonObject)
    }

    /// Sends `command` to `peer` and returns the first `answer` (or `failure`, or `error`) event after it.
    static func command(_ peer: LabLineProcess, _ command: String, answer: String, orFailure failure: String = "error",
                        timeout: TimeInterval = clusterMessageTimeout) async -> [String: Any]? {
        let cursor = peer.output.count
        peer.send(command)
        return await event(peer, answer, orFailure: failure, after: cursor, timeout: timeout)
    }

    /// The `remote` of the last `tunnel` event `peer` printed for `other` (a relay's address when relayed).
    static func lastTunnelRemote(_ peer: LabLineProcess, _ other: String) -> String? {
        peer.output.all.compactMap(jsonObject).last { $0["event"] as? String == "tunnel" && $0["peer"] as? String == other }?["remote"] as? String
    }

    static func jsonObject(_ line: String) -> [String: Any]? {
        guard line.hasPrefix("{") else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }
}
