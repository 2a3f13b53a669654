import PeerwayLab
import Testing

@Suite("Lab verify: expectations against netcheck's JSON")
struct LabVerifyEvaluationTests {
    static let portRestrictedJSON = """
        {"filteringBehavior":"addressAndPortDependent","hairpinning":false,"mappedAddress":"203.0.113.21:40000",\
        "mappingBehavior":"endpointIndependent","noNAT":false,"portAllocation":{"delta":null,"kind":"preserved","samples":[]},\
        "portPreserved":true,"server":"198.51.100.1:3478"}
        """

    @Test("a port-restricted measurement passes port-restricted and fails the other presets")
    func portRestricted() {
        let m = LabMeasurement.parse("some log line\n" + Self.portRestrictedJSON + "\n")
        #expect(m.error == nil)
        #expect(LabExpectation.of(LabSiteSpec(name: "a", preset: .portRestricted)).failures(m).isEmpty)
        #expect(LabExpectation.of(LabSiteSpec(name: "a", preset: .cgnat)).failures(m).isEmpty)
        #expect(!LabExpectation.of(LabSiteSpec(name: "a", preset: .portRestricted, hairpin: true)).failures(m).isEmpty)
        #expect(!LabExpectation.of(LabSiteSpec(name: "a", preset: .restrictedCone)).failures(m).isEmpty)
        #expect(!LabExpectation.of(LabSiteSpec(name: "a", preset: .symmetric)).failures(m).isEmpty)
        #expect(!LabExpectation.of(LabSiteSpec(name: "a", preset: .udpBlocked)).failures(m).isEmpty)
    }

    @Test("udp-blocked passes only when netcheck gets no answer")
    func udpBlocked() {
        let failed = LabMeasurement.parse(#"{"error":"no STUN server answered"}"#)
        #expect(failed.error != nil)
        #expect(LabExpectation.of(LabSiteSpec(name: "u", preset: .udpBlocked)).failures(failed).isEmpty)
        #expect(!LabExpectation.of(LabSiteSpec(name: "u", preset: .portRestricted)).failures(failed).isEmpty)
        #expect(LabMeasurement.parse("").error == "no output")
        // ...and TCP reaches exactly ports 80 and 443 (when measured).
        var tcp = failed
        tcp.tcpReachable = [80, 443]
        #expect(LabExpectation.of(LabSiteSpec(name: "u", preset: .udpBlocked)).failures(tcp).isEmpty)
        tcp.tcpReachable = [80, 443, 8080]
        #expect(LabExpectation.of(LabSiteSpec(name: "u", preset: .udpBlocked)).failures(tcp) == ["TCP reached ports [80, 443, 8080] of [80, 443, 8080], expected [80, 443]"])
        var open = LabMeasurement.parse(Self.portRestrictedJSON)
        open.tcpReachable = [80, 443]
        #expect(!LabExpectation.of(LabSiteSpec(name: "a", preset: .portRestricted)).failures(open).isEmpty)
    }

    @Test("the table has one row per host and says how many pass")
    func table() {
        let m = LabMeasurement.parse(Self.portRestrictedJSON)
        let pass = LabVerifyRow(site: LabSiteSpec(name: "home", preset: .portRestricted), host: 1, expected: .of(LabSiteSpec(name: "home", preset: .portRestricted)), measured: m)
        let fail = LabVerifyRow(site: LabSiteSpec(name: "sym", preset: .symmetric), host: 2, expected: .of(LabSiteSpec(name: "sym", preset: .symmetric)), measured: m)
        let table = LabVerify.table([pass, fail])
        #expect(table.contains("home "))
        #expect(table.contains("sym/2 "))
        #expect(table.contains("EIM/APDF"))
        #expect(table.contains("FAIL"))
        #expect(table.contains("1/2 rows pass"))
        #expect(table.contains("sym/2: mapping endpointIndependent != addressAndPortDependent"))
    }
}
