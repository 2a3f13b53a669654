import Foundation
import PeerwayCheckpoint
import Testing
@testable import PeerwayIndex

/// One suite, run against both stores: what `IndexStore` promises.
@Suite("IndexStore conformance")
struct IndexStoreConformanceTests {
    // MARK: Users

    @Test(arguments: StoreKind.allCases)
    func usersAreCreatedReadAndUnique(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let alice = try await store.createUser(name: "alice", password: "correct horse", metadata: ["city": "paris", "age": "31"])
            #expect(alice.name == "alice")
            #expect(alice.metadata.dictionary == ["city": "paris", "age": "31"])
            #expect(try await store.user(named: "alice") == alice)
            #expect(try await store.user(id: alice.id) == alice)
            #expect(try await store.user(named: "bob") == nil)
            #expect(try await store.user(id: UserID(alice.id.rawValue + 1000)) == nil)

            await expectRefusal(.usernameTaken("alice")) { () async throws(IndexError) in
                try await store.createUser(name: "alice", password: "another one", metadata: [:])
            }
            await expectRefusal(.invalidUsername("Alice")) { () async throws(IndexError) in
                try await store.createUser(name: "Alice", password: "password1", metadata: [:])
            }
            await expectRefusal(.invalidUsername("al")) { () async throws(IndexError) in
                try await store.createUser(name: "al", password: "password1", metadata: [:])
            }
            await expectRefusal(.invalidUsername("-alice")) { () async throws(IndexError) in
                try await store.createUser(name: "-alice", password: "password1", metadata: [:])
            }
            await expectRefusal(.invalidPassword(bytes: 5)) { () async throws(IndexError) in
                try await store.createUser(name: "carol", password: "short", metadata: [:])
            }
            do {
                _ = try await store.createUser(name: "carol", password: "password1", metadata: ["Bad Key": "x"])
                Issue.record("a bad metadata key was accepted")
            } catch {
                guard case IndexError.invalidMetadata? = error as? IndexError else { Issue.record("unexpected \(error)"); return }
            }
            #expect(try await store.user(named: "carol") == nil)
            let page = try await store.listUsers(after: nil, limit: nil)
            #expect(page.items == [alice])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentSignUpsOfOneNameMakeOneUser(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let outcomes = await Self.race(6) { (try? await store.createUser(name: "racer", password: "password1", metadata: [:])) != nil }
            #expect(outcomes.filter { $0 }.count == 1)
            let names = try await store.listUsers(after: nil, limit: nil).items.map(\.name)
            #expect(names == ["racer"])
        }
    }

    static func race(_ count: Int, _ attempt: @escaping @Sendable () async -> Bool) async -> [Bool] {
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<count { group.addTask { await attempt() } }
            var outcomes: [Bool] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
    }

    @Test(arguments: StoreKind.allCases)
    func bulkImportIsAllOrNothing(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let record = try PasswordHasher.testing.record(for: "imported1")
            let batch = (0..<300).map { (name: "imported\($0)", password: record, metadata: ["n": "\($0)", "even": $0 % 2 == 0 ? "yes" : "no"]) }
            #expect(try await store.importUsers(batch) == 300)
            #expect(try await store.verifyPassword(name: "imported7", password: "imported1").metadata["n"] == "7")
            let evens = try await store.searchUsers(IndexQuery(parsing: "even=yes AND n<10"), after: nil, limit: nil).items.map(\.name)
            #expect(evens == ["imported0", "imported2", "imported4", "imported6", "imported8"])
            await expectRefusal(.usernameTaken("imported5")) { () async throws(IndexError) in
                try await store.importUsers([(name: "fresh-one", password: record, metadata: [:]), (name: "imported5", password: record, metadata: [:])])
            }
            await expectRefusal(.usernameTaken("twice")) { () async throws(IndexError) in
                try await store.importUsers([(name: "twice", password: record, metadata: [:]), (name: "twice", password: record, metadata: [:])])
            }
            #expect(try await store.user(named: "fresh-one") == nil)
            #expect(try await store.listUsers(after: nil, limit: 1000).items.count == 300)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func passwordsVerifyChangeAndAreNeverStoredInClear(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let alice = try await store.createUser(name: "alice", password: "correct horse", metadata: [:])
            let bob = try await store.createUser(name: "bob", password: "battery staple", metadata: [:])
            #expect(try await store.verifyPassword(name: "alice", password: "correct horse") == alice)
            await expectRefusal(.badCredentials) { () async throws(IndexError) in try await store.verifyPassword(name: "alice", password: "battery staple") }
            await expectRefusal(.badCredentials) { () async throws(IndexError) in try await store.verifyPassword(name: "nobody", password: "correct horse") }
            await expectRefusal(.badCredentials) { () async throws(IndexError) in try await store.verifyPassword(name: "alice", password: "") }

            // Raw rows: a scrypt record, no trace of the password, distinct salts for equal passwords.
            let raw = try await store.rawRows("SELECT name, password FROM users ORDER BY id")
            #expect(raw.count == 2)
            for row in raw {
                #expect(row[1].hasPrefix("scrypt$"))
                #expect(!row[1].contains("correct") && !row[1].contains("battery") && !row[1].contains("horse"))
                #expect(PasswordRecord(parsing: row[1]) != nil)
            }
            let clearBytes = Data("correct horse".utf8).base64EncodedString()
            #expect(!raw[0][1].contains(clearBytes))

            await expectRefusal(.notYourRecord(actor: .user(bob.id), user: alice.id)) { () async throws(IndexError) in
                try await store.changePassword(of: alice.id, to: "hijacked!", by: .user(bob.id))
            }
            #expect(try await store.verifyPassword(name: "alice", password: "correct horse") == alice)
            try await store.changePassword(of: alice.id, to: "new secret 2", by: .user(alice.id))
            await expectRefusal(.badCredentials) { () async throws(IndexError) in try await store.verifyPassword(name: "alice", password: "correct horse") }
            #expect(try await store.verifyPassword(name: "alice", password: "new secret 2").id == alice.id)
            try await store.changePassword(of: alice.id, to: "admin reset", by: .administrator)
            #expect(try await store.verifyPassword(name: "alice", password: "admin reset").id == alice.id)
            await expectRefusal(.noSuchUser(UserID(99_999).description)) { () async throws(IndexError) in
                try await store.changePassword(of: UserID(99_999), to: "whatever1", by: .administrator)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func usersEditOnlyTheirOwnMetadata(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let alice = try await store.createUser(name: "alice", password: "password1", metadata: ["city": "paris"])
            let bob = try await store.createUser(name: "bob", password: "password1", metadata: [:])
            let updated = try await store.updateUserMetadata(of: alice.id, changes: ["city": "lyon", "lang": "fr"], by: .user(alice.id))
            #expect(updated.metadata.dictionary == ["city": "lyon", "lang": "fr"])
            #expect(updated.updated >= alice.updated)
            let removed = try await store.updateUserMetadata(of: alice.id, changes: ["lang": nil], by: .user(alice.id))
            #expect(removed.metadata.dictionary == ["city": "lyon"])

            await expectRefusal(.notYourRecord(actor: .user(bob.id), user: alice.id)) { () async throws(IndexError) in
                try await store.updateUserMetadata(of: alice.id, changes: ["city": "evil"], by: .user(bob.id))
            }
            // Over the limits: refused, nothing changed.
            var tooMany: [String: String?] = [:]
            for i in 0..<IndexLimits.metadataEntries { tooMany["k\(i)"] = "v" }
            do {
                _ = try await store.updateUserMetadata(of: alice.id, changes: tooMany, by: .user(alice.id))
                Issue.record("17 entries were accepted")
            } catch {
                guard case IndexError.invalidMetadata? = error as? IndexError else { Issue.record("unexpected \(error)"); return }
            }
            do {
                _ = try await store.updateUserMetadata(of: alice.id, changes: ["bio": String(repeating: "x", count: 129)], by: .user(alice.id))
                Issue.record("a 129-byte value was accepted")
            } catch {
                guard case IndexError.invalidMetadata? = error as? IndexError else { Issue.record("unexpected \(error)"); return }
            }
            do {
                _ = try await store.updateUserMetadata(of: alice.id, changes: ["nul": "a\u{0}b"], by: .user(alice.id))
                Issue.record("a NUL byte was accepted")
            } catch {
                guard case IndexError.invalidMetadata? = error as? IndexError else { Issue.record("unexpected \(error)"); return }
            }
            #expect(try await store.user(id: alice.id)?.metadata.dictionary == ["city": "lyon"])
            let byAdmin = try await store.updateUserMetadata(of: alice.id, changes: ["note": "checked"], by: .administrator)
            #expect(byAdmin.metadata["note"] == "checked")
        }
    }

    @Test(arguments: StoreKind.allCases)
    func deletingAUserRemovesTheirTracesButNotWhileTheyOwnANetwork(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let alice = try await store.createUser(name: "alice", password: "password1", metadata: ["a": "1"])
            let bob = try await store.createUser(name: "bob", password: "password1", metadata: ["b": "2"])
            let net = try await store.createNetwork(name: "garage", owner: alice.id, access: .inviteOnly, metadata: [:], by: .user(alice.id))
            _ = try await store.invite(bob.id, to: net.id, by: .user(alice.id))
            _ = try await store.login(user: bob.id, peer: peer(1))
            _ = try await store.login(user: alice.id, peer: peer(2))

            await expectRefusal(.notYourRecord(actor: .user(bob.id), user: alice.id)) { () async throws(IndexError) in
                try await store.deleteUser(alice.id, by: .user(bob.id))
            }
            await expectRefusal(.ownsNetworks(user: alice.id, count: 1)) { () async throws(IndexError) in
                try await store.deleteUser(alice.id, by: .user(alice.id))
            }
            #expect(try await store.user(id: alice.id) != nil)

            _ = try await store.accept(net.id, user: bob.id, by: .user(bob.id))
            try await store.deleteUser(bob.id, by: .user(bob.id))
            #expect(try await store.user(id: bob.id) == nil)
            #expect(try await store.session(of: peer(1)) == nil)
            #expect(try await store.members(of: net.id, after: nil, limit: nil).items.map(\.user) == [alice.id])
            #expect(try await store.searchUsers(IndexQuery(parsing: "b?"), after: nil, limit: nil).items.isEmpty)

            try await store.deleteNetwork(net.id, by: .user(alice.id))
            try await store.deleteUser(alice.id, by: .administrator)
            #expect(try await store.listUsers(after: nil, limit: nil).items.isEmpty)
            #expect(try await store.session(of: peer(2)) == nil)
            // Ids are never reused.
            let carol = try await store.createUser(name: "carol", password: "password1", metadata: [:])
            #expect(carol.id > bob.id)
        }
    }

    // MARK: Sessions

    @Test(arguments: StoreKind.allCases)
    func sessionsBindPeersToUsers(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let alice = try await store.createUser(name: "alice", password: "password1", metadata: [:])
            let bob = try await store.createUser(name: "bob", password: "password1", metadata: [:])
            let s1 = try await store.login(user: alice.id, peer: peer(1))
            _ = try await store.login(user: alice.id, peer: peer(2))
            #expect(try await store.session(of: peer(1)) == s1)
            #expect(try await store.sessions(of: alice.id).map(\.peer) == [peer(1), peer(2)])
            // A peer is logged in as one user at a time.
            _ = try await store.login(user: bob.id, peer: peer(2))
            #expect(try await store.sessions(of: alice.id).map(\.peer) == [peer(1)])
            #expect(try await store.session(of: peer(2))?.user == bob.id)
            #expect(try await store.logout(peer: peer(1)))
            #expect(!(try await store.logout(peer: peer(1))))
            #expect(try await store.sessions(of: alice.id).isEmpty)
            await expectRefusal(.noSuchUser(UserID(4242).description)) { () async throws(IndexError) in
                try await store.login(user: UserID(4242), peer: peer(9))
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func sessionsOfManyPeersInOneRead(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let alice = try await store.createUser(name: "alice", password: "password1", metadata: [:])
            let bob = try await store.createUser(name: "bob", password: "password1", metadata: [:])
            _ = try await store.login(user: alice.id, peer: peer(1))
            _ = try await store.login(user: alice.id, peer: peer(2))
            _ = try await store.login(user: bob.id, peer: peer(3))
            // Logged-in and unknown peers mixed, one repeated: each session once.
            let asked = [peer(3), peer(7), peer(1), peer(3)] + (100..<300).map { peer(UInt64($0)) }
            let found = try await store.sessions(ofPeers: asked)
            #expect(Dictionary(uniqueKeysWithValues: found.map { ($0.peer, $0.user) }) == [peer(1): alice.id, peer(3): bob.id])
            #expect(try await store.sessions(ofPeers: []).isEmpty)
            let tooMany = (0...IndexLimits.maximumSessionLookup).map { peer(UInt64($0)) }
            await expectRefusal(.invalidPageSize(tooMany.count, maximum: IndexLimits.maximumSessionLookup)) { () async throws(IndexError) in
                try await store.sessions(ofPeers: tooMany)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func theOldestSessionEndsBeyondTheLimit(kind: StoreKind) async throws {
        let clock = TestClock()
        try await withStore(kind, now: clock.now) { store, _ in
            let alice = try await store.createUser(name: "alice", password: "password1", metadata: [:])
            for n in 0...UInt64(IndexLimits.maximumSessionsPerUser) {
                clock.advance(1)
                _ = try await store.login(user: alice.id, peer: peer(n))
            }
            let peers = try await store.sessions(of: alice.id).map(\.peer)
            #expect(peers.count == IndexLimits.maximumSessionsPerUser)
            #expect(!peers.contains(peer(0)))
            #expect(peers.last == peer(UInt64(IndexLimits.maximumSessionsPerUser)))
        }
    }

    // MARK: Restart

    @Test(arguments: StoreKind.allCases)
    func aRestartKeepsEverything(kind: StoreKind) async throws {
        guard let handle = try await freshHandle(kind) else { return }
        let store = try await handle.open()
        let alice = try await store.createUser(name: "alice", password: "password1", metadata: ["city": "paris", "age": "31"])
        let bob = try await store.createUser(name: "bob", password: "password2", metadata: [:])
        let net = try await store.createNetwork(name: "home", owner: alice.id, access: .inviteOnly, metadata: ["k": "v"], by: .user(alice.id))
        let invitation = try await store.invite(bob.id, to: net.id, by: .user(alice.id))
        let session = try await store.login(user: alice.id, peer: peer(7))
        let users = try await store.listUsers(after: nil, limit: nil)
        let networks = try await store.listNetworks(after: nil, limit: nil)
        let memberships = try await store.listMemberships(after: nil, limit: nil)
        await store.close()

        let reopened = try await handle.open()
        #expect(try await reopened.listUsers(after: nil, limit: nil) == users)
        #expect(try await reopened.listNetworks(after: nil, limit: nil) == networks)
        #expect(try await reopened.listMemberships(after: nil, limit: nil) == memberships)
        #expect(try await reopened.invitations(of: bob.id) == [invitation])
        #expect(try await reopened.session(of: peer(7)) == session)
        #expect(try await reopened.verifyPassword(name: "bob", password: "password2") == bob)
        #expect(try await reopened.searchUsers(IndexQuery(parsing: "age>30"), after: nil, limit: nil).items == [alice])
        // The schema was not migrated twice and new ids continue after the old ones.
        let carol = try await reopened.createUser(name: "carol", password: "password3", metadata: [:])
        #expect(carol.id > bob.id)
        await reopened.close()
        let third = try await handle.open()
        #expect(try await third.listUsers(after: nil, limit: nil).items.count == 3)
        await third.close()
    }

    @Test(arguments: StoreKind.allCases)
    func aClosedStoreRefuses(kind: StoreKind) async throws {
        guard let handle = try await freshHandle(kind) else { return }
        let store = try await handle.open()
        let alice = try await store.createUser(name: "alice", password: "password1", metadata: [:])
        await store.close()
        // Writes and reads alike, as the protocol says: .closed, not the driver's own error.
        await expectRefusal(.closed) { () async throws(IndexError) in
            try await store.createUser(name: "late", password: "password1", metadata: [:])
        }
        await expectRefusal(.closed) { () async throws(IndexError) in try await store.user(id: alice.id) }
        await expectRefusal(.closed) { () async throws(IndexError) in try await store.listUsers(after: nil, limit: nil) }
        await expectRefusal(.closed) { () async throws(IndexError) in try await store.verifyPassword(name: "alice", password: "password1") }
    }
}

/// A settable clock for stores' timestamps.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_790_000_000)

    var now: @Sendable () -> Date { { [self] in lock.withLock { current } } }

    func advance(_ seconds: TimeInterval) {
        lock.withLock { current += seconds }
    }
}
