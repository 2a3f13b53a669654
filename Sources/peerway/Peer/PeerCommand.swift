import ArgumentParser
import Foundation
import Peerway
import PeerwayCheckpoint

/// `peerway peer`: an interactive peer session for humans and scripts.
struct PeerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Run a peer: register with a supernode, then read one command per line on stdin.",
        discussion: """
        Commands: send ID TEXT, lookup ID, search QUERY, watch ID..., unwatch ID..., meta KEY=VALUE... \
        (KEY= removes), connect ID udp|tcp [NOTE], accept [ID], refuse [ID] [REASON], send-bytes ID N, close ID, id, help, quit.
        Events are printed as they happen; with --json one JSON object per line with an "event" field \
        (registered, message, delivered, failed, status, lookup, search, unwatch, meta, connecting, \
        connect-request, connect-answer, answered, tunnel, path, tunnel-failed, send-bytes, closed, data, disconnected, reregistered, \
        stopped, id, help, error). A tunnel event: {"event":"tunnel","peer":ID,"transport":"udp","path":"direct"|"relayed",\
        "method":...,"ms":...}; a tunnel that starts on the relay moves to a direct path when one is found, and between \
        paths when one stops: {"event":"path","peer":ID,"change":"direct"|"relayed"|"new-address"|"direct-abandoned",\
        "path":...,"method":...,"direct_ms":...}.
        When stdin ends the session finishes what it started and quits, unless --stay is given.
        """
    )

    @Option(name: .long, help: "Supernode address peerway://KEY@HOST:PORT (repeat for failover).")
    var supernode: [String]

    @Option(name: .long, help: "Identity key file (created on first use, mode 0600). Default ~/.peerway/identity.")
    var identity: String = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".peerway/identity").path

    @Option(name: .long, help: "Metadata KEY=VALUE published at registration (repeatable).")
    var meta: [String] = []

    @Option(name: .long, help: "Keepalive interval in seconds.")
    var keepalive: UInt16 = ControlLimits.defaultKeepaliveSeconds

    @Option(name: .long, help: "Local address to bind (IP), default the wildcard of the supernode's family.")
    var bind: String?

    @Flag(name: .long, help: "One JSON object per line.")
    var json = false

    @Flag(name: .long, help: "Keep running after stdin ends, until SIGINT/SIGTERM.")
    var stay = false

    @Flag(name: .long, help: "Accept every connection request and echo everything that arrives on tunnels.")
    var echo = false

    @Flag(name: .long, help: "Unencrypted tunnels: the raw network socket (payload in clear).")
    var raw = false

    @Option(name: .long, help: "HTTP proxy http://[user:password@]host:port for TCP to supernodes and relays (CONNECT); 'none' for no proxy. Default: HTTPS_PROXY, https_proxy, ALL_PROXY, all_proxy, except hosts in NO_PROXY.")
    var proxy: String?

    func run() async throws {
        let output = PeerOutput(json: json)
        let addresses: [SupernodeAddress]
        do {
            addresses = try supernode.map { (text) throws(SupernodeAddressError) in try SupernodeAddress(parsing: text) }
        } catch {
            output.error("\(error)")
            throw ExitCode(2)
        }
        guard !addresses.isEmpty else { output.error("give at least one --supernode peerway://KEY@HOST:PORT"); throw ExitCode(2) }
        let metadata: [String: String]
        do { metadata = try PeerSession.parseAssignments(meta).mapValues { $0 ?? "" } } catch {
            output.error("\(error)")
            throw ExitCode(2)
        }
        let keyPair: PeerIdentity
        do { keyPair = try PeerIdentity.loadOrCreate(at: identity) } catch {
            output.error("\(error)")
            throw ExitCode(1)
        }
        var options = PeerOptions()
        options.keepaliveSeconds = keepalive
        options.bindHost = bind
        if let proxy {
            do { options.proxy = proxy == "none" ? .none : .http(try HTTPProxy(url: proxy)) } catch {
                output.error("--proxy: \(error)")
                throw ExitCode(2)
            }
        }
        let peer: Peer
        do {
            peer = try await Peer.start(identity: keyPair, supernodes: addresses, metadata: metadata, options: options)
        } catch {
            output.error("\(error)")
            throw ExitCode(1)
        }
        let session = PeerSession(peer: peer, output: output, echo: echo, tunnelOptions: TunnelOptions(encrypted: !raw))
        await session.run(stay: stay)
    }
}
