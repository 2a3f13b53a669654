/// One step of bringing the lab up: a program and its arguments, or an nftables ruleset for a
/// namespace (fed to `nft -f -` on standard input).
public enum LabStep: Hashable, Sendable, CustomStringConvertible {
    /// Run `ip ARGS...`.
    case ip([String])
    /// Run `ip netns exec NAMESPACE sysctl -qw KEY=VALUE`.
    case sysctl(namespace: String, key: String, value: String)
    /// Like `sysctl`, but only if the key exists (e.g. br_netfilter's, when the module is loaded).
    case sysctlIfPresent(namespace: String, key: String, value: String)
    /// Load `ruleset` with `nft -f -` in `namespace`.
    case nft(namespace: String, ruleset: String)
    /// Delay every packet in and out of `device` in `namespace` by `milliseconds`: start a
    /// `peerway lab delay-queue` there, then queue the device's packets to it with iptables NFQUEUE.
    case delay(namespace: String, device: String, milliseconds: Int)
    /// Start an HTTP proxy (tinyproxy, `LabProxy`) with `configuration` in `namespace`.
    case proxy(namespace: String, configuration: String)

    public var description: String {
        switch self {
        case .ip(let args): "ip " + args.joined(separator: " ")
        case .sysctl(let ns, let key, let value): "ip netns exec \(ns) sysctl -qw \(key)=\(value)"
        case .sysctlIfPresent(let ns, let key, let value): "ip netns exec \(ns) sysctl -qw \(key)=\(value) (if present)"
        case .nft(let ns, let ruleset): "ip netns exec \(ns) nft -f - <<<'\(ruleset.split(separator: "\n").first ?? "")...'"
        case .delay(let ns, let device, let ms): "ip netns exec \(ns) peerway lab delay-queue --delay \(ms) & (NFQUEUE on \(device), both ways)"
        case .proxy(let ns, _): "ip netns exec \(ns) \(LabProxy.tool) -d -c CONF &"
        }
    }
}

/// Turns a topology into the ordered steps that build it (pure: tested without root).
public enum LabPlan {
    /// Every step of `lab up`, in order: namespaces, links, addresses, routes, sysctls, rules.
    public static func steps(for topology: LabTopology) -> [LabStep] {
        var steps: [LabStep] = []
        let inet = LabTopology.internetNamespace
        let udpTimeout = String(topology.configuration.udpTimeout)
        let loss = topology.configuration.lossPercent

        for ns in topology.namespaces {
            steps.append(.ip(["netns", "add", ns]))
            steps.append(.ip(["-n", ns, "link", "set", "lo", "up"]))
            steps.append(.sysctl(namespace: ns, key: "net.ipv6.conf.all.disable_ipv6", value: "1"))
            steps.append(.sysctl(namespace: ns, key: "net.ipv6.conf.default.disable_ipv6", value: "1"))
        }
        steps.append(.ip(["-n", inet, "link", "add", "br0", "type", "bridge"]))
        steps.append(.ip(["-n", inet, "link", "set", "br0", "up"]))

        /// A veth from the internet bridge (port `port`) to `eth` in `ns`, addressed `address`/24,
        /// with both documentation /24s on-link.
        func publicLink(port: String, ns: String, eth: String, addresses: [String]) {
            steps.append(.ip(["-n", inet, "link", "add", port, "type", "veth", "peer", "name", eth, "netns", ns]))
            steps.append(.ip(["-n", inet, "link", "set", port, "master", "br0"]))
            steps.append(.ip(["-n", inet, "link", "set", port, "up"]))
            for a in addresses { steps.append(.ip(["-n", ns, "addr", "add", a + "/24", "dev", eth])) }
            steps.append(.ip(["-n", ns, "link", "set", eth, "up"]))
            let own = addresses.first.map { $0.hasPrefix("198.51.100.") } ?? false
            steps.append(.ip(["-n", ns, "route", "add", own ? "203.0.113.0/24" : "198.51.100.0/24", "dev", eth]))
            // Loss on the sites' WAN links (not the supernode's own): each end drops what arrives.
            if !own {
                if topology.configuration.delayMilliseconds > 0 {
                    steps.append(.delay(namespace: ns, device: eth, milliseconds: topology.configuration.delayMilliseconds))
                }
                if let table = LabRouterRules.lossTable(percent: loss, device: port) { steps.append(.nft(namespace: inet, ruleset: table)) }
                if let table = LabRouterRules.lossTable(percent: loss, device: eth) { steps.append(.nft(namespace: ns, ruleset: table)) }
            }
        }
        /// A router's LAN bridge `lan0` with address `gateway`/24.
        func lanBridge(ns: String, gateway: String) {
            steps.append(.ip(["-n", ns, "link", "add", LabRouterRules.lan, "type", "bridge"]))
            steps.append(.ip(["-n", ns, "addr", "add", gateway + "/24", "dev", LabRouterRules.lan]))
            steps.append(.ip(["-n", ns, "link", "set", LabRouterRules.lan, "up"]))
        }
        /// A veth from `router`'s LAN bridge (port `port`) to `eth` in `ns`, `address`/24 via `gateway`.
        func lanLink(router: String, port: String, ns: String, eth: String, address: String, gateway: String) {
            steps.append(.ip(["-n", router, "link", "add", port, "type", "veth", "peer", "name", eth, "netns", ns]))
            steps.append(.ip(["-n", router, "link", "set", port, "master", LabRouterRules.lan]))
            steps.append(.ip(["-n", router, "link", "set", port, "up"]))
            steps.append(.ip(["-n", ns, "addr", "add", address + "/24", "dev", eth]))
            steps.append(.ip(["-n", ns, "link", "set", eth, "up"]))
            steps.append(.ip(["-n", ns, "route", "add", "default", "via", gateway]))
        }
        /// br_netfilter (when loaded) runs the IP hooks on bridged frames too, and then drops a
        /// packet that destination NAT sends back out of the bridge port it came in by (hairpinning):
        /// the lab's bridges are plain switches, the routers' rules see routed packets only.
        func plainBridges(_ ns: String) {
            for family in ["iptables", "ip6tables", "arptables"] {
                steps.append(.sysctlIfPresent(namespace: ns, key: "net.bridge.bridge-nf-call-\(family)", value: "0"))
            }
        }
        func routerSysctls(_ ns: String) {
            plainBridges(ns)
            steps.append(.sysctl(namespace: ns, key: "net.ipv4.ip_forward", value: "1"))
            steps.append(.sysctl(namespace: ns, key: "net.ipv4.conf.all.send_redirects", value: "0"))
            steps.append(.sysctl(namespace: ns, key: "net.ipv4.conf.default.send_redirects", value: "0"))
        }
        func conntrackTimeouts(_ ns: String) {
            steps.append(.sysctl(namespace: ns, key: "net.netfilter.nf_conntrack_udp_timeout", value: udpTimeout))
            steps.append(.sysctl(namespace: ns, key: "net.netfilter.nf_conntrack_udp_timeout_stream", value: udpTimeout))
        }

        plainBridges(inet)
        publicLink(port: "pub", ns: LabTopology.publicNamespace, eth: "eth0", addresses: LabTopology.publicAddresses)

        for site in topology.sites {
            let spec = site.spec
            let i = site.number
            switch spec.preset {
            case .open:
                for n in 1...spec.hosts {
                    publicLink(port: "s\(i)h\(n)", ns: site.hostNamespace(n), eth: "eth0", addresses: [site.hostAddress(n)])
                }
            case .cgnat:
                let carrier = site.carrierNamespace, home = site.routerNamespace
                publicLink(port: "s\(i)", ns: carrier, eth: LabRouterRules.wan, addresses: [site.wanAddress])
                lanBridge(ns: carrier, gateway: site.carrierLAN)
                lanLink(router: carrier, port: "p1", ns: home, eth: LabRouterRules.wan, address: site.carrierHomeWAN, gateway: site.carrierLAN)
                lanBridge(ns: home, gateway: site.lanGateway)
                for n in 1...spec.hosts {
                    lanLink(router: home, port: "p\(n)", ns: site.hostNamespace(n), eth: "eth0", address: site.hostAddress(n), gateway: site.lanGateway)
                }
                for ns in [carrier, home] { routerSysctls(ns) }
                let carrierRules = LabRouterRules(kind: .portRestricted, publicAddress: site.wanAddress, lanNetwork: site.carrierNetwork,
                                                  hairpin: false, udpTimeout: topology.configuration.udpTimeout)
                let homeRules = LabRouterRules(kind: .portRestricted, publicAddress: site.carrierHomeWAN, lanNetwork: site.lanNetwork,
                                               hairpin: spec.hairpin, udpTimeout: topology.configuration.udpTimeout)
                steps.append(.nft(namespace: carrier, ruleset: carrierRules.ruleset))
                steps.append(.nft(namespace: home, ruleset: homeRules.ruleset))
                for ns in [carrier, home] { conntrackTimeouts(ns) }
            case .fullCone, .restrictedCone, .portRestricted, .symmetric, .symmetricSequential, .udpBlocked, .tcp443Only, .proxyOnly,
                 .symmetricUPnP:
                let router = site.routerNamespace
                publicLink(port: "s\(i)", ns: router, eth: LabRouterRules.wan, addresses: [site.wanAddress])
                lanBridge(ns: router, gateway: site.lanGateway)
                for n in 1...spec.hosts {
                    lanLink(router: router, port: "p\(n)", ns: site.hostNamespace(n), eth: "eth0", address: site.hostAddress(n), gateway: site.lanGateway)
                }
                routerSysctls(router)
                let rules = LabRouterRules(kind: ruleKind(spec.preset), publicAddress: site.wanAddress, lanNetwork: site.lanNetwork,
                                           hairpin: spec.hairpin, udpTimeout: topology.configuration.udpTimeout)
                steps.append(.nft(namespace: router, ruleset: rules.ruleset))
                if spec.preset == .symmetricUPnP { steps.append(.nft(namespace: router, ruleset: LabPortMap.miniupnpdTables)) }
                conntrackTimeouts(router)
                if spec.preset == .proxyOnly { steps.append(.proxy(namespace: router, configuration: LabProxy.configuration(for: site))) }
            }
        }
        steps += LabSendFailures.steps(for: topology)
        return steps
    }

    static func ruleKind(_ preset: LabPreset) -> LabRouterRules.Kind {
        switch preset {
        case .fullCone: .fullCone
        case .restrictedCone: .restrictedCone
        case .symmetric: .symmetric
        case .symmetricSequential: .symmetricSequential
        case .udpBlocked: .udpBlocked
        case .tcp443Only: .tcp443Only
        case .proxyOnly: .proxyOnly
        case .symmetricUPnP: .symmetricUPnP
        case .portRestricted, .cgnat, .open: .portRestricted
        }
    }
}
