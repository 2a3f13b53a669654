#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import PeerwayNetcheck
import PeerwaySTUN

extension Netcheck {
    /// Splits "host", "host:port", "1.2.3.4:port", "::1", "[::1]:port" into host and port.
    public static func parse(server text: String, defaultPort: UInt16 = STUN.defaultPort) throws(NetcheckError) -> (host: String, port: UInt16) {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else { throw .invalidServer(text, reason: "empty") }
        var host = Substring(trimmed)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw .invalidServer(text, reason: "no closing ]") }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if rest.hasPrefix(":") {
                portText = rest.dropFirst()
            } else if !rest.isEmpty {
                throw .invalidServer(text, reason: "unexpected \"\(rest)\" after ]")
            }
        } else if host.filter({ $0 == ":" }).count == 1, let colon = host.firstIndex(of: ":") {
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard !host.isEmpty else { throw .invalidServer(text, reason: "no host") }
        var port = defaultPort
        if let portText {
            guard let value = UInt16(portText), value != 0 else {
                throw .invalidServer(text, reason: "port \"\(portText)\" is not 1-65535")
            }
            port = value
        }
        return (String(host), port)
    }

    /// Parses and, for a host name, resolves one server (IPv4 preferred, then IPv6). The
    /// blocking getaddrinfo runs on NIO's thread pool, not on an event loop.
    public static func resolve(server text: String, defaultPort: UInt16 = STUN.defaultPort) async throws(NetcheckError) -> STUNAddress {
        let (host, port) = try parse(server: text, defaultPort: defaultPort)
        if let ip = STUNAddress.parseIP(Substring(host)) { return STUNAddress(ip: ip, port: port) }
        let lookup: Result<STUNAddress.IP, NetcheckError>
        do {
            lookup = try await NIOThreadPool.singleton.runIfActive { resolveBlocking(host) }
        } catch {
            throw .cannotResolve(host: host, reason: String(describing: error))
        }
        return STUNAddress(ip: try lookup.get(), port: port)
    }

    private static func resolveBlocking(_ host: String) -> Result<STUNAddress.IP, NetcheckError> {
        var reason = "no address"
        for family in [AF_INET, AF_INET6] {
            var hints = addrinfo()
            hints.ai_family = family
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, nil, &hints, &list)
            guard status == 0, let list else {
                reason = String(cString: gai_strerror(status))
                continue
            }
            defer { freeaddrinfo(list) }
            var entry: UnsafeMutablePointer<addrinfo>? = list
            while let current = entry {
                if let address = current.pointee.ai_addr, let ip = ip(of: address, family: current.pointee.ai_family) {
                    return .success(ip)
                }
                entry = current.pointee.ai_next
            }
        }
        return .failure(.cannotResolve(host: host, reason: reason))
    }

    private static func ip(of address: UnsafeMutablePointer<sockaddr>, family: Int32) -> STUNAddress.IP? {
        let socketAddress: SocketAddress
        switch family {
        case AF_INET:
            socketAddress = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
        case AF_INET6:
            socketAddress = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
        default:
            return nil
        }
        return STUNAddress(socketAddress)?.ip
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        let scalars = unicodeScalars.drop { $0.properties.isWhitespace }.reversed().drop { $0.properties.isWhitespace }.reversed()
        return String(String.UnicodeScalarView(scalars))
    }
}
