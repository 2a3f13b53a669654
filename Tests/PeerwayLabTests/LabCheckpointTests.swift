import Foundation
import PeerwayLab
import Testing

/// CHECKPOINT through real NATs with loss: a supernode on the lab's public host, one peer behind a
/// port-restricted NAT and one behind a symmetric NAT, 30% loss on every WAN link each way. They
/// register, find each other by search and exchange an acknowledged message. In the same
/// serialized suite as the other lab tests: labs are machine-wide.
extension LabVerifyTests {
    /// Loss on each site's WAN link, percent.
    static let checkpointLossPercent = 30
    /// Where the lab's supernode listens (the public host's first address).
    static let labCheckpoint = "\(LabTopology.publicAddresses[0]):7400"

    @Test("lab: two peers behind port-restricted and symmetric NATs with 30% loss register, search and message",
          .timeLimit(.minutes(3)))
    func checkpointThroughNATs() async throws {
        guard Self.canRun() else { return }
        let scene = try await LabCheckpointScene.start(["--site", "home=port-restricted", "--site", "office=symmetric",
                                                        "--loss", String(Self.checkpointLossPercent)])
        defer { scene.tearDown() }
        let bob = try scene.peer("bob", at: "office", ["--meta", "name=bob"])
        let alice = try scene.peer("alice", at: "home", ["--meta", "name=alice"])
        let bobRegistered = try #require(await bob.waitFor("\"event\":\"registered\""), "bob: \(bob.text)")
        _ = try #require(await alice.waitFor("\"event\":\"registered\""), "alice: \(alice.text)")
        // Bob is seen from the public side at his NAT's address, not his LAN address.
        #expect(bobRegistered.contains("\"observed\":\"203.0.113."), "\(bobRegistered)")
        let fields = try JSONSerialization.jsonObject(with: Data(bobRegistered.utf8)) as? [String: Any]
        let bobID = try #require(fields?["id"] as? String, "\(bobRegistered)")

        alice.send("search name=bob")
        let found = await alice.waitFor("\"event\":\"search\"")
        #expect(found?.contains(bobID) == true, "alice: \(alice.text)")
        alice.send("send \(bobID) hello through two NATs")
        // At 51% loss per direction the delivered answer itself can miss the sender's 15 s
        // timeout (about 3% of runs: bob has the message, alice hears "timed out"); an application
        // sends again, and so does this test, once.
        var delivered = await alice.waitFor("\"event\":\"delivered\"", orFailure: "\"event\":\"failed\"")
        if delivered == nil || delivered?.contains("\"failed\"") == true {
            alice.send("send \(bobID) hello again")
            delivered = await alice.waitFor("\"event\":\"delivered\"")
        }
        #expect(delivered?.contains("\"delivered\"") == true, "alice: \(alice.text)")
        #expect(await bob.waitFor("hello through two NATs") != nil, "bob: \(bob.text)")
        print("lab checkpoint, alice:\n\(alice.text)lab checkpoint, bob:\n\(bob.text)")
        scene.tearDown()
        #expect(LabRunner.existingNamespaces().isEmpty)
    }
}

extension LabVerifyTests {
    /// The NAT forgets an idle UDP mapping after this many seconds in the rebinding test.
    static let rebindingUDPTimeout = 3
    /// Bob's keepalive interval there: longer than the NAT's timeout, so every keepalive finds
    /// its mapping gone and leaves through a new one.
    static let rebindingKeepalive = 6

    @Test("lab: a peer whose NAT mapping expires between keepalives re-registers at its new address and still gets messages",
          .timeLimit(.minutes(3)))
    func checkpointNATRebinding() async throws {
        guard Self.canRun() else { return }
        let scene = try await LabCheckpointScene.start(["--site", "home=port-restricted", "--site", "office=symmetric",
                                                        "--udp-timeout", String(Self.rebindingUDPTimeout)])
        defer { scene.tearDown() }
        let bob = try scene.peer("bob", at: "office", ["--keepalive", String(Self.rebindingKeepalive)])
        let alice = try scene.peer("alice", at: "home")
        let first = try #require(await bob.waitFor("\"event\":\"registered\""), "bob: \(bob.text)")
        _ = try #require(await alice.waitFor("\"event\":\"registered\""), "alice: \(alice.text)")
        let fields = try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any]
        let bobID = try #require(fields?["id"] as? String)
        let before = try #require(fields?["observed"] as? String)
        // Bob's next keepalive leaves through a new mapping: the checkpoint sees a new address,
        // tells him in the keepalive answer, and he registers again from there.
        let again = try #require(await bob.waitFor("\"event\":\"reregistered\"", timeout: 40), "bob: \(bob.text)")
        let after = (try JSONSerialization.jsonObject(with: Data(again.utf8)) as? [String: Any])?["observed"] as? String
        #expect(after != nil && after != before, "\(before) -> \(String(describing: after))")
        alice.send("send \(bobID) found you again")
        #expect(await alice.waitFor("\"event\":\"delivered\"") != nil, "alice: \(alice.text)")
        #expect(await bob.waitFor("found you again") != nil, "bob: \(bob.text)")
        print("lab rebinding, bob:\n\(bob.text)")
        scene.tearDown()
        #expect(LabRunner.existingNamespaces().isEmpty)
    }
}

/// A lab with a supernode on its public host, and the `peerway peer --json --stay` processes a
/// test starts behind its sites. `tearDown` stops them all and removes the lab (idempotent).
final class LabCheckpointScene: @unchecked Sendable {
    let directory: String
    let supernode: LabProcess
    /// The supernode's `peerway://` address.
    let address: String
    private var processes: [LabProcess] = []
    private var down = false

    private init(directory: String, supernode: LabProcess, address: String) {
        self.directory = directory
        self.supernode = supernode
        self.address = address
        processes = [supernode]
    }

    /// `peerway lab up ARGS`, then a supernode (no STUN pair; `supernode`: more of its options) on
    /// the public host.
    /// `stun`: the supernode of `peerway lab matrix` instead (STUN pair, relay, shared TCP port),
    /// so peers find direct paths.
    static func start(_ labArguments: [String], supernode extra: [String] = [], stun: Bool = false) async throws -> LabCheckpointScene {
        let up = try LabVerifyTests.peerway(["lab", "up"] + labArguments)
        guard up.status == 0 else {
            _ = try? LabVerifyTests.peerway(["lab", "down"])
            throw LabSceneError(text: "lab up failed:\n\(up.output)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pw-lab-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let peerway = LabVerifyTests.peerway
        let arguments = stun
            ? LabMatrix.supernodeArguments(dataDirectory: directory + "/sn").flatMap { [$0.flag, $0.value] }
            : ["--no-stun", "--listen", LabVerifyTests.labCheckpoint, "--data-dir", directory + "/sn"]
        let supernode = try LabProcess(peerway, ["lab", "exec", "public", "--", peerway, "supernode"] + arguments + extra,
                                       output: directory + "/sn.log")
        guard let address = await LabProcess.waitForFile(directory + "/sn/address") else {
            let log = supernode.text
            supernode.stop()
            _ = try? LabVerifyTests.peerway(["lab", "down"])
            throw LabSceneError(text: "the supernode wrote no address: \(log)")
        }
        return LabCheckpointScene(directory: directory, supernode: supernode, address: address)
    }

    /// Starts `peerway peer` named `name` behind `site` (its identity and log in the scene's directory).
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

struct LabSceneError: Error, CustomStringConvertible {
    let text: String
    var description: String { text }
}

/// A lab process whose output goes to a file that the test reads as it grows.
final class LabProcess: @unchecked Sendable {
    let process = Process()
    private let input = Pipe()
    let outputPath: String

    init(_ path: String, _ arguments: [String], output: String) throws {
        outputPath = output
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardInput = input
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var text: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    func send(_ line: String) { input.fileHandleForWriting.write(Data((line + "\n").utf8)) }

    /// The first output line containing `needle`, waiting up to `timeout` seconds.
    func waitFor(_ needle: String, orFailure failure: String? = nil, timeout: TimeInterval = 30) async -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = text.split(separator: "\n").first(where: { $0.contains(needle) || failure.map($0.contains) == true }) {
                return String(line)
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    static func waitForFile(_ path: String, timeout: TimeInterval = 20) async -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let s = try? String(contentsOfFile: path, encoding: .utf8), !s.isEmpty {
                return s.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
