import Foundation
import Testing

/// The INDEX issue's demonstration with real processes: a `peerway supernode` (INDEX in SQLite
/// under its data directory) and two `peerway peer --json` sessions; the same data read through
/// the management API with `peerway index`; a SIGKILLed supernode restarted on the same data.
@Suite("INDEX end to end: peerway supernode, two peerway peer --json sessions, peerway index", .serialized)
struct IndexCLITests {
    /// A throwaway PostgreSQL for this test process (scripts/index-postgres, stopped when the
    /// process ends); nil, after saying why, when there is none outside CI; a failure in CI.
    static func postgres() async throws -> String? {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("scripts/index-postgres").path
        let (status, output) = try await Tools.offPool {
            try Tools.run(script, ["--watch", String(ProcessInfo.processInfo.processIdentifier)], timeout: 120)
        }
        let url = output.split(separator: "\n").map(String.init).first { $0.hasPrefix("postgres://") }
        if status == 0, let url { return url }
        if Tools.inCI {
            Issue.record("scripts/index-postgres failed (\(status)): \(output)")
            throw Tools.ToolMissing(name: "postgresql")
        }
        print("skipping the PostgreSQL run: scripts/index-postgres failed: \(output)")
        return nil
    }

    static func startSupernode(_ dir: String, port: String = "0", index: String?) async throws -> (LineProcess, String) {
        try? FileManager.default.removeItem(atPath: dir + "/address")
        let supernode = try LineProcess(Tools.peerway, ["supernode", "--data-dir", dir, "--listen", "127.0.0.1:\(port)",
                                                        "--no-stun", "--no-relay", "--admin-listen", "127.0.0.1:0"]
                                                       + (index.map { ["--index", $0] } ?? []))
        var address: String?
        for _ in 0..<300 where address == nil {
            address = try? String(contentsOfFile: dir + "/address", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            if address == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        // The management API writes its URL once it listens.
        for _ in 0..<300 where !FileManager.default.fileExists(atPath: dir + "/admin-url") {
            try await Task.sleep(for: .milliseconds(50))
        }
        return (supernode, try #require(address, "the supernode wrote no address: \(supernode.allLines)"))
    }

    /// `peerway index --data-dir DIR --json ARGS...`, parsed.
    static func index(_ dir: String, _ arguments: [String]) throws -> Any? {
        let (status, output) = try Tools.run(Tools.peerway, ["index"] + arguments + ["--data-dir", dir, "--json"])
        #expect(status == 0, "peerway index \(arguments): \(output)")
        return try? JSONSerialization.jsonObject(with: Data(output.utf8))
    }

    static func ok(_ p: LineProcess, _ event: String, _ line: String) async -> [String: Any]? {
        let before = p.objects.count
        p.send(line)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let found = p.objects.dropFirst(before).first(where: { $0["event"] as? String == event }) {
                #expect(found["ok"] as? Bool == true, "\(line): \(found)")
                return found
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("no \(event) answer to '\(line)': \(p.allLines.suffix(5))")
        return nil
    }

    /// A management API member page as name -> online.
    static func onlineByName(_ page: [String: Any]?) -> [String: Bool] {
        ((page?["items"] as? [[String: Any]]) ?? []).reduce(into: [:]) { out, m in
            if let name = m["user"] as? String { out[name] = m["online"] as? Bool }
        }
    }

    static func member(_ name: String, online: Bool) -> ([String: Any]) -> Bool {
        { $0["user"] as? String == name && $0["online"] as? Bool == online }
    }

    @Test("sign up, log in, create a network, join, online state both ways, the management API sees it, a SIGKILL restart keeps it",
          arguments: ["sqlite", "postgres"])
    func doneWhen(store: String) async throws {
        var index: String?
        if store == "postgres" {
            guard let url = try await Self.postgres() else { return }
            index = url
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-index-cli-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var (supernode, address) = try await Self.startSupernode(dir + "/sn", index: index)
        let port = String(address.split(separator: ":").last!.prefix { $0.isNumber })

        let alice = try LineProcess(Tools.peerway, ["peer", "--supernode", address, "--identity", dir + "/alice.key", "--keepalive", "5", "--json"])
        defer { alice.kill9() }
        var bob = try LineProcess(Tools.peerway, ["peer", "--supernode", address, "--identity", dir + "/bob.key", "--json"])
        defer { bob.kill9() }
        #expect(await alice.waitFor("registered") != nil, "alice: \(alice.allLines)")
        let bobPeer = try #require(await bob.waitFor("registered")?["id"] as? String, "bob: \(bob.allLines)")

        _ = await Self.ok(alice, "signup", "signup alice correct-horse city=paris")
        // A second peer logs in as alice: the same user.
        alice.send("login alice wrong-password")
        let wrong = await alice.waitFor("login")
        #expect(wrong?["ok"] as? Bool == false)
        #expect(wrong?["code"] as? String == "badCredentials")
        _ = await Self.ok(alice, "login", "login alice correct-horse")
        let created = await Self.ok(alice, "network-create", "network create lab open topic=nat")
        #expect((created?["network"] as? [String: Any])?["role"] as? String == "owner")
        _ = await Self.ok(alice, "network-watch", "network watch lab")

        _ = await Self.ok(bob, "signup", "signup bob hunter2222")
        _ = await Self.ok(bob, "network-join", "network join lab")
        #expect(await alice.waitFor("member", where: Self.member("bob", online: true)) != nil, "alice: \(alice.allLines.suffix(5))")
        let members = await Self.ok(bob, "network-watch", "network watch lab")
        let online = (members?["members"] as? [[String: Any]])?.reduce(into: [String: Bool]()) { $0[$1["name"] as! String] = $1["online"] as? Bool }
        #expect(online == ["alice": true, "bob": true])
        let found = await Self.ok(bob, "users-search", "users search city=paris")
        #expect((found?["users"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["alice"])

        // The management API shows the same users, network and members, with bob online.
        let users = try Self.index(dir + "/sn", ["users", "list"])
        #expect(String(describing: users).contains("alice") && String(describing: users).contains("bob"))
        let lab = try Self.index(dir + "/sn", ["members", "list", "lab"]) as? [String: Any]
        #expect(Self.onlineByName(lab) == ["alice": true, "bob": true], "\(String(describing: lab))")
        let bobRecord = try Self.index(dir + "/sn", ["users", "show", "bob"]) as? [String: Any]
        let sessions = bobRecord?["sessions"] as? [[String: Any]]
        #expect(sessions?.first?["peer"] as? String == bobPeer)
        #expect(sessions?.first?["online"] as? Bool == true)

        // Bob quits: alice sees him go.
        bob.send("quit")
        #expect(await bob.waitForExit() == 0)
        #expect(await alice.waitFor("member", where: Self.member("bob", online: false)) != nil, "alice: \(alice.allLines.suffix(5))")
        let after = try Self.index(dir + "/sn", ["members", "list", "lab"]) as? [String: Any]
        #expect(Self.onlineByName(after) == ["alice": true, "bob": false], "\(String(describing: after))")

        // The supernode is killed and restarted on its data: everything is still there; alice
        // re-registers and renews her watch; bob comes back still logged in, and alice sees him.
        supernode.kill9()
        (supernode, _) = try await Self.startSupernode(dir + "/sn", port: port, index: index)
        defer { supernode.kill9() }
        #expect(await alice.waitFor("reregistered", timeout: 40) != nil, "alice: \(alice.allLines.suffix(5))")
        let onlineBefore = alice.objects.filter { $0["event"] as? String == "member" && Self.member("bob", online: true)($0) }.count
        bob = try LineProcess(Tools.peerway, ["peer", "--supernode", address, "--identity", dir + "/bob.key", "--json"])
        #expect(await bob.waitFor("registered") != nil)
        let whoami = await Self.ok(bob, "whoami", "whoami")
        #expect((whoami?["user"] as? [String: Any])?["name"] as? String == "bob")
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, alice.objects.filter({ $0["event"] as? String == "member" && Self.member("bob", online: true)($0) }).count == onlineBefore {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(alice.objects.filter { $0["event"] as? String == "member" && Self.member("bob", online: true)($0) }.count > onlineBefore,
                "alice did not see bob come back: \(alice.allLines.suffix(5))")
        let mine = await Self.ok(bob, "networks-mine", "networks mine")
        #expect((mine?["networks"] as? [[String: Any]])?.first?["name"] as? String == "lab")
        bob.send("quit")
        _ = await bob.waitForExit()
        alice.closeInput()
        #expect(await alice.waitForExit() == 0)
    }
}
