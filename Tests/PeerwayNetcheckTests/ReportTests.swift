import Foundation
import NIOCore
import PeerwayNetcheck
import PeerwaySTUN
import Testing

@Suite("NetcheckReport: JSON and meaning")
struct ReportTests {
    static func json(_ report: NetcheckReport) throws -> [String: Any] {
        let data = try JSONEncoder().encode(report)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test("JSON keys are camelCase and stable; addresses are strings, durations milliseconds")
    func keys() throws {
        let sim = Simulation(nat: SimNAT(mapping: .addressAndPortDependent, filtering: .addressDependent))
        let report = try sim.run().get()
        let object = try Self.json(report)
        #expect(Set(object.keys) == [
            "server", "servers", "localAddress", "mappedAddress", "noNAT", "mappingBehavior", "filteringBehavior",
            "hairpinning", "portPreserved", "portAllocation", "rttMilliseconds", "otherAddress", "supportsRFC5780",
            "responseOrigin", "ignoredDatagrams", "durationMilliseconds", "notes", "directConnectivity", "summary",
        ])
        #expect(object["server"] as? String == "198.51.100.1:3478")
        #expect(object["mappedAddress"] as? String == "203.0.113.7:61000")
        #expect(object["mappingBehavior"] as? String == "addressAndPortDependent")
        #expect(object["filteringBehavior"] as? String == "addressDependent")
        #expect(object["rttMilliseconds"] as? Double == 20)
        #expect(object["durationMilliseconds"] as? Double == 2_920)
        #expect(object["directConnectivity"] as? String == "portPrediction")
        #expect(object["summary"] as? String == NetcheckDirectConnectivity.portPrediction.summary)
        let allocation = try #require(object["portAllocation"] as? [String: Any])
        #expect(Set(allocation.keys) == ["kind", "delta", "samples"])
        #expect(allocation["kind"] as? String == "sequential")
        let sample = try #require((allocation["samples"] as? [[String: Any]])?.first)
        #expect(Set(sample.keys) == ["socket", "localPort", "mappedPort", "mappedAddress", "destination", "isNewMapping"])
        #expect(sample["destination"] as? String == "198.51.100.1:3478")
        let server = try #require((object["servers"] as? [[String: Any]])?.first)
        #expect(Set(server.keys) == ["server", "mappedAddress", "otherAddress", "responseOrigin", "rttMilliseconds", "error"])
        let ignored = try #require(object["ignoredDatagrams"] as? [String: Any])
        #expect(Set(ignored.keys) == ["malformed", "unknownTransaction", "unexpectedSource", "duplicate"])
    }

    @Test("unknowns are null, not missing")
    func nulls() throws {
        let report = try Simulation(nat: nil).run().get()
        let object = try Self.json(report)
        #expect(object["hairpinning"] is NSNull)
        #expect(object["noNAT"] as? Bool == true)
    }

    @Test("a report survives a JSON round trip", arguments: ["no NAT", "hard NAT", "plain server"])
    func roundTrip(scenario: String) throws {
        let sim =
            switch scenario {
            case "no NAT": Simulation(nat: nil)
            case "hard NAT":
                Simulation(nat: SimNAT(mapping: .addressAndPortDependent, filtering: .addressAndPortDependent, allocation: .random(seed: 3)))
            default: Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent), servers: [.plain(Sim.serverA)])
            }
        let report = try sim.run().get()
        let decoded = try JSONDecoder().decode(NetcheckReport.self, from: JSONEncoder().encode(report))
        #expect(decoded == report)
    }

    @Test("IPv6 addresses are bracketed in JSON and decode back")
    func ipv6() throws {
        let v6 = STUNAddress(parsing: "[2001:db8::5]:3478")!
        let report = NetcheckReport(
            server: v6, servers: [NetcheckServerResult(server: v6, error: "no answer after 8 requests")],
            localAddress: nil, mappedAddress: STUNAddress(parsing: "[2001:db8::9]:40000")!, noNAT: false,
            mappingBehavior: .unknown, filteringBehavior: .unknown, hairpinning: nil, portPreserved: true,
            portAllocation: NetcheckPortAllocation(kind: .unknown, samples: []), rtt: .microseconds(250),
            otherAddress: nil, supportsRFC5780: false, responseOrigin: nil, ignoredDatagrams: NetcheckIgnoredDatagrams(),
            duration: .milliseconds(12), notes: ["n"])
        let object = try Self.json(report)
        #expect(object["mappedAddress"] as? String == "[2001:db8::9]:40000")
        #expect(object["rttMilliseconds"] as? Double == 0.25)
        #expect(try JSONDecoder().decode(NetcheckReport.self, from: JSONEncoder().encode(report)) == report)
    }

    @Test("a bad address in JSON is a decoding error")
    func badAddress() throws {
        let report = try Simulation(nat: nil).run().get()
        var object = try Self.json(report)
        object["mappedAddress"] = "not an address"
        let data = try JSONSerialization.data(withJSONObject: object)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(NetcheckReport.self, from: data) }
    }

    @Test("what the findings mean for direct connections")
    func directConnectivity() throws {
        var report = try Simulation(nat: SimNAT(mapping: .endpointIndependent, filtering: .endpointIndependent)).run().get()
        #expect(report.directConnectivity == .easy)
        report.filteringBehavior = .addressAndPortDependent
        #expect(report.directConnectivity == .holePunching)
        report.filteringBehavior = .unknown
        #expect(report.directConnectivity == .holePunching)
        report.mappingBehavior = .addressDependent
        report.portAllocation.kind = .random
        #expect(report.directConnectivity == .hard)
        report.portAllocation.kind = .sequential
        #expect(report.directConnectivity == .portPrediction)
        report.mappingBehavior = .unknown
        #expect(report.directConnectivity == .unknown)
        report.noNAT = true
        report.filteringBehavior = .endpointIndependent
        #expect(report.directConnectivity == .open)
        for kind in NetcheckDirectConnectivity.allCases { #expect(!kind.summary.isEmpty) }
    }

    @Test("behaviour names use RFC 4787 wording")
    func wording() {
        #expect(NetcheckMappingBehavior.endpointIndependent.description.hasPrefix("endpoint-independent mapping"))
        #expect(NetcheckMappingBehavior.addressAndPortDependent.abbreviation == "APDM")
        #expect(NetcheckFilteringBehavior.addressDependent.description.hasPrefix("address-dependent filtering"))
        #expect(NetcheckFilteringBehavior.addressAndPortDependent.abbreviation == "APDF")
    }
}
