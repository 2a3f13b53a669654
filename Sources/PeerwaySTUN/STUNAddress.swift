import NIOCore

/// A transport address as STUN carries it: IPv4 or IPv6 plus a port (RFC 8489 §14.1).
///
/// A small value type rather than `SocketAddress`, so the codec stays allocation-free and
/// printable; `init(_ socketAddress:)` and `socketAddress()` convert at the I/O edge.
public struct STUNAddress: Hashable, Sendable, CustomStringConvertible {
    /// The IP part.
    public enum IP: Hashable, Sendable {
        /// An IPv4 address, in host order (`0x7F000001` is 127.0.0.1).
        case v4(UInt32)
        /// An IPv6 address as two 64-bit halves in host order (`high` holds bytes 0-7).
        case v6(high: UInt64, low: UInt64)
    }

    public var ip: IP
    public var port: UInt16

    public init(ip: IP, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    /// Address family codes of the address attributes (RFC 8489 §14.1).
    public enum Family: UInt8, Sendable {
        case ipv4 = 0x01
        case ipv6 = 0x02
    }

    public var family: Family {
        if case .v4 = ip { return .ipv4 }
        return .ipv6
    }

    /// Bytes of the address value on the wire (4 or 16).
    var addressLength: Int { family == .ipv4 ? 4 : 16 }

    /// The same IP with another port.
    public func with(port: UInt16) -> STUNAddress { STUNAddress(ip: ip, port: port) }

    /// `host:port` for a host name or IP literal, an IPv6 literal in brackets (RFC 3986, 3.2.2).
    public static func hostPort(_ host: String, _ port: some BinaryInteger) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Parses `"1.2.3.4"`, `"::1"` or `"fe80::1"` (no zone) into an IP; `nil` when malformed.
    public static func parseIP(_ text: Substring) -> IP? {
        if let v4 = parseIPv4(text) { return .v4(v4) }
        if let v6 = parseIPv6(text) { return .v6(high: v6.0, low: v6.1) }
        return nil
    }

    /// Parses `"1.2.3.4:3478"`, `"[::1]:3478"`, or a bare IP with `defaultPort`.
    public init?(parsing text: String, defaultPort: UInt16? = nil) {
        var host = Substring(text)
        var port = defaultPort
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if rest.hasPrefix(":") {
                guard let p = UInt16(rest.dropFirst()) else { return nil }
                port = p
            } else if !rest.isEmpty { return nil }
        } else if host.filter({ $0 == ":" }).count == 1, let colon = host.firstIndex(of: ":") {
            guard let p = UInt16(host[host.index(after: colon)...]) else { return nil }
            port = p
            host = host[..<colon]
        }
        guard let ip = STUNAddress.parseIP(host), let port else { return nil }
        self.init(ip: ip, port: port)
    }

    public var ipString: String {
        switch ip {
        case .v4(let a):
            return "\(a >> 24).\((a >> 16) & 0xFF).\((a >> 8) & 0xFF).\(a & 0xFF)"
        case .v6(let hi, let lo):
            let groups = (0..<4).map { UInt16(truncatingIfNeeded: hi >> (48 - 16 * $0)) }
                + (0..<4).map { UInt16(truncatingIfNeeded: lo >> (48 - 16 * $0)) }
            return Self.formatIPv6(groups)
        }
    }

    public var description: String {
        family == .ipv4 ? "\(ipString):\(port)" : "[\(ipString)]:\(port)"
    }

    /// True for 0.0.0.0 and :: (a socket bound to every address).
    public var isWildcard: Bool {
        switch ip {
        case .v4(let a): return a == 0
        case .v6(let hi, let lo): return hi == 0 && lo == 0
        }
    }

    /// True for fe80::/10 (IPv6 link-local, useless without a zone).
    public var isLinkLocal: Bool {
        if case .v6(let hi, _) = ip { return hi >> 54 == 0x3FA }
        return false
    }

    /// True for 127.0.0.0/8 and ::1.
    public var isLoopback: Bool {
        switch ip {
        case .v4(let a): return a >> 24 == 127
        case .v6(let hi, let lo): return hi == 0 && lo == 1
        }
    }

    // MARK: text helpers

    private static func parseIPv4(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy(\.isASCII), let octet = UInt8(p) else { return nil }
            value = value << 8 | UInt32(octet)
        }
        return value
    }

    private static func parseIPv6(_ text: Substring) -> (UInt64, UInt64)? {
        guard text.contains(":"), !text.contains("%") else { return nil }
        var groups: [UInt16] = []
        var tail: [UInt16] = []
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func parseGroups(_ s: String, into out: inout [UInt16]) -> Bool {
            if s.isEmpty { return true }
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, p) in parts.enumerated() {
                if i == parts.count - 1, p.contains("."), let v4 = parseIPv4(p) {
                    out.append(UInt16(v4 >> 16))
                    out.append(UInt16(v4 & 0xFFFF))
                    continue
                }
                guard !p.isEmpty, p.count <= 4, let g = UInt16(p, radix: 16) else { return false }
                out.append(g)
            }
            return true
        }
        guard parseGroups(halves[0], into: &groups) else { return nil }
        if halves.count == 2 {
            guard parseGroups(halves[1], into: &tail), groups.count + tail.count <= 7 else { return nil }
            groups += Array(repeating: 0, count: 8 - groups.count - tail.count) + tail
        }
        guard groups.count == 8 else { return nil }
        var hi: UInt64 = 0
        var lo: UInt64 = 0
        for i in 0..<4 { hi = hi << 16 | UInt64(groups[i]) }
        for i in 4..<8 { lo = lo << 16 | UInt64(groups[i]) }
        return (hi, lo)
    }

    private static func formatIPv6(_ groups: [UInt16]) -> String {
        // RFC 5952: compress the longest run (>= 2) of zero groups, lower-case hex.
        var bestStart = -1, bestLength = 0, runStart = -1
        for i in 0...8 {
            if i < 8 && groups[i] == 0 {
                if runStart < 0 { runStart = i }
            } else if runStart >= 0 {
                if i - runStart > bestLength { bestStart = runStart; bestLength = i - runStart }
                runStart = -1
            }
        }
        func hex(_ r: Range<Int>) -> String { groups[r].map { String($0, radix: 16) }.joined(separator: ":") }
        guard bestLength >= 2 else { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }
}

// MARK: - SocketAddress bridging (the I/O edge)

extension STUNAddress {
    /// Converts a NIO socket address; `nil` for Unix domain sockets.
    public init?(_ address: SocketAddress) {
        guard let port = address.port else { return nil }
        switch address {
        case .v4(let a):
            self.init(ip: .v4(UInt32(bigEndian: a.address.sin_addr.s_addr)), port: UInt16(port))
        case .v6(let a):
            var raw = a.address.sin6_addr
            let (hi, lo) = withUnsafeBytes(of: &raw) { bytes -> (UInt64, UInt64) in
                var hi: UInt64 = 0, lo: UInt64 = 0
                for i in 0..<8 { hi = hi << 8 | UInt64(bytes[i]) }
                for i in 8..<16 { lo = lo << 8 | UInt64(bytes[i]) }
                return (hi, lo)
            }
            self.init(ip: .v6(high: hi, low: lo), port: UInt16(port))
        case .unixDomainSocket:
            return nil
        }
    }

    /// The NIO socket address for this transport address.
    public func socketAddress() throws -> SocketAddress {
        var buffer = ByteBuffer()
        switch ip {
        case .v4(let a): buffer.writeInteger(a)
        case .v6(let hi, let lo):
            buffer.writeInteger(hi)
            buffer.writeInteger(lo)
        }
        return try SocketAddress(packedIPAddress: buffer, port: Int(port))
    }
}
