import NIOCore
import NIOPosix
import PeerwayNetcheck
import PeerwaySTUN

/// How `Netcheck.run` probes.
public struct NetcheckOptions: Hashable, Sendable {
    /// The whole run stops after this long, reporting what it has learnt by then.
    public var timeout: TimeAmount
    /// K, the number of extra sockets that sample the NAT's port allocation.
    public var allocationProbeSockets: Int
    /// Whether to test hairpinning.
    public var checksHairpinning: Bool
    /// The port of a server given without one.
    public var defaultPort: UInt16

    public init(
        timeout: TimeAmount = NetcheckLimits.defaultOverallTimeout,
        allocationProbeSockets: Int = NetcheckLimits.allocationProbeSockets,
        checksHairpinning: Bool = true,
        defaultPort: UInt16 = STUN.defaultPort
    ) {
        self.timeout = timeout
        self.allocationProbeSockets = allocationProbeSockets
        self.checksHairpinning = checksHairpinning
        self.defaultPort = defaultPort
    }
}

/// NAT behaviour discovery (RFC 5780) against one or more STUN servers: what `peerway netcheck`
/// runs. The protocol lives in `NetcheckMachine` (module PeerwayNetcheck); this drives it with
/// real UDP sockets on one event loop.
public enum Netcheck {
    /// Resolves `servers` ("host", "host:port", "ip:port", "[ipv6]:port"; port 3478 by default)
    /// and runs a netcheck against them.
    ///
    /// - Throws: `NetcheckError`: `.invalidServer` / `.cannotResolve` for bad arguments,
    ///   `.noResponse` when no server answers, `.serverRefused`, `.socketFailed`, `.cancelled`.
    public static func run(
        servers: [String],
        options: NetcheckOptions = NetcheckOptions(),
        on group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(NetcheckError) -> NetcheckReport {
        guard !servers.isEmpty else { throw .noServers }
        var addresses: [STUNAddress] = []
        for server in servers {
            addresses.append(try await resolve(server: server, defaultPort: options.defaultPort))
        }
        return try await run(servers: addresses, options: options, on: group)
    }

    /// Runs a netcheck against resolved server addresses (the first is preferred; only servers of
    /// its address family are probed). Every socket it opened is closed when it returns.
    public static func run(
        servers: [STUNAddress],
        options: NetcheckOptions = NetcheckOptions(),
        on group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(NetcheckError) -> NetcheckReport {
        guard let first = servers.first else { throw .noServers }
        if Task.isCancelled { throw .cancelled }
        let eventLoop = group.next()
        let configuration = NetcheckConfiguration(
            servers: servers,
            localIPs: await localIPs(toward: first, on: eventLoop),
            allocationProbeSockets: options.allocationProbeSockets,
            checksHairpinning: options.checksHairpinning,
            overallTimeout: options.timeout)
        let driver = NetcheckDriver(machine: NetcheckMachine(configuration: configuration), eventLoop: eventLoop)
        do {
            return try await withTaskCancellationHandler {
                try await driver.start().get()
            } onCancel: {
                driver.cancel()
            }
        } catch let error as NetcheckError {
            throw error
        } catch {
            throw .ioError(String(describing: error))
        }
    }

    /// This host's IP addresses of `server`'s family, the one the OS routes toward `server` first
    /// (learnt by connecting a UDP socket, which sends nothing). Used to recognise "no NAT".
    static func localIPs(toward server: STUNAddress, on eventLoop: any EventLoop) async -> [STUNAddress.IP] {
        var ips: [STUNAddress.IP] = []
        if let remote = try? server.socketAddress(),
            let channel = try? await DatagramBootstrap(group: eventLoop).connect(to: remote).get()
        {
            if let local = channel.localAddress.flatMap(STUNAddress.init) { ips.append(local.ip) }
            try? await channel.close()
        }
        for address in LocalAddresses.current() where address.family == server.family && !ips.contains(address.ip) {
            ips.append(address.ip)
        }
        return ips
    }
}
