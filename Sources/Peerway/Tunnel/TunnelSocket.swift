import CPeerwayLinux
import PeerwaySTUN
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A socket address as the kernel wants it (a `sockaddr_storage`).
struct SocketSlot {
    var storage = sockaddr_storage()

    init() {}

    init(_ address: STUNAddress) {
        var ip = [UInt8](repeating: 0, count: 16)
        let family: Int32
        switch address.ip {
        case .v4(let a):
            family = 4
            for i in 0..<4 { ip[i] = UInt8(truncatingIfNeeded: a >> (24 - 8 * i)) }
        case .v6(let high, let low):
            family = 6
            for i in 0..<8 {
                ip[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * i))
                ip[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * i))
            }
        }
        withUnsafeMutableBytes(of: &storage) { slot in
            ip.withUnsafeBufferPointer { cpeerway_write_address(slot.baseAddress, family, $0.baseAddress, address.port) }
        }
    }

    var address: STUNAddress? {
        var ip = [UInt8](repeating: 0, count: 16)
        var port: UInt16 = 0
        var s = storage
        let family = withUnsafeBytes(of: &s) { slot in
            ip.withUnsafeMutableBufferPointer { cpeerway_read_address(slot.baseAddress, $0.baseAddress, &port) }
        }
        switch family {
        case 4:
            let v = ip[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            return STUNAddress(ip: .v4(v), port: port)
        case 6:
            let h = ip[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let l = ip[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return STUNAddress(ip: .v6(high: h, low: l), port: port)
        default:
            return nil
        }
    }

    var length: socklen_t {
        socklen_t(storage.ss_family == sa_family_t(AF_INET) ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
    }

    func withPointer<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var s = storage
        let length = self.length
        return withUnsafePointer(to: &s) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
    }
}

/// A plain POSIX socket (UDP or TCP) owned by a tunnel or a traversal; closed by `close()`.
/// Tunnels use blocking-free I/O on their own thread, polling with `TunnelSocket.poll`.
struct TunnelSocket: Sendable {
    let fd: Int32

    /// Why a socket operation failed.
    struct Failure: Error, CustomStringConvertible {
        var operation: String
        var code: Int32
        var description: String { "\(operation) failed: \(String(cString: strerror(code)))" }
    }

    static func check(_ rc: Int32, _ operation: String) throws(Failure) {
        if rc < 0 { throw Failure(operation: operation, code: errno) }
    }

    /// A non-blocking UDP socket bound to `local` (port 0: any).
    static func udp(bound local: STUNAddress) throws(Failure) -> TunnelSocket {
        try make(SOCK_DGRAM, "UDP", bound: local) { _ in }
    }

    /// A non-blocking TCP socket with SO_REUSEADDR and SO_REUSEPORT (for simultaneous open and
    /// listening on the same local port), bound to `local`.
    static func tcp(bound local: STUNAddress) throws(Failure) -> TunnelSocket {
        try make(SOCK_STREAM, "TCP", bound: local) { fd in
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// A non-blocking socket of `type`, configured before it is bound to `local`; closed again
    /// when the bind fails.
    private static func make(_ type: __socket_type, _ name: String, bound local: STUNAddress,
                             configure: (Int32) -> Void) throws(Failure) -> TunnelSocket {
        let flags = Int32(type.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(local.family == .ipv4 ? AF_INET : AF_INET6, flags, 0)
        try check(fd, "socket(\(name))")
        let s = TunnelSocket(fd: fd)
        configure(fd)
        do {
            try s.bind(local)
        } catch {
            s.close()
            throw error
        }
        return s
    }

    func bind(_ local: STUNAddress) throws(Failure) {
        let rc = SocketSlot(local).withPointer { Glibc.bind(fd, $0, $1) }
        try Self.check(rc, "bind(\(local))")
    }

    /// The address the socket is bound to.
    var localAddress: STUNAddress? {
        var slot = SocketSlot()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &slot.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return rc == 0 ? slot.address : nil
    }

    /// The address a connected socket talks to.
    var remoteAddress: STUNAddress? {
        var slot = SocketSlot()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &slot.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        return rc == 0 ? slot.address : nil
    }

    /// Sends one datagram; false when the kernel refused it (full buffer, unreachable): UDP is lossy anyway.
    @discardableResult
    func send(_ bytes: UnsafeRawBufferPointer, to address: STUNAddress) -> Bool {
        SocketSlot(address).withPointer { sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), $0, $1) } >= 0
    }

    @discardableResult
    func send(_ bytes: [UInt8], to address: STUNAddress) -> Bool {
        bytes.withUnsafeBytes { send($0, to: address) }
    }

    /// Receives one datagram into `buffer`: its length and source, or nil when none is waiting.
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> (Int, STUNAddress)? {
        var slot = SocketSlot()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = withUnsafeMutablePointer(to: &slot.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, buffer.baseAddress, buffer.count, 0, $0, &length) }
        }
        guard n >= 0, let source = slot.address else { return nil }
        return (n, source)
    }

    /// Connects the socket (UDP: fixes its peer, so it becomes an ordinary connected socket;
    /// TCP: starts the non-blocking connect, EINPROGRESS is not an error).
    func connect(to address: STUNAddress) throws(Failure) {
        let rc = SocketSlot(address).withPointer { Glibc.connect(fd, $0, $1) }
        if rc < 0 && errno != EINPROGRESS { throw Failure(operation: "connect(\(address))", code: errno) }
    }

    /// Switches the socket back to blocking mode (before handing it to an application).
    func makeBlocking() {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
    }

    /// The pending error of a non-blocking connect (0: connected).
    var pendingError: Int32 {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length)
        return code
    }

    func close() { _ = Glibc.close(fd) }

    /// Waits until one of `fds` is readable (or writable, per `events`) or `timeoutMillis` pass;
    /// returns the ready descriptors' `revents`, index for index.
    static func poll(_ fds: [Int32], events: Int16 = Int16(POLLIN), timeoutMillis: Int32) -> [Int16] {
        var entries = fds.map { pollfd(fd: $0, events: events, revents: 0) }
        let rc = entries.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, nfds_t($0.count), timeoutMillis) }
        guard rc > 0 else { return [Int16](repeating: 0, count: fds.count) }
        return entries.map(\.revents)
    }
}
