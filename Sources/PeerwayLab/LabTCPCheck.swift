import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The TCP half of verifying `udp-blocked`: listeners on the public host and connection attempts
/// from a host behind the site, made from this process by creating each socket inside the right
/// namespace (`setns` on the calling thread, then back: a socket stays in the namespace it was
/// made in). No accept loop is needed: the kernel completes handshakes into the backlog.
public enum LabTCPCheck {
    /// Ports the public host listens on: the two a udp-blocked site lets out, and one it must not.
    public static let ports: [UInt16] = [80, 443, 8080]
    /// How long one connection attempt may take before it counts as blocked, milliseconds.
    public static let connectTimeoutMilliseconds: Int32 = 2_000
    /// Listen backlog (a handful of probes).
    static let backlog: Int32 = 16
    static let cloneNewNet: Int32 = 0x4000_0000

    private typealias SetNS = @convention(c) (Int32, Int32) -> Int32

    /// glibc's setns(2) (not exported by Swift's Glibc module).
    private static let setns: SetNS? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns").map { unsafeBitCast($0, to: SetNS.self) }

    /// Runs `body` with the calling thread in namespace `ns`, then returns to the original one.
    static func inNamespace<T>(_ ns: String, _ body: () -> T) throws(LabError) -> T {
        guard let setns else { throw .commandFailed(command: "setns", status: -1, output: "setns is not available") }
        let original = open("/proc/thread-self/ns/net", O_RDONLY)
        let target = open("/run/netns/\(ns)", O_RDONLY)
        defer {
            if original >= 0 { _ = Glibc.close(original) }
            if target >= 0 { _ = Glibc.close(target) }
        }
        guard original >= 0, target >= 0, setns(target, cloneNewNet) == 0 else {
            throw .commandFailed(command: "setns \(ns)", status: errno, output: String(cString: strerror(errno)))
        }
        let result = body()
        guard setns(original, cloneNewNet) == 0 else {
            fatalError("setns back to the original network namespace failed: \(String(cString: strerror(errno)))")
        }
        return result
    }

    static func address(_ ip: String, _ port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        inet_pton(AF_INET, ip, &a.sin_addr)
        return a
    }

    /// Listening sockets on `ip` in `ns`, one per port in `ports`; close them with `close(_:)`.
    public static func listen(in ns: String, ip: String) throws(LabError) -> [Int32] {
        try inNamespace(ns) {
            ports.compactMap { port -> Int32? in
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var one: Int32 = 1
                _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                var a = address(ip, port)
                let ok = withUnsafePointer(to: &a) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                } == 0 && Glibc.listen(fd, backlog) == 0
                if !ok { _ = Glibc.close(fd) }
                return ok ? fd : nil
            }
        }
    }

    /// Closes sockets from `listen`.
    public static func close(_ fds: [Int32]) { fds.forEach { _ = Glibc.close($0) } }

    /// The ports of `ports` a TCP connection from `ns` to `ip` reaches within the timeout.
    public static func reachablePorts(from ns: String, to ip: String) throws(LabError) -> [UInt16] {
        let sockets = try inNamespace(ns) { ports.map { _ in socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0) } }
        defer { close(sockets) }
        var pending: [pollfd] = []
        for (fd, port) in zip(sockets, ports) {
            var a = address(ip, port)
            _ = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            pending.append(pollfd(fd: fd, events: Int16(POLLOUT), revents: 0))
        }
        let deadline = Date().addingTimeInterval(TimeInterval(connectTimeoutMilliseconds) / 1000)
        var connected = Set<Int32>()
        // A resolved socket's entry gets fd -1, which poll ignores; blocked ones stay until the deadline.
        while Date() < deadline, pending.contains(where: { $0.fd >= 0 }) {
            _ = poll(&pending, nfds_t(pending.count), max(1, Int32(deadline.timeIntervalSinceNow * 1000)))
            for i in pending.indices where pending[i].fd >= 0 && pending[i].revents != 0 {
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(pending[i].fd, SOL_SOCKET, SO_ERROR, &error, &length)
                if error == 0 && pending[i].revents & Int16(POLLOUT) != 0 { connected.insert(pending[i].fd) }
                pending[i].fd = -1
            }
        }
        return zip(sockets, ports).filter { connected.contains($0.0) }.map(\.1)
    }
}
