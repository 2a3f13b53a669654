import Foundation
import PeerwayCheckpoint
import Testing
@testable import PeerwayIndex

/// Conformance: networks, membership, invitations, roles, ownership, and their limits.
extension IndexStoreConformanceTests {
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
}
