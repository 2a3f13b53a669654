import Foundation
import PeerwayLab
import Testing

/// The rules of `--send-failures` and `lab send-failures`, without root.
@Suite("Lab send failures: parsing, validation and rules")
struct LabSendFailureRuleTests {
    @Test("SITE[/N]=PCT parses; bad forms and rates out of range are refused with a reason")
    func parsing() throws {
        #expect(try LabSendFailure(parsing: "home=20") == LabSendFailure(target: "home", percent: 20))
        #expect(try LabSendFailure(parsing: "home/2=100") == LabSendFailure(target: "home/2", percent: 100))
        for bad in ["home", "home=", "=20", "home=x", "home=101", "home=-1"] {
            #expect(throws: LabError.self, "\(bad)") { try LabSendFailure(parsing: bad) }
        }
    }

    @Test("a configuration accepts hosts of its sites and public, and refuses unknown or repeated hosts")
    func validation() throws {
        let home = LabSiteSpec(name: "home", preset: .portRestricted, hosts: 2)
        func configuration(_ failures: [LabSendFailure]) -> LabConfiguration { LabConfiguration(sites: [home], sendFailures: failures) }
        _ = try LabTopology(configuration([LabSendFailure(target: "home", percent: 20), LabSendFailure(target: "home/2", percent: 5),
                                           LabSendFailure(target: "public", percent: 1)]))
        for bad in [[LabSendFailure(target: "office", percent: 20)], [LabSendFailure(target: "home/3", percent: 20)],
                    [LabSendFailure(target: "home", percent: 20), LabSendFailure(target: "home/1", percent: 10)],
                    [LabSendFailure(target: "home", percent: 200)]] {
            #expect(throws: LabError.self, "\(bad)") { try LabTopology(configuration(bad)) }
        }
    }

    @Test("the rule drops that share of UDP in the host's output hook, not loopback; 0 only removes it")
    func ruleset() {
        let rules = LabSendFailures.ruleset(percent: 20)
        #expect(rules.contains("type filter hook output priority filter"))
        #expect(rules.contains("oifname != \"lo\" meta l4proto udp numgen random mod 100 < 20 drop"))
        #expect(rules.hasPrefix("add table inet \(LabSendFailures.tableName)\ndelete table inet \(LabSendFailures.tableName)\n"))
        #expect(LabSendFailures.ruleset(percent: 100).contains("oifname != \"lo\" meta l4proto udp drop"))
        let none = LabSendFailures.ruleset(percent: 0)
        #expect(none.contains("delete table") && !none.contains("drop"))
    }

    @Test("lab up loads the rule in the named host's namespace, after everything else")
    func plan() throws {
        let topology = try LabTopology(LabConfiguration(sites: [LabSiteSpec(name: "home", preset: .portRestricted, hosts: 2)],
                                                        sendFailures: [LabSendFailure(target: "home/2", percent: 20)]))
        let steps = LabPlan.steps(for: topology)
        #expect(steps.last == .nft(namespace: "pw-home-h2", ruleset: LabSendFailures.ruleset(percent: 20)))
        let plain = try LabTopology(LabConfiguration(sites: [LabSiteSpec(name: "home", preset: .portRestricted)]))
        #expect(!LabPlan.steps(for: plain).contains { if case .nft(_, let r) = $0 { return r.contains(LabSendFailures.tableName) }; return false })
    }
}

/// A peer on a host whose own sends fail (EPERM from a firewall rule in its output hook) keeps
/// going: it starts and registers every time, its tunnels carry data, and it rides out a spell in
/// which every send fails. In the same serialized suite as the other lab tests: labs are
/// machine-wide.
extension LabVerifyTests {
    /// Share of the failing host's UDP sends that fail, percent (every fifth on average).
    static let sendFailurePercent = 20
    /// Starts of a peer on that host; every one must register and get a working tunnel.
    static let sendFailureStarts = 10
    /// Bytes sent through each tunnel and echoed back.
    static let sendFailureBytes = 200_000
    /// How long every send fails in the outage test, seconds.
    static let sendOutageSeconds: UInt64 = 4

    @Test("lab: a peer whose sends fail at 20% starts, registers and gets a working tunnel 10 times of 10",
          .timeLimit(.minutes(8)))
    func startsDespiteSendFailures() async throws {
        guard Self.canRun() else { return }
        let scene = try await LabCheckpointScene.start(["--site", "home=port-restricted", "--site", "office=port-restricted",
                                                        "--send-failures", "home=\(Self.sendFailurePercent)"])
        defer { scene.tearDown() }
        let bob = try scene.peer("bob", at: "office", ["--echo"])
        let bobRegistered = try #require(await bob.waitFor("\"event\":\"registered\""), "bob: \(bob.text)")
        let bobID = try #require(Self.field("id", of: bobRegistered), "\(bobRegistered)")

        var registerMillis: [Int] = [], tunnelMillis: [Int] = [], failures: [String] = []
        for i in 0..<Self.sendFailureStarts {
            let started = Date()
            let alice = try scene.peer("alice\(i)", at: "home")
            defer { alice.stop() }
            guard let registered = await alice.waitFor("\"event\":\"registered\"", orFailure: "\"event\":\"error\"", timeout: 40),
                  registered.contains("\"registered\"") else {
                failures.append("start \(i): \(alice.text)")
                continue
            }
            registerMillis.append(Int(Date().timeIntervalSince(started) * 1000))
            alice.send("connect \(bobID) udp")
            guard let tunnel = await alice.waitFor("\"event\":\"tunnel\"", orFailure: "\"event\":\"tunnel-failed\"", timeout: 60),
                  tunnel.contains("\"event\":\"tunnel\"") else {
                failures.append("tunnel \(i): \(alice.text)")
                continue
            }
            tunnelMillis.append(Self.number("ms", of: tunnel) ?? -1)
            alice.send("send-bytes \(bobID) \(Self.sendFailureBytes)")
            let echoed = await alice.waitFor("\"event\":\"send-bytes\"", timeout: 60)
            if echoed?.contains("\"ok\":true") != true { failures.append("send-bytes \(i): \(alice.text)") }
        }
        print("""
            lab send failures (\(Self.sendFailurePercent)% of home's UDP sends fail): \
            \(registerMillis.count)/\(Self.sendFailureStarts) starts registered, ms from launch: \(registerMillis); \
            \(tunnelMillis.count) tunnels, ms: \(tunnelMillis); failures: \(failures.count)
            """)
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n---\n"))")
        #expect(registerMillis.count == Self.sendFailureStarts)
        scene.tearDown()
        #expect(LabRunner.existingNamespaces().isEmpty)
    }

    @Test("lab: a peer and its tunnel ride out seconds in which every send fails, then carry on",
          .timeLimit(.minutes(4)))
    func ridesOutSendOutage() async throws {
        guard Self.canRun() else { return }
        let scene = try await LabCheckpointScene.start(["--site", "home=port-restricted", "--site", "office=port-restricted"])
        defer { scene.tearDown() }
        let bob = try scene.peer("bob", at: "office", ["--echo"])
        let alice = try scene.peer("alice", at: "home")
        let bobRegistered = try #require(await bob.waitFor("\"event\":\"registered\""), "bob: \(bob.text)")
        let bobID = try #require(Self.field("id", of: bobRegistered), "\(bobRegistered)")
        _ = try #require(await alice.waitFor("\"event\":\"registered\""), "alice: \(alice.text)")
        alice.send("connect \(bobID) udp")
        let tunnel = await alice.waitFor("\"event\":\"tunnel\"", orFailure: "\"event\":\"tunnel-failed\"", timeout: 60)
        try #require(tunnel?.contains("\"event\":\"tunnel\"") == true, "alice: \(alice.text)")

        // Every send of alice's host fails while a transfer runs; then the network is back.
        try LabSendFailures.set(LabSendFailure(target: "home", percent: 100))
        alice.send("send-bytes \(bobID) \(Self.sendFailureBytes)")
        try await Task.sleep(nanoseconds: Self.sendOutageSeconds * 1_000_000_000)
        try LabSendFailures.set(LabSendFailure(target: "home", percent: 0))
        let echoed = await alice.waitFor("\"event\":\"send-bytes\"", timeout: 60)
        #expect(echoed?.contains("\"ok\":true") == true, "the tunnel did not carry on after the outage: \(alice.text)")
        // The peer itself is still registered: a message goes through its control socket.
        alice.send("send \(bobID) still here")
        #expect(await alice.waitFor("\"event\":\"delivered\"") != nil, "alice: \(alice.text)")
        #expect(alice.process.isRunning && !alice.text.contains("\"event\":\"stopped\""), "alice: \(alice.text)")
        print("lab send outage, alice:\n\(alice.text)")
        scene.tearDown()
        #expect(LabRunner.existingNamespaces().isEmpty)
    }

    static func number(_ name: String, of line: String) -> Int? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?[name] as? Int
    }
}
