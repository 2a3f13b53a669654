import Foundation
import NIOConcurrencyHelpers
import PeerwayPortMap
import PeerwaySTUN

/// What this process learnt about its gateway's port mapping: a gateway that speaks none of PCP,
/// NAT-PMP and UPnP-IGD is not asked again for `absentMemorySeconds`, or until the host's
/// addresses change (another network, another gateway). So only the first tunnel behind such a
/// router waits for the discovery, and even it not long (`TunnelOptions.portMapOfferWaitMillis`).
final class PortMapMemory: Sendable {
    /// Seconds a gateway that speaks no mapping protocol is remembered as such.
    static let absentMemorySeconds: Double = 600

    static let shared = PortMapMemory()

    private struct Absent {
        var gateway: UInt32
        var until: Date
        var addresses: Set<STUNAddress.IP>
    }

    private let state = NIOLockedValueBox<[UInt32: Absent]>([:])

    /// Whether `gateway` is known to speak no mapping protocol, on the network this host is on now.
    func knownAbsent(gateway: UInt32) -> Bool {
        guard let entry = state.withLockedValue({ $0[gateway] }) else { return false }
        if Date() < entry.until && entry.addresses == NetworkWatcher.snapshot() { return true }
        state.withLockedValue { $0[gateway] = nil }
        return false
    }

    /// Learns from a session's first report: every protocol absent or refused marks the gateway.
    func remember(_ report: PortMapReport, gateway: UInt32) {
        let probes = [report.pcp, report.natPMP, report.upnp]
        let none = probes.allSatisfy { probe in
            switch probe {
            case .absent, .refused: true
            case .pending, .available: false
            }
        }
        let entry = Absent(gateway: gateway, until: Date().addingTimeInterval(Self.absentMemorySeconds),
                           addresses: NetworkWatcher.snapshot())
        state.withLockedValue { $0[gateway] = none ? entry : nil }
    }
}
