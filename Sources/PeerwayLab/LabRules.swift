/*
 nftables rulesets of the NAT presets, as pure functions of the router's addresses.

 Mapping. `masquerade` keeps the source port whenever the resulting conntrack reply tuple is
 unique, and conntrack keys on the whole 5-tuple: so the same local port gets the same public port
 toward every destination (endpoint-independent mapping, port preserved). `masquerade fully-random`
 draws a new random port for every new conntrack entry, i.e. every new destination: address-and-port
 dependent mapping with random ports (symmetric). `snat to P : numgen inc map {...}` gives every
 new conntrack entry the next port: address-and-port-dependent mapping with sequential ports.

 Filtering. Plain conntrack lets in only answers from the exact remote address and port a mapping
 sent to: address-and-port-dependent filtering. The looser filters need state conntrack does not
 keep, so a chain after source NAT (postrouting, priority `recordPriority`) records every outbound
 UDP packet of the LAN in dynamic sets keyed by the *public* port:
   @ports     public port                      (it is mapped)
   @mappings  public port -> LAN address . port (where to send what comes in)
   @contacts  public port . remote address     (whom it has sent to: restricted cone)
 and a destination-NAT chain sends an unsolicited packet to a mapped port back to its LAN owner:
 any source for full-cone, only a recorded remote address for restricted-cone. Hairpinning is the
 same DNAT applied to LAN packets addressed to the public address, plus a source NAT to the public
 address so the target sees (and answers) the public side, from the sender's mapped port.
 (The LAN is a bridge: br_netfilter must be off for it, see `LabPlan`, or it drops the hairpinned
 packet as it would leave by the bridge port it came in by.) Set entries expire after the UDP timeout,
 like the conntrack entries they shadow.

 Loss: `numgen random mod 100 < PCT drop` in a netdev ingress hook at both ends of each WAN link
 (`lossTable`), separate from the NAT rules.
*/

/// The pieces of one NAT router the rules need.
public struct LabRouterRules: Hashable, Sendable {
    /// How the router maps and filters.
    public enum Kind: Hashable, Sendable {
        case fullCone, restrictedCone, portRestricted, symmetric, symmetricSequential, udpBlocked
        /// No UDP, TCP to 443 only.
        case tcp443Only
        /// Nothing forwarded at all (the router's own proxy makes the connections out).
        case proxyOnly
        /// `symmetric` for the LAN, plus what miniupnpd needs (`LabPortMap`): the router's own
        /// traffic keeps its ports (miniupnpd's STUN check), the STUN pair's answers reach the
        /// router, and what miniupnpd's mappings forward (destination-NATed) is let through.
        case symmetricUPnP

        /// The only TCP ports a firewall kind lets out (nil: everything leaves, NAT rules apply).
        public var allowedTCPPorts: [Int]? {
            switch self {
            case .udpBlocked: LabLimits.udpBlockedTCPPorts
            case .tcp443Only: LabLimits.tcp443OnlyPorts
            case .proxyOnly: []
            default: nil
            }
        }
    }

    public var kind: Kind
    /// The public address the router's WAN has (`snat` target of hairpinned packets).
    public var publicAddress: String
    /// The LAN prefix, e.g. 10.0.3.0/24.
    public var lanNetwork: String
    public var hairpin: Bool
    /// Seconds a recorded mapping lives without traffic.
    public var udpTimeout: Int

    /// Priority of the chain that records mappings: after source NAT (100), so it sees public ports.
    public static let recordPriority = 200
    /// symmetric-sequential: UDP mappings take ports sequentialPortBase, +1, +2, ... (wrapping
    /// after sequentialPortCount), whatever the local port.
    public static let sequentialPortBase = 20_000
    public static let sequentialPortCount = 1_024
    /// The WAN and LAN interface names inside a router namespace.
    public static let wan = "wan0"
    public static let lan = "lan0"
    /// The nftables table every lab rule lives in.
    public static let table = "pwlab"

    public init(kind: Kind, publicAddress: String, lanNetwork: String, hairpin: Bool = false, udpTimeout: Int = LabLimits.defaultUDPTimeout) {
        self.kind = kind
        self.publicAddress = publicAddress
        self.lanNetwork = lanNetwork
        self.hairpin = hairpin
        self.udpTimeout = udpTimeout
    }

    /// The ruleset, for `nft -f -` inside the router's namespace.
    public var ruleset: String {
        let wan = Self.wan, lan = Self.lan, p = publicAddress
        let records = kind.allowedTCPPorts == nil && (hairpin || kind == .fullCone || kind == .restrictedCone)
        var out: [String] = ["table ip \(Self.table) {"]
        if records {
            let timeout = "flags dynamic,timeout; timeout \(udpTimeout)s;"
            out.append("  set ports { type inet_service; \(timeout) }")
            out.append("  map mappings { type inet_service : ipv4_addr . inet_service; \(timeout) }")
            if kind == .restrictedCone {
                out.append("  set contacts { type inet_service . ipv4_addr; \(timeout) }")
            }
        }

        out.append("  chain prerouting {")
        out.append("    type nat hook prerouting priority dstnat; policy accept;")
        let dnat = "dnat ip to udp dport map @mappings"
        switch kind {
        case .fullCone:
            out.append("    iifname \"\(wan)\" ip daddr \(p) udp dport @ports \(dnat)")
        case .restrictedCone:
            out.append("    iifname \"\(wan)\" ip daddr \(p) udp dport . ip saddr @contacts \(dnat)")
        default: break
        }
        if hairpin && records {
            out.append("    iifname \"\(lan)\" ip daddr \(p) udp dport @ports \(dnat)")
        }
        out.append("  }")

        out.append("  chain postrouting {")
        out.append("    type nat hook postrouting priority srcnat; policy accept;")
        if hairpin && records {
            out.append("    ip saddr \(lanNetwork) ip daddr \(lanNetwork) ct status dnat snat ip to \(p)")
        }
        if kind == .symmetricSequential {
            // The NAT chain sees only a connection's first packet: the counter steps once per new mapping.
            // numgen's value is host-order and a NAT port network-order (a `numgen ... offset` port
            // steps by 256 on little-endian machines), so a map turns the counter into ports.
            let ports = (0..<Self.sequentialPortCount).map { "\($0) : \(Self.sequentialPortBase + $0)" }.joined(separator: ", ")
            out.append("    oifname \"\(wan)\" meta l4proto udp snat ip to \(p) : numgen inc mod \(Self.sequentialPortCount) map { \(ports) }")
        }
        if kind == .symmetricUPnP {
            out.append("    oifname \"\(wan)\" ip saddr \(lanNetwork) masquerade fully-random")
        } else {
            out.append("    oifname \"\(wan)\" masquerade\(kind == .symmetric ? " fully-random" : "")")
        }
        out.append("  }")

        if records {
            out.append("  chain record {")
            out.append("    type filter hook postrouting priority \(Self.recordPriority); policy accept;")
            var updates = "update @ports { udp sport } update @mappings { udp sport : ct original ip saddr . ct original proto-src }"
            if kind == .restrictedCone { updates += " update @contacts { udp sport . ip daddr }" }
            out.append("    oifname \"\(wan)\" ip saddr \(p) ct direction original meta l4proto udp \(updates)")
            out.append("  }")
        }

        out.append("  chain forward {")
        out.append("    type filter hook forward priority filter; policy drop;")
        out.append("    ct state established,related accept")
        if let allowed = kind.allowedTCPPorts {
            let ports = allowed.map(String.init).joined(separator: ", ")
            if !allowed.isEmpty {
                out.append("    iifname \"\(lan)\" oifname \"\(wan)\" tcp dport { \(ports) } accept")
                out.append("    iifname \"\(lan)\" oifname \"\(wan)\" icmp type echo-request accept")
            }
        } else {
            out.append("    iifname \"\(lan)\" oifname \"\(wan)\" accept")
            if records || kind == .symmetricUPnP { out.append("    ct status dnat accept") }
        }
        out.append("  }")

        // Unsolicited packets to the router's own WAN address are dropped before conntrack
        // confirms them, as a home router's firewall does. Without this the host stack takes them
        // (answering ICMP port unreachable or a TCP RST) and keeps a conntrack entry whose reply
        // tuple then forbids the LAN flow it belongs to from keeping its port: the first hole
        // punching packet to arrive would move the other side's mapping.
        out.append("  chain input {")
        out.append("    type filter hook input priority filter; policy accept;")
        if kind == .symmetricUPnP {
            let stun = [LabLimits.stunPrimary, LabLimits.stunAlternate].compactMap { $0.split(separator: ":").last }.joined(separator: ", ")
            out.append("    iifname \"\(wan)\" ip saddr \(LabPortMap.stunNetwork) udp sport { \(stun) } accept")
        }
        out.append("    iifname \"\(wan)\" ct state new drop")
        out.append("  }")

        out.append("}")
        return out.joined(separator: "\n") + "\n"
    }

    /// Drops `percent` % of the packets arriving on `device`, or nil for 0 %. A netdev ingress
    /// hook: the packet is lost on the wire, as on a real link. (Dropping in a host's output path
    /// instead would fail the sender's `send` with EPERM, which real loss never does.) The lab
    /// puts one on each end of a WAN link, so both directions lose packets.
    public static func lossTable(percent: Int, device: String) -> String? {
        guard percent > 0 else { return nil }
        return """
            table netdev \(lossTableName) {
              chain ingress-\(device) {
                type filter hook ingress device "\(device)" priority filter; policy accept;
                numgen random mod 100 < \(percent) drop
              }
            }

            """
    }

    /// The nftables table of the loss rules (netdev family), apart from the NAT rules.
    public static let lossTableName = "pwlab-loss"
}
