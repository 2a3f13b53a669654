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

    // MARK: Networks

    @Test(arguments: StoreKind.allCases)
    func networksAreCreatedUpdatedAndDeletedByTheirOwner(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let alice = try await store.createUser(name: "alice", password: "password1", metadata: [:])
            let bob = try await store.createUser(name: "bob", password: "password1", metadata: [:])
            let net = try await store.createNetwork(name: "lan-party", owner: alice.id, access: .open, metadata: ["game": "quake"], by: .user(alice.id))
            #expect(net.owner == alice.id && net.access == .open && net.metadata["game"] == "quake")
            #expect(try await store.network(named: "lan-party") == net)
            #expect(try await store.network(id: net.id) == net)
            #expect(try await store.membership(of: alice.id, in: net.id)?.role == .owner)

            await expectRefusal(.networkNameTaken("lan-party")) { () async throws(IndexError) in
                try await store.createNetwork(name: "lan-party", owner: bob.id, access: .open, metadata: [:], by: .user(bob.id))
            }
            await expectRefusal(.invalidNetworkName("LAN")) { () async throws(IndexError) in
                try await store.createNetwork(name: "LAN", owner: bob.id, access: .open, metadata: [:], by: .user(bob.id))
            }
            await expectRefusal(.notYourRecord(actor: .user(bob.id), user: alice.id)) { () async throws(IndexError) in
                try await store.createNetwork(name: "alices", owner: alice.id, access: .open, metadata: [:], by: .user(bob.id))
            }
            await expectRefusal(.notNetworkOwner(actor: .user(bob.id), network: net.id)) { () async throws(IndexError) in
                try await store.updateNetwork(net.id, NetworkUpdate(access: .inviteOnly, metadata: ["game": "doom"]), by: .user(bob.id))
            }
            await expectRefusal(.notNetworkOwner(actor: .user(bob.id), network: net.id)) { () async throws(IndexError) in
                try await store.deleteNetwork(net.id, by: .user(bob.id))
            }
            #expect(try await store.network(id: net.id) == net)

            let updated = try await store.updateNetwork(net.id, NetworkUpdate(access: .inviteOnly, metadata: ["game": "doom", "slots": "8"]), by: .user(alice.id))
            #expect(updated.access == .inviteOnly && updated.metadata.dictionary == ["game": "doom", "slots": "8"])
            await expectRefusal(.noSuchNetwork(NetworkID(777).description)) { () async throws(IndexError) in
                try await store.updateNetwork(NetworkID(777), NetworkUpdate(), by: .administrator)
            }
            try await store.deleteNetwork(net.id, by: .user(alice.id))
            #expect(try await store.network(id: net.id) == nil)
            #expect(try await store.networks(of: alice.id, after: nil, limit: nil).items.isEmpty)
            await expectRefusal(.noSuchNetwork(net.id.description)) { () async throws(IndexError) in
                try await store.members(of: net.id, after: nil, limit: nil)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func membershipFollowsTheRules(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let owner = try await store.createUser(name: "owner", password: "password1", metadata: [:])
            let admin = try await store.createUser(name: "admin", password: "password1", metadata: [:])
            let member = try await store.createUser(name: "member", password: "password1", metadata: [:])
            let other = try await store.createUser(name: "other", password: "password1", metadata: [:])
            let open = try await store.createNetwork(name: "open-net", owner: owner.id, access: .open, metadata: [:], by: .user(owner.id))
            let closed = try await store.createNetwork(name: "closed-net", owner: owner.id, access: .inviteOnly, metadata: [:], by: .user(owner.id))

            // Joining: open yes, invite-only only with an invitation, only for oneself.
            #expect(try await store.join(open.id, user: member.id, by: .user(member.id)).role == .member)
            await expectRefusal(.alreadyMember(user: member.id, network: open.id)) { () async throws(IndexError) in
                try await store.join(open.id, user: member.id, by: .user(member.id))
            }
            await expectRefusal(.notYourRecord(actor: .user(member.id), user: other.id)) { () async throws(IndexError) in
                try await store.join(open.id, user: other.id, by: .user(member.id))
            }
            await expectRefusal(.inviteOnly(closed.id)) { () async throws(IndexError) in
                try await store.join(closed.id, user: member.id, by: .user(member.id))
            }
            await expectRefusal(.notInvited(user: member.id, network: closed.id)) { () async throws(IndexError) in
                try await store.accept(closed.id, user: member.id, by: .user(member.id))
            }

            // Inviting: managers only.
            await expectRefusal(.notNetworkManager(actor: .user(member.id), network: closed.id)) { () async throws(IndexError) in
                try await store.invite(other.id, to: closed.id, by: .user(member.id))
            }
            let invitation = try await store.invite(admin.id, to: closed.id, by: .user(owner.id))
            #expect(invitation.invitedBy == owner.id)
            await expectRefusal(.alreadyInvited(user: admin.id, network: closed.id)) { () async throws(IndexError) in
                try await store.invite(admin.id, to: closed.id, by: .user(owner.id))
            }
            #expect(try await store.invitations(of: admin.id) == [invitation])
            #expect(try await store.invitations(to: closed.id) == [invitation])
            _ = try await store.accept(closed.id, user: admin.id, by: .user(admin.id))
            #expect(try await store.invitations(of: admin.id).isEmpty)

            // Roles: only the owner names admins.
            await expectRefusal(.notNetworkOwner(actor: .user(admin.id), network: closed.id)) { () async throws(IndexError) in
                try await store.setRole(.admin, of: admin.id, in: closed.id, by: .user(admin.id))
            }
            #expect(try await store.setRole(.admin, of: admin.id, in: closed.id, by: .user(owner.id)).role == .admin)
            await expectRefusal(.invalidRole("owner")) { () async throws(IndexError) in
                try await store.setRole(.owner, of: admin.id, in: closed.id, by: .user(owner.id))
            }

            // An admin invites and removes members, but not admins nor the owner.
            _ = try await store.invite(member.id, to: closed.id, by: .user(admin.id))
            _ = try await store.join(closed.id, user: member.id, by: .user(member.id))  // joining with an invitation accepts it
            _ = try await store.invite(other.id, to: closed.id, by: .user(admin.id))
            try await store.withdrawInvitation(closed.id, user: other.id, by: .user(other.id))  // declined
            await expectRefusal(.notInvited(user: other.id, network: closed.id)) { () async throws(IndexError) in
                try await store.withdrawInvitation(closed.id, user: other.id, by: .user(admin.id))
            }
            await expectRefusal(.notNetworkManager(actor: .user(member.id), network: closed.id)) { () async throws(IndexError) in
                try await store.remove(admin.id, from: closed.id, by: .user(member.id))
            }
            await expectRefusal(.cannotRemoveOwner(closed.id)) { () async throws(IndexError) in
                try await store.remove(owner.id, from: closed.id, by: .user(admin.id))
            }
            let admin2 = try await store.createUser(name: "admin2", password: "password1", metadata: [:])
            _ = try await store.invite(admin2.id, to: closed.id, by: .user(owner.id))
            _ = try await store.accept(closed.id, user: admin2.id, by: .user(admin2.id))
            _ = try await store.setRole(.admin, of: admin2.id, in: closed.id, by: .user(owner.id))
            await expectRefusal(.adminCannotManageAdmin(network: closed.id, user: admin2.id)) { () async throws(IndexError) in
                try await store.remove(admin2.id, from: closed.id, by: .user(admin.id))
            }
            let before = try await store.members(of: closed.id, after: nil, limit: nil)
            #expect(before.items.map(\.user) == [owner.id, admin.id, member.id, admin2.id])
            try await store.remove(member.id, from: closed.id, by: .user(admin.id))
            await expectRefusal(.notMember(user: member.id, network: closed.id)) { () async throws(IndexError) in
                try await store.remove(member.id, from: closed.id, by: .user(admin.id))
            }

            // The owner cannot leave until ownership is transferred.
            await expectRefusal(.ownerCannotLeave(closed.id)) { () async throws(IndexError) in
                try await store.leave(closed.id, user: owner.id, by: .user(owner.id))
            }
            await expectRefusal(.notMember(user: other.id, network: closed.id)) { () async throws(IndexError) in
                try await store.transferOwnership(of: closed.id, to: other.id, by: .user(owner.id))
            }
            await expectRefusal(.notNetworkOwner(actor: .user(admin.id), network: closed.id)) { () async throws(IndexError) in
                try await store.transferOwnership(of: closed.id, to: admin.id, by: .user(admin.id))
            }
            let transferred = try await store.transferOwnership(of: closed.id, to: admin.id, by: .user(owner.id))
            #expect(transferred.owner == admin.id)
            #expect(try await store.membership(of: owner.id, in: closed.id)?.role == .admin)
            #expect(try await store.membership(of: admin.id, in: closed.id)?.role == .owner)
            try await store.leave(closed.id, user: owner.id, by: .user(owner.id))
            await expectRefusal(.notMember(user: owner.id, network: closed.id)) { () async throws(IndexError) in
                try await store.leave(closed.id, user: owner.id, by: .user(owner.id))
            }
            // Removing oneself is leaving; the administrator may manage anyone but the owner.
            try await store.remove(admin2.id, from: closed.id, by: .user(admin2.id))
            _ = try await store.join(open.id, user: other.id, by: .administrator)
            try await store.remove(other.id, from: open.id, by: .administrator)

            let finalMembers = try await store.members(of: closed.id, after: nil, limit: nil).items
            #expect(finalMembers.map(\.user) == [admin.id])
            let ofMember = try await store.networks(of: member.id, after: nil, limit: nil).items
            #expect(ofMember.map(\.network) == [open.id])
        }
    }

    // MARK: Paging

    @Test(arguments: StoreKind.allCases)
    func pagesWalkEverythingOnceInOrder(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            var users: [IndexUser] = []
            for i in 0..<23 {
                users.append(try await store.createUser(name: "user\(i)", password: "password1", metadata: ["n": "\(i)", "all": "yes"]))
            }
            let net = try await store.createNetwork(name: "everyone", owner: users[0].id, access: .open, metadata: [:], by: .user(users[0].id))
            for user in users.dropFirst() { _ = try await store.join(net.id, user: user.id, by: .user(user.id)) }

            var seen: [UserID] = []
            var cursor: IndexCursor?
            var pages = 0
            repeat {
                let page = try await store.listUsers(after: cursor, limit: 10)
                seen += page.items.map(\.id)
                cursor = page.next
                pages += 1
            } while cursor != nil && pages < 10
            #expect(seen == users.map(\.id))
            #expect(pages == 3)

            seen = []
            cursor = nil
            pages = 0
            repeat {
                let page = try await store.searchUsers(IndexQuery(parsing: "all=yes"), after: cursor, limit: 7)
                seen += page.items.map(\.id)
                cursor = page.next.flatMap { IndexCursor($0.description) }  // cursors survive their text form
                pages += 1
            } while cursor != nil && pages < 10
            #expect(seen == users.map(\.id))
            #expect(pages == 4)

            var members: [UserID] = []
            cursor = nil
            pages = 0
            repeat {
                let page = try await store.members(of: net.id, after: cursor, limit: 5)
                members += page.items.map(\.user)
                cursor = page.next
                pages += 1
            } while cursor != nil && pages < 10
            #expect(members == users.map(\.id))

            var memberships: [IndexMembership] = []
            cursor = nil
            pages = 0
            repeat {
                let page = try await store.listMemberships(after: cursor, limit: 6)
                memberships += page.items
                cursor = page.next
                pages += 1
            } while cursor != nil && pages < 10
            #expect(memberships.map(\.user) == users.map(\.id))
            #expect(Set(memberships.map(\.network)) == [net.id])

            // An exact fit ends without an empty extra page.
            let exact = try await store.listUsers(after: nil, limit: 23)
            #expect(exact.items.count == 23 && exact.next == nil)

            await expectRefusal(.invalidPageSize(0, maximum: IndexLimits.maximumListPage)) { () async throws(IndexError) in
                try await store.listUsers(after: nil, limit: 0)
            }
            await expectRefusal(.invalidPageSize(101, maximum: IndexLimits.maximumSearchPage)) { () async throws(IndexError) in
                try await store.searchUsers(IndexQuery(parsing: "*"), after: nil, limit: 101)
            }
            await expectRefusal(.invalidCursor("1.2")) { () async throws(IndexError) in
                try await store.listUsers(after: IndexCursor("1.2"), limit: nil)
            }
            await expectRefusal(.invalidCursor("5")) { () async throws(IndexError) in
                try await store.listMemberships(after: IndexCursor("5"), limit: nil)
            }
            #expect(IndexCursor("x") == nil && IndexCursor("-1") == nil && IndexCursor("") == nil)
        }
    }

    // MARK: Search

    /// Metadata chosen so that every operator has matches, non-matches and edge cases.
    static let people: [(String, [String: String])] = [
        ("ann", ["city": "paris", "age": "31", "lang": "fr", "role": "dev"]),
        ("ben", ["city": "paris", "age": "45", "role": "ops"]),
        ("cat", ["city": "pari", "age": "31.0", "lang": "en"]),
        ("dan", ["city": "parisienne", "age": "-2.5"]),
        ("eve", ["city": "lyon", "age": "thirty", "lang": "fr"]),
        ("fay", ["city": "Paris", "age": "1e2"]),
        ("gus", ["city": "zürich", "age": "0x10", "tag": "a b\"c"]),
        ("hal", ["lang": "de"]),
        ("ivy", [:]),
        ("jon", ["city": "paris\u{10FFFF}x", "age": "30"]),
    ]

    static let queries: [String] = [
        "*", "city=paris", "city!=paris", "city^=pari", "city^=paris", "city^=\"zü\"", "city^=Z",
        "age>30", "age>=31", "age<31", "age<=31", "age>-3", "age<0", "age>=100", "age=31", "age?", "lang?",
        "city=paris AND age>40", "city=paris OR lang=fr", "lang? AND NOT lang=fr", "* AND NOT city?",
        "(city^=par OR lang=de) AND NOT (age<31 OR role=ops)", "tag=\"a b\\\"c\"", "city=nowhere", "nokey?",
        "city=paris AND city!=paris", "(lang=fr OR lang=en) AND age>=31 AND NOT role?",
    ]

    @Test(arguments: StoreKind.allCases)
    func searchAgreesWithTheCheckpointSemantics(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            var byName: [String: IndexUser] = [:]
            for (name, metadata) in Self.people {
                byName[name] = try await store.createUser(name: name, password: "password1", metadata: metadata)
            }
            for text in Self.queries {
                let query = try IndexQuery(parsing: text)
                let expected = Self.people.filter { query.checkpointQuery.matches(try! PeerMetadata($0.1)) }.map(\.0)
                let found = try await store.searchUsers(query, after: nil, limit: 100).items.map(\.name)
                #expect(found == expected, "query \(text)")
            }
            // Spot checks, so that the reference itself is what we think.
            let paris = try await store.searchUsers(IndexQuery(parsing: "city=paris"), after: nil, limit: nil).items.map(\.name)
            #expect(paris == ["ann", "ben"])
            let prefix = try await store.searchUsers(IndexQuery(parsing: "city^=paris"), after: nil, limit: nil).items.map(\.name)
            #expect(prefix == ["ann", "ben", "dan", "jon"])
            let older = try await store.searchUsers(IndexQuery(parsing: "age>=31"), after: nil, limit: nil).items.map(\.name)
            #expect(older == ["ann", "ben", "cat", "fay"])
            // Refusals of the language, as IndexError.
            for bad in ["", "city=", "NOT city=paris", "age>abc", "Bad=1", "(a=1"] {
                do {
                    _ = try IndexQuery(parsing: bad)
                    Issue.record("query '\(bad)' was accepted")
                } catch {
                    guard case IndexError.invalidQuery(let why)? = error as? IndexError else { Issue.record("unexpected \(error)"); continue }
                    #expect(why.hasPrefix("query: "))
                }
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func networksAreSearchedByTheirMetadata(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let alice = try await store.createUser(name: "alice", password: "password1", metadata: ["game": "quake"])
            let a = try await store.createNetwork(name: "net-a", owner: alice.id, access: .open, metadata: ["game": "quake", "slots": "8"], by: .user(alice.id))
            let b = try await store.createNetwork(name: "net-b", owner: alice.id, access: .inviteOnly, metadata: ["game": "doom", "slots": "16"], by: .user(alice.id))
            _ = try await store.createNetwork(name: "net-c", owner: alice.id, access: .open, metadata: [:], by: .user(alice.id))
            #expect(try await store.searchNetworks(IndexQuery(parsing: "game=quake"), after: nil, limit: nil).items == [a])
            #expect(try await store.searchNetworks(IndexQuery(parsing: "slots>8"), after: nil, limit: nil).items == [b])
            #expect(try await store.searchNetworks(IndexQuery(parsing: "game?"), after: nil, limit: nil).items.map(\.id) == [a.id, b.id])
            #expect(try await store.listNetworks(after: nil, limit: nil).items.map(\.name) == ["net-a", "net-b", "net-c"])
            // Users and networks have separate metadata.
            #expect(try await store.searchUsers(IndexQuery(parsing: "slots?"), after: nil, limit: nil).items.isEmpty)
        }
    }

    // MARK: Limits

    @Test(arguments: StoreKind.allCases)
    func aUserBelongsToAtMostTheNetworkLimit(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let alice = try await store.createUser(name: "alice", password: "password1", metadata: [:])
            let bob = try await store.createUser(name: "bob", password: "password1", metadata: [:])
            for i in 0..<IndexLimits.maximumNetworksPerUser {
                _ = try await store.createNetwork(name: "net-\(i)", owner: alice.id, access: .open, metadata: [:], by: .user(alice.id))
            }
            await expectRefusal(.tooManyNetworks(user: alice.id, limit: IndexLimits.maximumNetworksPerUser)) { () async throws(IndexError) in
                try await store.createNetwork(name: "one-more", owner: alice.id, access: .open, metadata: [:], by: .user(alice.id))
            }
            let bobs = try await store.createNetwork(name: "bobs", owner: bob.id, access: .open, metadata: [:], by: .user(bob.id))
            await expectRefusal(.tooManyNetworks(user: alice.id, limit: IndexLimits.maximumNetworksPerUser)) { () async throws(IndexError) in
                try await store.join(bobs.id, user: alice.id, by: .user(alice.id))
            }
            #expect(try await store.network(named: "one-more") == nil)
            #expect(try await store.members(of: bobs.id, after: nil, limit: nil).items.count == 1)
            let page = try await store.networks(of: alice.id, after: nil, limit: 1000)
            #expect(page.items.count == IndexLimits.maximumNetworksPerUser && page.next == nil)
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
        await store.close()
        do {
            _ = try await store.createUser(name: "late", password: "password1", metadata: [:])
            Issue.record("a closed store accepted a write")
        } catch {
            // The driver's own error for a closed database, as .storage (or .closed).
            switch error {
            case .storage, .closed: break
            default: Issue.record("unexpected \(error)")
            }
        }
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
