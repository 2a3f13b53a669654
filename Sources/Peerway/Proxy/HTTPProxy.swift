import Foundation

/// An HTTP proxy that tunnels TCP connections with `CONNECT` (RFC 9110 §9.3.6): on networks whose
/// only way out is such a proxy, the control channel over TCP and the relay's TCP splice go
/// through it. Pure value: parsing and choosing only.
public struct HTTPProxy: Hashable, Sendable, CustomStringConvertible {
    /// The port of an `http://` proxy URL that names none.
    public static let defaultPort: UInt16 = 80
    /// The environment variables a proxy is taken from, in order (as curl reads them for https).
    public static let environmentVariables = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    /// The environment variables listing hosts reached without the proxy.
    public static let noProxyVariables = ["NO_PROXY", "no_proxy"]

    /// The proxy's host name or IP literal (without brackets).
    public var host: String
    public var port: UInt16
    /// `user:password` for Basic authentication (`Proxy-Authorization`), when the URL has them.
    public var credentials: String?

    public init(host: String, port: UInt16, credentials: String? = nil) {
        self.host = host
        self.port = port
        self.credentials = credentials
    }

    /// Parses `http://[user:password@]host[:port][/]` (a bare `host:port` is taken as http).
    public init(url text: String) throws(HTTPProxyError) {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        if let scheme = rest.range(of: "://") {
            let name = rest[..<scheme.lowerBound].lowercased()
            guard name == "http" else { throw .unsupportedScheme(text) }
            rest = rest[scheme.upperBound...]
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("/"), !rest.contains("?") else { throw .malformed(text, "a proxy URL has no path or query") }
        var credentials: String?
        if let at = rest.lastIndex(of: "@") {
            credentials = String(rest[..<at]).removingPercentEncoding ?? String(rest[..<at])
            rest = rest[rest.index(after: at)...]
        }
        var host = rest, port = Self.defaultPort
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw .malformed(text, "an IPv6 host needs its closing ']'") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = UInt16(after.dropFirst()), p != 0 else { throw .malformed(text, "the port must be 1-65535") }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            guard let p = UInt16(rest[rest.index(after: colon)...]), p != 0 else { throw .malformed(text, "the port must be 1-65535") }
            port = p
        }
        guard !host.isEmpty else { throw .malformed(text, "no host") }
        self.init(host: String(host), port: port, credentials: credentials)
    }

    /// `http://host:port` (credentials left out).
    public var description: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)" }

    /// The proxy the environment names for connections to `host` (an IP literal or a name):
    /// the first of `environmentVariables` set to an `http://` URL, unless `NO_PROXY` lists the
    /// host or it is a loopback address (never proxied). Variables naming another kind of proxy
    /// (`socks5://`) or nothing usable are skipped.
    public static func fromEnvironment(_ environment: [String: String], for host: String) -> HTTPProxy? {
        let noProxy = noProxyVariables.compactMap { environment[$0] }.first ?? ""
        guard !isLoopback(host), !bypasses(noProxy, host: host) else { return nil }
        for name in environmentVariables {
            guard let value = environment[name], !value.isEmpty else { continue }
            if let proxy = try? HTTPProxy(url: value) { return proxy }
        }
        return nil
    }

    /// `localhost`, 127.0.0.0/8 or ::1.
    static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return h == "localhost" || h == "::1" || h.hasPrefix("127.")
    }

    /// Whether a `NO_PROXY` list (comma-separated: `*`, host names, `.domain` or `domain`
    /// suffixes, IP literals, optionally with `:port`) covers `host`.
    public static func bypasses(_ noProxy: String, host: String) -> Bool {
        let target = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        for raw in noProxy.split(separator: ",") {
            var entry = raw.trimmingCharacters(in: .whitespaces).lowercased()
            if entry == "*" { return true }
            if entry.hasPrefix("["), let close = entry.firstIndex(of: "]") {
                entry = String(entry[entry.index(after: entry.startIndex)..<close])
            } else if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") {
                entry = String(entry[..<colon])
            }
            if entry.hasPrefix("*.") { entry.removeFirst() }
            guard !entry.isEmpty else { continue }
            if target == entry || (entry.hasPrefix(".") && target.hasSuffix(entry)) || target.hasSuffix("." + entry) { return true }
        }
        return false
    }
}

/// Whether and how a peer uses an HTTP proxy (`PeerOptions.proxy`, `peerway peer --proxy`).
public enum ProxySetting: Sendable, Hashable {
    /// The proxy of the environment (`HTTPProxy.fromEnvironment`), if any: the default.
    case environment
    /// Never a proxy.
    case none
    /// This proxy for every TCP connection to a supernode or relay.
    case http(HTTPProxy)

    /// The proxy for TCP connections to `host`, nil for none.
    public func proxy(for host: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> HTTPProxy? {
        switch self {
        case .environment: HTTPProxy.fromEnvironment(environment, for: host)
        case .none: nil
        case .http(let proxy): proxy
        }
    }
}

/// Why a proxy URL cannot be used.
public enum HTTPProxyError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Not `http://` (a `socks5://` or `https://` proxy).
    case unsupportedScheme(String)
    /// Not a URL of the form `http://[user:password@]host[:port]`.
    case malformed(String, String)

    public var description: String {
        switch self {
        case .unsupportedScheme(let url):
            "proxy '\(url)': only http:// proxies (which tunnel with CONNECT) are supported; give http://host:port"
        case .malformed(let url, let why):
            "proxy '\(url)': \(why); expected http://[user:password@]host[:port]"
        }
    }
}
