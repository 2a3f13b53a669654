import Foundation
import PeerwayLab
import Testing

/// Issue 13 in the NAT lab: tunnels that move. Two port-restricted NATs with 25 ms on every WAN
/// link each way (50 ms to the supernode and back, 100 ms between the peers): a UDP tunnel starts
/// on its first working path (the relay, or the direct pair when that answered first) and moves
/// to the direct path in place; a black hole on the direct path (a drop
/// rule in one NAT) mid-transfer moves it back to the relay and the transfer completes; the rule
/// removed, it moves back to direct. In the serialized lab suite.
extension LabVerifyTests {
    /// nftables table of the black hole rule (in the router's namespace).
    static let blackHoleTable = "pwblackhole"
    /// Bytes of the transfer that runs across the black hole (numbered datagrams, echoed).
    static let blackHoleBytes = 6_000_000
    /// Seconds the tunnel may take to move onto the direct path, and back after the hole closes.
    static let moveTimeout: TimeInterval = 25
    static let returnTimeout: TimeInterval = 40
    /// Seconds a peer needs after it registered to have measured its NAT (netcheck: up to 8 s).
    static let natMeasurementSeconds = 8

    @Test("lab: a UDP tunnel starts on the relay, moves to direct, falls back to the relay through a black hole mid-transfer, and returns",
          .timeLimit(.minutes(4)))
    func relayFirstBlackHole() async throws {
        guard Self.canRun() else { return }
        let sites = [LabSiteSpec(name: "left", preset: .portRestricted), LabSiteSpec(name: "right", preset: .portRestricted)]
        let topology = try LabTopology(LabConfiguration(sites: sites, delayMilliseconds: 25))
        let scene = try await LabCheckpointScene.start(["--site", "left=port-restricted", "--site", "right=port-restricted", "--delay", "25"],
                                                       stun: true)
        defer { scene.tearDown() }
        let (peers, ids) = try await Self.leftAndRight(scene)
        defer { peers.forEach { $0.stop() } }
        let (left, right, rightID) = (peers[0], peers[1], ids[1])
        func log() -> String { left.output.all.suffix(30).joined(separator: "\n") }

        // A peer measures its NAT when it starts; a tunnel asked for before that waits for it.
        try await Task.sleep(for: .seconds(Self.natMeasurementSeconds))
        // Relay first: the tunnel comes up on the relay, then moves to the direct path.
        let cursor = left.output.count
        let tunnel = try #require(await Self.command(left, "connect \(rightID) udp", answer: "tunnel", orFailure: "tunnel-failed", timeout: 30))
        #expect(tunnel["event"] as? String == "tunnel", "\(log())")
        let firstMillis = tunnel["ms"] as? Int ?? -1
        print("lab relay first: first path \(tunnel["path"] ?? "?") in \(firstMillis) ms")
        // Relay first hands over the first verified path: the relay, or the direct pair when its
        // punch answered first (both cost one round trip here); a relayed start must move.
        if tunnel["path"] as? String == "relayed" {
            let direct = try #require(await Self.event(left, "path", after: cursor, timeout: Self.moveTimeout) { $0["change"] as? String == "direct" },
                                      "the tunnel never moved to direct:\n\(log())")
            let directMillis = direct["direct_ms"] as? Int ?? -1
            print("lab relay first: direct by \(direct["method"] ?? "?") at \(directMillis) ms (\(directMillis - firstMillis) ms after the first path)")
            #expect(directMillis - firstMillis < 5_000)
        }
        #expect(firstMillis < 3_000, "the first path took \(firstMillis) ms")

        // The black hole: the left NAT drops everything between the two sites' public addresses,
        // 300 ms into a transfer; the relay (on the public host) stays reachable.
        let leftSite = try #require(topology.site(named: "left")), rightSite = try #require(topology.site(named: "right"))
        let rule = """
            table inet \(Self.blackHoleTable) {
              chain forward { type filter hook forward priority -10; policy accept;
                ip daddr \(rightSite.wanAddress) drop
                ip saddr \(rightSite.wanAddress) drop
              }
            }
            """
        let transferCursor = left.output.count
        left.send("send-bytes \(rightID) \(Self.blackHoleBytes)")
        try await Task.sleep(for: .milliseconds(300))
        let holeOpened = Date()
        _ = try LabRunner.run("ip", ["netns", "exec", leftSite.routerNamespace, "nft", "-f", "-"], input: rule)
        let fellBack = await Self.event(left, "path", after: transferCursor, timeout: 10) { $0["change"] as? String == "relayed" }
        let recovery = Date().timeIntervalSince(holeOpened)
        #expect(fellBack != nil, "no fallback to the relay:\n\(log())")
        print("lab black hole: on the relay \(Int(recovery * 1000)) ms after the hole opened")
        #expect(recovery < 3.5, "the fallback took \(recovery) s")
        let transfer = await Self.event(left, "send-bytes", orFailure: "error", after: transferCursor, timeout: 60)
        #expect(transfer?["ok"] as? Bool == true, "the transfer across the black hole failed: \(String(describing: transfer))\n\(log())")
        print("lab black hole: \(Self.blackHoleBytes) bytes echoed in \(transfer?["ms"] ?? "?") ms, \(transfer?["retransmissions"] ?? "?") datagrams resent")

        // The hole closes: the tunnel finds its direct path again (retries back off: 1, 2, 4 ... s).
        let holeCursor = left.output.count
        _ = try LabRunner.run("ip", ["netns", "exec", leftSite.routerNamespace, "nft", "delete", "table", "inet", Self.blackHoleTable])
        let closedAt = Date()
        let back = await Self.event(left, "path", after: holeCursor, timeout: Self.returnTimeout) { $0["change"] as? String == "direct" }
        #expect(back != nil, "the tunnel stayed on the relay after the hole closed:\n\(log())")
        print("lab black hole: back on the direct path \(Int(Date().timeIntervalSince(closedAt) * 1000)) ms after the hole closed")
        let after = await Self.command(left, "send-bytes \(rightID) 100000", answer: "send-bytes", timeout: 30)
        #expect(after?["ok"] as? Bool == true && after?["path"] as? String == "direct", "\(String(describing: after))")
        _ = right
        peers.forEach { $0.stop() }
        scene.tearDown()
        #expect(LabRunner.existingNamespaces().isEmpty, "lab namespaces left behind")
    }

    /// Bytes of the transfer that runs across the roam.
    static let roamBytes = 6_000_000

    @Test("lab: a host roams to another site mid-transfer (new address, new NAT); the tunnel recovers its paths and the transfer completes",
          .timeLimit(.minutes(4)))
    func roaming() async throws {
        guard Self.canRun() else { return }
        let sites = [LabSiteSpec(name: "left", preset: .portRestricted), LabSiteSpec(name: "right", preset: .portRestricted),
                     LabSiteSpec(name: "away", preset: .portRestricted)]
        let topology = try LabTopology(LabConfiguration(sites: sites, delayMilliseconds: 25))
        let scene = try await LabCheckpointScene.start(["--site", "left=port-restricted", "--site", "right=port-restricted",
                                                        "--site", "away=port-restricted", "--delay", "25"], stun: true)
        defer { scene.tearDown() }
        let (peers, ids) = try await Self.leftAndRight(scene)
        defer { peers.forEach { $0.stop() } }
        let (left, rightID) = (peers[0], ids[1])
        func log() -> String { left.output.all.suffix(30).joined(separator: "\n") }
        try await Task.sleep(for: .seconds(Self.natMeasurementSeconds))
        let cursor = left.output.count
        let tunnel = try #require(await Self.command(left, "connect \(rightID) udp", answer: "tunnel", orFailure: "tunnel-failed", timeout: 30))
        #expect(tunnel["event"] as? String == "tunnel", "\(log())")
        if tunnel["path"] as? String == "relayed" {
            _ = await Self.event(left, "path", after: cursor, timeout: Self.moveTimeout) { $0["change"] as? String == "direct" }
        }

        // The roam: left's host leaves its router for away's LAN, 300 ms into a transfer.
        let from = try #require(topology.site(named: "left")), to = try #require(topology.site(named: "away"))
        let transferCursor = left.output.count
        left.send("send-bytes \(rightID) \(Self.roamBytes)")
        try await Task.sleep(for: .milliseconds(300))
        let roamed = Date()
        for step in try LabRoam.steps(host: 1, of: from, to: to) { try LabRunner.perform(step, peerway: LabVerifyTests.peerway) }
        let recovered = await Self.event(left, "path", after: transferCursor, timeout: 20) {
            ["direct", "new-address"].contains($0["change"] as? String ?? "") && $0["path"] as? String == "direct"
        }
        let recovery = Date().timeIntervalSince(roamed)
        print("lab roaming: direct again \(Int(recovery * 1000)) ms after the move (\(recovered?["remote"] ?? "-"))")
        #expect(recovered != nil, "no direct path after the roam:\n\(log())")
        let transfer = await Self.event(left, "send-bytes", orFailure: "error", after: transferCursor, timeout: 60)
        #expect(transfer?["ok"] as? Bool == true, "the transfer across the roam failed: \(String(describing: transfer))\n\(log())")
        print("lab roaming: \(Self.roamBytes) bytes echoed in \(transfer?["ms"] ?? "?") ms, \(transfer?["retransmissions"] ?? "?") datagrams resent")
        // The registration followed: a message goes through from the new network.
        let sent = await Self.command(left, "send \(rightID) hello from away", answer: "delivered", orFailure: "failed", timeout: 30)
        #expect(sent?["event"] as? String == "delivered", "\(String(describing: sent))\n\(log())")
        peers.forEach { $0.stop() }
        scene.tearDown()
        #expect(LabRunner.existingNamespaces().isEmpty, "lab namespaces left behind")
    }

    /// `peerway peer --json --echo --stay` behind the sites "left" and "right", registered; their ids.
    static func leftAndRight(_ scene: LabCheckpointScene) async throws -> ([LabLineProcess], [String]) {
        let peerway = LabVerifyTests.peerway
        var peers: [LabLineProcess] = []
        var ids: [String] = []
        do {
            for site in ["left", "right"] {
                peers.append(try LabLineProcess(name: site, executable: peerway,
                                                arguments: ["lab", "exec", site, "--", peerway, "peer", "--supernode", scene.address,
                                                            "--identity", scene.directory + "/\(site).key", "--json", "--echo", "--stay"],
                                                log: scene.directory + "/\(site).log"))
            }
            for p in peers {
                let event = await Self.event(p, "registered", timeout: Self.firewallRegisterTimeout)
                let fields = try #require(event, "\(p.name) did not register:\n\(scene.supernode.text)")
                ids.append(try #require(fields["id"] as? String))
            }
        } catch {
            peers.forEach { $0.stop() }
            throw error
        }
        return (peers, ids)
    }
}
