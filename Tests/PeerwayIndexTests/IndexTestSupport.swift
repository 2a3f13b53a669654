import Foundation
import Logging
import PeerwayCheckpoint
import Testing
@testable import PeerwayIndex

/// The stores the conformance suite runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }
}

/// Whether this is CI, where a missing PostgreSQL fails the suite instead of skipping its half.
let isCI = ProcessInfo.processInfo.environment["CI"] == "true"

/// The repository's root (this file is Tests/PeerwayIndexTests/IndexTestSupport.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

struct PostgresUnavailable: Error, CustomStringConvertible {
    let why: String
    var description: String { "PostgreSQL for the INDEX tests is unavailable: \(why)" }
}

/// The PostgreSQL the tests use: `PEERWAY_TEST_POSTGRES_URL`, or one `scripts/index-postgres`
/// starts for this process (stopped when the process ends). Started once.
actor TestPostgres {
    static let shared = TestPostgres()
    private var result: Result<String, PostgresUnavailable>?

    func url() async -> Result<String, PostgresUnavailable> {
        if let result { return result }
        let found: Result<String, PostgresUnavailable>
        if let url = ProcessInfo.processInfo.environment["PEERWAY_TEST_POSTGRES_URL"], !url.isEmpty {
            found = .success(url)
        } else {
            // On a thread of its own: initdb and the start take seconds, and a cooperative thread
            // held that long starves every other suite (their PostgreSQL pools among them).
            found = await withCheckedContinuation { continuation in
                Thread.detachNewThread { continuation.resume(returning: Self.start()) }
            }
        }
        result = found
        return found
    }

    private static func start() -> Result<String, PostgresUnavailable> {
        let script = repositoryRoot.appendingPathComponent("scripts/index-postgres").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: script)
        process.arguments = ["--watch", String(ProcessInfo.processInfo.processIdentifier)]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch { return .failure(PostgresUnavailable(why: "cannot run \(script): \(error)")) }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let url = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationStatus == 0, url.hasPrefix("postgres://") else {
            return .failure(PostgresUnavailable(why: "scripts/index-postgres exited \(process.terminationStatus): \(String(decoding: errors, as: UTF8.self))"))
        }
        return .success(url)
    }

    /// A new empty database on the test server; its URL.
    func freshDatabase() async throws -> String {
        let admin = try await url().get()
        let name = "peerway_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let driver = PostgresDriver(configuration: try PostgresIndexStore.configuration(admin), threads: 1, logger: Logger(label: "test"))
        // The name is generated here (hex only): identifiers cannot be bound as parameters.
        do {
            _ = try await driver.withoutTransaction { db in try db.execute("CREATE DATABASE \(name)", []) }
        } catch {
            await driver.close()
            throw error
        }
        await driver.close()
        guard var components = URLComponents(string: admin) else { throw PostgresUnavailable(why: "bad URL \(admin)") }
        components.path = "/" + name
        return components.string!
    }
}

/// Where a store's data lives, to open it again (a restart).
struct StoreHandle: Sendable {
    let kind: StoreKind
    let location: String

    func open(now: @escaping @Sendable () -> Date = { Date() }) async throws -> SQLIndexStore {
        switch kind {
        case .sqlite: return try SQLiteIndexStore(directory: location, hasher: .testing, now: now)
        case .postgres: return try await PostgresIndexStore(url: location, hasher: .testing, maximumConnections: 4, now: now)
        }
    }
}

/// A fresh, empty store's handle; nil (after saying why) when PostgreSQL is unavailable outside CI.
func freshHandle(_ kind: StoreKind) async throws -> StoreHandle? {
    switch kind {
    case .sqlite:
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peerway-index-\(UUID().uuidString)").path
        return StoreHandle(kind: kind, location: directory)
    case .postgres:
        switch await TestPostgres.shared.url() {
        case .success:
            return StoreHandle(kind: kind, location: try await TestPostgres.shared.freshDatabase())
        case .failure(let unavailable):
            if isCI { throw unavailable }
            print("skipping the PostgreSQL half: \(unavailable) (under CI=true this fails)")
            return nil
        }
    }
}

/// Runs `body` with a fresh store of `kind`, closing it afterwards.
func withStore(_ kind: StoreKind, now: @escaping @Sendable () -> Date = { Date() },
               _ body: (SQLIndexStore, StoreHandle) async throws -> Void) async throws {
    guard let handle = try await freshHandle(kind) else { return }
    let store = try await handle.open(now: now)
    defer { if kind == .sqlite { try? FileManager.default.removeItem(atPath: handle.location) } }
    do {
        try await body(store, handle)
    } catch {
        await store.close()
        throw error
    }
    await store.close()
}

/// Expects `body` to throw exactly `expected`.
func expectRefusal<T>(_ expected: IndexError, sourceLocation: SourceLocation = #_sourceLocation,
                      _ body: () async throws(IndexError) -> T) async {
    do {
        _ = try await body()
        Issue.record("expected \(expected), but it succeeded", sourceLocation: sourceLocation)
    } catch {
        #expect(error == expected, sourceLocation: sourceLocation)
    }
}

/// A PeerID from a small number (tests need many distinct ones).
func peer(_ n: UInt64) -> PeerID { PeerID(high: 0xAB, low: n) }
