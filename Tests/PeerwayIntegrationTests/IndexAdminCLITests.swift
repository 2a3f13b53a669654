import Foundation
import Testing

/// The INDEX management API end to end, with real processes: `peerway supernode` on loopback
/// (ports 0) creates its admin token (mode 0600) and writes its API's URL; `peerway index` creates
/// and lists users through it; after a SIGKILL and a restart on the same data directory the user
/// is still there and the token is the same.
@Suite("INDEX management API end to end: peerway supernode and peerway index", .serialized)
struct IndexAdminCLITests {
    /// Starts a supernode on `dataDirectory` and waits for its admin URL.
    func startSupernode(_ dataDirectory: String) async throws -> (LineProcess, String) {
        try? FileManager.default.removeItem(atPath: dataDirectory + "/admin-url")
        let supernode = try LineProcess(Tools.peerway, ["supernode", "--data-dir", dataDirectory, "--listen", "127.0.0.1:0",
                                                        "--stun-listen", "127.0.0.1:0"])
        var url: String?
        for _ in 0..<400 where url == nil {
            url = try? String(contentsOfFile: dataDirectory + "/admin-url", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            if url?.isEmpty ?? true { url = nil; try await Task.sleep(for: .milliseconds(50)) }
        }
        guard let url else {
            supernode.kill9()
            throw SupernodeDidNotStart(lines: supernode.allLines)
        }
        return (supernode, url)
    }

    struct SupernodeDidNotStart: Error, CustomStringConvertible {
        let lines: [String]
        var description: String { "the supernode wrote no admin-url: \(lines.joined(separator: "\n"))" }
    }

    func index(_ dataDirectory: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try Tools.run(Tools.peerway, ["index"] + arguments + ["--data-dir", dataDirectory], timeout: 30)
    }

    @Test("admin token 0600, users create/list through the API, kept across SIGKILL and restart", .timeLimit(.minutes(2)))
    func createListRestart() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-index-cli-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = dir + "/sn"
        var (supernode, url) = try await startSupernode(data)
        defer { supernode.kill9() }
        #expect(url.hasPrefix("http://127.0.0.1:"))
        #expect(supernode.allLines.contains { $0.contains("INDEX management API on \(url)") }, "\(supernode.allLines)")

        let tokenPath = data + "/admin-token"
        let mode = try FileManager.default.attributesOfItem(atPath: tokenPath)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let token = try String(contentsOfFile: tokenPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.utf8.count >= 32)

        let created = try index(data, ["users", "create", "alice", "--password", "password-alice", "--meta", "team=red"])
        #expect(created.status == 0, "\(created.output)")
        #expect(created.output.contains("created user alice"))
        let table = try index(data, ["users", "list"])
        #expect(table.status == 0, "\(table.output)")
        #expect(table.output.contains("alice") && table.output.contains("team=red"))
        let json = try index(data, ["users", "search", "team=red", "--json"])
        #expect(json.status == 0, "\(json.output)")
        let page = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        #expect((page?["items"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["alice"])

        // Refusals: exit status 1 with the API's code and message.
        let taken = try index(data, ["users", "create", "alice", "--password", "password-alice"])
        #expect(taken.status == 1)
        #expect(taken.output.contains("409 username_taken"), "\(taken.output)")
        let missing = try index(data, ["users", "show", "nobody"])
        #expect(missing.status == 1)
        #expect(missing.output.contains("no_such_user"))
        let wrongToken = try index(data, ["users", "list", "--token", "not-the-admin-token"])
        #expect(wrongToken.status == 1)
        #expect(wrongToken.output.contains("401 unauthorized"))

        // Networks and members through the CLI.
        #expect(try index(data, ["users", "create", "bob", "--password", "password-bob"]).status == 0)
        #expect(try index(data, ["networks", "create", "lan", "--owner", "alice", "--access", "invite-only"]).status == 0)
        let added = try index(data, ["members", "add", "lan", "bob", "--role", "admin"])
        #expect(added.status == 0, "\(added.output)")
        let members = try index(data, ["members", "list", "lan"])
        #expect(members.output.contains("bob") && members.output.contains("admin"), "\(members.output)")

        // SIGKILL, restart on the same data directory: everything is still there, the token too.
        supernode.kill9()
        (supernode, url) = try await startSupernode(data)
        let again = try index(data, ["users", "list", "--json"])
        #expect(again.status == 0, "\(again.output)")
        let names = ((try JSONSerialization.jsonObject(with: Data(again.output.utf8)) as? [String: Any])?["items"] as? [[String: Any]])?
            .compactMap { $0["name"] as? String }
        #expect(names == ["alice", "bob"])
        #expect(try String(contentsOfFile: tokenPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) == token)
        #expect(try index(data, ["members", "list", "lan"]).output.contains("bob"))

        // SIGTERM: a graceful stop.
        supernode.process.terminate()
        #expect(await supernode.waitForExit() == 0)
    }
}
