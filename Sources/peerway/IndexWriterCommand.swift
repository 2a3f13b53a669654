import ArgumentParser
import Foundation
import PeerwayIndex

/// `peerway index-writer` (hidden): the INDEX's durability test's victim. Opens a store, signs up
/// users `writer0`, `writer1`, ... one after another and prints `ok NAME` once each write has returned (been
/// acknowledged), until `--count` or until killed. The test SIGKILLs it mid-stream, reopens the
/// store, and requires every acknowledged user to be there.
struct IndexWriterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index-writer",
        abstract: "Write INDEX users in a loop, printing each acknowledged one (a test helper).",
        shouldDisplay: false
    )

    @Option(name: .long, help: "SQLite store: its directory.") var sqlite: String?
    @Option(name: .long, help: "PostgreSQL store: postgres://user@host:port/db.") var postgres: String?
    @Option(name: .long, help: "Most users written (bounded loop).") var count = 100_000

    func validate() throws {
        guard (sqlite == nil) != (postgres == nil) else { throw ValidationError("give one of --sqlite DIR or --postgres URL") }
        guard (1...10_000_000).contains(count) else { throw ValidationError("--count must be 1-10000000") }
    }

    func run() async throws {
        let store: any IndexStore
        // The cheap KDF cost: the durability of the write, not scrypt, is under test.
        if let sqlite {
            store = try SQLiteIndexStore(directory: sqlite, hasher: .testing)
        } else {
            store = try await PostgresIndexStore(url: postgres!, hasher: .testing, maximumConnections: 2)
        }
        print("ready")
        fflush(nil)
        for i in 0..<count {
            let user = try await store.createUser(name: "writer\(i)", password: "password\(i)", metadata: ["seq": "\(i)"])
            print("ok \(user.name)")
            fflush(nil)
        }
        await store.close()
    }
}
