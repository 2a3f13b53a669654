import PeerwayLab
import Testing

@Suite("Lab plan: the steps that build the lab")
struct LabPlanTests {
    static let topology = try! LabTopology(LabConfiguration(sites: LabVerify.sites, lossPercent: 5, udpTimeout: 20, delayMilliseconds: 30))

    static var ipArguments: [[String]] {
        LabPlan.steps(for: topology).compactMap { step in
            if case .ip(let args) = step { return args }
            return nil
        }
    }

    @Test("every namespace is created first, and only prefixed ones")
    func namespaces() {
        let created = Self.ipArguments.filter { $0.starts(with: ["netns", "add"]) }.map { $0[2] }
        #expect(created == Self.topology.namespaces)
        #expect(created.allSatisfy { $0.hasPrefix("pw-") })
        // Every command that names a namespace names one of the lab's.
        for args in Self.ipArguments where args.first == "-n" {
            #expect(Self.topology.namespaces.contains(args[1]), "\(args)")
        }
    }

    @Test("interface names fit Linux's 15 characters, and no link is made in the caller's namespace")
    func interfaces() {
        for args in Self.ipArguments {
            if let i = args.firstIndex(of: "add"), args.count > i + 1, args.contains("link") {
                #expect(args[i + 1].count <= 15, "\(args)")
                #expect(args.first == "-n", "a link made outside the lab's namespaces: \(args)")
            }
            if let peer = args.firstIndex(of: "peer") {
                #expect(args[peer + 2].count <= 15)
                #expect(args[peer + 3] == "netns", "a veth end left in the caller's namespace: \(args)")
            }
        }
    }

    @Test("every router forwards, has conntrack timeouts set and gets rules; br_netfilter is off on bridges")
    func routers() {
        let steps = LabPlan.steps(for: Self.topology)
        let routers = Self.topology.nodes.filter { $0.role == .router || $0.role == .carrier }.map(\.namespace)
        for ns in routers {
            #expect(steps.contains(.sysctl(namespace: ns, key: "net.ipv4.ip_forward", value: "1")))
            #expect(steps.contains(.sysctl(namespace: ns, key: "net.netfilter.nf_conntrack_udp_timeout", value: "20")))
            #expect(steps.contains(.sysctlIfPresent(namespace: ns, key: "net.bridge.bridge-nf-call-iptables", value: "0")))
            #expect(steps.contains { if case .nft(ns, _) = $0 { true } else { false } })
        }
        // Loss at both ends of every site's WAN link, open hosts included; not on the supernode's.
        for (ns, device) in [("pw-open-h1", "eth0"), ("pw-inet", "s1h1"), ("pw-cgnat-c", "wan0"), ("pw-inet", "s8")] {
            #expect(steps.contains(.nft(namespace: ns, ruleset: LabRouterRules.lossTable(percent: 5, device: device)!)), "\(ns) \(device)")
        }
        #expect(!steps.contains(.nft(namespace: "pw-inet", ruleset: LabRouterRules.lossTable(percent: 5, device: "pub")!)))
        // Delay on the site side of every WAN link: the outermost router, or the open host.
        let delayed = steps.compactMap { step -> String? in
            if case .delay(let ns, let device, 30) = step { return "\(ns) \(device)" }
            return nil
        }
        #expect(delayed.contains("pw-open-h1 eth0"))
        #expect(delayed.contains("pw-cgnat-c wan0"))
        #expect(delayed.contains("pw-symmetric-r wan0"))
        #expect(delayed.count == Self.topology.sites.reduce(0) { $0 + ($1.spec.preset == .open ? $1.spec.hosts : 1) })
    }

    @Test("only the documentation ranges are routed: no default route outside the LANs")
    func routes() {
        for args in Self.ipArguments where args.contains("route") {
            let destination = args[args.firstIndex(of: "add")! + 1]
            if destination == "default" {
                #expect(args.contains("via"), "\(args)")
                let gateway = args[args.firstIndex(of: "via")! + 1]
                #expect(gateway.hasPrefix("10.0.") || gateway.hasPrefix("100.64."), "\(args)")
            } else {
                #expect(["198.51.100.0/24", "203.0.113.0/24"].contains(destination), "\(args)")
            }
        }
    }
}
