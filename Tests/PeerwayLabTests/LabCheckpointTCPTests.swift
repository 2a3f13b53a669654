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
        let scene = try await LabTCPCheckpointScene.start(
            lab: ["--site", "blk=udp-blocked", "--site", "home=port-restricted"],
            supernode: ["--tcp-listen", "\(LabTopology.publicAddresses[0]):\(Self.labCheckpointTCPPort)"])
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

/// `peerway lab up`, a supernode (CHECKPOINT only, with extra options) on the public host, and
/// `peerway peer --json --stay` processes behind the sites; `tearDown` removes it all (idempotent).
final class LabTCPCheckpointScene: @unchecked Sendable {
    let directory: String
    let address: String
    private var processes: [LabProcess]
    private var down = false

    private init(directory: String, address: String, supernode: LabProcess) {
        self.directory = directory
        self.address = address
        processes = [supernode]
    }

    static func start(lab: [String], supernode extra: [String]) async throws -> LabTCPCheckpointScene {
        let up = try LabVerifyTests.peerway(["lab", "up"] + lab)
        guard up.status == 0 else {
            _ = try? LabVerifyTests.peerway(["lab", "down"])
            throw LabSceneError(text: "lab up failed:\n\(up.output)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pw-lab-tcp-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let peerway = LabVerifyTests.peerway
        let supernode = try LabProcess(peerway, ["lab", "exec", "public", "--", peerway, "supernode", "--no-stun", "--no-relay",
                                                 "--listen", LabVerifyTests.labCheckpoint, "--data-dir", directory + "/sn"] + extra,
                                       output: directory + "/sn.log")
        guard let address = await LabProcess.waitForFile(directory + "/sn/address") else {
            let log = supernode.text
            supernode.stop()
            _ = try? LabVerifyTests.peerway(["lab", "down"])
            throw LabSceneError(text: "the supernode wrote no address: \(log)")
        }
        return LabTCPCheckpointScene(directory: directory, address: address, supernode: supernode)
    }

    func peer(_ name: String, at site: String, _ extra: [String] = []) throws -> LabProcess {
        let peerway = LabVerifyTests.peerway
        let p = try LabProcess(peerway, ["lab", "exec", site, "--", peerway, "peer", "--supernode", address,
                                         "--identity", directory + "/\(name).key", "--json", "--stay"] + extra,
                               output: directory + "/\(name).log")
        processes.append(p)
        return p
    }

    func tearDown() {
        guard !down else { return }
        down = true
        processes.forEach { $0.stop() }
        _ = try? LabVerifyTests.peerway(["lab", "down"])
        try? FileManager.default.removeItem(atPath: directory)
    }
}
