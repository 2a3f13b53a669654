import Foundation
import PeerwayCheckpoint
import PeerwaySTUN
import Testing
@testable import PeerwayIndex

/// A clock the login limiter reads, moved by the test.
final class ManualInstant: @unchecked Sendable {
    private let lock = NSLock()
    private var value = ContinuousClock.now
    var now: ContinuousClock.Instant { lock.lock(); defer { lock.unlock() }; return value }
    func advance(_ d: Duration) { lock.lock(); value = value.advanced(by: d); lock.unlock() }
}

/// Runs calls as peers would, through `IndexControlService.handle`.
struct ControlScene {
    let service: IndexControlService
    let time: ManualInstant

    static let alice = peer(1), bob = peer(2), carol = peer(3)

    func call(_ p: PeerID, _ call: IndexCall, from ip: UInt32 = 0xC633_6401) async -> IndexControlOutcome {
        await service.handle(IndexCallContext(peer: p, session: 1, requestID: 1, source: PeerEndpoint(ip: .v4(ip), port: 4000), call: call))
    }

    func ok(_ p: PeerID, _ c: IndexCall, from ip: UInt32 = 0xC633_6401, sourceLocation: SourceLocation = #_sourceLocation) async -> IndexReply? {
        let outcome = await call(p, c, from: ip)
        switch outcome.result {
        case .success(let reply): return reply
        case .failure(let f):
            Issue.record("\(c) failed: \(f.code) \(f.text)", sourceLocation: sourceLocation)
            return nil
        }
    }

    func refused(_ p: PeerID, _ c: IndexCall, from ip: UInt32 = 0xC633_6401) async -> ControlFailure? {
        if case .failure(let f) = await call(p, c, from: ip).result { return f }
        return nil
    }

    /// The checkpoint's order: the presence table first, then the service.
    @discardableResult
    func online(_ p: PeerID) async -> [IndexNotification] {
        service.presence.set(p, online: true)
        return await service.peerOnline(p)
    }

    @discardableResult
    func offline(_ p: PeerID) async -> [IndexNotification] {
        service.presence.set(p, online: false)
        return await service.peerOffline(p)
    }

    func members(_ p: PeerID, _ network: String) async -> [String: Bool] {
        guard case .members(_, let page) = await ok(p, .members(network: network, page: IndexPageRequest())) else { return [:] }
        return Dictionary(uniqueKeysWithValues: page.items.map { ($0.name, $0.online) })
    }
}

func withControlScene(_ body: (ControlScene) async throws -> Void) async throws {
    try await withStore(.sqlite) { store, _ in
        let time = ManualInstant()
        try await body(ControlScene(service: IndexControlService(store: store, clock: { time.now }), time: time))
    }
}

@Suite("INDEX over the control channel: IndexControlService on a real store")
struct IndexControlServiceTests {
    typealias S = ControlScene

    @Test("sign up logs the peer in; whoami, profile update, logout; login binds another peer")
    func accounts() async throws {
        try await withControlScene { s in
            guard case .user(let alice) = await s.ok(S.alice, .signup(username: "alice", password: "correct horse", metadata: try PeerMetadata(["city": "paris"]))) else { return }
            #expect(alice.name == "alice")
            #expect(await s.ok(S.alice, .whoami) == .user(alice))
            let update = MetadataUpdate(replace: true, changes: [(key: "lang", value: "fr")])
            guard case .user(let changed) = await s.ok(S.alice, .updateProfile(update)) else { return }
            #expect(changed.metadata.dictionary == ["lang": "fr"])
            #expect(await s.ok(S.alice, .logout) == .done)
            #expect(await s.refused(S.alice, .whoami)?.code == .notLoggedIn)
            // Another peer logs in as alice; the password changes; the old one no longer works.
            #expect(await s.ok(S.bob, .login(username: "alice", password: "correct horse")) == .user(changed))
            #expect(await s.refused(S.bob, .changePassword(old: "wrong password", new: "battery staple"))?.code == .badCredentials)
            #expect(await s.ok(S.bob, .changePassword(old: "correct horse", new: "battery staple")) == .done)
            #expect(await s.refused(S.carol, .login(username: "alice", password: "correct horse"))?.code == .badCredentials)
            #expect(await s.ok(S.carol, .login(username: "alice", password: "battery staple")) != nil)
            #expect(await s.refused(S.carol, .signup(username: "alice", password: "whatever123", metadata: PeerMetadata()))?.code == .conflict)
            #expect(await s.refused(S.carol, .signup(username: "A!", password: "whatever123", metadata: PeerMetadata()))?.code == .badRequest)
        }
    }

    @Test("login attempts are limited per user, and per source across users; the limit lifts with time")
    func loginLimits() async throws {
        try await withControlScene { s in
            _ = await s.ok(S.alice, .signup(username: "alice", password: "correct horse", metadata: PeerMetadata()))
            let burst = LoginLimiter<String>.defaultPerUser.burst
            for _ in 0..<burst {
                #expect(await s.refused(S.bob, .login(username: "alice", password: "wrong guess"))?.code == .badCredentials)
            }
            let limited = await s.refused(S.bob, .login(username: "alice", password: "correct horse"))
            #expect(limited?.code == .rateLimited)
            // From another address: still limited (per user).
            #expect(await s.refused(S.carol, .login(username: "alice", password: "correct horse"), from: 0xC633_6409)?.code == .rateLimited)
            s.time.advance(LoginLimiter<String>.defaultPerUser.refill + .seconds(1))
            #expect(await s.ok(S.bob, .login(username: "alice", password: "correct horse")) != nil)
            // One source guessing many usernames is limited by its own bucket.
            let perSource = LoginLimiter<String>.defaultPerSource.burst
            for i in 0..<perSource {
                _ = await s.refused(S.carol, .login(username: "nobody\(i)", password: "guess1234"), from: 0x0A00_0001)
            }
            #expect(await s.refused(S.carol, .login(username: "alice", password: "correct horse"), from: 0x0A00_0001)?.code == .rateLimited)
        }
    }

    @Test("sign-ups are limited per source address (each costs a memory-hard hash); another source is not held back")
    func signupLimit() async throws {
        try await withControlScene { s in
            for i in 0..<IndexControlLimits.signupBurstPerSource {
                _ = await s.ok(peer(200 + UInt64(i)), .signup(username: "user\(i)", password: "password\(i)", metadata: PeerMetadata()))
            }
            #expect(await s.refused(peer(300), .signup(username: "one-more", password: "password!", metadata: PeerMetadata()))?.code == .rateLimited)
            #expect(await s.refused(peer(301), .signup(username: "elsewhere", password: "password!", metadata: PeerMetadata()), from: 0x0A00_0009) == nil)
            s.time.advance(IndexControlLimits.signupRefillPerSource)
            #expect(await s.refused(peer(300), .signup(username: "one-more", password: "password!", metadata: PeerMetadata())) == nil)
        }
    }

    @Test("done-when flow: alice creates a network, bob joins, both watch and see each other come online and go offline")
    func networkPresence() async throws {
        try await withControlScene { s in
            // Both peers are registered with the checkpoint.
            _ = await s.online(S.alice)
            _ = await s.online(S.bob)
            _ = await s.ok(S.alice, .signup(username: "alice", password: "correct horse", metadata: PeerMetadata()))
            guard case .network(let lab) = await s.ok(S.alice, .createNetwork(name: "lab", access: .open, metadata: try PeerMetadata(["topic": "nat"]))) else { return }
            #expect(lab.role == .owner && lab.owner == "alice")
            guard case .members(_, let first) = await s.ok(S.alice, .watchNetwork("lab")) else { return }
            #expect(first.items.map(\.name) == ["alice"])
            #expect(first.items.first?.onlinePeers == [S.alice])

            // Bob signs up (not a member yet: alice hears nothing), then joins: alice hears him.
            let signup = await s.call(S.bob, .signup(username: "bob", password: "hunter2222", metadata: PeerMetadata()))
            #expect(signup.notifications.isEmpty)
            let join = await s.call(S.bob, .join(network: "lab"))
            guard case .success(.network(let joined)) = join.result else { Issue.record("join failed: \(join.result)"); return }
            #expect(joined.role == .member)
            #expect(join.notifications.map(\.to) == [S.alice])
            #expect(join.notifications.first?.status == NetworkMemberStatus(network: "lab", user: join.notifications.first!.status.user, name: "bob", peer: S.bob, online: true))
            _ = await s.ok(S.bob, .watchNetwork("lab"))
            #expect(await s.members(S.bob, "lab") == ["alice": true, "bob": true])

            // Bob goes offline: alice is told; the list shows it.
            var notes = await s.offline(S.bob)
            #expect(notes.map(\.to) == [S.alice])
            #expect(notes.first?.status.online == false)
            #expect(notes.first?.status.name == "bob")
            #expect(await s.members(S.alice, "lab") == ["alice": true, "bob": false])
            // Bob comes back (still logged in: the session is bound to his key): alice is told.
            notes = await s.online(S.bob)
            #expect(notes.map(\.to) == [S.alice])
            #expect(notes.first?.status.online == true)
            // Bob watches again (a client renews its watches after re-registering); alice goes
            // offline and bob is told.
            _ = await s.ok(S.bob, .watchNetwork("lab"))
            notes = await s.offline(S.alice)
            #expect(notes.map(\.to) == [S.bob])
            #expect(notes.first?.status.name == "alice")
            #expect(notes.first?.status.online == false)
            // Bob leaves: nobody else watches (alice is offline), nobody is told.
            let leave = await s.call(S.bob, .leave(network: "lab"))
            #expect(leave.notifications.isEmpty)
            #expect(await s.refused(S.bob, .members(network: "lab", page: IndexPageRequest()))?.code == .notFound)
            // Bob joins again and deletes his account (password confirmed): alice, back and
            // watching, sees him go; he is logged out.
            await s.online(S.alice)
            _ = await s.ok(S.alice, .watchNetwork("lab"))
            _ = await s.ok(S.bob, .join(network: "lab"))
            #expect(await s.refused(S.bob, .deleteAccount(password: "not-his-password"))?.code == .badCredentials)
            let deleted = await s.call(S.bob, .deleteAccount(password: "hunter2222"))
            #expect(deleted.result == .success(.done))
            #expect(deleted.notifications.map(\.to) == [S.alice])
            #expect(deleted.notifications.first?.status.name == "bob" && deleted.notifications.first?.status.online == false)
            #expect(await s.refused(S.bob, .whoami)?.code == .notLoggedIn)
            #expect(await s.members(S.alice, "lab") == ["alice": true])
            // The owner of a network cannot delete the account.
            #expect(await s.refused(S.alice, .deleteAccount(password: "correct horse"))?.code == .forbidden)
        }
    }

    @Test("presence changes taken in a batch: sessions read at once, each peer's changes in order; a peer that came and went in one batch leaves no trace")
    func presenceBatchOrder() async throws {
        try await withControlScene { s in
            await s.online(S.alice)
            _ = await s.ok(S.alice, .signup(username: "alice", password: "correct horse", metadata: PeerMetadata()))
            _ = await s.ok(S.alice, .createNetwork(name: "lab", access: .open, metadata: PeerMetadata()))
            _ = await s.ok(S.alice, .watchNetwork("lab"))
            _ = await s.ok(S.bob, .signup(username: "bob", password: "hunter2222", metadata: PeerMetadata()), from: 0x0A00_0002)
            _ = await s.ok(S.bob, .join(network: "lab"))
            // Bob (logged in) came and went before the batch was handled (the checkpoint's table
            // already says offline), carol (not logged in) came: nothing to tell.
            var notes = await s.service.presenceChanged([(S.bob, true), (S.carol, true), (S.bob, false)])
            #expect(notes.isEmpty)
            #expect(await s.members(S.alice, "lab") == ["alice": true, "bob": false])
            // Bob comes, and dave's peer (logged in as bob too) comes, in one batch: two notices.
            let dave = peer(4)
            _ = await s.ok(dave, .login(username: "bob", password: "hunter2222"))
            s.service.presence.set(S.bob, online: true)
            s.service.presence.set(dave, online: true)
            notes = await s.service.presenceChanged([(S.bob, true), (S.carol, false), (dave, true)])
            #expect(notes.map(\.to) == [S.alice, S.alice])
            #expect(notes.map(\.status.peer) == [S.bob, dave])
            #expect(notes.allSatisfy { $0.status.online && $0.status.name == "bob" })
        }
    }

    @Test("authorisation: only the owner edits a network, only managers invite or remove, invite-only needs an invitation; refusals name users and networks")
    func authorisation() async throws {
        try await withControlScene { s in
            _ = await s.ok(S.alice, .signup(username: "alice", password: "correct horse", metadata: PeerMetadata()))
            _ = await s.ok(S.bob, .signup(username: "bob", password: "hunter2222", metadata: PeerMetadata()))
            _ = await s.ok(S.carol, .signup(username: "carol", password: "carol12345", metadata: PeerMetadata()))
            #expect(await s.refused(S.bob, .createNetwork(name: "x", access: .open, metadata: PeerMetadata()))?.code == .badRequest)
            _ = await s.ok(S.alice, .createNetwork(name: "club", access: .inviteOnly, metadata: PeerMetadata()))
            let notInvited = await s.refused(S.bob, .join(network: "club"))
            #expect(notInvited?.code == .forbidden)
            #expect(notInvited?.text.contains("'club'") == true, "\(notInvited?.text ?? "")")
            #expect(await s.refused(S.bob, .invite(network: "club", user: "carol"))?.code == .forbidden)
            let edit = await s.refused(S.bob, .updateNetwork(name: "club", access: .open, metadata: MetadataUpdate(replace: false, changes: [])))
            #expect(edit?.code == .forbidden)
            #expect(edit?.text.contains("'bob'") == true && edit?.text.contains("'club'") == true, "\(edit?.text ?? "")")
            #expect(await s.refused(S.bob, .deleteNetwork(name: "club"))?.code == .forbidden)
            #expect(await s.refused(S.bob, .join(network: "nowhere"))?.code == .notFound)
            #expect(await s.ok(S.alice, .invite(network: "club", user: "bob")) == .done)
            #expect(await s.refused(S.alice, .invite(network: "club", user: "bob"))?.code == .conflict)
            guard case .networks(let invited) = await s.ok(S.bob, .invitations) else { return }
            #expect(invited.items.map(\.name) == ["club"])
            #expect(invited.items.first?.role == nil)
            guard case .network(let joined) = await s.ok(S.bob, .join(network: "club")) else { return }
            #expect(joined.role == .member)
            // An admin invites and removes members, not the owner; the owner cannot leave.
            #expect(await s.ok(S.alice, .setRole(network: "club", user: "bob", role: .admin)) == .done)
            #expect(await s.ok(S.bob, .invite(network: "club", user: "carol")) == .done)
            _ = await s.ok(S.carol, .join(network: "club"))
            #expect(await s.ok(S.bob, .remove(network: "club", user: "carol")) == .done)
            #expect(await s.refused(S.bob, .remove(network: "club", user: "alice"))?.code == .forbidden)
            #expect(await s.refused(S.alice, .leave(network: "club"))?.code == .forbidden)
            guard case .networks(let mine) = await s.ok(S.bob, .myNetworks(IndexPageRequest())) else { return }
            #expect(mine.items.map(\.name) == ["club"])
            #expect(mine.items.first?.role == .admin)
            #expect(await s.ok(S.alice, .deleteNetwork(name: "club")) == .done)
            #expect(await s.refused(S.bob, .members(network: "club", page: IndexPageRequest()))?.code == .notFound)
            // Nothing without logging in.
            #expect(await s.refused(peer(99), .searchUsers(query: "a=1", page: IndexPageRequest()))?.code == .notLoggedIn)
        }
    }

    @Test("search users and networks by metadata; pages are cut to fit a frame and continue where they stopped")
    func searchAndPages() async throws {
        try await withControlScene { s in
            let big = Dictionary(uniqueKeysWithValues: (0..<3).map { ("k\($0)", String(repeating: "v", count: 120)) })
            for i in 0..<12 {
                var meta = big
                meta["city"] = i % 2 == 0 ? "paris" : "oslo"
                _ = await s.ok(peer(100 + UInt64(i)), .signup(username: "user\(i)", password: "password\(i)", metadata: try PeerMetadata(meta)),
                               from: 0x0A00_0100 + UInt32(i))
            }
            var seen: [String] = []
            var after: String?
            var pages = 0
            repeat {
                guard case .users(let page) = await s.ok(peer(100), .searchUsers(query: "city=paris", page: IndexPageRequest(after: after, limit: 100))) else { return }
                #expect(page.items.reduce(0) { $0 + $1.wireBytes } <= IndexControlService.pageBudget)
                seen += page.items.map(\.name)
                after = page.next
                pages += 1
            } while after != nil && pages < 10
            #expect(seen == (0..<12).filter { $0 % 2 == 0 }.map { "user\($0)" })
            #expect(pages > 1)
            #expect(await s.refused(peer(100), .searchUsers(query: "city=", page: IndexPageRequest()))?.code == .badQuery)
            #expect(await s.refused(peer(100), .searchUsers(query: "city=paris", page: IndexPageRequest(after: "x.y.z")))?.code == .badRequest)

            _ = await s.ok(peer(100), .createNetwork(name: "rustaceans", access: .open, metadata: try PeerMetadata(["topic": "rust"])))
            _ = await s.ok(peer(101), .createNetwork(name: "gophers", access: .inviteOnly, metadata: try PeerMetadata(["topic": "go"])))
            guard case .networks(let found) = await s.ok(peer(101), .searchNetworks(query: "topic=rust or topic=go", page: IndexPageRequest())) else { return }
            #expect(found.items.map(\.name) == ["rustaceans", "gophers"])
            #expect(found.items.map(\.role) == [nil, .owner])
            #expect(found.items.map(\.owner) == ["user0", "user1"])
        }
    }

    @Test("a refusal's text replaces ids as whole words only and fits the error limit")
    func failureText() {
        #expect(IndexControlService.replacing("u1", with: "'al'", in: "user u1 and u12 (u1)") == "user 'al' and u12 ('al')")
        let long = String(repeating: "é", count: 300)
        let cut = IndexControlService.truncated(long, to: ControlLimits.maximumErrorTextBytes)
        #expect(cut.utf8.count <= ControlLimits.maximumErrorTextBytes)
        #expect(cut.utf8.count >= ControlLimits.maximumErrorTextBytes - 1)
    }
}
