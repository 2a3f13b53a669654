import Foundation
import Testing
@testable import PeerwayIndex

/// Killing the writer with SIGKILL in the middle of a stream of writes loses no acknowledged one.
@Suite("IndexStore durability")
struct IndexDurabilityTests {
    /// The `peerway` binary beside the test bundle (swift build --build-tests builds both), or
    /// `PEERWAY_BINARY`.
    static func peerwayBinary() throws -> String {
        if let path = ProcessInfo.processInfo.environment["PEERWAY_BINARY"], !path.isEmpty { return path }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("peerway").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        throw PostgresUnavailable(why: "no peerway binary near \(CommandLine.arguments[0]); build it or set PEERWAY_BINARY")
    }

    @Test(arguments: StoreKind.allCases)
    func acknowledgedWritesSurviveSIGKILL(kind: StoreKind) async throws {
        guard let handle = try await freshHandle(kind) else { return }
        // Migrate first, so the victim's start is quick.
        await (try await handle.open()).close()

        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.peerwayBinary())
        process.arguments = ["index-writer", kind == .sqlite ? "--sqlite" : "--postgres", handle.location, "--count", "100000"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()

        // Read acknowledgements until enough have come (bounded by time), then kill mid-stream.
        var acknowledged: [String] = []
        var buffer = Data()
        let reader = out.fileHandleForReading
        let deadline = Date().addingTimeInterval(60)
        let target = 200
        while acknowledged.count < target && Date() < deadline {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            buffer.append(chunk)
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...newline)
                if line.hasPrefix("ok ") { acknowledged.append(String(line.dropFirst(3))) }
            }
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        // Lines already in the pipe were acknowledged before the kill too.
        buffer.append(reader.readDataToEndOfFile())
        for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") where line.hasPrefix("ok ") {
            acknowledged.append(String(line.dropFirst(3)))
        }
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(acknowledged.count >= target, "the writer acknowledged only \(acknowledged.count) writes")

        let store = try await handle.open()
        var missing: [String] = []
        for name in acknowledged where try await store.user(named: name) == nil { missing.append(name) }
        #expect(missing.isEmpty, "acknowledged but lost: \(missing.prefix(10))")
        // And the store is consistent: ids continue, names stay unique.
        let next = try await store.createUser(name: "after-crash", password: "password1", metadata: [:])
        #expect(try await store.user(id: next.id)?.name == "after-crash")
        await store.close()
    }
}
