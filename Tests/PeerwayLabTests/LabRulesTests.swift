import PeerwayLab
import Testing

@Suite("Lab rules: the nftables ruleset of each preset")
struct LabRulesTests {
    static func rules(_ kind: LabRouterRules.Kind, hairpin: Bool = false) -> String {
        LabRouterRules(kind: kind, publicAddress: "203.0.113.21", lanNetwork: "10.0.2.0/24", hairpin: hairpin, udpTimeout: 30).ruleset
    }

    @Test("port-restricted: plain masquerade and conntrack, nothing recorded")
    func portRestricted() {
        #expect(Self.rules(.portRestricted) == """
            table ip pwlab {
              chain prerouting {
                type nat hook prerouting priority dstnat; policy accept;
              }
              chain postrouting {
                type nat hook postrouting priority srcnat; policy accept;
                oifname "wan0" masquerade
              }
              chain forward {
                type filter hook forward priority filter; policy drop;
                ct state established,related accept
                iifname "lan0" oifname "wan0" accept
              }
              chain input {
                type filter hook input priority filter; policy accept;
                iifname "wan0" ct state new drop
              }
            }

            """)
    }

    @Test("full-cone with hairpinning: mappings recorded after source NAT, DNAT from anywhere and from the LAN")
    func fullConeHairpin() {
        #expect(Self.rules(.fullCone, hairpin: true) == """
            table ip pwlab {
              set ports { type inet_service; flags dynamic,timeout; timeout 30s; }
              map mappings { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout 30s; }
              chain prerouting {
                type nat hook prerouting priority dstnat; policy accept;
                iifname "wan0" ip daddr 203.0.113.21 udp dport @ports dnat ip to udp dport map @mappings
                iifname "lan0" ip daddr 203.0.113.21 udp dport @ports dnat ip to udp dport map @mappings
              }
              chain postrouting {
                type nat hook postrouting priority srcnat; policy accept;
                ip saddr 10.0.2.0/24 ip daddr 10.0.2.0/24 ct status dnat snat ip to 203.0.113.21
                oifname "wan0" masquerade
              }
              chain record {
                type filter hook postrouting priority 200; policy accept;
                oifname "wan0" ip saddr 203.0.113.21 ct direction original meta l4proto udp update @ports { udp sport } update @mappings { udp sport : ct original ip saddr . ct original proto-src }
              }
              chain forward {
                type filter hook forward priority filter; policy drop;
                ct state established,related accept
                iifname "lan0" oifname "wan0" accept
                ct status dnat accept
              }
              chain input {
                type filter hook input priority filter; policy accept;
                iifname "wan0" ct state new drop
              }
            }

            """)
    }

    @Test("restricted-cone: inbound only from remote addresses the mapping has sent to")
    func restrictedCone() {
        let r = Self.rules(.restrictedCone)
        #expect(r.contains("set contacts { type inet_service . ipv4_addr; flags dynamic,timeout; timeout 30s; }"))
        #expect(r.contains("iifname \"wan0\" ip daddr 203.0.113.21 udp dport . ip saddr @contacts dnat ip to udp dport map @mappings"))
        #expect(r.contains("update @contacts { udp sport . ip daddr }"))
        #expect(!r.contains("lan0\" ip daddr"))
    }

    @Test("symmetric: a random port per destination; no inbound DNAT")
    func symmetric() {
        let r = Self.rules(.symmetric)
        #expect(r.contains("oifname \"wan0\" masquerade fully-random"))
        #expect(!r.contains("dnat"))
    }

    @Test("symmetric-sequential: a counter mapped to ports 20000, 20001, ... for each new UDP mapping")
    func sequential() {
        let r = Self.rules(.symmetricSequential)
        #expect(r.contains("oifname \"wan0\" meta l4proto udp snat ip to 203.0.113.21 : numgen inc mod 1024 map { 0 : 20000, 1 : 20001, 2 : 20002, "))
        #expect(r.contains(", 1023 : 21023 }"))
        #expect(r.contains("oifname \"wan0\" masquerade\n"))
    }

    @Test("udp-blocked: only TCP to 80 and 443 (and ping) leaves")
    func udpBlocked() {
        let r = Self.rules(.udpBlocked)
        #expect(r.contains("iifname \"lan0\" oifname \"wan0\" tcp dport { 80, 443 } accept"))
        #expect(!r.contains("iifname \"lan0\" oifname \"wan0\" accept"))
        #expect(r.contains("policy drop"))
    }

    @Test("loss: a netdev ingress hook drops at random; none at 0 %")
    func loss() {
        #expect(LabRouterRules.lossTable(percent: 7, device: "wan0") == """
            table netdev pwlab-loss {
              chain ingress-wan0 {
                type filter hook ingress device "wan0" priority filter; policy accept;
                numgen random mod 100 < 7 drop
              }
            }

            """)
        #expect(LabRouterRules.lossTable(percent: 0, device: "eth0") == nil)
        #expect(!Self.rules(.portRestricted).contains("numgen"))
    }
}
