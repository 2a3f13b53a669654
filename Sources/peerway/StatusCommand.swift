import ArgumentParser
import Foundation
import PeerwayIndexAPI

/// `peerway status`: how a supernode stands, asked through its management API (`GET /status`).
/// The asking and the wording are `SupernodeStatusQuery` and `SupernodeStatus.text`; this only
/// parses flags and prints. A refusal or no answer: the reason on stderr, exit status 1.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "How a supernode stands: peers, traversals, relay, STUN pair, INDEX and its network.",
        discussion: """
        Asks the management API's GET /status: --admin, else DATA_DIR/admin-url (written by \
        `peerway supernode`), else http://\(IndexAPILimits.defaultListen); the token is --admin-token, else \
        $\(AdminToken.environmentVariable), else DATA_DIR/admin-token. DATA_DIR is --data-dir \
        (default ~/.peerway/supernode). With --json: the API's answer, one JSON object.
        """)

    @Option(name: .customLong("admin"), help: "The management API's URL (default: DATA_DIR/admin-url, else http://\(IndexAPILimits.defaultListen)).")
    var admin: String?

    @Option(name: .customLong("admin-token"), help: "The admin token (default: $\(AdminToken.environmentVariable), else DATA_DIR/admin-token).")
    var adminToken: String?

    @Option(name: .customLong("data-dir"), help: "The supernode's data directory (default ~/.peerway/supernode).")
    var dataDirectory: String = SupernodeStatusQuery.defaultDataDirectory

    @Flag(help: "Print one JSON object (for scripts) instead of text.")
    var json = false

    func run() async throws {
        do {
            let (status, data) = try await SupernodeStatusQuery(adminURL: admin, adminToken: adminToken, dataDirectory: dataDirectory).fetch()
            print(json ? String(decoding: data, as: UTF8.self) : status.text)
        } catch {
            FileHandle.standardError.write(Data("peerway status: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
