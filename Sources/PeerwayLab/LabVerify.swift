import Foundation

/// What `peerway netcheck --json` reported, reduced to what the lab checks (decoded from its
/// JSON, so the lab depends on Foundation only).
public struct LabMeasurement: Hashable, Sendable, Decodable {
    public struct Allocation: Hashable, Sendable, Decodable {
        public var kind: String
    }

    public var mappingBehavior: String?
    public var filteringBehavior: String?
    public var hairpinning: Bool?
    public var portPreserved: Bool?
    public var portAllocation: Allocation?
    public var noNAT: Bool?
    public var mappedAddress: String?
    /// The shortest round trip to the STUN pair.
    public var rttMilliseconds: Double?
    /// Set when netcheck failed (e.g. no answer at all).
    public var error: String?
    /// The TCP ports of `LabTCPCheck.ports` on the public host this host could connect to.
    public var tcpReachable: [UInt16]?
    /// The ports of `LabTCPCheck.ports` the site's HTTP proxy connected this host to (proxy sites only).
    public var proxyReachable: [UInt16]?
    /// What netcheck's port mapping found (`portMapping` in its JSON; nil when not asked or no route).
    public var portMapping: LabPortMapMeasurement?

    public init(mappingBehavior: String? = nil, filteringBehavior: String? = nil, hairpinning: Bool? = nil, portPreserved: Bool? = nil,
                portAllocation: String? = nil, noNAT: Bool? = nil, mappedAddress: String? = nil, error: String? = nil) {
        self.mappingBehavior = mappingBehavior
        self.filteringBehavior = filteringBehavior
        self.hairpinning = hairpinning
        self.portPreserved = portPreserved
        self.portAllocation = portAllocation.map(Allocation.init(kind:))
        self.noNAT = noNAT
        self.mappedAddress = mappedAddress
        self.error = error
    }

    /// Parses the last JSON line of netcheck's output; a measurement with `error` set if none.
    public static func parse(_ output: String) -> LabMeasurement {
        for line in output.split(separator: "\n").reversed() where line.hasPrefix("{") {
            if let m = try? JSONDecoder().decode(LabMeasurement.self, from: Data(line.utf8)) { return m }
        }
        let trimmed = output.trimmingCharacters(in: .whitespacesAndNewlines)
        return LabMeasurement(error: trimmed.isEmpty ? "no output" : String(trimmed.suffix(200)))
    }
}

/// What a host behind a preset must measure.
public struct LabExpectation: Hashable, Sendable {
    /// nil: netcheck must get no UDP answer at all (udp-blocked).
    public var mapping: String?
    public var filtering: String?
    public var noNAT: Bool
    /// Expected port allocation kind (`preserved`, `random`), nil: not checked.
    public var allocation: String?
    /// Expected hairpinning (nil: not applicable).
    public var hairpinning: Bool?
    /// The TCP ports the host must reach on the public host (checked when measured).
    public var tcpReachable: [UInt16] = LabTCPCheck.ports
    /// The ports the site's HTTP proxy must let `CONNECT` reach (nil: the site has no proxy).
    public var proxyReachable: [UInt16]? = nil
    /// The port mapping protocols the router must speak, with a mapping made (empty: none spoken).
    public var portMapping: [String] = []

    /// The expectation for a site.
    public static func of(_ site: LabSiteSpec) -> LabExpectation {
        let eim = "endpointIndependent", adf = "addressDependent", apd = "addressAndPortDependent"
        switch site.preset {
        case .open: return LabExpectation(mapping: eim, filtering: eim, noNAT: true, allocation: "preserved", hairpinning: nil)
        case .fullCone: return LabExpectation(mapping: eim, filtering: eim, noNAT: false, allocation: "preserved", hairpinning: site.hairpin)
        case .restrictedCone: return LabExpectation(mapping: eim, filtering: adf, noNAT: false, allocation: "preserved", hairpinning: site.hairpin)
        case .portRestricted, .cgnat:
            return LabExpectation(mapping: eim, filtering: apd, noNAT: false, allocation: "preserved", hairpinning: site.hairpin)
        case .symmetric: return LabExpectation(mapping: apd, filtering: apd, noNAT: false, allocation: "random", hairpinning: site.hairpin)
        case .symmetricUPnP:
            return LabExpectation(mapping: apd, filtering: apd, noNAT: false, allocation: "random", hairpinning: site.hairpin,
                                  portMapping: LabPortMapMeasurement.everyProtocol)
        case .symmetricSequential:
            return LabExpectation(mapping: apd, filtering: apd, noNAT: false, allocation: "sequential", hairpinning: site.hairpin)
        case .udpBlocked:
            return LabExpectation(mapping: nil, filtering: nil, noNAT: false, allocation: nil, hairpinning: nil,
                                  tcpReachable: LabLimits.udpBlockedTCPPorts.map(UInt16.init))
        case .tcp443Only:
            return LabExpectation(mapping: nil, filtering: nil, noNAT: false, allocation: nil, hairpinning: nil,
                                  tcpReachable: LabLimits.tcp443OnlyPorts.map(UInt16.init))
        case .proxyOnly:
            return LabExpectation(mapping: nil, filtering: nil, noNAT: false, allocation: nil, hairpinning: nil,
                                  tcpReachable: [], proxyReachable: LabProxy.connectPorts.map(UInt16.init))
        }
    }

    /// The reasons `m` does not meet the expectation (empty: pass).
    public func failures(_ m: LabMeasurement) -> [String] {
        var tcp: [String] = []
        if let reached = m.tcpReachable, reached != tcpReachable {
            tcp.append("TCP reached ports \(reached) of \(LabTCPCheck.ports), expected \(tcpReachable)")
        }
        if let proxyReachable, m.proxyReachable != proxyReachable {
            tcp.append("the proxy let CONNECT reach ports \(m.proxyReachable.map { "\($0)" } ?? "none (no answer)") of \(LabTCPCheck.ports), expected \(proxyReachable)")
        }
        guard mapping != nil else {
            return tcp + (m.error == nil ? ["UDP got through: netcheck answered (mapped \(m.mappedAddress ?? "?"))"] : [])
        }
        var out = tcp
        if let error = m.error { return out + ["netcheck failed: \(error)"] }
        out += LabPortMapMeasurement.failures(m.portMapping, expected: portMapping)
        if m.mappingBehavior != mapping { out.append("mapping \(m.mappingBehavior ?? "none") != \(mapping ?? "")") }
        if m.filteringBehavior != filtering { out.append("filtering \(m.filteringBehavior ?? "none") != \(filtering ?? "")") }
        if (m.noNAT ?? false) != noNAT { out.append("noNAT \(m.noNAT.map(String.init) ?? "none") != \(noNAT)") }
        if let allocation, m.portAllocation?.kind != allocation {
            out.append("port allocation \(m.portAllocation?.kind ?? "none") != \(allocation)")
        }
        if m.hairpinning != hairpinning {
            out.append("hairpinning \(m.hairpinning.map(String.init) ?? "n/a") != \(hairpinning.map(String.init) ?? "n/a")")
        }
        return out
    }
}

/// One row of the `lab verify` table.
public struct LabVerifyRow: Hashable, Sendable {
    public var site: LabSiteSpec
    public var host: Int
    public var expected: LabExpectation
    public var measured: LabMeasurement

    public init(site: LabSiteSpec, host: Int, expected: LabExpectation, measured: LabMeasurement) {
        self.site = site
        self.host = host
        self.expected = expected
        self.measured = measured
    }

    public var failures: [String] { expected.failures(measured) }
    public var passed: Bool { failures.isEmpty }

    /// "site" or "site/2".
    public var label: String { host == 1 ? site.name : "\(site.name)/\(host)" }
}

/// `peerway lab verify`: the sites it builds, the table it prints.
public enum LabVerify {
    /// Every preset, hairpinning both ways, and one site with two hosts behind the same NAT.
    public static let sites: [LabSiteSpec] = [
        LabSiteSpec(name: "open", preset: .open),
        LabSiteSpec(name: "full-cone", preset: .fullCone, hairpin: true),
        LabSiteSpec(name: "restricted-cone", preset: .restrictedCone),
        LabSiteSpec(name: "port-restricted", preset: .portRestricted, hairpin: true, hosts: 2),
        LabSiteSpec(name: "port-restr-nohp", preset: .portRestricted),
        LabSiteSpec(name: "symmetric", preset: .symmetric),
        LabSiteSpec(name: "symmetric-hp", preset: .symmetric, hairpin: true),
        LabSiteSpec(name: "symmetric-upnp", preset: .symmetricUPnP),
        LabSiteSpec(name: "sequential", preset: .symmetricSequential),
        LabSiteSpec(name: "cgnat", preset: .cgnat),
        LabSiteSpec(name: "udp-blocked", preset: .udpBlocked),
        LabSiteSpec(name: "tcp-443-only", preset: .tcp443Only),
        LabSiteSpec(name: "proxy-only", preset: .proxyOnly),
    ]
    /// netcheck's own `--timeout`, seconds.
    public static let netcheckTimeout = 15
    /// Extra seconds before a netcheck process is killed.
    public static let netcheckGrace: TimeInterval = 10

    static func short(_ behaviour: String?) -> String {
        switch behaviour {
        case "endpointIndependent": "EI"
        case "addressDependent": "AD"
        case "addressAndPortDependent": "APD"
        case nil: "-"
        case let other?: other
        }
    }

    /// The table, one line per row plus a header and a summary line.
    public static func table(_ rows: [LabVerifyRow]) -> String {
        func cell(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
        let widths = [19, 22, 14, 24, 12, 16, 6]
        func line(_ cells: [String]) -> String {
            var text = zip(cells, widths).map(cell).joined()
            while text.last == " " { text.removeLast() }
            return text
        }
        var lines = [line(["site", "preset", "expected", "measured", "allocation", "hairpin", "result"])]
        for row in rows {
            let e = row.expected, m = row.measured
            let preset = row.site.preset.rawValue + (row.site.hairpin ? "+hp" : "")
            let expected = e.mapping == nil ? "no UDP" : e.noNAT ? "no NAT" : "\(short(e.mapping))M/\(short(e.filtering))F"
            let measured: String
            if m.error != nil {
                let tcp = m.tcpReachable.map { ", TCP " + $0.map(String.init).joined(separator: "/") } ?? ""
                measured = "no UDP" + tcp
            } else if m.noNAT == true {
                measured = "no NAT (\(short(m.mappingBehavior))M/\(short(m.filteringBehavior))F)"
            } else {
                measured = "\(short(m.mappingBehavior))M/\(short(m.filteringBehavior))F" + (m.portMapping?.summary ?? "")
            }
            let allocation = m.error != nil ? "-" : (m.portAllocation?.kind ?? "-")
            func yesNo(_ b: Bool?) -> String { b.map { $0 ? "yes" : "no" } ?? "n/a" }
            let hairpin = m.hairpinning == e.hairpinning ? yesNo(m.hairpinning) : "\(yesNo(m.hairpinning)) (want \(yesNo(e.hairpinning)))"
            let result = row.passed ? "pass" : "FAIL"
            lines.append(line([row.label, preset, expected, measured, allocation, hairpin, result]))
        }
        for row in rows where !row.passed {
            lines.append("  \(row.label): " + row.failures.joined(separator: "; "))
        }
        let passed = rows.filter(\.passed).count
        lines.append("\(passed)/\(rows.count) rows pass" + (passed == rows.count ? "" : " — the failing presets do not behave as named"))
        return lines.joined(separator: "\n") + "\n"
    }

    /// Builds every preset, runs netcheck from each host, and removes the lab again (also when
    /// something fails). `peerway` is the executable to run in the namespaces.
    public static func run(peerway: String, log: (String) -> Void = { _ in }) throws(LabError) -> [LabVerifyRow] {
        let topology = try LabTopology(LabConfiguration(sites: sites))
        defer { LabRunner.down() }
        log("building \(topology.namespaces.count) namespaces")
        try LabRunner.up(topology, peerway: peerway)
        try LabRunner.startSTUN(peerway: peerway)
        try LabPortMap.start(topology)
        log("STUN pair listening on \(LabLimits.stunPrimary) and \(LabLimits.stunAlternate); running netcheck behind every site")

        let jobs: [(LabSitePlan, Int)] = topology.sites.flatMap { site in (1...site.spec.hosts).map { (site, $0) } }
        let listeners = try LabTCPCheck.listen(in: LabTopology.publicNamespace, ip: LabTopology.publicAddresses[0])
        defer { LabTCPCheck.close(listeners) }
        let results = LockedResults(count: jobs.count)
        DispatchQueue.concurrentPerform(iterations: jobs.count) { index in
            let (site, n) = jobs[index]
            let reachable = try? LabTCPCheck.reachablePorts(from: site.hostNamespace(n), to: LabTopology.publicAddresses[0])
            let output = (try? netcheck(peerway: peerway, namespace: site.hostNamespace(n))) ?? "netcheck did not run"
            var measurement = LabMeasurement.parse(output)
            measurement.tcpReachable = reachable
            if let proxy = LabProxy.url(for: site) {
                measurement.proxyReachable = try? LabTCPCheck.portsThroughProxy(from: site.hostNamespace(n), proxy: proxy,
                                                                                 to: LabTopology.publicAddresses[0])
            }
            results.set(index, measurement)
        }
        return jobs.enumerated().map { index, job in
            LabVerifyRow(site: job.0.spec, host: job.1, expected: .of(job.0.spec), measured: results.get(index))
        }
    }

    /// Runs `peerway netcheck --json` in `namespace`; its combined output (even when it fails).
    static func netcheck(peerway: String, namespace: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: LabRunner.path(of: "ip") ?? "/usr/sbin/ip")
        process.arguments = ["netns", "exec", namespace, peerway, "netcheck", "--stun", LabLimits.stunPrimary, "--json",
                             "--timeout", String(netcheckTimeout)]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + TimeInterval(netcheckTimeout) + netcheckGrace, execute: killer)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        killer.cancel()
        return String(decoding: data, as: UTF8.self)
    }
}

/// Results written from concurrent netcheck runs.
private final class LockedResults: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [LabMeasurement]

    init(count: Int) { values = Array(repeating: LabMeasurement(error: "not run"), count: count) }

    func set(_ index: Int, _ value: LabMeasurement) { lock.withLock { values[index] = value } }
    func get(_ index: Int) -> LabMeasurement { lock.withLock { values[index] } }
}
