import ArgumentParser
import Foundation
import PeerwayIndexAPI

// `peerway index`'s options, its one-call and listing helpers, and its tables.

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
