import Foundation
import Peerway
import Testing

/// The HTTP proxy's pure parts: URLs, the environment and NO_PROXY, the CONNECT request and the
/// proxy's answer (issue 14: networks whose only way out is a proxy).
@Suite("HTTP proxy: URLs, environment, CONNECT codec")
struct HTTPProxyTests {
    @Test("proxy URLs: scheme, credentials, IPv6, default port; other schemes and junk refused with what to do")
    func urls() throws {
        #expect(try HTTPProxy(url: "http://10.0.1.1:3128") == HTTPProxy(host: "10.0.1.1", port: 3128))
        #expect(try HTTPProxy(url: "http://proxy.corp/") == HTTPProxy(host: "proxy.corp", port: HTTPProxy.defaultPort))
        #expect(try HTTPProxy(url: "proxy.corp:8080") == HTTPProxy(host: "proxy.corp", port: 8080))
        #expect(try HTTPProxy(url: "HTTP://u%40x:p%3Ass@[2001:db8::1]:3128") == HTTPProxy(host: "2001:db8::1", port: 3128, credentials: "u@x:p:ss"))
        #expect(try HTTPProxy(url: "http://[2001:db8::1]").description == "http://[2001:db8::1]:80")
        #expect(throws: HTTPProxyError.unsupportedScheme("socks5://10.0.0.1:1080")) { try HTTPProxy(url: "socks5://10.0.0.1:1080") }
        for bad in ["http://", "http://host:0", "http://host:99999", "http://host:x", "http://host/path", "http://[::1"] {
            #expect(throws: HTTPProxyError.self, "\(bad)") { try HTTPProxy(url: bad) }
        }
        #expect("\(HTTPProxyError.unsupportedScheme("socks5://x"))".contains("only http://"))
    }

    @Test("the environment: HTTPS_PROXY before ALL_PROXY, socks skipped, NO_PROXY and loopback bypassed")
    func environment() {
        let env = ["HTTPS_PROXY": "http://10.0.1.1:3128", "ALL_PROXY": "http://10.9.9.9:1"]
        #expect(HTTPProxy.fromEnvironment(env, for: "198.51.100.1") == HTTPProxy(host: "10.0.1.1", port: 3128))
        #expect(HTTPProxy.fromEnvironment(["https_proxy": "socks5://x:1", "all_proxy": "http://10.9.9.9:1"], for: "a")
                == HTTPProxy(host: "10.9.9.9", port: 1))
        #expect(HTTPProxy.fromEnvironment([:], for: "198.51.100.1") == nil)
        // Loopback is never proxied from the environment.
        #expect(HTTPProxy.fromEnvironment(env, for: "127.0.0.1") == nil && HTTPProxy.fromEnvironment(env, for: "::1") == nil)
        var bypass = env
        bypass["NO_PROXY"] = "localhost, .corp.example,198.51.100.1"
        #expect(HTTPProxy.fromEnvironment(bypass, for: "198.51.100.1") == nil)
        #expect(HTTPProxy.fromEnvironment(bypass, for: "sn.corp.example") == nil)
        #expect(HTTPProxy.fromEnvironment(bypass, for: "198.51.100.2") != nil)
        #expect(HTTPProxy.bypasses("*", host: "anything"))
        #expect(HTTPProxy.bypasses("example.com:443", host: "sn.example.com"))
        #expect(HTTPProxy.bypasses("[::1]", host: "::1"))
        #expect(!HTTPProxy.bypasses("ample.com", host: "example.com"))
        #expect(ProxySetting.none.proxy(for: "x", environment: env) == nil)
        #expect(ProxySetting.environment.proxy(for: "x", environment: env) == HTTPProxy(host: "10.0.1.1", port: 3128))
        #expect(ProxySetting.http(HTTPProxy(host: "p", port: 1)).proxy(for: "x", environment: [:]) == HTTPProxy(host: "p", port: 1))
    }

    @Test("CONNECT request bytes, with and without Basic credentials")
    func request() {
        #expect(String(decoding: HTTPConnect.request(target: "198.51.100.1:443"), as: UTF8.self)
                == "CONNECT 198.51.100.1:443 HTTP/1.1\r\nHost: 198.51.100.1:443\r\n\r\n")
        #expect(String(decoding: HTTPConnect.request(target: "[2001:db8::1]:443", credentials: "aladdin:opensesame"), as: UTF8.self)
                == "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\nProxy-Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l\r\n\r\n")
    }

    @Test("answers: incomplete, established (bytes after the header left for the tunnel), refused, malformed, too long")
    func answers() {
        func parse(_ text: String) -> HTTPConnect.Response { HTTPConnect.parse(Array(text.utf8)) }
        #expect(parse("") == .incomplete)
        #expect(parse("HTTP/1.1 200 Connection established\r\n") == .incomplete)
        let ok = "HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n"
        #expect(parse(ok) == .established(headerBytes: ok.utf8.count))
        #expect(parse(ok + "PWRA") == .established(headerBytes: ok.utf8.count))
        #expect(parse("HTTP/1.1 403 Access violation\r\nContent-Type: text/html\r\n\r\n<html>") == .refused(status: 403, reason: "Access violation"))
        #expect(parse("HTTP/1.1 407\r\n\r\n") == .refused(status: 407, reason: ""))
        guard case .malformed = parse("SSH-2.0-OpenSSH\r\n\r\n") else { Issue.record("not HTTP accepted"); return }
        guard case .malformed = parse("HTTP/1.1 20x OK\r\n\r\n") else { Issue.record("a bad status accepted"); return }
        let endless = [UInt8](repeating: 65, count: HTTPConnect.maximumResponseBytes + 1)
        guard case .malformed = HTTPConnect.parse(endless) else { Issue.record("an endless header is not malformed"); return }
        #expect(HTTPConnect.parse(Array(endless.prefix(HTTPConnect.maximumResponseBytes))) == .incomplete)
        let proxy = HTTPProxy(host: "10.0.1.1", port: 3128)
        #expect(HTTPConnect.explain(403, "Access violation", target: "198.51.100.1:7401", proxy: proxy).contains("443"))
        #expect(HTTPConnect.explain(407, "", target: "t", proxy: proxy).contains("user:password"))
    }
}
