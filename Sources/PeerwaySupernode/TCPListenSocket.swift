#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPeerwayLinux
import Foundation
import PeerwaySTUN

/// The listening TCP sockets of the services (CHECKPOINT's control channel, the RELAY's splice).
enum TCPListenSocket {
    /// Opens a non-blocking TCP socket listening on `address`: SO_REUSEADDR (not SO_REUSEPORT: a
    /// restart binds past TIME_WAIT, a second server fails), IPv6 only for an IPv6 address.
    /// Returns the socket and its bound port, or the errno of the step that failed.
    static func open(_ address: STUNAddress, backlog: Int32) -> Result<(fd: Int32, port: UInt16), POSIXError> {
        let family = address.family == .ipv4 ? AF_INET : AF_INET6
        #if canImport(Glibc)
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(family, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return .failure(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
        var one: Int32 = 1
        let intSize = socklen_t(MemoryLayout<Int32>.size)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, intSize)
        if family == AF_INET6 { setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, intSize) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var slot = [UInt8](repeating: 0, count: Int(CPEERWAY_ADDRESS_SLOT))
        STUNSocket.write(address, into: &slot)
        let length = socklen_t(family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
        let bound = slot.withUnsafeBytes { raw -> Int32 in
            #if canImport(Glibc)
            Glibc.bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
            #else
            Darwin.bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
            #endif
        }
        #if canImport(Glibc)
        let listening = bound == 0 ? Glibc.listen(fd, backlog) : -1
        #else
        let listening = bound == 0 ? Darwin.listen(fd, backlog) : -1
        #endif
        guard listening == 0 else {
            let e = errno
            close(fd)
            return .failure(POSIXError(POSIXErrorCode(rawValue: e) ?? .EIO))
        }
        var local = [UInt8](repeating: 0, count: Int(CPEERWAY_ADDRESS_SLOT))
        var localLength = socklen_t(CPEERWAY_ADDRESS_SLOT)
        _ = local.withUnsafeMutableBytes { getsockname(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &localLength) }
        return .success((fd, STUNSocket.read(local)?.port ?? address.port))
    }
}
