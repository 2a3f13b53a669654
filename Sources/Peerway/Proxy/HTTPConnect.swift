import Foundation

/// The `CONNECT` exchange with an HTTP proxy (RFC 9110 §9.3.6), as a pure codec: the request a
/// client sends and what the proxy's answer means. The I/O is in `HTTPConnectHandler` (the control
/// channel, SwiftNIO) and `RelayDialer` (the relay's splice, plain sockets).
public enum HTTPConnect {
    /// Longest answer header accepted from a proxy; a longer one is malformed.
    public static let maximumResponseBytes = 8_192
    /// Milliseconds a proxy may take to answer a CONNECT (after the TCP connection to it is up).
    public static let answerTimeoutMillis = 5_000

    /// What a proxy's answer, so far, says.
    public enum Response: Hashable, Sendable {
        /// The header is not complete yet: read more.
        case incomplete
        /// A 2xx answer: the tunnel is open; the first `headerBytes` bytes were the answer, any
        /// after them already come from the target.
        case established(headerBytes: Int)
        /// Another status: the proxy will not connect there (403: the port is not allowed, 407:
        /// it wants credentials, 502/504: the target did not answer).
        case refused(status: Int, reason: String)
        /// Not an HTTP answer, or one too long.
        case malformed(String)
    }

    /// `CONNECT host:port HTTP/1.1` with `Host` and, with credentials, Basic `Proxy-Authorization`.
    public static func request(target: String, credentials: String? = nil) -> [UInt8] {
        var text = "CONNECT \(target) HTTP/1.1\r\nHost: \(target)\r\n"
        if let credentials { text += "Proxy-Authorization: Basic \(Data(credentials.utf8).base64EncodedString())\r\n" }
        return Array((text + "\r\n").utf8)
    }

    /// What `bytes`, the start of a proxy's answer, say.
    public static func parse(_ bytes: [UInt8]) -> Response {
        let end: [UInt8] = [13, 10, 13, 10]
        var headerEnd: Int?
        if bytes.count >= end.count {
            for i in 0...(bytes.count - end.count) where bytes[i] == 13 && Array(bytes[i..<(i + 4)]) == end {
                headerEnd = i + end.count
                break
            }
        }
        guard let headerEnd else {
            return bytes.count > maximumResponseBytes ? .malformed("no end of the answer's header within \(maximumResponseBytes) bytes") : .incomplete
        }
        guard headerEnd <= maximumResponseBytes else { return .malformed("an answer header of \(headerEnd) bytes, over \(maximumResponseBytes)") }
        let statusLine = bytes[..<headerEnd].split(separator: 10, maxSplits: 1).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let parts = statusLine.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ", maxSplits: 2).map(String.init)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let status = Int(parts[1]) else {
            return .malformed("not an HTTP/1.x status line: '\(statusLine.prefix(80))'")
        }
        if (200..<300).contains(status) { return .established(headerBytes: headerEnd) }
        return .refused(status: status, reason: parts.count > 2 ? parts[2] : "")
    }

    /// A sentence for a refusal, saying what to do.
    public static func explain(_ status: Int, _ reason: String, target: String, proxy: HTTPProxy) -> String {
        let what = "the proxy \(proxy) refused CONNECT \(target): \(status) \(reason)"
        switch status {
        case 403: return what + " (it allows CONNECT to some ports only, usually 443: run the supernode's TCP port on 443)"
        case 407: return what + " (it wants credentials: give them in the proxy URL, http://user:password@host:port)"
        default: return what
        }
    }
}
