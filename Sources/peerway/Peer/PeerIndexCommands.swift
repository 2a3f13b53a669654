import Peerway
import PeerwayCheckpoint

/// `peerway peer`'s INDEX commands. Each answers with one event named after its command
/// (`signup`, `login`, `network-create`, `users-search`, ...) holding `ok` and, on failure,
/// `error` (and the INDEX's `code`).
extension PeerSession {
    static let indexHelp = """
    signup USER PASSWORD [K=V...]  create an account (and log in as it)
    login USER PASSWORD            log this peer in; logout; whoami
    password OLD NEW               change the password
    profile K=V...                 change the account's metadata (K= removes K)
    delete-account PASSWORD        delete this account (not while it owns a network)
    network create NAME [open|invite-only] [K=V...]
    network update NAME [open|invite-only] [K=V...]
    network join|leave|delete|members|watch|unwatch NAME
    network invite|remove NAME USER
    network role NAME USER admin|member
    networks mine|invited          the networks this user belongs to / is invited to
    users search QUERY             e.g. users search city=paris
    networks search QUERY          e.g. networks search topic=nat
    """

    /// Runs an INDEX command line (`command` is its first word); false when it is not one.
    func handleIndex(_ command: String, _ rest: String) -> Bool {
        let words = rest.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        switch command {
        case "signup", "login", "logout", "whoami", "password", "profile", "delete-account":
            indexCommand(command) { try await $0.account(command, words) }
        case "network":
            let sub = words.first ?? ""
            indexCommand("network-\(sub.isEmpty ? "?" : sub)") { try await $0.network(sub, Array(words.dropFirst())) }
        case "networks", "users":
            let sub = words.first ?? ""
            let event = "\(command)-\(sub.isEmpty ? "?" : sub)"
            indexCommand(event) { try await $0.listing(command, sub, rest.dropFirst(sub.count).trimmingCharacters(in: .whitespaces)) }
        default:
            return false
        }
        return true
    }

    /// Runs `body`, which returns the success event's fields and sentence; failures become the
    /// same event with `ok: false`.
    private func indexCommand(_ event: String, _ body: @escaping @Sendable (PeerSession) async throws -> ([(String, JSONValue)], String)) {
        start(event) { session in
            do {
                let (fields, human) = try await body(session)
                session.output.emit(event, [("ok", .bool(true))] + fields, human: human)
            } catch let error as UsageError {
                session.output.emit(event, [("ok", .bool(false)), ("error", .string(error.text))], human: "error: \(error.text)")
            } catch let error as PeerError {
                var fields: [(String, JSONValue)] = [("ok", .bool(false)), ("error", .string(Self.reason(error)))]
                if case .refused(let f) = error { fields.append(("code", .string("\(f.code)"))) }
                session.output.emit(event, fields, human: "error: \(Self.reason(error))")
            }
        }
    }

    private static func reason(_ error: PeerError) -> String {
        if case .refused(let f) = error { return f.text }
        return "\(error)"
    }

    private func account(_ command: String, _ w: [String]) async throws -> ([(String, JSONValue)], String) {
        switch command {
        case "signup":
            guard w.count >= 2 else { throw UsageError(text: "usage: signup USER PASSWORD [KEY=VALUE...]") }
            let meta = try Self.parseAssignments(Array(w.dropFirst(2))).compactMapValues { $0 }
            let user = try await peer.signup(username: w[0], password: w[1], metadata: meta)
            return ([("user", .user(user))], "signed up and logged in as \(user.name)")
        case "login":
            guard w.count == 2 else { throw UsageError(text: "usage: login USER PASSWORD") }
            let user = try await peer.login(username: w[0], password: w[1])
            return ([("user", .user(user))], "logged in as \(user.name)")
        case "logout":
            try await peer.logout()
            return ([], "logged out")
        case "whoami":
            let user = try await peer.currentUser()
            return ([("user", .user(user))], "\(user.name): \(user.metadata.humanText)")
        case "password":
            guard w.count == 2 else { throw UsageError(text: "usage: password OLD NEW") }
            try await peer.changePassword(from: w[0], to: w[1])
            return ([], "password changed")
        case "delete-account":
            guard w.count == 1 else { throw UsageError(text: "usage: delete-account PASSWORD") }
            try await peer.deleteAccount(password: w[0])
            return ([], "account deleted")
        default: // profile
            let changes = try Self.parseAssignments(w)
            guard !changes.isEmpty else { throw UsageError(text: "usage: profile KEY=VALUE... (KEY= removes KEY)") }
            let user = try await peer.updateProfile(changes)
            return ([("user", .user(user))], "\(user.name): \(user.metadata.humanText)")
        }
    }

    private func network(_ sub: String, _ w: [String]) async throws -> ([(String, JSONValue)], String) {
        func name(_ usage: String) throws -> String {
            guard let n = w.first else { throw UsageError(text: "usage: network \(usage)") }
            return n
        }
        switch sub {
        case "create", "update":
            let n = try name("\(sub) NAME [open|invite-only] [KEY=VALUE...]")
            var rest = Array(w.dropFirst())
            var access: NetworkAccess?
            if let first = rest.first, let a = NetworkAccess(rawValue: first) { access = a; rest.removeFirst() }
            let changes = try Self.parseAssignments(rest)
            let network = sub == "create"
                ? try await peer.createNetwork(n, access: access ?? .open, metadata: changes.compactMapValues { $0 })
                : try await peer.updateNetwork(n, access: access, metadata: changes)
            return ([("network", .network(network))], "\(sub == "create" ? "created" : "updated") \(network.humanText)")
        case "join":
            let network = try await peer.joinNetwork(try name("join NAME"))
            return ([("network", .network(network))], "joined \(network.humanText)")
        case "leave":
            let n = try name("leave NAME")
            try await peer.leaveNetwork(n)
            return ([("network", .string(n))], "left \(n)")
        case "delete":
            let n = try name("delete NAME")
            try await peer.deleteNetwork(n)
            return ([("network", .string(n))], "deleted \(n)")
        case "members", "watch":
            let n = try name("\(sub) NAME")
            let members = sub == "watch" ? try await peer.watchNetwork(n) : try await peer.members(of: n)
            let lines = members.map { "  \($0.name) (\($0.role)) \($0.online ? "online" : "offline")" }
            return ([("network", .string(n)), ("members", .array(members.map { .member($0) }))],
                    (sub == "watch" ? "watching \(n):\n" : "\(n):\n") + lines.joined(separator: "\n"))
        case "unwatch":
            let n = try name("unwatch NAME")
            try await peer.unwatchNetwork(n)
            return ([("network", .string(n))], "no longer watching \(n)")
        case "invite", "remove":
            guard w.count == 2 else { throw UsageError(text: "usage: network \(sub) NAME USER") }
            if sub == "invite" { try await peer.invite(w[1], to: w[0]) } else { try await peer.remove(w[1], from: w[0]) }
            return ([("network", .string(w[0])), ("user", .string(w[1]))], sub == "invite" ? "invited \(w[1]) to \(w[0])" : "removed \(w[1]) from \(w[0])")
        case "role":
            guard w.count == 3, let role = NetworkRole(name: w[2]) else { throw UsageError(text: "usage: network role NAME USER admin|member") }
            try await peer.setRole(role, of: w[1], in: w[0])
            return ([("network", .string(w[0])), ("user", .string(w[1])), ("role", .string(role.description))], "\(w[1]) is now \(role) of \(w[0])")
        default:
            throw UsageError(text: "usage: network create|update|join|leave|delete|members|watch|unwatch|invite|remove|role ...")
        }
    }

    private func listing(_ kind: String, _ sub: String, _ query: String) async throws -> ([(String, JSONValue)], String) {
        switch (kind, sub) {
        case ("users", "search"):
            guard !query.isEmpty else { throw UsageError(text: "usage: users search QUERY") }
            let users = try await peer.searchUsers(query, limit: 100)
            return ([("users", .array(users.map { .user($0) }))],
                    users.isEmpty ? "no user matches" : users.map { "\($0.name): \($0.metadata.humanText)" }.joined(separator: "\n"))
        case ("networks", "search"), ("networks", "mine"), ("networks", "invited"):
            if sub == "search", query.isEmpty { throw UsageError(text: "usage: networks search QUERY") }
            let networks: [IndexNetworkEntry]
            switch sub {
            case "search": networks = try await peer.searchNetworks(query, limit: 100)
            case "mine": networks = try await peer.myNetworks()
            default: networks = try await peer.invitations()
            }
            return ([("networks", .array(networks.map { .network($0) }))],
                    networks.isEmpty ? "no network" : networks.map(\.humanText).joined(separator: "\n"))
        default:
            throw UsageError(text: kind == "users" ? "usage: users search QUERY" : "usage: networks search QUERY | networks mine | networks invited")
        }
    }

    /// The push for a watched network's member.
    func printMemberStatus(_ s: NetworkMemberStatus) {
        output.emit("member", [("network", .string(s.network)), ("user", .string(s.name)), ("id", .int(Int(s.user))),
                               ("peer", .string(s.peer.description)), ("online", .bool(s.online))],
                    human: "\(s.network): \(s.name) is \(s.online ? "online" : "offline") (\(s.peer))")
    }
}

extension JSONValue {
    static func user(_ u: IndexUserEntry) -> JSONValue {
        .object([("id", .int(Int(u.id))), ("name", .string(u.name)), ("metadata", .metadata(u.metadata))])
    }

    static func network(_ n: IndexNetworkEntry) -> JSONValue {
        .object([("id", .int(Int(n.id))), ("name", .string(n.name)), ("owner", .string(n.owner)), ("access", .string(n.access.rawValue)),
                 ("role", n.role.map { .string($0.description) } ?? .null), ("metadata", .metadata(n.metadata))])
    }

    static func member(_ m: IndexMemberEntry) -> JSONValue {
        .object([("id", .int(Int(m.user))), ("name", .string(m.name)), ("role", .string(m.role.description)), ("online", .bool(m.online)),
                 ("peers", .array(m.onlinePeers.map { .string($0.description) }))])
    }
}

extension IndexNetworkEntry {
    var humanText: String {
        "\(name) (\(access.rawValue), owner \(owner)\(role.map { ", you: \($0)" } ?? "")): \(metadata.humanText)"
    }
}
