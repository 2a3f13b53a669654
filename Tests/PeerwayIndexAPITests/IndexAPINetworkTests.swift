import Foundation
import Hummingbird
import HummingbirdTesting
import PeerwayCheckpoint
import PeerwayIndex
import Testing
@testable import PeerwayIndexAPI

@Suite("Management API: networks, members, invitations")
struct IndexAPINetworkTests {
    @Test("networks: create, read, update (access, metadata, owner), search, delete")
    func networkLifecycle() async throws {
        try await withAPI { api in
            try await api.createUser("alice")
            try await api.createUser("bob")
            let created = try await api.createNetwork("lan", owner: "alice", metadata: #"{"game":"chess"}"#)
            #expect(created.object["owner"] as? String == "alice")
            #expect((created.object["ownerId"] as? String)?.hasPrefix("u") == true)
            #expect((created.object["id"] as? String)?.hasPrefix("n") == true)
            #expect(created.object["access"] as? String == "open")
            #expect(created.object["metadata"] as? [String: String] == ["game": "chess"])
            // The owner is its first member.
            let members = try await api.get("/v1/networks/lan/members")
            #expect(members.items.map { $0["user"] as? String } == ["alice"])
            #expect(members.items.first?["role"] as? String == "owner")

            let shown = try await api.get("/v1/networks/lan")
            #expect(shown.status == 200)
            #expect(shown.object["name"] as? String == "lan")

            let patched = try await api.call(.patch, "/v1/networks/lan", json: #"{"access":"invite-only","metadata":{"game":null,"tier":"gold"}}"#)
            #expect(patched.status == 200, "\(patched.text)")
            #expect(patched.object["access"] as? String == "invite-only")
            #expect(patched.object["metadata"] as? [String: String] == ["tier": "gold"])

            // Ownership moves to a member; the old owner becomes an admin.
            #expect(try await api.call(.post, "/v1/networks/lan/members", json: #"{"user":"bob"}"#).status == 201)
            let transferred = try await api.call(.patch, "/v1/networks/lan", json: #"{"owner":"bob"}"#)
            #expect(transferred.object["owner"] as? String == "bob")
            #expect(try await api.get("/v1/networks/lan/members/alice").object["role"] as? String == "admin")

            try await api.createNetwork("wan", owner: "alice", metadata: #"{"tier":"silver"}"#)
            #expect(try await api.get("/v1/networks?q=tier%3Dgold").names == ["lan"])
            #expect(try await api.get("/v1/networks?q=tier%5E%3Ds").names == ["wan"])
            #expect(try await api.get("/v1/networks").names == ["lan", "wan"])
            let first = try await api.get("/v1/networks?limit=1")
            #expect(first.names == ["lan"])
            #expect(try await api.get("/v1/networks?limit=1&after=\(try #require(first.next))").names == ["wan"])

            #expect(try await api.call(.delete, "/v1/networks/lan").status == 204)
            #expect(try await api.get("/v1/networks/lan").errorCode == "no_such_network")
            #expect(try await api.get("/v1/networks").names == ["wan"])
        }
    }

    @Test("networks: refusals (taken 409, unknown owner 404, bad access 400, owner still owns 403 on user delete)")
    func networkRefusals() async throws {
        try await withAPI { api in
            try await api.createUser("alice")
            try await api.createNetwork("lan", owner: "alice")
            let taken = try await api.call(.post, "/v1/networks", json: #"{"name":"lan","owner":"alice"}"#)
            #expect(taken.status == 409)
            #expect(taken.errorCode == "network_name_taken")
            let noOwner = try await api.call(.post, "/v1/networks", json: #"{"name":"wan","owner":"nobody"}"#)
            #expect(noOwner.status == 404)
            #expect(noOwner.errorCode == "no_such_user")
            let badAccess = try await api.call(.post, "/v1/networks", json: #"{"name":"wan","owner":"alice","access":"closed"}"#)
            #expect(badAccess.errorCode == "invalid_parameter")
            let badName = try await api.call(.post, "/v1/networks", json: #"{"name":"-x","owner":"alice"}"#)
            #expect(badName.errorCode == "invalid_network_name")
            let owns = try await api.call(.delete, "/v1/users/alice")
            #expect(owns.status == 403)
            #expect(owns.errorCode == "owns_networks")
            #expect(try await api.call(.patch, "/v1/networks/nope", json: "{}").errorCode == "no_such_network")
            #expect(try await api.call(.delete, "/v1/networks/nope").errorCode == "no_such_network")
            let notMember = try await api.call(.patch, "/v1/networks/lan", json: #"{"owner":"nobody"}"#)
            #expect(notMember.errorCode == "no_such_user")
        }
    }

    @Test("members: add (open and invite-only), role, remove; memberships of a user and of everyone")
    func members() async throws {
        try await withAPI { api in
            for name in ["alice", "bob", "carol", "dave"] { try await api.createUser(name) }
            try await api.createNetwork("open-net", owner: "alice")
            try await api.createNetwork("club", owner: "alice", access: "invite-only")

            let bob = try await api.call(.post, "/v1/networks/open-net/members", json: #"{"user":"bob"}"#)
            #expect(bob.status == 201)
            #expect(bob.object["role"] as? String == "member")
            #expect(bob.object["network"] as? String == "open-net")
            // Invite-only: the administrator's add goes through an invitation, and can name an admin.
            let carol = try await api.call(.post, "/v1/networks/club/members", json: #"{"user":"carol","role":"admin"}"#)
            #expect(carol.status == 201, "\(carol.text)")
            #expect(carol.object["role"] as? String == "admin")
            #expect(try await api.get("/v1/networks/club/invitations").items.isEmpty)
            // Already a member: 409.
            let again = try await api.call(.post, "/v1/networks/club/members", json: #"{"user":"carol"}"#)
            #expect(again.status == 409)
            #expect(again.errorCode == "already_member")

            let role = try await api.call(.patch, "/v1/networks/open-net/members/bob", json: #"{"role":"admin"}"#)
            #expect(role.status == 200)
            #expect(role.object["role"] as? String == "admin")
            let owner = try await api.call(.patch, "/v1/networks/open-net/members/bob", json: #"{"role":"owner"}"#)
            #expect(owner.status == 400)
            #expect(owner.errorCode == "invalid_role")
            #expect(try await api.call(.patch, "/v1/networks/open-net/members/bob", json: #"{"role":"king"}"#).errorCode == "invalid_parameter")
            #expect(try await api.call(.patch, "/v1/networks/open-net/members/dave", json: #"{"role":"admin"}"#).errorCode == "not_member")
            #expect(try await api.get("/v1/networks/open-net/members/dave").errorCode == "not_member")

            // A user's networks, and every membership.
            let alices = try await api.get("/v1/users/alice/networks")
            #expect(alices.items.map { $0["network"] as? String } == ["open-net", "club"])
            let all = try await api.get("/v1/memberships")
            #expect(all.items.count == 4)
            let page = try await api.get("/v1/memberships?limit=3")
            #expect(page.items.count == 3)
            #expect(try await api.get("/v1/memberships?limit=3&after=\(try #require(page.next))").items.count == 1)
            let open = try await api.get("/v1/networks/open-net/members?limit=1")
            #expect(open.names == ["alice"])
            #expect(try await api.get("/v1/networks/open-net/members?limit=1&after=\(try #require(open.next))").names == ["bob"])

            // Removing: the owner never (403); a member yes (204), then 404.
            let removeOwner = try await api.call(.delete, "/v1/networks/open-net/members/alice")
            #expect(removeOwner.status == 403)
            #expect(removeOwner.errorCode == "cannot_remove_owner")
            #expect(try await api.call(.delete, "/v1/networks/open-net/members/bob").status == 204)
            #expect(try await api.call(.delete, "/v1/networks/open-net/members/bob").errorCode == "not_member")
            #expect(try await api.call(.post, "/v1/networks/open-net/members", json: #"{"user":"nobody"}"#).errorCode == "no_such_user")
            #expect(try await api.call(.post, "/v1/networks/nowhere/members", json: #"{"user":"bob"}"#).errorCode == "no_such_network")
        }
    }

    @Test("invitations: invite, list for the network and the user, withdraw")
    func invitations() async throws {
        try await withAPI { api in
            try await api.createUser("alice")
            try await api.createUser("bob")
            try await api.createNetwork("club", owner: "alice", access: "invite-only")
            let invited = try await api.call(.post, "/v1/networks/club/invitations", json: #"{"user":"bob"}"#)
            #expect(invited.status == 201, "\(invited.text)")
            #expect(invited.object["user"] as? String == "bob")
            #expect(invited.object["invitedBy"] == nil)
            #expect(try await api.call(.post, "/v1/networks/club/invitations", json: #"{"user":"bob"}"#).errorCode == "already_invited")
            #expect(try await api.get("/v1/networks/club/invitations").items.map { $0["user"] as? String } == ["bob"])
            #expect(try await api.get("/v1/users/bob/invitations").items.map { $0["network"] as? String } == ["club"])
            // Adding a member who is invited uses the invitation.
            #expect(try await api.call(.post, "/v1/networks/club/members", json: #"{"user":"bob"}"#).status == 201)
            #expect(try await api.get("/v1/users/bob/invitations").items.isEmpty)
            #expect(try await api.call(.post, "/v1/networks/club/invitations", json: #"{"user":"bob"}"#).errorCode == "already_member")
            try await api.createUser("carol")
            #expect(try await api.call(.post, "/v1/networks/club/invitations", json: #"{"user":"carol"}"#).status == 201)
            #expect(try await api.call(.delete, "/v1/networks/club/invitations/carol").status == 204)
            let again = try await api.call(.delete, "/v1/networks/club/invitations/carol")
            #expect(again.status == 404)
            #expect(again.errorCode == "not_invited")
        }
    }
}
