/// Moves a host of the lab to another site's LAN while it runs (issue 13's roaming): its link to
/// its router goes (with every NAT mapping it had there, which no packet reaches again), a new
/// link joins the other router's LAN bridge, with a new address there and the default route
/// through that router. The host's sockets stay open: what runs on it sees its address change,
/// as a laptop moving from one Wi-Fi to another does.
public enum LabRoam {
    /// Last octet of a roaming host's address on the LAN it moves to (the site's own hosts are .11 and up).
    public static let roamedHostOctet = 50
    /// The router-side port of the new link (on the new router's LAN bridge).
    public static let roamedPort = "roam0"

    /// The address `host` gets on `site`'s LAN.
    public static func address(on site: LabSitePlan) -> String {
        "10.0.\(site.number).\(roamedHostOctet)"
    }

    /// The steps that move host `n` of `from` (a NAT site: its hosts are on a router's LAN) onto
    /// `to`'s LAN. `from`'s router keeps its own rules; its LAN port `p<n>` is deleted.
    public static func steps(host n: Int, of from: LabSitePlan, to: LabSitePlan) throws(LabError) -> [LabStep] {
        guard from.spec.preset != .open, to.spec.preset != .open else {
            throw .badSite("\(from.spec.name) -> \(to.spec.name)", "a roaming host moves between NAT sites (open sites have no LAN)")
        }
        guard n >= 1 && n <= from.spec.hosts else {
            throw .badSite(from.spec.name, "it has no host \(n)")
        }
        let host = from.hostNamespace(n), router = to.routerNamespace
        return [
            // Deleting the router's end deletes the host's eth0 with it.
            .ip(["-n", from.routerNamespace, "link", "del", "p\(n)"]),
            .ip(["-n", router, "link", "add", roamedPort, "type", "veth", "peer", "name", "eth0", "netns", host]),
            .ip(["-n", router, "link", "set", roamedPort, "master", LabRouterRules.lan]),
            .ip(["-n", router, "link", "set", roamedPort, "up"]),
            .ip(["-n", host, "addr", "add", address(on: to) + "/24", "dev", "eth0"]),
            .ip(["-n", host, "link", "set", "eth0", "up"]),
            .ip(["-n", host, "route", "add", "default", "via", to.lanGateway]),
        ]
    }
}
