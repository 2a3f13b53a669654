import ArgumentParser
import Foundation
import PeerwayIndexAPI

/// `peerway index`: the operator's client of a supernode's INDEX management API (users,
/// networks, members, invitations). Readable tables by default, the API's JSON with `--json`; on
/// a refusal it prints the API's status, code and message to stderr and exits 1.
struct IndexCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Manage the INDEX (users, networks, members) through a supernode's management API.",
        discussion: """
        The API's URL is --url, else DATA_DIR/admin-url (written by `peerway supernode`), else \
        http://127.0.0.1:7480; the token is --token, else $PEERWAY_ADMIN_TOKEN, else DATA_DIR/admin-token. \
        DATA_DIR is --data-dir (default ~/.peerway/supernode). Queries (search) use the CHECKPOINT's \
        language, e.g. 'team=red and level>=3'.
        """,
        subcommands: [IndexUsersCommand.self, IndexNetworksCommand.self, IndexMembersCommand.self, IndexInvitationsCommand.self]
    )
}

/// Where the API is, its token, and how to print.
struct IndexConnectionOptions: ParsableArguments {
    @Option(help: "Management API URL (default: DATA_DIR/admin-url, else http://127.0.0.1:7480).")
    var url: String?

    @Option(help: "Admin token (default: $PEERWAY_ADMIN_TOKEN, else DATA_DIR/admin-token).")
    var token: String?

    @Option(name: .customLong("data-dir"), help: "The supernode's data directory (default ~/.peerway/supernode).")
    var dataDirectory: String = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".peerway/supernode").path

    @Flag(help: "Print the API's JSON answer as it is.")
    var json = false

    func client() throws -> IndexAdminClient {
        let fileURL = try? String(contentsOfFile: dataDirectory + "/admin-url", encoding: .utf8)
        let base = url ?? fileURL?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "http://127.0.0.1:7480"
        var secret = token ?? ProcessInfo.processInfo.environment[AdminToken.environmentVariable]
        if secret == nil {
            let path = dataDirectory + "/" + AdminToken.fileName
            guard let loaded = try AdminToken.load(path: path) else {
                throw ValidationError("no admin token: give --token, set \(AdminToken.environmentVariable), or point --data-dir at the supernode's (no \(path))")
            }
            secret = loaded.value
        }
        return try IndexAdminClient(url: base, token: secret!)
    }
}

/// `--after`, `--limit`, `--all` of listings.
struct IndexPageOptions: ParsableArguments {
    @Option(help: "Start after this cursor (a previous page's next).") var after: String?
    @Option(help: "Items per page (listings 1-1000, searches and members 1-100; default 20).") var limit: Int?
    @Flag(help: "Follow every page.") var all = false

    var query: [(String, String)] {
        var items: [(String, String)] = []
        if let after { items.append(("after", after)) }
        if let limit { items.append(("limit", String(limit))) }
        return items
    }
}

/// A command that talks to the API.
protocol IndexClientCommand: AsyncParsableCommand {
    var connection: IndexConnectionOptions { get }
}

extension IndexClientCommand {
    /// One call; prints the JSON or `render`s the answer. A refusal: stderr and exit status 1.
    func perform<T: Decodable>(_ type: T.Type, _ method: String, _ path: [String], query: [(String, String)] = [],
                               body: (any Encodable & Sendable)? = nil, render: (T) -> Void) async throws {
        let data = try await request(method, path, query: query, body: body)
        if connection.json {
            if !data.isEmpty { print(String(decoding: data, as: UTF8.self)) }
            return
        }
        if T.self == Empty.self { return render(Empty() as! T) }
        render(try IndexAPIJSON.decoder.decode(T.self, from: data))
    }

    /// A listing: one page, or every page with `--all`; prints a table (or the JSON).
    func list<Item: Codable & Hashable & Sendable>(_ type: Item.Type, _ path: [String], query: [(String, String)] = [],
                                                   paging: IndexPageOptions, row: (Item) -> [String], header: [String]) async throws {
        var items: [Item] = []
        var next = paging.after
        repeat {
            var q = query + (paging.limit.map { [("limit", String($0))] } ?? [])
            if let next { q.append(("after", next)) }
            let data = try await request("GET", path, query: q)
            let page = try IndexAPIJSON.decoder.decode(IndexAPIPage<Item>.self, from: data)
            if connection.json && !paging.all { return print(String(decoding: data, as: UTF8.self)) }
            items += page.items
            next = page.next
        } while paging.all && next != nil
        if connection.json {
            return print(String(decoding: try IndexAPIJSON.encoder.encode(IndexAPIPage(items: items, next: nil)), as: UTF8.self))
        }
        printTable(header, items.map(row))
        if let next { print("next page: --after \(next)") }
    }

    func request(_ method: String, _ path: [String], query: [(String, String)] = [],
                 body: (any Encodable & Sendable)? = nil) async throws -> Data {
        do {
            return try await connection.client().send(method, path, query: query, body: body)
        } catch let error as IndexAdminClientError {
            FileHandle.standardError.write(Data("peerway index: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// No answer body (204).
struct Empty: Decodable {}

// MARK: Users

struct IndexUsersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "users", abstract: "List, show, create, update, delete and search users.",
        subcommands: [List.self, Search.self, Show.self, Create.self, Update.self, Delete.self])

    struct List: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "List users in id order.")
        @OptionGroup var paging: IndexPageOptions
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws { try await list(IndexAPIUser.self, ["v1", "users"], paging: paging, row: userRow, header: userHeader) }
    }

    struct Search: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Users whose metadata matches QUERY.")
        @Argument(help: "A query, e.g. 'team=red and level>=3'.") var query: String
        @OptionGroup var paging: IndexPageOptions
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            try await list(IndexAPIUser.self, ["v1", "users"], query: [("q", query)], paging: paging, row: userRow, header: userHeader)
        }
    }

    struct Show: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "One user, with their sessions (online or not).")
        @Argument var name: String
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws { try await perform(IndexAPIUser.self, "GET", ["v1", "users", name], render: printUser) }
    }

    struct Create: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Create a user.")
        @Argument var name: String
        @OptionGroup var password: PasswordOptions
        @Option(name: .customLong("meta"), help: "Metadata KEY=VALUE (repeatable).") var meta: [String] = []
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            guard let secret = try password.read() else { throw ValidationError("give --password or --password-stdin") }
            let body = IndexAPICreateUser(name: name, password: secret, metadata: try metadata(meta))
            try await perform(IndexAPIUser.self, "POST", ["v1", "users"], body: body) { print("created user \($0.name) (\($0.id))") }
        }
    }

    struct Update: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Set or remove metadata, or change the password.")
        @Argument var name: String
        @Option(help: "Set metadata KEY=VALUE (repeatable).") var set: [String] = []
        @Option(help: "Remove metadata KEY (repeatable).") var remove: [String] = []
        @OptionGroup var password: PasswordOptions
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            let changes = try metadataChanges(set: set, remove: remove)
            let body = IndexAPIUpdateUser(metadata: changes.isEmpty ? nil : changes, password: try password.read())
            try await perform(IndexAPIUser.self, "PATCH", ["v1", "users", name], body: body, render: printUser)
        }
    }

    struct Delete: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a user (not while they own a network).")
        @Argument var name: String
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws { try await perform(Empty.self, "DELETE", ["v1", "users", name]) { _ in print("deleted user \(name)") } }
    }
}

/// `--password` or `--password-stdin`.
struct PasswordOptions: ParsableArguments {
    @Option(help: "The password (visible to other local users in the process list: prefer --password-stdin).") var password: String?
    @Flag(name: .customLong("password-stdin"), help: "Read the password from the first line of stdin.") var passwordStdin = false

    func read() throws -> String? {
        if passwordStdin {
            guard let line = readLine(strippingNewline: true) else { throw ValidationError("--password-stdin: stdin is empty") }
            return line
        }
        return password
    }
}

// MARK: Networks

struct IndexNetworksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "networks", abstract: "List, show, create, update, delete and search networks.",
        subcommands: [List.self, Search.self, Show.self, Create.self, Update.self, Delete.self])

    struct List: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "List networks in id order.")
        @OptionGroup var paging: IndexPageOptions
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            try await list(IndexAPINetwork.self, ["v1", "networks"], paging: paging, row: networkRow, header: networkHeader)
        }
    }

    struct Search: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Networks whose metadata matches QUERY.")
        @Argument var query: String
        @OptionGroup var paging: IndexPageOptions
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            try await list(IndexAPINetwork.self, ["v1", "networks"], query: [("q", query)], paging: paging, row: networkRow, header: networkHeader)
        }
    }

    struct Show: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "One network.")
        @Argument var name: String
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws { try await perform(IndexAPINetwork.self, "GET", ["v1", "networks", name], render: printNetwork) }
    }

    struct Create: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Create a network owned by a user.")
        @Argument var name: String
        @Option(help: "The owner's username.") var owner: String
        @Option(help: "open or invite-only (default open).") var access: String?
        @Option(name: .customLong("meta"), help: "Metadata KEY=VALUE (repeatable).") var meta: [String] = []
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            let body = IndexAPICreateNetwork(name: name, owner: owner, access: access, metadata: try metadata(meta))
            try await perform(IndexAPINetwork.self, "POST", ["v1", "networks"], body: body) { print("created network \($0.name) (\($0.id))") }
        }
    }

    struct Update: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Change access, metadata or owner.")
        @Argument var name: String
        @Option(help: "open or invite-only.") var access: String?
        @Option(help: "Set metadata KEY=VALUE (repeatable).") var set: [String] = []
        @Option(help: "Remove metadata KEY (repeatable).") var remove: [String] = []
        @Option(help: "Transfer ownership to this member.") var owner: String?
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            let changes = try metadataChanges(set: set, remove: remove)
            let body = IndexAPIUpdateNetwork(access: access, metadata: changes.isEmpty ? nil : changes, owner: owner)
            try await perform(IndexAPINetwork.self, "PATCH", ["v1", "networks", name], body: body, render: printNetwork)
        }
    }

    struct Delete: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a network with its memberships.")
        @Argument var name: String
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws { try await perform(Empty.self, "DELETE", ["v1", "networks", name]) { _ in print("deleted network \(name)") } }
    }
}

// MARK: Members and invitations

struct IndexMembersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "members", abstract: "List, add and remove members, and name their roles.",
        subcommands: [List.self, Add.self, Remove.self, Role.self])

    struct List: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "A network's members, a user's networks (--user), or every membership.")
        @Argument(help: "The network (omit for every membership).") var network: String?
        @Option(help: "List this user's networks instead.") var user: String?
        @OptionGroup var paging: IndexPageOptions
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            let path = network.map { ["v1", "networks", $0, "members"] } ?? user.map { ["v1", "users", $0, "networks"] } ?? ["v1", "memberships"]
            try await list(IndexAPIMembership.self, path, paging: paging, row: membershipRow, header: ["NETWORK", "USER", "ROLE", "JOINED"])
        }
    }

    struct Add: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user to a network (inviting them to an invite-only one).")
        @Argument var network: String
        @Argument var user: String
        @Option(help: "member (default) or admin.") var role: String?
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            try await perform(IndexAPIMembership.self, "POST", ["v1", "networks", network, "members"],
                              body: IndexAPIAddMember(user: user, role: role)) { print("added \($0.user ?? user) to \($0.network ?? network) as \($0.role)") }
        }
    }

    struct Remove: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a member (never the owner).")
        @Argument var network: String
        @Argument var user: String
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            try await perform(Empty.self, "DELETE", ["v1", "networks", network, "members", user]) { _ in print("removed \(user) from \(network)") }
        }
    }

    struct Role: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Name a member member or admin.")
        @Argument var network: String
        @Argument var user: String
        @Argument(help: "member or admin.") var role: String
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            try await perform(IndexAPIMembership.self, "PATCH", ["v1", "networks", network, "members", user],
                              body: IndexAPISetRole(role: role)) { print("\($0.user ?? user) is \($0.role) of \($0.network ?? network)") }
        }
    }
}

struct IndexInvitationsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "invitations", abstract: "List, make and withdraw invitations.",
        subcommands: [List.self, Add.self, Withdraw.self])

    struct List: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "A network's pending invitations, or a user's (--user).")
        @Argument var network: String?
        @Option(help: "List this user's invitations instead.") var user: String?
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            guard let path = network.map({ ["v1", "networks", $0, "invitations"] }) ?? user.map({ ["v1", "users", $0, "invitations"] }) else {
                throw ValidationError("name a network, or give --user")
            }
            try await perform(IndexAPIList<IndexAPIInvitation>.self, "GET", path) { list in
                printTable(["NETWORK", "USER", "INVITED BY", "CREATED"],
                           list.items.map { [$0.network ?? $0.networkId, $0.user ?? $0.userId, $0.invitedBy ?? "-", stamp($0.created)] })
            }
        }
    }

    struct Add: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Invite a user to a network.")
        @Argument var network: String
        @Argument var user: String
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            try await perform(IndexAPIInvitation.self, "POST", ["v1", "networks", network, "invitations"],
                              body: IndexAPIInvite(user: user)) { _ in print("invited \(user) to \(network)") }
        }
    }

    struct Withdraw: IndexClientCommand {
        static let configuration = CommandConfiguration(abstract: "Withdraw a user's invitation.")
        @Argument var network: String
        @Argument var user: String
        @OptionGroup var connection: IndexConnectionOptions
        func run() async throws {
            try await perform(Empty.self, "DELETE", ["v1", "networks", network, "invitations", user]) { _ in print("withdrew \(user)'s invitation to \(network)") }
        }
    }
}

// MARK: Printing

let userHeader = ["ID", "NAME", "METADATA"]
let networkHeader = ["ID", "NAME", "OWNER", "ACCESS", "METADATA"]
func userRow(_ u: IndexAPIUser) -> [String] { [u.id, u.name, metadataText(u.metadata)] }
func networkRow(_ n: IndexAPINetwork) -> [String] { [n.id, n.name, n.owner ?? n.ownerId, n.access, metadataText(n.metadata)] }
func membershipRow(_ m: IndexAPIMembership) -> [String] { [m.network ?? m.networkId, m.user ?? m.userId, m.role, stamp(m.joined)] }

func printUser(_ u: IndexAPIUser) {
    print("user \(u.name) (\(u.id))\n  metadata: \(metadataText(u.metadata))\n  created:  \(stamp(u.created))\n  updated:  \(stamp(u.updated))")
    let sessions = u.sessions ?? []
    print("  sessions: \(sessions.isEmpty ? "none" : "")")
    for s in sessions { print("    \(s.peer)  \(s.online ? "online" : "offline")  since \(stamp(s.since))") }
}

func printNetwork(_ n: IndexAPINetwork) {
    print("network \(n.name) (\(n.id))\n  owner:    \(n.owner ?? n.ownerId)\n  access:   \(n.access)\n  metadata: \(metadataText(n.metadata))")
    print("  created:  \(stamp(n.created))\n  updated:  \(stamp(n.updated))")
}

func printTable(_ header: [String], _ rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    for row in all {
        print(row.enumerated().map { $1.padding(toLength: $0 == row.count - 1 ? $1.count : widths[$0], withPad: " ", startingAt: 0) }
            .joined(separator: "  "))
    }
}

func metadataText(_ metadata: [String: String]) -> String {
    metadata.isEmpty ? "-" : metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
}

func stamp(_ date: Date) -> String { date.formatted(.iso8601) }

/// `KEY=VALUE` options as metadata.
func metadata(_ pairs: [String]) throws -> [String: String]? {
    guard !pairs.isEmpty else { return nil }
    var result: [String: String] = [:]
    for pair in pairs {
        guard let eq = pair.firstIndex(of: "=") else { throw ValidationError("metadata '\(pair)': expected KEY=VALUE") }
        result[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
    }
    return result
}

func metadataChanges(set: [String], remove: [String]) throws -> [String: String?] {
    var changes: [String: String?] = [:]
    for (key, value) in try metadata(set) ?? [:] { changes[key] = .some(value) }
    for key in remove { changes[key] = .some(nil) }
    return changes
}
