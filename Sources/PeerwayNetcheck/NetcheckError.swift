import NIOCore
import PeerwaySTUN

/// Why a netcheck produced no report. Each case says what failed and what to try.
public enum NetcheckError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No STUN server was given.
    case noServers
    /// A server argument is not `host`, `host:port`, `ip`, `ip:port` or `[ipv6]:port`.
    case invalidServer(String, reason: String)
    /// The host name of a server did not resolve.
    case cannotResolve(host: String, reason: String)
    /// A configuration value is out of range.
    case invalidConfiguration(String)
    /// No server answered test I: `requests` requests each, over `waited`.
    case noResponse(servers: [STUNAddress], requests: Int, waited: TimeAmount)
    /// The server answered test I with an error response.
    case serverRefused(server: STUNAddress, error: STUNErrorCode)
    /// A UDP socket could not be opened.
    case socketFailed(socket: NetcheckSocketID, reason: String)
    /// The caller's task was cancelled.
    case cancelled
    /// An unexpected I/O failure in the driver.
    case ioError(String)

    public var description: String {
        switch self {
        case .noServers:
            return "no STUN server given: pass at least one HOST[:PORT]"
        case .invalidServer(let text, let reason):
            return "invalid STUN server \"\(text)\": \(reason); expected HOST, HOST:PORT, IP:PORT or [IPv6]:PORT"
        case .cannotResolve(let host, let reason):
            return "cannot resolve STUN server host \"\(host)\": \(reason); check the name or pass an IP address"
        case .invalidConfiguration(let what):
            return "invalid netcheck configuration: \(what)"
        case .noResponse(let servers, let requests, let waited):
            let which = servers.count == 1 ? "STUN server \(servers[0])" : "any STUN server (\(servers.map(\.description).joined(separator: ", ")))"
            return "no response from \(which) after \(requests) request\(requests == 1 ? "" : "s") over \(NetcheckFormatting.duration(waited)): "
                + "is it running, is the address right, and is UDP allowed to it?"
        case .serverRefused(let server, let error):
            return "STUN server \(server) refused the Binding request (\(error)): is it a STUN server, and does it need credentials?"
        case .socketFailed(let socket, let reason):
            return "could not open the \(socket) UDP socket: \(reason)"
        case .cancelled:
            return "netcheck was cancelled"
        case .ioError(let what):
            return "netcheck I/O error: \(what)"
        }
    }
}

/// Human-readable durations without Foundation.
public enum NetcheckFormatting {
    /// "0.123 ms", "12.3 ms", "4.5 s".
    public static func duration(_ amount: TimeAmount) -> String {
        let ns = max(0, amount.nanoseconds)
        if ns < 1_000_000 {
            let micro = (ns + 500) / 1_000
            if micro >= 1_000 { return "1.0 ms" }
            return "0.\(pad3(micro)) ms"
        }
        if ns < 1_000_000_000 {
            let tenths = (ns + 50_000) / 100_000
            return "\(tenths / 10).\(tenths % 10) ms"
        }
        let tenths = (ns + 50_000_000) / 100_000_000
        return "\(tenths / 10).\(tenths % 10) s"
    }

    private static func pad3(_ value: Int64) -> String {
        let s = String(value)
        return String(repeating: "0", count: max(0, 3 - s.count)) + s
    }
}
