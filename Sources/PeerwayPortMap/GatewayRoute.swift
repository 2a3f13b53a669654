/*
 The default gateway, from Linux's /proc/net/route (see proc(5)): one line per route after a
 header, tab-separated: Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT,
 the three addresses as 8 hex digits in the kernel's (little-endian) byte order. The default
 route has Destination 00000000 and Mask 00000000 and the RTF_GATEWAY flag (0x2); among several,
 the lowest metric wins, as the kernel's own choice does.
*/

/// The IPv4 default route.
public struct GatewayRoute: Hashable, Sendable {
    /// The interface the route leaves by.
    public var interface: String
    /// The gateway's address (host order: 0x0A000101 is 10.0.1.1).
    public var gateway: UInt32
    public var metric: Int

    public init(interface: String, gateway: UInt32, metric: Int) {
        self.interface = interface
        self.gateway = gateway
        self.metric = metric
    }

    /// The route flag "up" (RTF_UP, 0x1) and "via a gateway" (RTF_GATEWAY, 0x2).
    static let requiredFlags = 0x3
    /// Lines read at most (a host with thousands of routes still has its default route early).
    static let maximumLines = 4_096

    /// The default route in a /proc/net/route text, or nil when there is none.
    public static func parse(procNetRoute text: String) -> GatewayRoute? {
        var best: GatewayRoute?
        for line in text.split(separator: "\n").dropFirst().prefix(maximumLines) {
            let f = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard f.count >= 8, f[1] == "00000000", f[7] == "00000000",
                  let gw = UInt32(f[2], radix: 16), gw != 0,
                  let flags = Int(f[3], radix: 16), flags & requiredFlags == requiredFlags,
                  let metric = Int(f[6])
            else { continue }
            // The kernel prints the address as a native-endian integer of network-order bytes.
            let route = GatewayRoute(interface: String(f[0]), gateway: gw.byteSwapped, metric: metric)
            if best.map({ metric < $0.metric }) ?? true { best = route }
        }
        return best
    }
}
