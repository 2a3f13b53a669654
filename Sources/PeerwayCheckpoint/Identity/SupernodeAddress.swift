import Crypto
import PeerwaySTUN

/// Where a supernode's CHECKPOINT listens and which static key it holds:
/// `peerway://<52 base32 characters of its X25519 public key>@host:port[?tcp=PORT]`.
///
/// The key in the address is what makes the control channel authenticated: a peer that dials
/// this address completes the key exchange only with the holder of the matching private key.
/// `host` may be an IPv4 address, `[IPv6]` or a DNS name (resolved at connect time). The control
/// channel over TCP (for peers without UDP) is on `tcpPort`: the UDP port unless `?tcp=PORT` says
/// otherwise.
public struct SupernodeAddress: Hashable, Sendable, CustomStringConvertible {
    /// URL scheme of supernode addresses.
    public static let scheme = "peerway://"
    /// The CHECKPOINT port used when an address names none.
    public static let defaultPort: UInt16 = 7400
    /// The query parameter naming the TCP port when it differs from the UDP port.
    public static let tcpParameter = "tcp"

    /// Raw X25519 public key (32 bytes).
    public let publicKeyBytes: [UInt8]
    /// Host name or IP (IPv6 without brackets).
    public let host: String
    /// The UDP port of the control channel.
    public let port: UInt16
    /// The TCP port of the control channel (and of TCP relay binds); equal to `port` unless the
    /// address says `?tcp=PORT`.
    public let tcpPort: UInt16

    /// An address; `tcpPort` `nil` means the same number as `port`.
    public init(publicKey: Curve25519.KeyAgreement.PublicKey, host: String, port: UInt16, tcpPort: UInt16? = nil) {
        self.publicKeyBytes = Array(publicKey.rawRepresentation)
        self.host = host
        self.port = port
        self.tcpPort = tcpPort ?? port
    }

    /// Parses `peerway://KEY@HOST[:PORT][?tcp=PORT]`; the error says which part is wrong.
    public init(parsing text: String) throws(SupernodeAddressError) {
        guard text.hasPrefix(Self.scheme) else { throw .missingScheme(text) }
        let rest = text.dropFirst(Self.scheme.count)
        guard let at = rest.firstIndex(of: "@") else { throw .missingKey(text) }
        let keyText = rest[..<at]
        guard let key = Base32.decode(keyText), key.count == 32,
              (try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: key)) != nil else {
            throw .badKey(text)
        }
        var hostPort = rest[rest.index(after: at)...]
        var tcpPort: UInt16?
        if let question = hostPort.firstIndex(of: "?") {
            tcpPort = try Self.parseQuery(hostPort[hostPort.index(after: question)...], in: text)
            hostPort = hostPort[..<question]
        }
        if hostPort.hasSuffix("/") { hostPort = hostPort.dropLast() }
        var host: Substring
        var port = Self.defaultPort
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw .badHost(text) }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let tail = hostPort[hostPort.index(after: close)...]
            if tail.hasPrefix(":") {
                guard let p = UInt16(tail.dropFirst()), p != 0 else { throw .badPort(text) }
                port = p
            } else if !tail.isEmpty { throw .badHost(text) }
        } else if hostPort.filter({ $0 == ":" }).count > 1 {
            // An IPv6 address without brackets cannot carry a port: the whole text is the host.
            guard STUNAddress.parseIP(hostPort) != nil else { throw .badHost(text) }
            host = hostPort
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = hostPort[..<colon]
            guard let p = UInt16(hostPort[hostPort.index(after: colon)...]), p != 0 else { throw .badPort(text) }
            port = p
        } else {
            host = hostPort
        }
        guard !host.isEmpty, !host.contains(where: { $0 == "/" || $0 == "@" || $0 == " " }) else { throw .badHost(text) }
        self.publicKeyBytes = key
        self.host = String(host)
        self.port = port
        self.tcpPort = tcpPort ?? port
    }

    /// The query after `?`: exactly one `tcp=PORT`.
    private static func parseQuery(_ query: Substring, in text: String) throws(SupernodeAddressError) -> UInt16 {
        let parts = query.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == Self.tcpParameter else { throw .badParameter(text) }
        guard let port = UInt16(parts[1]), port != 0 else { throw .badTCPPort(text) }
        return port
    }

    /// The supernode's static public key.
    public var publicKey: Curve25519.KeyAgreement.PublicKey {
        try! Curve25519.KeyAgreement.PublicKey(rawRepresentation: publicKeyBytes)
    }

    /// The base32 key as printed in the address.
    public var keyText: String { Base32.encode(publicKeyBytes) }

    /// The endpoint when `host` is an IP literal; `nil` for a DNS name.
    public var endpoint: STUNAddress? {
        guard let ip = STUNAddress.parseIP(Substring(host)) else { return nil }
        return STUNAddress(ip: ip, port: port)
    }

    /// The TCP endpoint (`tcpPort`) when `host` is an IP literal; `nil` for a DNS name.
    public var tcpEndpoint: STUNAddress? {
        endpoint?.with(port: tcpPort)
    }

    /// `peerway://KEY@host:port`, with `?tcp=PORT` when the TCP port differs.
    public var description: String {
        let query = tcpPort == port ? "" : "?\(Self.tcpParameter)=\(tcpPort)"
        return "\(Self.scheme)\(keyText)@\(STUNAddress.hostPort(host, port))\(query)"
    }
}

/// Why a supernode address did not parse.
public enum SupernodeAddressError: Error, Equatable, CustomStringConvertible {
    case missingScheme(String)
    case missingKey(String)
    case badKey(String)
    case badHost(String)
    case badPort(String)
    /// Something after `?` other than `tcp=PORT`.
    case badParameter(String)
    /// The port in `?tcp=PORT` is not 1-65535.
    case badTCPPort(String)

    public var description: String {
        let form = "expected peerway://<key>@host:port[?tcp=PORT] (the supernode prints its address when it starts)"
        switch self {
        case .missingScheme(let t): return "'\(t)' is not a supernode address: \(form)"
        case .missingKey(let t): return "'\(t)' has no key before '@': \(form)"
        case .badKey(let t): return "'\(t)': the key must be 52 base32 characters of an X25519 public key"
        case .badHost(let t): return "'\(t)': the host is missing or malformed: \(form)"
        case .badPort(let t): return "'\(t)': the port must be 1-65535"
        case .badParameter(let t): return "'\(t)': the only parameter after '?' is tcp=PORT"
        case .badTCPPort(let t): return "'\(t)': the TCP port in ?tcp=PORT must be 1-65535"
        }
    }
}
