import Foundation
import NIOCore
import Peerway
import PeerwayNetcheck
import PeerwaySTUN
import PeerwaySupernode
import Testing

/// Real STUN clients against our server, and our netcheck against a real coturn server.
/// Needs Debian's stun-client and coturn (scripts/test installs them as root).
@Suite("STUN interop", .serialized)
struct STUNInteropTests {
    @Test("Debian's stun client (RFC 3489) classifies our loopback answer as Open")
    func debianStunClient() async throws {
        guard let stun = try Tools.require("stun", package: "stun-client") else { return }
        let (server, layout) = try await STUNPairServerTests.startPair()
        defer { Task { await server.stop() } }
        let result = try Tools.run(stun, ["127.0.0.1:\(layout.primary.port)", "-v"], timeout: 30)
        #expect(!result.output.contains("could not reach"), "stun client output:\n\(result.output)")
        #expect(result.output.contains("Primary: Open"), "stun client output:\n\(result.output)")
        // stund's client tested the change-IP and change-port paths, which only the pair can answer.
        #expect(result.output.contains("test II = 1"), "stun client output:\n\(result.output)")
        let counters = await server.counters()
        #expect(counters.answered >= 4)
        #expect(counters.malformed == 0)
    }

    @Test("coturn's turnutils_stunclient prints our reflexive address and the RFC 5780 pair")
    func coturnStunClient() async throws {
        guard let client = try Tools.require("turnutils_stunclient", package: "coturn") else { return }
        let (server, layout) = try await STUNPairServerTests.startPair()
        defer { Task { await server.stop() } }
        let plain = try Tools.run(client, ["-p", "\(layout.primary.port)", "127.0.0.1"])
        #expect(plain.output.range(of: #"UDP reflexive addr: 127\.0\.0\.1:\d+"#, options: .regularExpression) != nil,
                "turnutils_stunclient output:\n\(plain.output)")
        let rfc5780 = try Tools.run(client, ["-f", "-p", "\(layout.primary.port)", "127.0.0.1"])
        #expect(rfc5780.output.contains("Other addr: : \(layout.alternate!)"), "output:\n\(rfc5780.output)")
        #expect(rfc5780.output.contains("Response origin: : \(layout.alternate!)"), "change IP+port answered from B:p2; output:\n\(rfc5780.output)")
    }

    @Test("Our netcheck against coturn on loopback gets the mapped address and, with two listening IPs, RFC 5780")
    func netcheckAgainstCoturn() async throws {
        guard let turnserver = try Tools.require("turnserver", package: "coturn") else { return }
        let port = Tools.freePortPair()
        // -n: no /etc/turnserver.conf (Debian's sets no-rfc5780). Two listening IPs and an alternate
        // port make coturn answer CHANGE-REQUEST and send OTHER-ADDRESS.
        let (process, _) = try Tools.start(turnserver, [
            "-n", "--stun-only", "--listening-ip", "127.0.0.1", "--listening-ip", "127.0.0.2",
            "--listening-port", "\(port)", "--alt-listening-port", "\(port + 1)", "--no-tls", "--no-dtls", "--no-cli",
            "--log-file", "stdout", "--pidfile", "/tmp/peerway-test-turnserver-\(port).pid",
        ])
        // coturn does not stop on SIGTERM while its threads are busy: kill it.
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        var report: NetcheckReport?
        for _ in 0..<20 where report == nil {  // coturn takes a moment to open its sockets
            report = try? await Netcheck.run(servers: ["127.0.0.1:\(port)"], options: NetcheckOptions(timeout: .seconds(3)))
            if report == nil { try await Task.sleep(for: .milliseconds(250)) }
        }
        let r = try #require(report, "netcheck got no answer from coturn on 127.0.0.1:\(port)")
        #expect(r.mappedAddress == r.localAddress)
        #expect(r.mappedAddress.ipString == "127.0.0.1")
        #expect(r.noNAT == true)
        #expect(r.supportsRFC5780 == true)
        #expect(r.otherAddress?.description == "127.0.0.2:\(port + 1)")
        #expect(r.mappingBehavior == .endpointIndependent)
        #expect(r.filteringBehavior == .endpointIndependent)
    }

    @Test("peerway netcheck --json against peerway supernode reports no NAT on loopback")
    func netcheckCLIAgainstSupernode() async throws {
        let port = Tools.freePortPair()
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("peerway-test-\(port)").path
        let (supernode, output) = try Tools.start(Tools.peerway, [
            "supernode", "--data-dir", dataDir, "--stun-listen", "127.0.0.1:\(port)", "--stun-alternate", "127.0.0.2:\(port + 1)",
        ])
        defer {
            if supernode.isRunning { supernode.terminate() }
            try? FileManager.default.removeItem(atPath: dataDir)
        }
        var result: (status: Int32, output: String) = (1, "")
        for _ in 0..<40 {
            result = try Tools.run(Tools.peerway, ["netcheck", "--stun", "127.0.0.1:\(port)", "--json"])
            if result.status == 0 { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(result.status == 0, "netcheck output:\n\(result.output)")
        let line = try #require(result.output.split(separator: "\n").last(where: { $0.hasPrefix("{") }))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(json["noNAT"] as? Bool == true)
        #expect(json["mappedAddress"] as? String == json["localAddress"] as? String)
        #expect(json["supportsRFC5780"] as? Bool == true)
        #expect(json["mappingBehavior"] as? String == "endpointIndependent")
        #expect(json["filteringBehavior"] as? String == "endpointIndependent")

        // SIGTERM stops the supernode gracefully, once it has started (its STUN pair answers
        // before the rest is up; a signal before the handler is installed kills it).
        let started = ContinuousClock.now
        while !FileManager.default.fileExists(atPath: dataDir + "/address"), ContinuousClock.now - started < .seconds(20) {
            try await Task.sleep(for: .milliseconds(50))
        }
        supernode.terminate()
        supernode.waitUntilExit()
        #expect(supernode.terminationStatus == 0)
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(printed.contains("STUN pair on 127.0.0.1:\(port) + 127.0.0.2:\(port + 1)"))
    }
}
