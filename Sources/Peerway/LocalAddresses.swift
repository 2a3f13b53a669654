import NIOCore
import NIOPosix
import PeerwaySTUN

/// The addresses of this host's network interfaces.
public enum LocalAddresses {
    /// Every interface address (port 0), without duplicates, in the order the system lists them;
    /// empty when the interfaces cannot be listed.
    public static func current() -> [STUNAddress] {
        var all: [STUNAddress] = []
        for device in (try? System.enumerateDevices()) ?? [] {
            guard let address = device.address.flatMap(STUNAddress.init)?.with(port: 0), !all.contains(address) else { continue }
            all.append(address)
        }
        return all
    }

    /// The first address of `family` that other hosts can reach: not loopback, not link-local,
    /// not `excluding`.
    public static func firstRoutable(_ family: STUNAddress.Family, excluding: STUNAddress.IP? = nil) -> STUNAddress? {
        current().first { $0.family == family && !$0.isLoopback && !$0.isLinkLocal && $0.ip != excluding }
    }
}
