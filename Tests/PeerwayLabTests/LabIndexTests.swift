import Foundation
import PeerwayLab
import Testing

/// The INDEX through real NATs with loss: the supernode (CHECKPOINT and its INDEX in SQLite) on the
/// lab's public host; alice behind a port-restricted NAT and bob behind a symmetric one, 20% loss
/// on each WAN link each way, so about one request in five is retransmitted. Requests are answered
/// once (a retransmitted sign-up never comes back "taken"), and member status pushes arrive.
extension LabVerifyTests {
    /// Loss on each site's WAN link, percent: a request and its answer both get through with
    /// probability 0.64, so nine sends fail together with probability 1e-4.
    static let indexLossPercent = 20

    /// Sends `line` and waits for the answer event `event`; records an issue unless it says ok.
    static func indexOK(_ p: LabProcess, _ event: String, _ line: String) async -> String? {
        let before = p.text.split(separator: "\n").count
        p.send(line)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let lines = p.text.split(separator: "\n").dropFirst(before)
            if let answer = lines.first(where: { $0.contains("\"event\":\"\(event)\"") }) {
                #expect(answer.contains("\"ok\":true"), "\(line): \(answer)")
                return String(answer)
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("no \(event) answer to '\(line)': \(p.text.suffix(600))")
        return nil
    }

    @Test("lab: INDEX through port-restricted and symmetric NATs with 20% loss: sign up, network, join, member online and offline",
          .timeLimit(.minutes(3)))
    func indexThroughNATs() async throws {
        guard Self.canRun() else { return }
        let scene = try await LabCheckpointScene.start(["--site", "home=port-restricted", "--site", "office=symmetric",
                                                        "--loss", String(Self.indexLossPercent)])
        defer { scene.tearDown() }
        let alice = try scene.peer("alice", at: "home")
        let bob = try scene.peer("bob", at: "office")
        _ = try #require(await alice.waitFor("\"event\":\"registered\""), "alice: \(alice.text)")
        _ = try #require(await bob.waitFor("\"event\":\"registered\""), "bob: \(bob.text)")

        _ = await Self.indexOK(alice, "signup", "signup alice correct-horse city=paris")
        _ = await Self.indexOK(alice, "network-create", "network create lab invite-only topic=nat")
        _ = await Self.indexOK(alice, "network-watch", "network watch lab")
        _ = await Self.indexOK(bob, "signup", "signup bob hunter2222 city=oslo")
        _ = await Self.indexOK(alice, "network-invite", "network invite lab bob")
        _ = await Self.indexOK(bob, "network-join", "network join lab")
        #expect(await alice.waitFor("\"event\":\"member\"") != nil, "alice: \(alice.text)")
        let member = await alice.waitFor("\"event\":\"member\"")
        #expect(member?.contains("\"user\":\"bob\"") == true && member?.contains("\"online\":true") == true, "\(member ?? "")")
        let found = await Self.indexOK(bob, "users-search", "users search city=paris")
        #expect(found?.contains("\"name\":\"alice\"") == true, "\(found ?? "")")
        let members = await Self.indexOK(bob, "network-members", "network members lab")
        #expect(members?.contains("\"name\":\"alice\"") == true && members?.contains("\"online\":true") == true, "\(members ?? "")")
        // Bob logs out: alice sees him go.
        _ = await Self.indexOK(bob, "logout", "logout")
        let gone = await alice.waitFor("\"online\":false")
        #expect(gone?.contains("\"user\":\"bob\"") == true, "alice: \(alice.text)")
        print("lab index, alice:\n\(alice.text)lab index, bob:\n\(bob.text)")
        scene.tearDown()
        #expect(LabRunner.existingNamespaces().isEmpty)
    }
}
