import Foundation
import Hummingbird
import PeerwayCheckpoint
import PeerwayIndex

/// The `/v1/` routes. Each call acts as `IndexActor.administrator` on one `IndexStore` operation
/// (adding a member to an invite-only network, and naming a new member admin, take two).
///
/// | route | does |
/// | --- | --- |
/// | `GET /v1/users?q=&after=&limit=` | lists users; with `q`, searches their metadata |
/// | `POST /v1/users` | creates a user (201) |
/// | `GET /v1/users/{name}` | one user, with their sessions and whether each peer is online |
/// | `PATCH /v1/users/{name}` | changes metadata (null removes a key) and/or the password |
/// | `DELETE /v1/users/{name}` | deletes the user (204; refused while they own a network) |
/// | `GET /v1/users/{name}/networks` | the user's memberships |
/// | `GET /v1/users/{name}/invitations` | the user's pending invitations |
/// | `GET /v1/networks?q=&after=&limit=` | lists networks; with `q`, searches their metadata |
/// | `POST /v1/networks` | creates a network for its owner (201) |
/// | `GET`/`PATCH`/`DELETE /v1/networks/{name}` | reads, changes (access, metadata, owner), deletes |
/// | `GET`/`POST /v1/networks/{name}/members` | lists members, adds one (201) |
/// | `GET`/`PATCH`/`DELETE /v1/networks/{name}/members/{user}` | reads, changes the role of, removes a member |
/// | `GET`/`POST /v1/networks/{name}/invitations`, `DELETE .../invitations/{user}` | invitations |
/// | `GET /v1/memberships?after=&limit=` | every membership |
struct IndexAPIRoutes: Sendable {
    let store: any IndexStore
    let presence: any IndexPresence

    func register(on v1: RouterGroup<IndexAPIRequestContext>) {
        v1.get("users") { request, _ in try await listUsers(request) }
        v1.post("users") { request, _ in try await createUser(request) }
        v1.get("users/:name") { _, context in try await showUser(context) }
        v1.patch("users/:name") { request, context in try await updateUser(request, context) }
        v1.delete("users/:name") { _, context in try await deleteUser(context) }
        v1.get("users/:name/networks") { request, context in try await networksOfUser(request, context) }
        v1.get("users/:name/invitations") { _, context in try await invitationsOfUser(context) }
        registerNetworks(on: v1)
    }

    // MARK: Users

    func listUsers(_ request: Request) async throws -> Response {
        let paging = try Paging(request)
        let page: IndexPage<IndexUser>
        if let query = try paging.query() {
            page = try await store.searchUsers(query, after: paging.after, limit: paging.limit)
        } else {
            page = try await store.listUsers(after: paging.after, limit: paging.limit)
        }
        return try json(IndexAPIPage(items: page.items.map { IndexAPIUser($0) }, next: page.next?.description))
    }

    func createUser(_ request: Request) async throws -> Response {
        let body = try await decodeBody(IndexAPICreateUser.self, request)
        try IndexAPIContract.checkPassword(body.password)
        let user = try await store.createUser(name: body.name, password: body.password, metadata: body.metadata ?? [:])
        return try json(IndexAPIUser(user, sessions: []), status: .created)
    }

    func showUser(_ context: IndexAPIRequestContext) async throws -> Response {
        let user = try await user(try context.parameters.require("name"))
        return try json(try await withSessions(user))
    }

    func updateUser(_ request: Request, _ context: IndexAPIRequestContext) async throws -> Response {
        let body = try await decodeBody(IndexAPIUpdateUser.self, request)
        if let password = body.password { try IndexAPIContract.checkPassword(password) }
        if let changes = body.metadata { try IndexAPIContract.checkChanges(changes) }
        var user = try await user(try context.parameters.require("name"))
        if let password = body.password {
            try await store.changePassword(of: user.id, to: password, by: .administrator)
        }
        if let changes = body.metadata {
            let id = user.id
            user = try await IndexAPIContract.metadataFullAsConflict { try await store.updateUserMetadata(of: id, changes: changes, by: .administrator) }
        } else if body.password != nil, let changed = try await store.user(id: user.id) {
            user = changed
        }
        return try json(try await withSessions(user))
    }

    func deleteUser(_ context: IndexAPIRequestContext) async throws -> Response {
        let user = try await user(try context.parameters.require("name"))
        try await store.deleteUser(user.id, by: .administrator)
        return Response(status: .noContent)
    }

    func networksOfUser(_ request: Request, _ context: IndexAPIRequestContext) async throws -> Response {
        let paging = try Paging(request, search: true)
        let user = try await user(try context.parameters.require("name"))
        let page = try await store.networks(of: user.id, after: paging.after, limit: paging.limit)
        var names = NameCache(store: store)
        names.users[user.id] = user.name
        return try json(IndexAPIPage(items: try await names.memberships(page.items), next: page.next?.description))
    }

    func invitationsOfUser(_ context: IndexAPIRequestContext) async throws -> Response {
        let user = try await user(try context.parameters.require("name"))
        var names = NameCache(store: store)
        names.users[user.id] = user.name
        return try json(IndexAPIList(items: try await names.invitations(try await store.invitations(of: user.id))))
    }

    /// The user, with their sessions and each peer's online state.
    func withSessions(_ user: IndexUser) async throws -> IndexAPIUser {
        let sessions = try await store.sessions(of: user.id).map {
            IndexAPISession(peer: $0.peer.description, online: presence.isOnline($0.peer), since: $0.created)
        }
        return IndexAPIUser(user, sessions: sessions)
    }

    // MARK: Lookups and coding

    /// The user of this name, else 404 `no_such_user`.
    func user(_ name: String) async throws -> IndexUser {
        guard let user = try await store.user(named: name) else { throw IndexAPIError(IndexError.noSuchUser(name)) }
        return user
    }

    /// The network of this name, else 404 `no_such_network`.
    func network(_ name: String) async throws -> IndexNetwork {
        guard let network = try await store.network(named: name) else { throw IndexAPIError(IndexError.noSuchNetwork(name)) }
        return network
    }
}

/// `?after=&limit=` and `?q=` of a listing.
struct Paging {
    let after: IndexCursor?
    let limit: Int
    let q: String?

    /// `short`: a listing whose pages hold at most `IndexAPILimits.maximumSearchPage` items
    /// (members, a user's networks); others take up to `maximumListPage`, and a search (`q`)
    /// among them answers pages of at most `maximumSearchPage` items whatever `limit` asks.
    /// `cursorParts`: the parts of this listing's cursors (`IndexAPILimits.listingCursorParts`,
    /// `membershipCursorParts`).
    init(_ request: Request, search short: Bool = false, cursorParts: Int = IndexAPILimits.listingCursorParts) throws {
        let parameters = try IndexAPIContract.queryParameters(request.uri.query)
        if let text = parameters["after"], !text.isEmpty {
            guard IndexAPIContract.isCursor(text[...], parts: cursorParts), let cursor = IndexCursor(text) else {
                throw IndexAPIError(IndexError.invalidCursor(text))
            }
            after = cursor
        } else {
            after = nil
        }
        q = parameters["q"]
        let maximum = short ? IndexAPILimits.maximumSearchPage : IndexAPILimits.maximumListPage
        if let text = parameters["limit"] {
            guard let number = Int(text) else { throw IndexAPIError.invalidParameter("limit '\(text)' is not a number: ask for 1-\(maximum)") }
            guard (1...maximum).contains(number) else { throw IndexAPIError(IndexError.invalidPageSize(number, maximum: maximum)) }
            limit = q == nil ? number : min(number, IndexAPILimits.maximumSearchPage)
        } else {
            limit = IndexAPILimits.defaultPageSize
        }
    }

    /// `q` parsed in the CHECKPOINT's query language; nil without `q`.
    func query() throws -> IndexQuery? {
        guard let q else { return nil }
        guard q.utf8.count <= IndexAPILimits.maximumQueryBytes else {
            throw IndexAPIError(IndexError.invalidQuery("query is \(q.utf8.count) bytes: at most \(IndexAPILimits.maximumQueryBytes)"))
        }
        return try IndexQuery(parsing: q)
    }
}

/// Names of users and networks met while answering one request, looked up once each.
struct NameCache {
    let store: any IndexStore
    var users: [UserID: String] = [:]
    var networks: [NetworkID: String] = [:]

    mutating func user(_ id: UserID) async throws -> String? {
        if let name = users[id] { return name }
        let name = try await store.user(id: id)?.name
        users[id] = name
        return name
    }

    mutating func network(_ id: NetworkID) async throws -> String? {
        if let name = networks[id] { return name }
        let name = try await store.network(id: id)?.name
        networks[id] = name
        return name
    }

    mutating func memberships(_ items: [IndexMembership]) async throws -> [IndexAPIMembership] {
        var result: [IndexAPIMembership] = []
        for m in items {
            result.append(IndexAPIMembership(network: try await network(m.network), networkId: m.network.description,
                                             user: try await user(m.user), userId: m.user.description,
                                             role: m.role.description, joined: m.joined))
        }
        return result
    }

    mutating func invitations(_ items: [IndexInvitation]) async throws -> [IndexAPIInvitation] {
        var result: [IndexAPIInvitation] = []
        for i in items {
            var inviter: String?
            if let by = i.invitedBy { inviter = try await user(by) }
            result.append(IndexAPIInvitation(network: try await network(i.network), networkId: i.network.description,
                                             user: try await user(i.user), userId: i.user.description,
                                             invitedBy: inviter, created: i.created))
        }
        return result
    }
}

/// A JSON response.
func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try IndexAPIJSON.encoder.encode(value)
    return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// The request's body as `T`: at most `IndexAPILimits.maximumBodyBytes` (else 413), a JSON
/// object with only `T`'s fields (else 400 `invalid_json`).
func decodeBody<T: IndexAPIBody>(_ type: T.Type, _ request: Request) async throws -> T {
    if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > IndexAPILimits.maximumBodyBytes {
        throw IndexAPIError.bodyTooLarge
    }
    let buffer: ByteBuffer
    do { buffer = try await request.body.collect(upTo: IndexAPILimits.maximumBodyBytes) } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
        throw IndexAPIError.bodyTooLarge
    }
    let data = Data(buffer.readableBytesView)
    guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
        throw IndexAPIError.invalidJSON("expected a JSON object with the fields \(T.fields.sorted().joined(separator: ", "))")
    }
    let unknown = Set(object.keys).subtracting(T.fields)
    guard unknown.isEmpty else {
        throw IndexAPIError.invalidJSON("unknown field(s) \(unknown.sorted().joined(separator: ", ")): the fields are \(T.fields.sorted().joined(separator: ", "))")
    }
    // A field given as null is refused rather than read as absent: the document types none as null.
    if let field = object.first(where: { $0.value is NSNull })?.key {
        throw IndexAPIError.invalidJSON("field '\(field)' is null: leave it out instead")
    }
    do { return try IndexAPIJSON.decoder.decode(T.self, from: data) } catch let error as DecodingError {
        switch error {
        case .keyNotFound(let key, _): throw IndexAPIError.invalidJSON("field '\(key.stringValue)' is missing")
        case .valueNotFound(_, let context), .typeMismatch(_, let context), .dataCorrupted(let context):
            let field = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw IndexAPIError.invalidJSON("field '\(field)' has the wrong type or is null")
        @unknown default: throw IndexAPIError.invalidJSON("\(error)")
        }
    }
}
