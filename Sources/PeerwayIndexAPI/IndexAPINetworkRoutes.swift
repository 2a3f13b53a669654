import Foundation
import Hummingbird
import PeerwayCheckpoint
import PeerwayIndex

/// Networks, their members and invitations, and the listing of every membership.
extension IndexAPIRoutes {
    func registerNetworks(on v1: RouterGroup<IndexAPIRequestContext>) {
        v1.get("networks") { request, _ in try await listNetworks(request) }
        v1.post("networks") { request, _ in try await createNetwork(request) }
        v1.get("networks/:name") { _, context in try await showNetwork(context) }
        v1.patch("networks/:name") { request, context in try await updateNetwork(request, context) }
        v1.delete("networks/:name") { _, context in try await deleteNetwork(context) }
        v1.get("networks/:name/members") { request, context in try await listMembers(request, context) }
        v1.post("networks/:name/members") { request, context in try await addMember(request, context) }
        v1.get("networks/:name/members/:user") { _, context in try await showMember(context) }
        v1.patch("networks/:name/members/:user") { request, context in try await setRole(request, context) }
        v1.delete("networks/:name/members/:user") { _, context in try await removeMember(context) }
        v1.get("networks/:name/invitations") { _, context in try await listInvitations(context) }
        v1.post("networks/:name/invitations") { request, context in try await invite(request, context) }
        v1.delete("networks/:name/invitations/:user") { _, context in try await withdraw(context) }
        v1.get("memberships") { request, _ in try await listMemberships(request) }
    }

    // MARK: Networks

    func listNetworks(_ request: Request) async throws -> Response {
        let paging = try Paging(request)
        let page: IndexPage<IndexNetwork>
        if let query = try paging.query() {
            page = try await store.searchNetworks(query, after: paging.after, limit: paging.limit)
        } else {
            page = try await store.listNetworks(after: paging.after, limit: paging.limit)
        }
        var names = NameCache(store: store)
        var items: [IndexAPINetwork] = []
        for network in page.items {
            items.append(IndexAPINetwork(network, ownerName: try await names.user(network.owner)))
        }
        return try json(IndexAPIPage(items: items, next: page.next?.description))
    }

    func createNetwork(_ request: Request) async throws -> Response {
        let body = try await decodeBody(IndexAPICreateNetwork.self, request)
        let access = try body.access.map { text throws(IndexAPIError) in try NetworkAccess.parsing(text) } ?? .open
        let owner = try await user(body.owner)
        let network = try await store.createNetwork(name: body.name, owner: owner.id, access: access,
                                                    metadata: body.metadata ?? [:], by: .administrator)
        return try json(IndexAPINetwork(network, ownerName: owner.name), status: .created)
    }

    func showNetwork(_ context: IndexAPIRequestContext) async throws -> Response {
        let network = try await network(try context.parameters.require("name"))
        return try json(try await described(network))
    }

    func updateNetwork(_ request: Request, _ context: IndexAPIRequestContext) async throws -> Response {
        let body = try await decodeBody(IndexAPIUpdateNetwork.self, request)
        let access = try body.access.map { text throws(IndexAPIError) in try NetworkAccess.parsing(text) }
        if let changes = body.metadata { try IndexAPIContract.checkChanges(changes) }
        var network = try await network(try context.parameters.require("name"))
        if let ownerName = body.owner {
            let owner = try await user(ownerName)
            if owner.id != network.owner {
                network = try await store.transferOwnership(of: network.id, to: owner.id, by: .administrator)
            }
        }
        if access != nil || !(body.metadata ?? [:]).isEmpty {
            let update = NetworkUpdate(access: access, metadata: body.metadata ?? [:])
            let id = network.id
            network = try await IndexAPIContract.metadataFullAsConflict { try await store.updateNetwork(id, update, by: .administrator) }
        }
        return try json(try await described(network))
    }

    func deleteNetwork(_ context: IndexAPIRequestContext) async throws -> Response {
        let network = try await network(try context.parameters.require("name"))
        try await store.deleteNetwork(network.id, by: .administrator)
        return Response(status: .noContent)
    }

    func described(_ network: IndexNetwork) async throws -> IndexAPINetwork {
        IndexAPINetwork(network, ownerName: try await store.user(id: network.owner)?.name)
    }

    // MARK: Members

    func listMembers(_ request: Request, _ context: IndexAPIRequestContext) async throws -> Response {
        let paging = try Paging(request, search: true)
        let network = try await network(try context.parameters.require("name"))
        let page = try await store.members(of: network.id, after: paging.after, limit: paging.limit)
        var names = NameCache(store: store)
        names.networks[network.id] = network.name
        var items = try await names.memberships(page.items)
        // Live state: a member is online when a peer they are logged in from is registered now.
        for (i, m) in page.items.enumerated() {
            items[i].online = try await store.sessions(of: m.user).contains { presence.isOnline($0.peer) }
        }
        return try json(IndexAPIPage(items: items, next: page.next?.description))
    }

    /// Adds `user`: joins an open network; an invite-only one is joined through an invitation
    /// (made here unless pending; withdrawn again if joining fails). Then names the role when admin.
    func addMember(_ request: Request, _ context: IndexAPIRequestContext) async throws -> Response {
        let body = try await decodeBody(IndexAPIAddMember.self, request)
        let role = try body.role.map { text throws(IndexAPIError) in try NetworkRole.parsing(text) } ?? .member
        let network = try await network(try context.parameters.require("name"))
        let user = try await user(body.user)
        var membership: IndexMembership
        var mustInvite = false
        if network.access == .inviteOnly, try await store.membership(of: user.id, in: network.id) == nil {
            let pending = try await store.invitations(of: user.id)
            mustInvite = !pending.contains { $0.network == network.id }
        }
        if mustInvite {
            _ = try await store.invite(user.id, to: network.id, by: .administrator)
            do {
                membership = try await store.join(network.id, user: user.id, by: .administrator)
            } catch {
                try? await store.withdrawInvitation(network.id, user: user.id, by: .administrator)
                throw error
            }
        } else {
            membership = try await store.join(network.id, user: user.id, by: .administrator)
        }
        if role != .member {
            membership = try await store.setRole(role, of: user.id, in: network.id, by: .administrator)
        }
        return try json(member(membership, network: network, user: user), status: .created)
    }

    func showMember(_ context: IndexAPIRequestContext) async throws -> Response {
        let (network, user) = try await networkAndUser(context)
        guard let membership = try await store.membership(of: user.id, in: network.id) else {
            throw IndexAPIError(IndexError.notMember(user: user.id, network: network.id))
        }
        return try json(member(membership, network: network, user: user))
    }

    func setRole(_ request: Request, _ context: IndexAPIRequestContext) async throws -> Response {
        let body = try await decodeBody(IndexAPISetRole.self, request)
        let role = try NetworkRole.parsing(body.role)
        let (network, user) = try await networkAndUser(context)
        let membership = try await store.setRole(role, of: user.id, in: network.id, by: .administrator)
        return try json(member(membership, network: network, user: user))
    }

    func removeMember(_ context: IndexAPIRequestContext) async throws -> Response {
        let (network, user) = try await networkAndUser(context)
        try await store.remove(user.id, from: network.id, by: .administrator)
        return Response(status: .noContent)
    }

    func listMemberships(_ request: Request) async throws -> Response {
        let paging = try Paging(request, cursorParts: IndexAPILimits.membershipCursorParts)
        let page = try await store.listMemberships(after: paging.after, limit: paging.limit)
        var names = NameCache(store: store)
        return try json(IndexAPIPage(items: try await names.memberships(page.items), next: page.next?.description))
    }

    // MARK: Invitations

    func listInvitations(_ context: IndexAPIRequestContext) async throws -> Response {
        let network = try await network(try context.parameters.require("name"))
        var names = NameCache(store: store)
        names.networks[network.id] = network.name
        return try json(IndexAPIList(items: try await names.invitations(try await store.invitations(to: network.id))))
    }

    func invite(_ request: Request, _ context: IndexAPIRequestContext) async throws -> Response {
        let body = try await decodeBody(IndexAPIInvite.self, request)
        let network = try await network(try context.parameters.require("name"))
        let user = try await user(body.user)
        let invitation = try await store.invite(user.id, to: network.id, by: .administrator)
        var names = NameCache(store: store, users: [user.id: user.name], networks: [network.id: network.name])
        return try json(try await names.invitations([invitation])[0], status: .created)
    }

    func withdraw(_ context: IndexAPIRequestContext) async throws -> Response {
        let (network, user) = try await networkAndUser(context)
        try await store.withdrawInvitation(network.id, user: user.id, by: .administrator)
        return Response(status: .noContent)
    }

    // MARK: Helpers

    func networkAndUser(_ context: IndexAPIRequestContext) async throws -> (IndexNetwork, IndexUser) {
        let network = try await network(try context.parameters.require("name"))
        let user = try await user(try context.parameters.require("user"))
        return (network, user)
    }

    func member(_ m: IndexMembership, network: IndexNetwork, user: IndexUser) -> IndexAPIMembership {
        IndexAPIMembership(network: network.name, networkId: network.id.description, user: user.name,
                           userId: user.id.description, role: m.role.description, joined: m.joined)
    }
}
