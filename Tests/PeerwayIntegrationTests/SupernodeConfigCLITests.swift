import Foundation
import Testing

/// `peerway supernode --config FILE` with the real executable: the file's settings apply, a flag
/// overrides its key, and a bad file stops the command with a message naming the key.
@Suite("peerway supernode --config", .serialized)
struct SupernodeConfigCLITests {
    @Test("the file's settings apply and flags override them", .timeLimit(.minutes(1)))
    func fileAndFlags() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/supernode.toml"
        try """
            # loopback, free ports, CHECKPOINT alone
            listen = "127.0.0.1:0"
            data-dir = "\(dir)/from-file"
            no-stun = true
            no-relay = true
            no-index = true
            keepalive = 20
            """.write(toFile: config, atomically: true, encoding: .utf8)
        // --data-dir overrides the file's data-dir; the rest comes from the file.
        let supernode = try LineProcess(Tools.peerway, ["supernode", "--config", config, "--data-dir", dir + "/from-flag"])
        defer { supernode.kill9() }
        var address: String?
        for _ in 0..<200 where address == nil {
            address = try? String(contentsOfFile: dir + "/from-flag/address", encoding: .utf8)
            if address == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(address?.hasPrefix("peerway://") == true, "\(supernode.allLines.joined(separator: "\n"))")
        #expect(!FileManager.default.fileExists(atPath: dir + "/from-file"), "the flag's data-dir must win over the file's")
        let lines = supernode.allLines
        #expect(!lines.contains { $0.contains("STUN pair on") }, "no-stun = true must apply: \(lines)")
        #expect(!lines.contains { $0.contains("RELAY on") }, "no-relay = true must apply: \(lines)")
        supernode.process.terminate()
        #expect(await supernode.waitForExit() == 0)
    }

    @Test("an unknown key or a wrong type stops the command, naming the key", .timeLimit(.minutes(1)))
    func badFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/bad.toml"
        try "lisen = \"127.0.0.1:0\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let unknown = try Tools.run(Tools.peerway, ["supernode", "--config", config], timeout: 20)
        #expect(unknown.status != 0)
        #expect(unknown.output.contains("unknown key 'lisen'") && unknown.output.contains("did you mean 'listen'"), "\(unknown.output)")
        try "keepalive = \"25\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let wrongType = try Tools.run(Tools.peerway, ["supernode", "--config", config], timeout: 20)
        #expect(wrongType.status != 0)
        #expect(wrongType.output.contains("key 'keepalive' must be an integer"), "\(wrongType.output)")
    }
}
