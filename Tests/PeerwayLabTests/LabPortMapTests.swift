import Foundation
import PeerwayLab
import Testing

/// The `symmetric-upnp` preset for real (root): the router's miniupnpd against Debian's clients
/// and Peerway's own, and a tunnel between two symmetric NATs that goes direct through a mapping.
/// In the serialized lab suite, as labs are machine-wide.
extension LabVerifyTests {
    /// Tools the port mapping tests need: command -> Debian package.
    static let portMapTools = [LabPortMap.tool: LabPortMap.package].merging(LabPortMap.clients) { a, _ in a }
    /// A gateway that speaks none of the protocols answers ICMP port unreachable: "none" must come
    /// this quickly (milliseconds, as netcheck's report says).
    static let noneWithinMillis = 500

    @Test("symmetric-upnp: miniupnpd maps for natpmpc and upnpc and deletes; Peerway maps with PCP, NAT-PMP and UPnP each; plain symmetric speaks none, quickly",
          .timeLimit(.minutes(3)))
    func portMapInterop() throws {
        guard Self.canRun(Self.portMapTools) else { return }
        defer { _ = try? Self.peerway(["lab", "down"]) }
        let up = try Self.peerway(["lab", "up", "--site", "upnp=symmetric-upnp", "--site", "plain=symmetric"])
        try #require(up.status == 0, "lab up failed:\n\(up.output)")
        let topology = try LabTopology(LabConfiguration(sites: [LabSiteSpec(name: "upnp", preset: .symmetricUPnP),
                                                                LabSiteSpec(name: "plain", preset: .symmetric)]))
        let site = try #require(topology.site(named: "upnp"))

        // Debian's clients against the lab's miniupnpd.
        let interop = try LabPortMap.interop(site: site, port: 41_000)
        #expect(interop.natpmpc == "external port 41000", "\(interop.output)")
        #expect(interop.upnpc == "\(site.wanAddress):41001", "\(interop.output)")
        #expect(interop.deleted, "\(interop.output)")

        // Peerway's clients, one protocol at a time, then all three.
        for proto in ["pcp", "nat-pmp", "upnp", nil] {
            let extra = proto.map { ["--port-mapping-protocol", $0] } ?? []
            let check = try Self.peerway(["lab", "exec", "upnp", "--", Self.peerway, "netcheck", "--stun", LabLimits.stunPrimary, "--json"] + extra)
            let report = try #require(Self.jsonObjects(check.output).last?["portMapping"] as? [String: Any], "\(check.output)")
            let mapping = report["mapping"] as? [String: Any]
            #expect((mapping?["external"] as? String)?.hasPrefix(site.wanAddress + ":") == true, "\(proto ?? "all"): \(check.output)")
            #expect(mapping?["protocol"] as? String == proto ?? "pcp", "\(check.output)")
            #expect(report["spoken"] as? [String] == (proto.map { [$0] } ?? LabPortMapMeasurement.everyProtocol), "\(check.output)")
        }
        // Every mapping was deleted when netcheck was done with it.
        let rules = try LabRunner.run("ip", ["netns", "exec", site.routerNamespace, "nft", "list", "chain", "inet", LabPortMap.table,
                                             "prerouting_miniupnpd"])
        #expect(!rules.contains("dnat"), "mappings left on the router:\n\(rules)")

        // A router without any of them: nothing spoken, and quickly.
        let plain = try Self.peerway(["lab", "exec", "plain", "--", Self.peerway, "netcheck", "--stun", LabLimits.stunPrimary, "--json"])
        let none = try #require(Self.jsonObjects(plain.output).last?["portMapping"] as? [String: Any], "\(plain.output)")
        #expect(none["spoken"] as? [String] == [], "\(plain.output)")
        #expect(none["mapping"] == nil || none["mapping"] is NSNull, "\(plain.output)")
        #expect((none["millis"] as? Int ?? .max) < Self.noneWithinMillis, "\(plain.output)")
    }

    @Test("symmetric-upnp in the matrix: symmetric x symmetric-upnp and symmetric-upnp x symmetric-upnp go direct over UDP (relayed without the mapping)",
          .timeLimit(.minutes(4)))
    func portMapDirect() throws {
        guard Self.canRun(Self.portMapTools) else { return }
        let pairs = "symmetric/symmetric-upnp,symmetric-upnp/symmetric-upnp,symmetric/symmetric"
        let (status, output) = try Self.peerway(["lab", "matrix", "--pairs", pairs, "--transport", "udp", "--tries", "2", "--no-aioice", "--json"])
        let objects = Self.jsonObjects(output)
        let rows = Dictionary(objects.compactMap { o in (o["pair"] as? String).map { ($0, o) } }, uniquingKeysWith: { a, _ in a })
        #expect(status == 0, "\(output)")
        for pair in ["symmetric/symmetric-upnp", "symmetric-upnp/symmetric-upnp"] {
            #expect(rows[pair]?["direct"] as? Int == 2, "\(pair): \(output)")
        }
        // The same two NATs without miniupnpd need the relay: the mapping is what makes it direct.
        #expect(rows["symmetric/symmetric"]?["direct"] as? Int == 0, "\(output)")
        #expect(rows["symmetric/symmetric"]?["successes"] as? Int == 2, "\(output)")
        #expect(LabRunner.existingNamespaces().isEmpty, "lab namespaces left behind")
    }
}
