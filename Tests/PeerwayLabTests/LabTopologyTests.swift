import PeerwayLab
import Testing

@Suite("Lab topology: site parsing and the address plan")
struct LabTopologyTests {
    @Test("NAME=PRESET[,hairpin][,hosts=N] parses")
    func parsing() throws {
        let spec = try LabSiteSpec(parsing: "home=port-restricted,hairpin,hosts=2")
        #expect(spec == LabSiteSpec(name: "home", preset: .portRestricted, hairpin: true, hosts: 2))
        #expect(try LabSiteSpec(parsing: "x=open") == LabSiteSpec(name: "x", preset: .open))
        #expect(try LabSiteSpec(parsing: "c=cgnat").preset == .cgnat)
    }

    @Test("bad sites are refused with a reason", arguments: [
        "home", "home=nat", "home=open,hairpin", "home=symmetric,hosts=0", "home=symmetric,hosts=9",
        "Home=open", "public=open", "inet=open", "a-very-long-site-name=open", "home=full-cone,fast",
    ])
    func badSites(text: String) {
        #expect(throws: LabError.self) { try LabSiteSpec(parsing: text) }
    }

    @Test("configurations with duplicate names, no sites or out-of-range values are refused")
    func badConfigurations() {
        let site = LabSiteSpec(name: "a", preset: .open)
        #expect(throws: LabError.self) { try LabTopology(LabConfiguration(sites: [])) }
        #expect(throws: LabError.self) { try LabTopology(LabConfiguration(sites: [site, site])) }
        #expect(throws: LabError.self) { try LabTopology(LabConfiguration(sites: [site], lossPercent: 101)) }
        #expect(throws: LabError.self) { try LabTopology(LabConfiguration(sites: [site], udpTimeout: 0)) }
        let many = (1...(LabLimits.maximumSites + 1)).map { LabSiteSpec(name: "s\($0)", preset: .open) }
        #expect(throws: LabError.self) { try LabTopology(LabConfiguration(sites: many)) }
    }

    @Test("address plan: site i has 203.0.113.(10i+1) outside and 10.0.i.0/24 inside")
    func addressPlan() throws {
        let topology = try LabTopology(LabConfiguration(sites: [
            LabSiteSpec(name: "o", preset: .open, hosts: 2),
            LabSiteSpec(name: "home", preset: .portRestricted, hosts: 2),
            LabSiteSpec(name: "c", preset: .cgnat),
        ]))
        let open = try #require(topology.site(named: "o"))
        #expect(open.hostAddress(1) == "203.0.113.11")
        #expect(open.hostAddress(2) == "203.0.113.12")
        let home = try #require(topology.site(named: "home"))
        #expect(home.wanAddress == "203.0.113.21")
        #expect(home.hostAddress(2) == "10.0.2.12")
        #expect(home.lanGateway == "10.0.2.1")
        let c = try #require(topology.site(named: "c"))
        #expect(c.routerNodes.map(\.namespace) == ["pw-c-c", "pw-c-r"])
        #expect(c.routerNodes.map(\.addresses) == [["203.0.113.31/24", "100.64.3.1/24"], ["100.64.3.2/24", "10.0.3.1/24"]])
        #expect(topology.namespaces == [
            "pw-inet", "pw-public", "pw-o-h1", "pw-o-h2", "pw-home-r", "pw-home-h1", "pw-home-h2", "pw-c-c", "pw-c-r", "pw-c-h1",
        ])
        #expect(topology.namespaces.allSatisfy { $0.hasPrefix(LabLimits.prefix) })
        #expect(try topology.namespace(for: "home/2") == "pw-home-h2")
        #expect(try topology.namespace(for: "home") == "pw-home-h1")
        #expect(try topology.namespace(for: "public") == "pw-public")
        #expect(throws: LabError.self) { try topology.namespace(for: "home/3") }
        #expect(throws: LabError.self) { try topology.namespace(for: "nowhere") }
    }

    @Test("the public host has four addresses, all on its eth0: the STUN pair's two, and two more for a network of supernodes")
    func publicHost() throws {
        let topology = try LabTopology(LabConfiguration(sites: [LabSiteSpec(name: "home", preset: .portRestricted)]))
        #expect(LabTopology.publicAddresses == ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"])
        #expect(LabLimits.stunPrimary.hasPrefix(LabTopology.publicAddresses[0] + ":"))
        #expect(LabLimits.stunAlternate.hasPrefix(LabTopology.publicAddresses[1] + ":"))
        let node = try #require(topology.nodes.first { $0.role == .publicHost })
        #expect(node.addresses == LabTopology.publicAddresses.map { $0 + "/24" })
        let added = LabPlan.steps(for: topology).compactMap { step -> String? in
            guard case .ip(let args) = step, args.starts(with: ["-n", LabTopology.publicNamespace, "addr", "add"]) else { return nil }
            return args[4]
        }
        #expect(added == node.addresses)
    }

    @Test("the JSON description names every host with its namespace, addresses, site and preset")
    func description() throws {
        let topology = try LabTopology(LabConfiguration(sites: [LabSiteSpec(name: "home", preset: .fullCone)]))
        let json = LabRunner.describe(topology)
        #expect(json.contains("\"namespace\" : \"pw-public\""))
        #expect(json.contains("\"198.51.100.2/24\""))
        #expect(json.contains("\"198.51.100.4/24\""))
        #expect(json.contains("\"namespace\" : \"pw-home-h1\""))
        #expect(json.contains("\"preset\" : \"full-cone\""))
        #expect(json.contains("\"publicAddress\" : \"203.0.113.11\""))
    }
}
