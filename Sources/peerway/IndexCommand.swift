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
