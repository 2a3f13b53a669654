import Foundation
import PeerwayCheckpoint
import Testing
@testable import PeerwayIndex

/// Two supernodes' INDEX services on one store: every peer is online in both presence tables (each
/// checkpoint hears of the other's peers), operations run on the peer's own supernode, and what
/// they hand to the other supernodes (`IndexControlOutcome.cluster`) is applied there.
struct TwoSupernodes {
    let home: ControlScene
    let other: ControlScene

    /// Both presence tables say `p` is online; both services are told.
    func online(_ p: PeerID) async {
        await home.online(p)
        await other.online(p)
    }

    /// `call` by `p` on `home`; returns the notices `other`'s watchers get from its events.
    func run(_ p: PeerID, _ call: IndexCall, sourceLocation: SourceLocation = #_sourceLocation) async -> [IndexNotification] {
        let outcome = await home.call(p, call)
        if case .failure(let f) = outcome.result { Issue.record("\(call) failed: \(f.code) \(f.text)", sourceLocation: sourceLocation) }
        var notes: [IndexNotification] = []
        for event in outcome.cluster { notes += await other.service.apply(event) }
        return notes
    }
}

func withTwoSupernodes(_ body: (TwoSupernodes) async throws -> Void) async throws {
    try await withStore(.sqlite) { store, _ in
        let time = ManualInstant()
        try await body(TwoSupernodes(home: ControlScene(service: IndexControlService(store: store, clock: { time.now }), time: time),
                                     other: ControlScene(service: IndexControlService(store: store, clock: { time.now }), time: time)))
    }
}

@Suite("INDEX in a network of supernodes: events from the supernode of an operation")
struct IndexControlClusterTests {
    typealias S = ControlScene

    /// The notices as "watcher<-user@peer network on|off" (peers by their low half).
    static func seen(_ notes: [IndexNotification]) -> [String] {
        notes.map { "\($0.to.low)<-\($0.status.name)@\($0.status.peer.low) \($0.status.network) \($0.status.online ? "on" : "off")" }
    }

    @Test("a watcher on the other supernode hears logins, logouts, joins, leaves, removals and a deleted account once each")
    func watcherElsewhere() async throws {
        try await withTwoSupernodes { n in
            // Alice (the watcher) is registered on the other supernode, bob (the member) on home.
            await n.online(S.alice)
            await n.online(S.bob)
            _ = await n.other.ok(S.alice, .signup(username: "alice", password: "correct horse", metadata: PeerMetadata()))
            _ = await n.other.ok(S.alice, .createNetwork(name: "lab", access: .open, metadata: PeerMetadata()))
            _ = await n.other.ok(S.alice, .watchNetwork("lab"))
            let bobOn = ["1<-bob@2 lab on"], bobOff = ["1<-bob@2 lab off"]

            #expect(Self.seen(await n.run(S.bob, .signup(username: "bob", password: "hunter2222", metadata: PeerMetadata()))) == [])
            #expect(Self.seen(await n.run(S.bob, .join(network: "lab"))) == bobOn)
            #expect(await n.other.members(S.alice, "lab") == ["alice": true, "bob": true])
            #expect(Self.seen(await n.run(S.bob, .logout)) == bobOff)
            #expect(await n.other.members(S.alice, "lab") == ["alice": true, "bob": false])
            #expect(Self.seen(await n.run(S.bob, .login(username: "bob", password: "hunter2222"))) == bobOn)
            // A login the other supernode already knew of (a second login of the same user) tells nobody twice.
            #expect(Self.seen(await n.run(S.bob, .login(username: "bob", password: "hunter2222"))) == [])
            // Presence needs no event: the other supernode's checkpoint tells its INDEX itself.
            #expect(Self.seen(await n.other.offline(S.bob)) == bobOff)
            #expect(Self.seen(await n.other.online(S.bob)) == bobOn)
            #expect(Self.seen(await n.run(S.bob, .leave(network: "lab"))) == bobOff)
            // Bob logs out, logs in and joins before the other supernode applies the events: the
            // login names the networks of its moment, so "online" is heard once, from the join.
            #expect(Self.seen(await n.run(S.bob, .logout)) == [])
            let login = await n.home.call(S.bob, .login(username: "bob", password: "hunter2222"))
            let join = await n.home.call(S.bob, .join(network: "lab"))
            var late: [IndexNotification] = []
            for event in login.cluster + join.cluster { late += await n.other.service.apply(event) }
            #expect(Self.seen(late) == bobOn)
            // The owner removes bob from the other supernode: bob's watches of it end on home.
            _ = await n.home.ok(S.bob, .watchNetwork("lab"))
            let removal = await n.other.call(S.alice, .remove(network: "lab", user: "bob"))
            #expect(Self.seen(removal.notifications) == bobOff)
            for event in removal.cluster { #expect(await n.home.service.apply(event).isEmpty) }
            #expect(await n.home.service.watching[S.bob] == nil)
            #expect(Self.seen(await n.run(S.bob, .join(network: "lab"))) == bobOn)
            #expect(Self.seen(await n.run(S.bob, .deleteAccount(password: "hunter2222"))) == bobOff)
            #expect(await n.other.members(S.alice, "lab") == ["alice": true])

            // Carol watches on home; alice deletes the network on the other supernode: carol's watch ends.
            _ = await n.home.ok(S.carol, .signup(username: "carol", password: "carol-password", metadata: PeerMetadata()))
            _ = await n.home.ok(S.carol, .join(network: "lab"))
            _ = await n.home.ok(S.carol, .watchNetwork("lab"))
            let deleted = await n.other.call(S.alice, .deleteNetwork(name: "lab"))
            #expect(deleted.cluster.count == 1)
            for event in deleted.cluster { _ = await n.home.service.apply(event) }
            #expect(await n.home.service.watchers.isEmpty)
        }
    }

    @Test("events lost with a link are repaired by a full resync: logins read again, peers gone offline unbound")
    func fullResync() async throws {
        try await withTwoSupernodes { n in
            await n.online(S.alice)
            await n.online(S.bob)
            _ = await n.other.ok(S.alice, .signup(username: "alice", password: "correct horse", metadata: PeerMetadata()))
            _ = await n.other.ok(S.alice, .createNetwork(name: "lab", access: .open, metadata: PeerMetadata()))
            _ = await n.other.ok(S.alice, .watchNetwork("lab"))
            // Bob signs up and joins on home; the other supernode hears none of it (the link was down).
            _ = await n.home.ok(S.bob, .signup(username: "bob", password: "hunter2222", metadata: PeerMetadata()))
            _ = await n.home.ok(S.bob, .join(network: "lab"))
            #expect(await n.other.members(S.alice, "lab") == ["alice": true, "bob": false])
            #expect(await n.other.service.needsResync == false)

            await n.other.service.requestFullResync()
            #expect(await n.other.service.needsResync)
            var (notes, done) = await n.other.service.resync()
            #expect(done)
            #expect(Self.seen(notes) == ["1<-bob@2 lab on"])
            #expect(await n.other.members(S.alice, "lab") == ["alice": true, "bob": true])
            #expect(await n.other.service.needsResync == false)

            // Bob logs out and (separately) carol's peer, logged in as bob, went offline while
            // its change was lost: one resync repairs both.
            _ = await n.home.ok(S.carol, .login(username: "bob", password: "hunter2222"))
            await n.other.online(S.carol)
            _ = await n.home.ok(S.bob, .logout)
            n.other.service.presence.set(S.carol, online: false)
            await n.other.service.requestFullResync()
            (notes, done) = await n.other.service.resync()
            #expect(done)
            #expect(Set(Self.seen(notes)) == ["1<-bob@2 lab off", "1<-bob@3 lab off"])
            #expect(await n.other.members(S.alice, "lab") == ["alice": true, "bob": false])
            // Nothing left to repair: a second resync tells nobody.
            await n.other.service.requestFullResync()
            (notes, done) = await n.other.service.resync()
            #expect(done && notes.isEmpty)
        }
    }
}
