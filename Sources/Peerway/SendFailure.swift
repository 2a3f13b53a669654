import PeerwaySTUN
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/*
 A UDP send that fails is a lost datagram, never the end of a socket. Real networks refuse sends
 now and then: a local firewall that drops a packet fails its `sendto` with EPERM, a network going
 away during a roam with ENETUNREACH or EHOSTUNREACH, a full queue with ENOBUFS or EAGAIN. Every
 sender of the library (the peer's control socket, netcheck, traversal probes, tunnels) counts such
 a send as lost and lets its retransmission cover it; the classification below only decides what
 a diagnostic says (`transient`: the next send may pass; `permanent`: this datagram never will).
*/

/// Why one datagram did not leave: the `errno` of its `sendto`.
struct SendFailure: Error, Equatable, Sendable, CustomStringConvertible {
    /// The `errno` value.
    var code: Int32

    /// Whether a later send may pass: the network refused this one for now (firewall, route,
    /// queue), so it counts as a lost packet that retransmission covers.
    var isTransient: Bool { Self.isTransient(code) }

    /// `errno` values that say the network (or the host's firewall, routes or queues) refused a
    /// datagram for now; every other one says this datagram can never leave as it is (too large,
    /// a bad address, a closed socket). Both are loss to a UDP sender; only a diagnostic differs.
    static let transientCodes: Set<Int32> = [
        EPERM,          // a local firewall dropped it (nft/iptables output drop)
        EACCES,         // a firewall or a broadcast address without SO_BROADCAST
        ENETUNREACH,    // no route: the network went away (a roam, an interface down)
        EHOSTUNREACH,   // no route to the host, or ARP/neighbour resolution failed
        ENETDOWN,       // the interface is down
        EHOSTDOWN,      // the host is down (reported by some routes)
        ENOBUFS,        // the interface's queue or the socket's buffer is full
        ENOMEM,         // the kernel could not allocate the packet now
        EAGAIN,         // the socket's send buffer is full (non-blocking); EWOULDBLOCK is the same
        EINTR,          // a signal interrupted the call
        ECONNREFUSED,   // an earlier datagram drew an ICMP port unreachable (reported on the next send)
        EADDRNOTAVAIL,  // the local address went away with its interface (a roam); it may come back
    ]

    static func isTransient(_ code: Int32) -> Bool { transientCodes.contains(code) }

    /// Symbolic names of the codes a UDP send reports, for messages (`strerror` says the rest).
    static let names: [Int32: String] = [
        EPERM: "EPERM", EACCES: "EACCES", ENETUNREACH: "ENETUNREACH", EHOSTUNREACH: "EHOSTUNREACH",
        ENETDOWN: "ENETDOWN", EHOSTDOWN: "EHOSTDOWN", ENOBUFS: "ENOBUFS", ENOMEM: "ENOMEM", EAGAIN: "EAGAIN",
        EINTR: "EINTR", ECONNREFUSED: "ECONNREFUSED", EADDRNOTAVAIL: "EADDRNOTAVAIL", EPIPE: "EPIPE",
        EMSGSIZE: "EMSGSIZE", EINVAL: "EINVAL", EAFNOSUPPORT: "EAFNOSUPPORT", EDESTADDRREQ: "EDESTADDRREQ",
        EBADF: "EBADF", ENOTSOCK: "ENOTSOCK", EFAULT: "EFAULT", EISCONN: "EISCONN", EOPNOTSUPP: "EOPNOTSUPP",
    ]

    /// E.g. `Operation not permitted (EPERM)`.
    var description: String {
        "\(String(cString: strerror(code))) (\(Self.names[code] ?? "errno \(code)"))"
    }

    /// What the failure suggests, for the message of an operation that gave up.
    var hint: String {
        switch code {
        case EPERM, EACCES: "a firewall on this host drops the packets (nft/iptables output rules?)"
        case ENETUNREACH, EHOSTUNREACH, ENETDOWN, EHOSTDOWN, EADDRNOTAVAIL: "this host has no working route there (is the network up?)"
        case ENOBUFS, ENOMEM, EAGAIN: "the host's send queues are full"
        default: isTransient ? "the network refused the packets" : "these packets cannot leave as they are"
        }
    }
}

extension TunnelSocket {
    /// Sends one datagram without blocking: nil when it left, the failure otherwise (a lost
    /// datagram; the socket stays usable).
    func sendReportingFailure(_ bytes: UnsafeRawBufferPointer, to address: STUNAddress) -> SendFailure? {
        let rc = SocketSlot(address).withPointer {
            sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT), $0, $1)
        }
        return rc >= 0 ? nil : SendFailure(code: errno)
    }
}

/// What the sends of one socket met so far: how many left, how many failed and the last
/// failure, for the message of an operation that gave up (`PeerSendReport`).
struct SendFailureTally: Sendable {
    private(set) var attempted = 0
    private(set) var failed = 0
    private(set) var last: (failure: SendFailure, destination: STUNAddress)?

    mutating func record(_ failure: SendFailure?, to destination: STUNAddress) {
        attempted += 1
        guard let failure else { return }
        failed += 1
        last = (failure, destination)
    }

    /// The report, or nil when no send failed.
    var report: PeerSendReport? {
        guard let last, failed > 0 else { return nil }
        return PeerSendReport(attempted: attempted, failed: failed, lastError: last.failure.description,
                              lastDestination: last.destination.description, hint: last.failure.hint)
    }
}

/// How the sends of a peer's socket fared while it waited for something (a start): how many
/// failed locally (the network or a firewall on this host refused them), and the last error.
public struct PeerSendReport: Equatable, Sendable, CustomStringConvertible {
    /// Datagrams the peer tried to send.
    public var attempted: Int
    /// Of those, the ones whose send failed (each one was lost, and retransmitted in time).
    public var failed: Int
    /// The last failure, e.g. `Operation not permitted (EPERM)`.
    public var lastError: String
    /// Where the last failed datagram was going.
    public var lastDestination: String
    /// What the last failure suggests, e.g. that a firewall on this host drops the packets.
    public var hint: String

    public var description: String {
        "\(failed) of \(attempted) sends failed on this host, the last to \(lastDestination) with \(lastError): \(hint)"
    }
}
