import Foundation
import Testing

/// The demonstration, with real processes: two `peerway peer --json` sessions against
/// one `peerway supernode` on loopback find each other by search, exchange acknowledged
/// messages, negotiate a connection (refused, then accepted), and see each other go offline.
@Suite("CHECKPOINT end to end: peerway supernode and two peerway peer --json sessions", .serialized)
struct CheckpointCLITests {
    @Test("search, messages, negotiation and offline status between two CLI peers")
    func twoPeers() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-cli-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let supernode = try LineProcess(Tools.peerway, ["supernode", "--data-dir", dir + "/sn", "--listen", "127.0.0.1:0",
                                                        "--stun-listen", "127.0.0.1:0"])
        defer { supernode.kill9() }
        var address: String?
        for _ in 0..<200 where address == nil {
            address = try? String(contentsOfFile: dir + "/sn/address", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            if address == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let addr = try #require(address, "the supernode wrote no address: \(supernode.allLines)")
        #expect(addr.hasPrefix("peerway://"))

        let alice = try LineProcess(Tools.peerway, ["peer", "--supernode", addr, "--identity", dir + "/alice.key",
                                                    "--meta", "app=demo", "--meta", "name=alice", "--json"])
        defer { alice.kill9() }
        let bob = try LineProcess(Tools.peerway, ["peer", "--supernode", addr, "--identity", dir + "/bob.key",
                                                  "--meta", "app=demo", "--meta", "name=bob", "--keepalive", "5", "--json"])
        defer { bob.kill9() }
        let aliceID = try #require(await alice.waitFor("registered")?["id"] as? String, "alice: \(alice.allLines)")
        let bobID = try #require(await bob.waitFor("registered")?["id"] as? String, "bob: \(bob.allLines)")
        // The identity files are private.
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/alice.key")[.posixPermissions] as? Int
        #expect(mode == 0o600)

        // Find each other by search.
        alice.send("search app=demo and name=bob")
        let found = try #require(await alice.waitFor("search"), "alice: \(alice.allLines)")
        let ids = (found["results"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
        #expect(ids == [bobID])

        // Watch, then acknowledged messages both ways.
        alice.send("watch \(bobID)")
        #expect(await alice.waitFor("status", where: { $0["peer"] as? String == bobID && $0["online"] as? Bool == true }) != nil)
        alice.send("send \(bobID) hello bob")
        #expect(await alice.waitFor("delivered", where: { $0["to"] as? String == bobID }) != nil)
        let got = await bob.waitFor("message")
        #expect(got?["from"] as? String == aliceID)
        #expect(got?["text"] as? String == "hello bob")
        bob.send("send \(aliceID) hi alice")
        #expect(await bob.waitFor("delivered") != nil)
        #expect(await alice.waitFor("message", where: { $0["text"] as? String == "hi alice" }) != nil)
        // To a peer that is not online: failed, offline.
        alice.send("send aaaaaaaaaaaaaaaaaaaaaaaaaa anyone?")
        let failed = await alice.waitFor("failed")
        #expect(failed?["reason"] as? String == "offline")

        // Negotiation: refused with a reason, then accepted.
        bob.send("connect \(aliceID) udp let's play")
        let request = await alice.waitFor("connect-request")
        #expect(request?["from"] as? String == bobID)
        #expect(request?["note"] as? String == "let's play")
        alice.send("refuse busy right now")
        let refused = await bob.waitFor("connect-answer")
        #expect(refused?["accepted"] as? Bool == false)
        #expect(refused?["reason"] as? String == "busy right now")
        bob.send("connect \(aliceID) tcp")
        #expect(await alice.waitFor("connect-request", where: { $0["transport"] as? String == "tcp" }) != nil)
        alice.send("accept")
        let accepted = await bob.waitFor("connect-answer", where: { $0["accepted"] as? Bool == true })
        #expect(accepted?["transport"] as? String == "tcp")

        // Bob quits: alice sees him go offline.
        bob.send("quit")
        #expect(await bob.waitForExit() == 0)
        let offline = await alice.waitFor("status", where: { $0["peer"] as? String == bobID && $0["online"] as? Bool == false })
        #expect(offline?["change"] as? String == "offline")
        alice.closeInput()
        #expect(await alice.waitForExit() == 0)
    }
}
