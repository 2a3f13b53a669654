import PeerwayLab
import Testing

/// The presets of networks that let almost nothing out (issue 14, part 1), as pure values: their
/// rules, what `lab verify` expects of them, and their place in the matrix.
@Suite("Lab firewall presets: tcp-443-only")
struct LabFirewallPresetTests {
    @Test("tcp-443-only: only TCP to 443 (and ping) leaves; nothing is recorded, nothing let in")
    func rules() {
        let r = LabRouterRules(kind: .tcp443Only, publicAddress: "203.0.113.21", lanNetwork: "10.0.2.0/24", udpTimeout: 30).ruleset
        #expect(r.contains("iifname \"lan0\" oifname \"wan0\" tcp dport { 443 } accept"))
        #expect(r.contains("iifname \"lan0\" oifname \"wan0\" icmp type echo-request accept"))
        #expect(!r.contains("iifname \"lan0\" oifname \"wan0\" accept"))
        #expect(!r.contains("80"))
        #expect(!r.contains("set ports"))
        #expect(r.contains("policy drop"))
        #expect(LabRouterRules.Kind.tcp443Only.allowedTCPPorts == [443])
        #expect(LabRouterRules.Kind.udpBlocked.allowedTCPPorts == [80, 443])
        #expect(LabRouterRules.Kind.portRestricted.allowedTCPPorts == nil)
    }

    @Test("the preset parses, blocks UDP, and lab verify expects no UDP answer and TCP to 443 alone")
    func expectation() throws {
        let site = try LabSiteSpec(parsing: "corp=tcp-443-only,hosts=2")
        #expect(site.preset == .tcp443Only && site.hosts == 2)
        #expect(LabPreset.tcp443Only.blocksUDP && LabPreset.udpBlocked.blocksUDP && !LabPreset.symmetric.blocksUDP)
        #expect(throws: LabError.self) { try LabSiteSpec(parsing: "corp=tcp-443-only,hairpin,bogus") }
        let expected = LabExpectation.of(site)
        var blocked = LabMeasurement.parse(#"{"error":"no STUN server answered"}"#)
        blocked.tcpReachable = [443]
        #expect(expected.failures(blocked).isEmpty)
        blocked.tcpReachable = [80, 443]
        #expect(expected.failures(blocked) == ["TCP reached ports [80, 443] of [80, 443, 8080], expected [443]"])
        let answered = LabMeasurement.parse(LabVerifyEvaluationTests.portRestrictedJSON)
        #expect(!expected.failures(answered).isEmpty)
        #expect(LabVerify.sites.contains { $0.preset == .tcp443Only })
    }

    @Test("in the matrix: two sites, relayed (never direct) over UDP across NATs, direct behind one NAT")
    func matrix() {
        #expect(LabMatrix.siteNames(.tcp443Only) == ["t4-a", "t4-b"])
        for other in LabPreset.allCases {
            #expect(!LabMatrix.directExpected(.tcp443Only, other, .udp), "\(other)")
        }
        #expect(LabMatrix.directExpected(.tcp443Only, .tcp443Only, .udp, sameNAT: true))
        #expect(LabMatrix.pairs.filter { $0.a == .tcp443Only || $0.b == .tcp443Only }.count == LabPreset.allCases.count + 1)
    }

    @Test("proxy-only: nothing forwarded; tinyproxy on the LAN gateway, the LAN only, CONNECT to 443; peers get --proxy")
    func proxyOnly() throws {
        let r = LabRouterRules(kind: .proxyOnly, publicAddress: "203.0.113.11", lanNetwork: "10.0.1.0/24", udpTimeout: 30).ruleset
        #expect(!r.contains("oifname \"wan0\" tcp dport"))
        #expect(!r.contains("icmp type echo-request accept"))
        #expect(!r.contains("iifname \"lan0\" oifname \"wan0\" accept"))
        #expect(r.contains("policy drop") && r.contains("ct state established,related accept"))
        let topology = try LabTopology(LabConfiguration(sites: [try LabSiteSpec(parsing: "corp=proxy-only"), LabSiteSpec(name: "h", preset: .fullCone)]))
        let corp = try #require(topology.site(named: "corp")), other = try #require(topology.site(named: "h"))
        let conf = LabProxy.configuration(for: corp)
        for line in ["Port 3128", "Listen 10.0.1.1", "Allow 10.0.1.0/24", "ConnectPort 443", "LogFile \"/run/peerway-lab/tinyproxy-pw-corp-r.log\""] {
            #expect(conf.contains(line + "\n"), "\(line) in\n\(conf)")
        }
        #expect(LabProxy.peerArguments(for: corp) == ["--proxy", "http://10.0.1.1:3128"])
        #expect(LabProxy.peerArguments(for: other).isEmpty)
        let steps = LabPlan.steps(for: topology)
        #expect(steps.filter { if case .proxy("pw-corp-r", conf) = $0 { return true }; return false }.count == 1)
        #expect(steps.filter { if case .proxy = $0 { return true }; return false }.count == 1)
        let expected = LabExpectation.of(corp.spec)
        var m = LabMeasurement.parse(#"{"error":"no STUN server answered"}"#)
        m.tcpReachable = []
        m.proxyReachable = [443]
        #expect(expected.failures(m).isEmpty)
        m.proxyReachable = nil
        #expect(expected.failures(m) == ["the proxy let CONNECT reach ports none (no answer) of [80, 443, 8080], expected [443]"])
        #expect(LabVerify.sites.contains { $0.preset == .proxyOnly } && LabPreset.proxyOnly.blocksUDP)
        #expect(LabMatrix.siteNames(.proxyOnly) == ["px-a", "px-b"])
    }
}
