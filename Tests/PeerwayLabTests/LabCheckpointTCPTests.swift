import Foundation
import PeerwayLab
import Testing

/// CHECKPOINT's control channel over TCP through a real `udp-blocked` site (only TCP to ports 80
/// and 443 leaves it): the supernode also listens on TCP 443, the blocked peer's UDP hellos go
/// nowhere, it falls back to TCP, registers, is found by search and exchanges messages with a
/// peer behind a port-restricted NAT. In the same serialized suite as the other lab tests: labs
/// are machine-wide.
extension LabVerifyTests {
    /// The supernode's TCP port in this test: one the `udp-blocked` preset lets out.
    static let labCheckpointTCPPort = 443

    @Test("lab: a peer behind udp-blocked registers over TCP 443, is found by search and exchanges messages with a peer behind a NAT",
          .timeLimit(.minutes(3)))
    func checkpointOverTCPFromUDPBlocked() async throws {
        guard Self.canRun() else { return }
        let scene = try await LabCheckpointScene.start(
            ["--site", "blk=udp-blocked", "--site", "home=port-restricted"],
            supernode: ["--no-relay", "--tcp-listen", "\(LabTopology.publicAddresses[0]):\(Self.labCheckpointTCPPort)"])
        defer { scene.tearDown() }
        #expect(scene.address.hasSuffix("?tcp=\(Self.labCheckpointTCPPort)"), "\(scene.address)")

        let blocked = try scene.peer("blk", at: "blk", ["--meta", "name=blk"])
        let alice = try scene.peer("alice", at: "home", ["--meta", "name=alice"])
        let registered = try #require(await blocked.waitFor("\"event\":\"registered\""), "blk: \(blocked.text)")
        let aliceRegistered = try #require(await alice.waitFor("\"event\":\"registered\""), "alice: \(alice.text)")
        // Seen from the public side at its NAT's address (the TCP connection's).
        #expect(registered.contains("\"observed\":\"203.0.113."), "\(registered)")
        let blockedID = try #require(Self.field("id", of: registered), "\(registered)")
        let aliceID = try #require(Self.field("id", of: aliceRegistered), "\(aliceRegistered)")

        alice.send("search name=blk")
        let found = await alice.waitFor("\"event\":\"search\"")
        #expect(found?.contains(blockedID) == true, "alice: \(alice.text)")
        alice.send("send \(blockedID) hello over tcp")
        #expect(await alice.waitFor("\"event\":\"delivered\"") != nil, "alice: \(alice.text)")
        #expect(await blocked.waitFor("hello over tcp") != nil, "blk: \(blocked.text)")
        blocked.send("send \(aliceID) hello from behind udp-blocked")
        #expect(await blocked.waitFor("\"event\":\"delivered\"") != nil, "blk: \(blocked.text)")
        #expect(await alice.waitFor("hello from behind udp-blocked") != nil, "alice: \(alice.text)")
        print("lab tcp, blk:\n\(blocked.text)lab tcp, alice:\n\(alice.text)")
        scene.tearDown()
        #expect(LabRunner.existingNamespaces().isEmpty)
    }

    static func field(_ name: String, of line: String) -> String? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?[name] as? String
    }
}
