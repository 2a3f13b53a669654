/*
 The NAT lab's topology, as pure values: what namespaces exist, how they are linked and addressed.

   pw-public (supernode host)          pw-inet: one bridge "br0", the "public internet"
     eth0 198.51.100.1-.4/24  ─────────  pub
                                         s<i>  ─── wan0 203.0.113.(10i+1)/24  pw-<site>-r (router, NAT preset)
                                                                              lan0 bridge 10.0.i.1/24
                                                                                ├─ p1 ── eth0 10.0.i.11  pw-<site>-h1
                                                                                └─ p2 ── eth0 10.0.i.12  pw-<site>-h2
   cgnat sites put a carrier router pw-<site>-c in between:
     inet ── wan0 203.0.113.(10i+1) pw-<site>-c lan0 100.64.i.1/24 ── wan0 100.64.i.2 pw-<site>-r lan0 10.0.i.1/24 ── hosts
   open sites have no router: each host sits on the bridge with eth0 203.0.113.(10i+n)/24.

 Every public node routes both documentation /24s on-link over its bridge port, so nothing but
 the lab's own addresses is reachable and no link leads out of the lab's namespaces.
*/

/// Every limit and fixed name of the lab.
public enum LabLimits {
    /// The prefix of every namespace the lab creates (`ip netns list | grep ^pw-` finds them all).
    public static let prefix = "pw-"
    /// At most this many sites (each takes a block of ten public addresses in 203.0.113.0/24,
    /// 203.0.113.(10i+1) to .(10i+8): 24 blocks fit below .255). The matrix has two per preset.
    public static let maximumSites = 24
    /// At most this many hosts behind one site.
    public static let maximumHostsPerSite = 8
    /// Longest site name (letters, digits and '-').
    public static let maximumSiteNameLength = 16
    /// Conntrack UDP timeout (and the lab's own mapping-set timeout) when `--udp-timeout` is not given, seconds.
    public static let defaultUDPTimeout = 120
    /// Allowed range of `--udp-timeout`, seconds.
    public static let udpTimeoutRange = 1...3600
    /// Allowed range of `--delay`, milliseconds.
    public static let delayRange = 0...10_000
    /// Allowed range of `--loss`, percent.
    public static let lossRange = 0...100
    /// The STUN pair's primary address and port, on the supernode host.
    public static let stunPrimary = "198.51.100.1:3478"
    /// The STUN pair's alternate address and port.
    public static let stunAlternate = "198.51.100.2:3479"
    /// The TCP ports an `udp-blocked` site lets out.
    public static let udpBlockedTCPPorts = [80, 443]
    /// The one TCP port a `tcp-443-only` site lets out (a corporate or hotel network's HTTPS port).
    public static let tcp443OnlyPorts = [443]
}

/// A NAT behaviour, in RFC 4787 terms (see the issue's preset table).
public enum LabPreset: String, CaseIterable, Codable, Sendable {
    /// No NAT: the hosts have public addresses.
    case open
    /// Endpoint-independent mapping and filtering.
    case fullCone = "full-cone"
    /// Endpoint-independent mapping, address-dependent filtering.
    case restrictedCone = "restricted-cone"
    /// Endpoint-independent mapping, address-and-port-dependent filtering (the typical home router).
    case portRestricted = "port-restricted"
    /// Address-and-port-dependent mapping with random ports, address-and-port-dependent filtering.
    case symmetric
    /// Address-and-port-dependent mapping with sequential ports (each new mapping takes the next
    /// port: predictable), address-and-port-dependent filtering.
    case symmetricSequential = "symmetric-sequential"
    /// A port-restricted home NAT behind a port-restricted carrier NAT on 100.64.0.0/10.
    case cgnat
    /// A firewall that only lets TCP to ports 80 and 443 out (and the answers in).
    case udpBlocked = "udp-blocked"
    /// A firewall that lets nothing out but TCP to port 443 (and the answers in): no UDP at all.
    case tcp443Only = "tcp-443-only"
    /// Nothing leaves but through an HTTP proxy on the router (tinyproxy, `CONNECT` to 443 only).
    case proxyOnly = "proxy-only"
    /// `symmetric` whose router also runs miniupnpd (UPnP-IGD, NAT-PMP, PCP): symmetric for a
    /// host that asks nothing, an open port for one that asks (`LabPortMap`).
    case symmetricUPnP = "symmetric-upnp"

    /// Whether the preset translates addresses (and so can hairpin).
    public var maps: Bool { self != .open }
    /// Whether no UDP leaves the site at all (only some TCP ports do).
    public var blocksUDP: Bool { self == .udpBlocked || self == .tcp443Only || self == .proxyOnly }
}

/// One site as given on the command line: `NAME=PRESET[,hairpin][,hosts=N]`.
public struct LabSiteSpec: Hashable, Codable, Sendable {
    public var name: String
    public var preset: LabPreset
    public var hairpin: Bool
    public var hosts: Int

    public init(name: String, preset: LabPreset, hairpin: Bool = false, hosts: Int = 1) {
        self.name = name
        self.preset = preset
        self.hairpin = hairpin
        self.hosts = hosts
    }

    /// Parses `NAME=PRESET[,hairpin][,hosts=N]`, e.g. `home=port-restricted,hairpin,hosts=2`.
    public init(parsing text: String) throws(LabError) {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw .badSite(text, "expected NAME=PRESET[,hairpin][,hosts=N]") }
        let name = parts[0]
        let options = parts[1].split(separator: ",").map(String.init)
        guard let presetName = options.first, let preset = LabPreset(rawValue: presetName) else {
            throw .badSite(text, "unknown preset; one of: \(LabPreset.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var spec = LabSiteSpec(name: name, preset: preset)
        for option in options.dropFirst() {
            if option == "hairpin" {
                spec.hairpin = true
            } else if option.hasPrefix("hosts="), let n = Int(option.dropFirst("hosts=".count)) {
                spec.hosts = n
            } else {
                throw .badSite(text, "unknown option '\(option)'; options are 'hairpin' and 'hosts=N'")
            }
        }
        try spec.validate()
        self = spec
    }

    /// Checks the name and limits.
    public func validate() throws(LabError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-")
        guard !name.isEmpty, name.count <= LabLimits.maximumSiteNameLength, name.allSatisfy(allowed.contains),
            name != "public", name != "inet"
        else {
            throw .badSite(name, "a site name is 1-\(LabLimits.maximumSiteNameLength) lowercase letters, digits or '-', not 'public' or 'inet'")
        }
        guard (1...LabLimits.maximumHostsPerSite).contains(hosts) else {
            throw .badSite(name, "hosts=\(hosts): between 1 and \(LabLimits.maximumHostsPerSite)")
        }
        if hairpin && !preset.maps { throw .badSite(name, "hairpin needs a preset that maps (not \(preset.rawValue))") }
    }
}

/// Everything `lab up` needs: the sites and the link conditions.
public struct LabConfiguration: Hashable, Codable, Sendable {
    public var sites: [LabSiteSpec]
    /// Percentage of packets dropped on every WAN link, each way (0: none).
    public var lossPercent: Int
    /// Conntrack UDP timeout in every NAT, seconds.
    public var udpTimeout: Int
    /// One-way delay added on every WAN link, each way, milliseconds (0: none).
    public var delayMilliseconds: Int
    /// Hosts whose own UDP sends fail at a rate (`LabSendFailures`).
    public var sendFailures: [LabSendFailure]

    public init(sites: [LabSiteSpec], lossPercent: Int = 0, udpTimeout: Int = LabLimits.defaultUDPTimeout, delayMilliseconds: Int = 0,
                sendFailures: [LabSendFailure] = []) {
        self.sites = sites
        self.lossPercent = lossPercent
        self.udpTimeout = udpTimeout
        self.delayMilliseconds = delayMilliseconds
        self.sendFailures = sendFailures
    }

    /// Checks every site, duplicate names and the limits.
    public func validate() throws(LabError) {
        guard !sites.isEmpty else { throw .badConfiguration("give at least one --site NAME=PRESET") }
        guard sites.count <= LabLimits.maximumSites else {
            throw .badConfiguration("\(sites.count) sites: at most \(LabLimits.maximumSites)")
        }
        for site in sites { try site.validate() }
        guard Set(sites.map(\.name)).count == sites.count else { throw .badConfiguration("site names must be unique") }
        guard LabLimits.lossRange.contains(lossPercent) else {
            throw .badConfiguration("--loss \(lossPercent): a percentage in \(LabLimits.lossRange)")
        }
        guard LabLimits.delayRange.contains(delayMilliseconds) else {
            throw .badConfiguration("--delay \(delayMilliseconds): milliseconds in \(LabLimits.delayRange)")
        }
        guard LabLimits.udpTimeoutRange.contains(udpTimeout) else {
            throw .badConfiguration("--udp-timeout \(udpTimeout): seconds in \(LabLimits.udpTimeoutRange)")
        }
        try validateSendFailures()
    }
}

/// What a namespace is for.
public enum LabRole: String, Codable, Sendable {
    case internet, publicHost = "public", router, carrier, host
}

/// One host (or router) of the lab, as `lab up` describes it in its JSON.
public struct LabNode: Hashable, Codable, Sendable {
    /// The network namespace (`ip netns exec NAMESPACE ...`).
    public var namespace: String
    public var role: LabRole
    /// The site's name; `public` for the supernode host, `inet` for the internet bridge.
    public var site: String
    /// The site's preset (nil for the public host and the internet).
    public var preset: LabPreset?
    /// 1-based host number within the site (hosts only).
    public var index: Int?
    /// Addresses with prefix length, e.g. `10.0.3.11/24`.
    public var addresses: [String]
    /// The public address the host's traffic leaves the lab's internet with (its own for open sites).
    public var publicAddress: String?
}

/// The address plan of one site.
public struct LabSitePlan: Hashable, Sendable {
    public var spec: LabSiteSpec
    /// 1-based position of the site.
    public var number: Int

    public var routerNamespace: String { "\(LabLimits.prefix)\(spec.name)-r" }
    public var carrierNamespace: String { "\(LabLimits.prefix)\(spec.name)-c" }
    public func hostNamespace(_ n: Int) -> String { "\(LabLimits.prefix)\(spec.name)-h\(n)" }

    /// The public (WAN) address of the site's outermost router, or of host 1 for an open site.
    public var wanAddress: String { "203.0.113.\(10 * number + 1)" }
    /// The address of host `n` (1-based).
    public func hostAddress(_ n: Int) -> String {
        spec.preset == .open ? "203.0.113.\(10 * number + n)" : "10.0.\(number).\(10 + n)"
    }
    /// The LAN gateway (the home router's LAN address).
    public var lanGateway: String { "10.0.\(number).1" }
    public var lanNetwork: String { "10.0.\(number).0/24" }
    /// Carrier-side link of a cgnat site: carrier .1, home router .2.
    public var carrierLAN: String { "100.64.\(number).1" }
    public var carrierHomeWAN: String { "100.64.\(number).2" }
    public var carrierNetwork: String { "100.64.\(number).0/24" }

    /// The site's hosts as JSON nodes.
    public var hostNodes: [LabNode] {
        (1...spec.hosts).map { n in
            LabNode(
                namespace: hostNamespace(n), role: .host, site: spec.name, preset: spec.preset, index: n,
                addresses: [hostAddress(n) + "/24"],
                publicAddress: spec.preset == .open ? hostAddress(n) : wanAddress)
        }
    }

    /// Routers of the site (none for open), outermost first.
    public var routerNodes: [LabNode] {
        switch spec.preset {
        case .open: return []
        case .cgnat:
            return [
                LabNode(namespace: carrierNamespace, role: .carrier, site: spec.name, preset: spec.preset, index: nil,
                        addresses: [wanAddress + "/24", carrierLAN + "/24"], publicAddress: wanAddress),
                LabNode(namespace: routerNamespace, role: .router, site: spec.name, preset: spec.preset, index: nil,
                        addresses: [carrierHomeWAN + "/24", lanGateway + "/24"], publicAddress: wanAddress),
            ]
        default:
            return [LabNode(namespace: routerNamespace, role: .router, site: spec.name, preset: spec.preset, index: nil,
                            addresses: [wanAddress + "/24", lanGateway + "/24"], publicAddress: wanAddress)]
        }
    }
}

/// The whole lab: every namespace and address, derived from a configuration.
public struct LabTopology: Hashable, Sendable {
    public var configuration: LabConfiguration
    public var sites: [LabSitePlan]

    public static let internetNamespace = "\(LabLimits.prefix)inet"
    public static let publicNamespace = "\(LabLimits.prefix)public"
    /// The public host's addresses: the STUN pair uses .1 and .2 (`LabLimits.stunPrimary`,
    /// `LabLimits.stunAlternate`); .3 and .4 let a network of supernodes run on the one host, each
    /// on an address of its own with a STUN pair on its port 3478 (a pair takes two addresses, so
    /// three supernodes' hosts need a second pair: .3 with .4; `LabClusterTests`).
    public static let publicAddresses = ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"]

    public init(_ configuration: LabConfiguration) throws(LabError) {
        try configuration.validate()
        self.configuration = configuration
        self.sites = configuration.sites.enumerated().map { LabSitePlan(spec: $1, number: $0 + 1) }
    }

    /// The site called `name`.
    public func site(named name: String) -> LabSitePlan? { sites.first { $0.spec.name == name } }

    /// Every node, the internet and the public host first.
    public var nodes: [LabNode] {
        var nodes = [
            LabNode(namespace: Self.internetNamespace, role: .internet, site: "inet", preset: nil, index: nil, addresses: [], publicAddress: nil),
            LabNode(namespace: Self.publicNamespace, role: .publicHost, site: "public", preset: nil, index: 1,
                    addresses: Self.publicAddresses.map { $0 + "/24" }, publicAddress: Self.publicAddresses[0]),
        ]
        for site in sites { nodes += site.routerNodes + site.hostNodes }
        return nodes
    }

    /// Every namespace, in creation order.
    public var namespaces: [String] { nodes.map(\.namespace) }

    /// The namespace of `SITE[/N]` (`public` is the supernode host).
    public func namespace(for target: String) throws(LabError) -> String {
        let parts = target.split(separator: "/", maxSplits: 1).map(String.init)
        if parts[0] == "public" { return Self.publicNamespace }
        guard let site = site(named: parts[0]) else {
            throw .unknownTarget(target, sites.map(\.spec.name) + ["public"])
        }
        let n = parts.count == 2 ? Int(parts[1]) ?? 0 : 1
        guard (1...site.spec.hosts).contains(n) else { throw .unknownTarget(target, sites.map(\.spec.name) + ["public"]) }
        return site.hostNamespace(n)
    }
}

/// Everything that can go wrong in the lab, each saying what to do about it.
public enum LabError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The lab needs root (network namespaces, nftables).
    case notRoot
    /// A required program is missing.
    case missingTool(String, package: String)
    /// A `--site` value could not be used.
    case badSite(String, String)
    /// The configuration as a whole is unusable.
    case badConfiguration(String)
    /// `lab exec` named a site or host that does not exist.
    case unknownTarget(String, [String])
    /// No lab is up (for `exec`).
    case notUp(String)
    /// A command the lab ran failed.
    case commandFailed(command: String, status: Int32, output: String)

    public var description: String {
        switch self {
        case .notRoot:
            "the NAT lab needs root (network namespaces and nftables): run it with sudo"
        case .missingTool(let tool, let package):
            "'\(tool)' is not installed: apt-get install \(package) (scripts/test installs it when run as root)"
        case .badSite(let site, let why):
            "--site \(site): \(why)"
        case .badConfiguration(let why):
            why
        case .unknownTarget(let target, let sites):
            "no lab host '\(target)': use SITE or SITE/N with one of: \(sites.joined(separator: ", "))"
        case .notUp(let why):
            "no lab is up (\(why)): start one with `peerway lab up --site NAME=PRESET`"
        case .commandFailed(let command, let status, let output):
            "`\(command)` failed (exit \(status)): \(output.trimmingCharacters(in: .whitespacesAndNewlines)); `peerway lab down` removes what was made"
        }
    }
}

