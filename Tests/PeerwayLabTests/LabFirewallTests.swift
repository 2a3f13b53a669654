import Foundation
import PeerwayLab
import Testing

/// Issue 14 part 1 in the NAT lab: a peer behind `tcp-443-only` (no UDP at all, TCP to port 443
/// only), or behind `proxy-only` (nothing out but through tinyproxy on its router, `CONNECT` to
/// 443 only, given with `--proxy`), against a peer behind a port-restricted NAT. The supernode's
/// CHECKPOINT listens on TCP 443 as well (its shared port); its RELAY has its own ports (UDP and
/// TCP 7401), which the firewall blocks (the proxy refuses them). The blocked peer registers over
/// TCP 443, messages, and gets relayed UDP and TCP tunnels, reaching the relay through the shared
/// port (a `PWRB` bind handed to the RELAY) while the other peer reaches it on the relay's own TCP
/// port. In the serialized lab suite.
extension LabVerifyTests {
    /// The supernode's shared TCP port: the only one `tcp-443-only` lets out.
    static let firewallSharedPort = LabLimits.tcp443OnlyPorts[0]
    /// How long a peer gets to register (UDP hellos time out first, then TCP), and a message, seconds.
    static let firewallRegisterTimeout: TimeInterval = 30
    static let firewallMessageTimeout: TimeInterval = 20

    @Test("lab: a peer behind tcp-443-only registers, messages, and gets relayed UDP and TCP tunnels through the shared port 443",
          .timeLimit(.minutes(4)))
    func tcp443OnlyTunnels() async throws {
        guard Self.canRun() else { return }
        try await Self.firewallScenario(LabSiteSpec(name: "corp", preset: .tcp443Only))
    }

    @Test("lab: a peer whose only way out is an HTTP proxy (tinyproxy, CONNECT to 443 only) registers, messages and tunnels, relayed, through it",
          .timeLimit(.minutes(4)))
    func proxyOnlyTunnels() async throws {
        guard Self.canRun([LabProxy.tool: LabProxy.package]) else { return }
        let log = try await Self.firewallScenario(LabSiteSpec(name: "corp", preset: .proxyOnly))
        // The proxy carried the control channel and the relay's splice to the shared port, and
        // refused CONNECT to the relay's own TCP port (7401).
        let shared = "\(LabTopology.publicAddresses[0]):\(Self.firewallSharedPort)"
        #expect(log.contains(shared), "tinyproxy's log:\n\(log)")
        #expect(log.contains("\(LabTopology.publicAddresses[0]):7401") || log.lowercased().contains("refus") || log.contains("403"),
                "tinyproxy's log:\n\(log)")
    }

    /// The blocked peer behind `site` (with `--proxy` when the site has a proxy) and one behind a
    /// port-restricted NAT: register, message, and relayed tunnels both ways over UDP and TCP,
    /// the blocked one through the supernode's shared port. Returns the site's proxy log, if any.
    @discardableResult
    static func firewallScenario(_ site: LabSiteSpec) async throws -> String {
        let started = Date()
        let shared = "\(LabTopology.publicAddresses[0]):\(Self.firewallSharedPort)"
        let home = LabSiteSpec(name: "home", preset: .portRestricted)
        let topology = try LabTopology(LabConfiguration(sites: [site, home]))
        let scene = try await LabCheckpointScene.start(["--site", "\(site.name)=\(site.preset.rawValue)", "--site", "home=port-restricted"],
                                                       supernode: ["--tcp-listen", shared])
        defer { scene.tearDown() }
        let peerway = LabVerifyTests.peerway
        var peers: [LabLineProcess] = []
        defer { peers.forEach { $0.stop() } }
        for plan in topology.sites {
            let name = plan.spec.name
            peers.append(try LabLineProcess(name: name, executable: peerway,
                                            arguments: ["lab", "exec", name, "--", peerway, "peer", "--supernode", scene.address,
                                                        "--identity", scene.directory + "/\(name).key", "--json", "--echo", "--stay"]
                                                + LabProxy.peerArguments(for: plan),
                                            log: scene.directory + "/\(name).log"))
        }
        let (blocked, other) = (peers[0], peers[1])
        var ids: [String] = []
        for p in peers {
            let event = await Self.event(p, "registered", timeout: Self.firewallRegisterTimeout)
            let fields = try #require(event, "\(p.name) did not register:\n\(scene.supernode.text)\n\(p.output.all.joined(separator: "\n"))")
            ids.append(try #require(fields["id"] as? String))
        }
        let (blockedID, otherID) = (ids[0], ids[1])
        let preset = site.preset.rawValue

        let sent = await Self.command(blocked, "send \(otherID) hello from behind \(preset)", answer: "delivered", orFailure: "failed",
                                      timeout: Self.firewallMessageTimeout)
        #expect(sent?["event"] as? String == "delivered", "\(String(describing: sent))")
        let back = await Self.command(other, "send \(blockedID) hello into \(preset)", answer: "delivered", orFailure: "failed",
                                      timeout: Self.firewallMessageTimeout)
        #expect(back?["event"] as? String == "delivered", "\(String(describing: back))")

        // Both directions over UDP (datagrams framed through the relay's TCP splice) and TCP.
        for (initiator, acceptor, from, to) in [(blocked, other, blockedID, otherID), (other, blocked, otherID, blockedID)] {
            for transport in LabMatrixTransport.allCases {
                let outcome = try await LabThread.run {
                    LabMatrixTrial.run(initiator: initiator, acceptor: acceptor, acceptorID: to, initiatorID: from, transport: transport)
                }
                let what = "\(preset): \(initiator.name) to \(acceptor.name) over \(transport.rawValue)"
                print("lab \(what): \(outcome.path ?? "-") in \(outcome.ms.map { "\(Int($0)) ms" } ?? "-")")
                #expect(outcome.succeeded, "\(what): \(outcome.error ?? "")\n\(blocked.output.all.suffix(20).joined(separator: "\n"))")
                #expect(outcome.path == "relayed" && outcome.encrypted == true, "\(what): \(outcome.path ?? "no tunnel")")
                // The blocked peer reached the relay through the shared port; the other on the relay's own.
                #expect(Self.lastTunnelRemote(blocked, blocked === initiator ? to : from) == shared, "\(what)")
                #expect(Self.lastTunnelRemote(other, other === initiator ? to : from)?.hasSuffix(":\(Self.firewallSharedPort)") == false, "\(what)")
            }
        }
        let proxyLog = topology.sites.first.map { (try? String(contentsOfFile: LabProxy.logFile($0.routerNamespace), encoding: .utf8)) ?? "" } ?? ""
        print("lab \(preset): \(Int(Date().timeIntervalSince(started))) s")
        peers.forEach { $0.stop() }
        scene.tearDown()
        #expect(LabRunner.existingNamespaces().isEmpty, "lab namespaces left behind")
        return proxyLog
    }
}
