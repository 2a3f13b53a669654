import Foundation
import PeerwayLab
import Testing

/// `peerway lab matrix` for real (root): in the same serialized suite as the other lab tests, as
/// labs are machine-wide.
extension LabVerifyTests {
    /// The whole matrix run may take this long before the test interrupts it, seconds; the matrix
    /// starts no pair after `matrixTimeLimit`, and a started pair ends within its own timeouts.
    static let matrixTimeout: TimeInterval = 540
    static let matrixTimeLimit = 420

    /// The JSON objects among `output`'s lines (progress lines on stderr are not JSON).
    static func jsonObjects(_ output: String) -> [[String: Any]] {
        output.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{") else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    /// aioice and its interpreter must be there in CI (scripts/test installs aioice); elsewhere
    /// their absence skips the aioice checks.
    static var aioiceAvailable: Bool { (try? LabRunner.run("python3", ["-c", "import aioice"])) != nil }

    @Test("lab matrix: every pair connects over UDP and TCP, direct where possible, easy x symmetric by many-port",
          .timeLimit(.minutes(10)))
    func matrix() throws {
        guard Self.canRun([LabProxy.tool: LabProxy.package, LabPortMap.tool: LabPortMap.package]) else { return }
        let started = Date()
        let (status, output) = try Self.peerway(
            ["lab", "matrix", "--transport", "both", "--tries", "2", "--json", "--time-limit", String(Self.matrixTimeLimit)],
            timeout: Self.matrixTimeout)
        print("lab matrix: \(Int(Date().timeIntervalSince(started))) s\n\(output)")
        let objects = Self.jsonObjects(output)
        let summary = try #require(objects.last { $0["kind"] as? String == "summary" }, "no summary:\n\(output)")
        let rows = objects.filter { $0["kind"] as? String == "row" }
        #expect(status == 0, "peerway lab matrix failed: \(summary["failures"] ?? "")")
        #expect(summary["pass"] as? Bool == true, "\(summary["failures"] ?? "")")
        #expect(summary["connected_rate"] as? Double == 1, "\(summary)")
        #expect(summary["direct_rate"] as? Double == 1, "\(summary)")
        #expect(rows.count == LabMatrix.pairs.count * 2, "\(rows.count) rows")
        // The hard-NAT rows against a strict easy NAT can only be direct by many-port probing.
        let manyPort = rows.filter { $0["many_port_expected"] as? Bool == true }
        #expect(manyPort.count == 2)
        for row in manyPort {
            #expect(row["methods"] as? [String] == ["many-port"], "\(row["pair"] ?? "") says \(row["methods"] ?? "")")
        }
        if Self.inCI || Self.aioiceAvailable {
            #expect(summary["aioice_broken"] as? Int == 0, "\(summary)")
            #expect(summary["aioice_tries"] as? Int == LabMatrix.pairs.count * 2, "\(summary)")
        }
        #expect(LabRunner.existingNamespaces().isEmpty, "lab namespaces left behind")
    }

    @Test("lab matrix --dry-run: the supernode and every peer come up and register, aioice runs in the namespaces, all is removed",
          .timeLimit(.minutes(3)))
    func matrixDryRun() throws {
        guard Self.canRun() else { return }
        let pairs = "open/full-cone,port-restricted/symmetric,cgnat/same-NAT"
        let (status, output) = try Self.peerway(["lab", "matrix", "--dry-run", "--tries", "1", "--transport", "udp", "--json", "--pairs", pairs])
        let objects = Self.jsonObjects(output)
        let summary = try #require(objects.last { $0["kind"] as? String == "summary" }, "no summary:\n\(output)")
        let sites = LabMatrix.sites(for: try LabMatrix.filter(LabMatrix.pairs, pairs))
        let hosts = sites.reduce(0) { $0 + $1.hosts }
        #expect(summary["peers"] as? Int == hosts && summary["registered"] as? Int == hosts, "\(output)")
        #expect(LabRunner.existingNamespaces().isEmpty, "lab namespaces left behind")
        guard Self.inCI || Self.aioiceAvailable else {
            print("skipping the aioice checks: python3 cannot import aioice (pip install aioice)")
            return
        }
        #expect(status == 0, "\(output)")
        #expect(summary["pass"] as? Bool == true, "\(output)")
        let rows = Dictionary(objects.compactMap { o in (o["pair"] as? String).map { ($0, o) } }, uniquingKeysWith: { a, _ in a })
        // What ICE without port prediction or many-port probing can and cannot do through these NATs.
        #expect(rows["open/full-cone"]?["aioice_direct"] as? Int == 1, "\(output)")
        #expect(rows["cgnat/same-NAT"]?["aioice_direct"] as? Int == 1, "\(output)")
        #expect(rows["cgnat/same-NAT"]?["aioice_types"] as? [String] == ["host/host"], "\(output)")
        #expect(rows["port-restricted/symmetric"]?["aioice_direct"] as? Int == 0, "\(output)")
        #expect(rows["port-restricted/symmetric"]?["aioice_tries"] as? Int == 1, "\(output)")
    }
}
