import Foundation

/*
 The `symmetric-upnp` preset's port mapping: the real miniupnpd (Debian's miniupnpd-nftables,
 2.3) on the router, speaking UPnP-IGD (HTTP on `httpPort`), NAT-PMP and PCP (UDP 5351), on a
 router whose own NAT is `symmetric` (`LabRouterRules.Kind.symmetricUPnP`).

 miniupnpd's nftables backend adds its rules to chains it is told about and does not create:
 `miniupnpdTables` makes them in a table of their own (`inet miniupnpd`): a forward chain (policy
 accept; the lab's own forward chain is the filter, and accepts what was destination-NATed) and
 NAT chains one priority ahead of the lab's, so a mapping's DNAT comes first.

 Why STUN: the lab's public addresses are documentation prefixes (203.0.113.0/24), which miniupnpd
 refuses as "reserved" for ext_ip and its interface address. With ext_perform_stun it asks a STUN
 server instead (four requests, with and without CHANGE-REQUEST) and enables forwarding when all
 four answers come back to unchanged ports: so the router's own traffic is not masqueraded
 (`ip saddr <LAN>` only), the STUN pair's answers from its other address are let in, and miniupnpd
 starts only once the STUN pair runs (`start`, after `LabRunner.startSTUN` or the supernode).

 Cross-checks (`interop`): Debian's `natpmpc` (libnatpmp) and `upnpc` (miniupnpc) from a host of
 the site map a port and delete it again, so the lab's miniupnpd is known to work independently
 of Peerway's own clients.
*/

/// miniupnpd in the lab, and the interop checks with Debian's clients.
public enum LabPortMap {
    /// The daemon, and the Debian package with its nftables backend.
    public static let tool = "miniupnpd"
    public static let package = "miniupnpd-nftables"
    /// The clients of the cross-checks: command -> Debian package.
    public static let clients = ["upnpc": "miniupnpc", "natpmpc": "natpmpc"]
    /// The IGD's HTTP port (description and SOAP control).
    public static let httpPort = 5000
    /// The device description's path (miniupnpd's).
    public static let descriptionPath = "/rootDesc.xml"
    /// The STUN pair's network, let in to the router for miniupnpd's STUN check.
    public static let stunNetwork = "198.51.100.0/24"
    /// The nftables table miniupnpd manages.
    public static let table = "miniupnpd"
    /// How long miniupnpd gets to pass its STUN check and listen.
    public static let startTimeout: TimeInterval = 15
    /// The mapping lifetime the cross-checks ask for, seconds.
    public static let interopLifetime = 60
    /// How long one client command may take (each retries a few times inside).
    public static let clientTimeout = 10

    /// The chains miniupnpd adds its rules to (its nftables backend creates none).
    public static let miniupnpdTables = """
        table inet \(table) {
          chain forward {
            type filter hook forward priority filter - 1; policy accept;
            jump miniupnpd
          }
          chain miniupnpd {
          }
          chain prerouting {
            type nat hook prerouting priority dstnat - 1; policy accept;
            jump prerouting_miniupnpd
          }
          chain postrouting {
            type nat hook postrouting priority srcnat - 1; policy accept;
            jump postrouting_miniupnpd
          }
          chain prerouting_miniupnpd {
          }
          chain postrouting_miniupnpd {
          }
        }

        """

    /// miniupnpd's configuration for `site` (see miniupnpd.conf(5)).
    public static func configuration(for site: LabSitePlan) -> String {
        let stun = LabLimits.stunPrimary.split(separator: ":")
        return """
            ext_ifname=\(LabRouterRules.wan)
            listening_ip=\(LabRouterRules.lan)
            http_port=\(httpPort)
            enable_upnp=yes
            enable_natpmp=yes
            secure_mode=yes
            system_uptime=no
            ext_perform_stun=yes
            ext_stun_host=\(stun[0])
            ext_stun_port=\(stun[1])
            upnp_table_name=\(table)
            upnp_nat_table_name=\(table)
            upnp_forward_chain=miniupnpd
            upnp_nat_chain=prerouting_miniupnpd
            upnp_nat_postrouting_chain=postrouting_miniupnpd
            lease_file=\(LabRunner.stateDirectory)/miniupnpd-\(site.spec.name).leases
            uuid=\(uuid(for: site))
            allow 1024-65535 \(site.lanNetwork) 1024-65535
            deny 0-65535 0.0.0.0/0 0-65535

            """
    }

    /// A stable UUID per site (miniupnpd wants one; the number keeps sites apart).
    static func uuid(for site: LabSitePlan) -> String {
        String(format: "fc4ec57e-b051-11db-88f8-%012x", site.number)
    }

    /// The device description's URL on `site`'s router.
    public static func descriptionURL(for site: LabSitePlan) -> String {
        "http://\(site.lanGateway):\(httpPort)\(descriptionPath)"
    }

    /// Starts miniupnpd on every `symmetric-upnp` router of `topology` and waits until each has
    /// passed its STUN check and listens. The STUN pair must already run.
    public static func start(_ topology: LabTopology) throws(LabError) {
        let sites = topology.sites.filter { $0.spec.preset == .symmetricUPnP }
        guard !sites.isEmpty else { return }
        guard LabRunner.path(of: tool) != nil else { throw .missingTool(tool, package: package) }
        for site in sites {
            let conf = "\(LabRunner.stateDirectory)/miniupnpd-\(site.spec.name).conf"
            let log = "\(LabRunner.stateDirectory)/miniupnpd-\(site.spec.name).log"
            do {
                try FileManager.default.createDirectory(atPath: LabRunner.stateDirectory, withIntermediateDirectories: true)
                try configuration(for: site).write(toFile: conf, atomically: true, encoding: .utf8)
            } catch {
                throw .commandFailed(command: "write \(conf)", status: -1, output: "\(error)")
            }
            let process = try LabRunner.detach(
                ["netns", "exec", site.routerNamespace, LabRunner.path(of: tool) ?? tool, "-d", "-f", conf,
                 "-P", "\(LabRunner.stateDirectory)/miniupnpd-\(site.spec.name).pid"], log: log)
            let deadline = Date().addingTimeInterval(startTimeout)
            var ready = false
            while Date() < deadline && process.isRunning {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                if text.contains("Port forwarding is now enabled") && text.contains("Listening for NAT-PMP/PCP") {
                    ready = true
                    break
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
            guard ready else {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                throw .commandFailed(command: "miniupnpd in \(site.routerNamespace)", status: process.isRunning ? -1 : process.terminationStatus,
                                     output: "not ready within \(Int(startTimeout)) s (is the STUN pair up?): " + String(text.suffix(1500)))
            }
        }
    }

    /// What the cross-checks found on one site.
    public struct Interop: Hashable, Sendable {
        /// `natpmpc`'s mapping: "external port P", or nil when it failed.
        public var natpmpc: String?
        /// `upnpc`'s mapping: "A:P", or nil when it failed.
        public var upnpc: String?
        /// Both mappings were deleted again (the router's miniupnpd table holds no rule of theirs).
        public var deleted: Bool
        /// The clients' output when something failed.
        public var output: String

        public var passed: Bool { natpmpc != nil && upnpc != nil && deleted }
    }

    /// Maps `port` with `natpmpc` and `port + 1` with `upnpc` from host 1 of `site`, checks the
    /// router's rules, then deletes both.
    public static func interop(site: LabSitePlan, port: Int) throws(LabError) -> Interop {
        for (client, package) in clients.sorted(by: { $0.key < $1.key }) where LabRunner.path(of: client) == nil {
            throw .missingTool(client, package: package)
        }
        let ns = site.hostNamespace(1), gw = site.lanGateway, me = site.hostAddress(1)
        func run(_ args: [String]) -> String {
            (try? LabRunner.run("ip", ["netns", "exec", ns, "timeout", String(clientTimeout)] + args)) ?? "(\(args[0]) failed)"
        }
        var log: [String] = []
        let pmp = run(["natpmpc", "-g", gw, "-a", String(port), String(port), "udp", String(interopLifetime)])
        log.append(pmp)
        let natpmpc = pmp.split(separator: "\n").first { $0.hasPrefix("Mapped public port") }
            .flatMap { $0.split(separator: " ").dropFirst(3).first.map { "external port \($0)" } }
        let url = descriptionURL(for: site)
        let upnp = run(["upnpc", "-u", url, "-e", "peerway-lab", "-a", me, String(port + 1), String(port + 1), "UDP", String(interopLifetime)])
        log.append(upnp)
        let upnpc = upnp.split(separator: "\n").first { $0.hasPrefix("external ") && $0.contains("is redirected to internal") }
            .flatMap { $0.split(separator: " ").dropFirst().first.map(String.init) }
        let rules = (try? LabRunner.run("ip", ["netns", "exec", site.routerNamespace, "nft", "list", "chain", "inet", table, "prerouting_miniupnpd"])) ?? ""
        let present = rules.contains("dport \(port) ") && rules.contains("dport \(port + 1) ")
        log.append(run(["natpmpc", "-g", gw, "-a", String(port), "0", "udp", "0"]))
        log.append(run(["upnpc", "-u", url, "-d", String(port + 1), "UDP"]))
        let after = (try? LabRunner.run("ip", ["netns", "exec", site.routerNamespace, "nft", "list", "chain", "inet", table, "prerouting_miniupnpd"])) ?? "?"
        let deleted = present && !after.contains("dport \(port) ") && !after.contains("dport \(port + 1) ")
        if !present { log.append("router rules while mapped:\n" + rules) }
        if !deleted { log.append("router rules after deletion:\n" + after) }
        return Interop(natpmpc: natpmpc, upnpc: upnpc, deleted: deleted, output: log.joined(separator: "\n"))
    }
}

/// netcheck's `portMapping` JSON, reduced to what `lab verify` checks.
public struct LabPortMapMeasurement: Hashable, Sendable, Decodable {
    public struct Mapping: Hashable, Sendable, Decodable {
        public var external: String
        public var `protocol`: String
    }

    /// The protocols the gateway speaks (`pcp`, `nat-pmp`, `upnp`), preferred first.
    public var spoken: [String]
    public var mapping: Mapping?
    public var failure: String?

    public init(spoken: [String], mapping: Mapping? = nil, failure: String? = nil) {
        self.spoken = spoken
        self.mapping = mapping
        self.failure = failure
    }

    /// All three, as miniupnpd speaks them.
    public static let everyProtocol = ["pcp", "nat-pmp", "upnp"]

    /// " +map(3)" (protocols spoken, a mapping made) or " +map(3)!" (none made) for the verify
    /// table's measured column; "" when nothing is spoken.
    public var summary: String {
        guard !spoken.isEmpty else { return "" }
        return " +map(\(spoken.count))" + (mapping == nil ? "!" : "")
    }

    /// Why a measurement does not show `expected` (all of them spoken and a mapping made, or none
    /// spoken when `expected` is empty). A missing measurement fails only when a mapping is expected.
    public static func failures(_ m: LabPortMapMeasurement?, expected: [String]) -> [String] {
        guard let m else { return expected.isEmpty ? [] : ["no port mapping report (netcheck without portMapping)"] }
        var out: [String] = []
        if m.spoken != expected { out.append("port mapping protocols \(m.spoken) != \(expected)") }
        if !expected.isEmpty && m.mapping == nil { out.append("no port mapped: \(m.failure ?? "?")") }
        return out
    }
}
