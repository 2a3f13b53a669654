import Foundation
import NIOCore
import Peerway
import PeerwayCheckpoint
import PeerwayIndex
import PeerwaySTUN
import PeerwaySupernode
import Testing

/// Supernodes of one network for the INDEX's cluster tests: the membership and the INDEX in one
/// PostgreSQL, passwords hashed cheaply, no STUN pair and no RELAY (the INDEX needs neither).
enum ClusterIndexScene {
    /// Supernode `n` on 127.0.0.(16n+1), its mesh on the same address.
    static func supernode(_ n: Int, url: String, keepaliveSeconds: UInt16 = ControlLimits.defaultKeepaliveSeconds) async throws -> Supernode {
        let host = STUNAddress(ip: .v4(0x7F00_0001 + UInt32(n) * 16), port: 0)
        var c = SupernodeConfiguration(listen: host, keepaliveSeconds: keepaliveSeconds, stun: nil, relay: nil,
                                       index: .postgres(url: url, hasher: .testing))
        c.cluster = ClusterConfiguration(url: url, linkListen: host)
        return try await Supernode.start(c)
    }

    /// Waits until every supernode has a link to every other one.
    static func waitLinked(_ nodes: [Supernode], timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !nodes.allSatisfy({ $0.cluster?.status.linked == nodes.count - 1 }) {
            try await Task.sleep(for: .milliseconds(50))
        }
        for n in nodes { #expect(n.cluster?.status.linked == nodes.count - 1, "\(n.address) is not linked to every other supernode") }
    }

    /// A peer of `node` (and of `others`, to fail over to) that does not measure its NAT.
    static func peer(_ identity: PeerIdentity = PeerIdentity(), on node: Supernode, others: [Supernode] = [],
                     metadata: [String: String] = [:], keepaliveSeconds: UInt16 = ControlLimits.defaultKeepaliveSeconds) async throws -> Peer {
        var o = PeerOptions()
        o.bindHost = "127.0.0.1"
        o.measuresNAT = false
        o.keepaliveSeconds = keepaliveSeconds
        return try await Peer.start(identity: identity, supernodes: [node.address] + others.map(\.address), metadata: metadata, options: o)
    }

    /// Waits until `node`'s directory holds every peer of `ids` (registered on any supernode).
    static func waitKnown(_ ids: [PeerID], by peer: Peer, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        for id in ids {
            while ContinuousClock.now < deadline, (try? await peer.lookup(id))?.online != true {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }
}

/// A network watcher's notices, as (user name, peer, online).
struct MemberNotice: Hashable, CustomStringConvertible {
    var name: String
    var peer: PeerID
    var online: Bool
    var description: String { "\(name)@\(peer) \(online ? "online" : "offline")" }
}

extension EventLog {
    /// The `networkStatus` notices received for `network` so far, in order.
    func notices(_ network: String) -> [MemberNotice] {
        events.compactMap { e in
            guard case .networkStatus(let s) = e, s.network == network else { return nil }
            return MemberNotice(name: s.name, peer: s.peer, online: s.online)
        }
    }
}

/// Issue 12: "presence and network watches work whichever supernodes the members are on".
@Suite("INDEX across a network of supernodes: network watches", .serialized, .timeLimit(.minutes(4)))
struct ClusterIndexTests {
    /// Longest wait for one notice to reach every watcher.
    static let noticeTimeout: Duration = .seconds(20)
    /// How long a watcher is given to receive a notice it must not get (after the ones it must).
    static let quietMillis = 500

    /// Three supernodes, a watcher of "lab" on each; a member on each supernode in turn signs up,
    /// joins, logs out and in, goes offline and comes back, leaves, is removed by the owner (on
    /// supernode 0), and deletes its account. Each watcher gets every notice exactly once, in
    /// order, as a watcher on the member's own supernode does; member lists read on every
    /// supernode agree with them.
    @Test("every watcher on every supernode hears every member of the network exactly once")
    func watchersOnEverySupernode() async throws {
        guard let url = try await IndexCLITests.postgres() else { return }
        var nodes: [Supernode] = []
        for n in 0..<3 { nodes.append(try await ClusterIndexScene.supernode(n, url: url)) }
        try await ClusterIndexScene.waitLinked(nodes)

        // The watchers: w0 (supernode 0) owns "lab", w1 and w2 join it; then all three watch it.
        var watchers: [Peer] = []
        for n in 0..<3 {
            let w = try await ClusterIndexScene.peer(on: nodes[n])
            _ = try await w.signup(username: "watcher\(n)", password: "watcher-password")
            if n == 0 { _ = try await w.createNetwork("lab") } else { _ = try await w.joinNetwork("lab") }
            watchers.append(w)
        }
        let logs = watchers.map { EventLog($0) }
        // The other supernodes hear of the joins a moment later; a watch started before that
        // would hear "online" for a member its first page already lists (true, but not the
        // point here).
        try await Task.sleep(for: .milliseconds(Self.quietMillis))
        for w in watchers { #expect(try await w.watchNetwork("lab").count == 3) }

        var expected: [MemberNotice] = []
        /// How many notices each watcher had heard before the current step.
        var heard = [0, 0, 0]
        /// Runs `action`; every watcher then hears `notice` and nothing else (nothing at all for nil).
        func step(_ label: String, _ notice: MemberNotice?, _ action: () async throws -> Void) async throws {
            try await action()
            if let notice { expected.append(notice) }
            if notice == nil { try await Task.sleep(for: .milliseconds(Self.quietMillis)) }
            let deadline = ContinuousClock.now + Self.noticeTimeout
            for (n, log) in logs.enumerated() {
                while ContinuousClock.now < deadline, await log.notices("lab").count < heard[n] + (notice == nil ? 0 : 1) {
                    try await Task.sleep(for: .milliseconds(20))
                }
                let got = await log.notices("lab")
                let new = Array(got[heard[n]...])
                heard[n] = got.count
                #expect(new == (notice.map { [$0] } ?? []), "\(label): watcher\(n) on supernode \(n) heard \(new)")
            }
        }
        /// Every watcher's member list (read on its own supernode) shows `name` with `peers` online.
        func members(_ label: String, _ name: String, _ peers: [PeerID]) async throws {
            for (n, w) in watchers.enumerated() {
                let entry = try await w.members(of: "lab").first { $0.name == name }
                #expect(entry?.onlinePeers ?? [] == peers, "\(label): w\(n) lists \(name) with \(entry?.onlinePeers ?? [])")
            }
        }

        for n in 0..<3 {
            let identity = PeerIdentity()
            var m = try await ClusterIndexScene.peer(identity, on: nodes[n])
            let name = "member\(n)", id = identity.peerID
            try await ClusterIndexScene.waitKnown([id], by: watchers[(n + 1) % 3])
            try await ClusterIndexScene.waitKnown([id], by: watchers[(n + 2) % 3])
            let on = MemberNotice(name: name, peer: id, online: true), off = MemberNotice(name: name, peer: id, online: false)

            try await step("\(name) signs up (no member yet)", nil) { _ = try await m.signup(username: name, password: "member-password") }
            try await step("\(name) joins", on) { _ = try await m.joinNetwork("lab") }
            try await members("\(name) joined", name, [id])
            try await step("\(name) logs out", off) { try await m.logout() }
            try await members("\(name) logged out", name, [])
            try await step("\(name) logs in", on) { _ = try await m.login(username: name, password: "member-password") }
            try await members("\(name) logged in", name, [id])
            try await step("\(name) goes offline", off) { await m.stop() }
            try await members("\(name) offline", name, [])
            try await step("\(name) comes back online, still logged in", on) { m = try await ClusterIndexScene.peer(identity, on: nodes[n]) }
            try await members("\(name) back", name, [id])
            try await step("\(name) leaves", off) { try await m.leaveNetwork("lab") }
            try await step("\(name) joins again", on) { _ = try await m.joinNetwork("lab") }
            try await step("the owner (supernode 0) removes \(name)", off) { try await watchers[0].remove(name, from: "lab") }
            try await step("\(name) joins once more", on) { _ = try await m.joinNetwork("lab") }
            try await step("\(name) deletes its account", off) { try await m.deleteAccount(password: "member-password") }
            await m.stop()
        }

        // Nothing more arrives: no notice twice, none late.
        try await Task.sleep(for: .milliseconds(Self.quietMillis))
        for (n, log) in logs.enumerated() { #expect(await log.notices("lab") == expected, "w\(n) heard more") }
        for w in watchers { await w.stop() }
        for n in nodes { await n.stop() }
    }

    /// A supernode leaves the network: watchers on the others hear its logged-in members go and
    /// come back (on another supernode, still logged in) in a consistent order, and their member
    /// lists end right; the remaining supernodes keep their link.
    @Test("a supernode that leaves: its members' watchers on the others see them go and come back")
    func supernodeLeaves() async throws {
        guard let url = try await IndexCLITests.postgres() else { return }
        var nodes: [Supernode] = []
        for n in 0..<3 { nodes.append(try await ClusterIndexScene.supernode(n, url: url)) }
        try await ClusterIndexScene.waitLinked(nodes)

        let watcher = try await ClusterIndexScene.peer(on: nodes[0])
        _ = try await watcher.signup(username: "watcher", password: "watcher-password")
        _ = try await watcher.createNetwork("lab")
        let log = EventLog(watcher)
        _ = try await watcher.watchNetwork("lab")
        // The member is given supernode 2 first, then supernode 1 to fail over to.
        let member = try await ClusterIndexScene.peer(on: nodes[2], others: [nodes[1]])
        try await ClusterIndexScene.waitKnown([member.id], by: watcher)
        _ = try await member.signup(username: "member", password: "member-password")
        _ = try await member.joinNetwork("lab")
        #expect(await log.waitFor(timeout: Self.noticeTimeout, IndexPeerTests.memberStatus("member", online: true)) != nil)

        await nodes[2].stop()
        // The member registers on supernode 1 by itself; the watcher's list shows it online there.
        let deadline = ContinuousClock.now + Self.noticeTimeout
        var listed: [PeerID] = []
        while ContinuousClock.now < deadline {
            listed = (try? await watcher.members(of: "lab").first { $0.name == "member" }?.onlinePeers) ?? []
            if listed == [member.id], (try? await member.currentUser().name) == "member" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(listed == [member.id], "the member is listed online again")
        try await Task.sleep(for: .milliseconds(Self.quietMillis))
        // Whatever the watcher heard alternates and ends with the member online.
        let heard = await log.notices("lab").filter { $0.name == "member" }.map(\.online)
        #expect(heard.first == true && heard.last == true, "heard \(heard)")
        #expect(zip(heard, heard.dropFirst()).allSatisfy { $0 != $1 }, "heard \(heard)")
        #expect(nodes[0].cluster?.status.linked == 1 && nodes[1].cluster?.status.linked == 1)

        await member.stop()
        await watcher.stop()
        for n in nodes { await n.stop() }
    }
}
