import Foundation

/*
 The `proxy-only` preset: a network whose only way out is an HTTP proxy, as corporate networks
 have. The site's router forwards nothing from its LAN (no UDP, no TCP, no ping); a real proxy,
 Debian's tinyproxy, runs in the router's namespace on the LAN gateway's address and makes the
 connections out itself, allowing `CONNECT` to port 443 only (tinyproxy's `ConnectPort`, as
 typical), so everything a host behind the site reaches goes through it. Pure values here; the
 runner starts tinyproxy (`LabStep.proxy`).
*/

/// The lab's HTTP proxy: its limits and configuration.
public enum LabProxy {
    /// The proxy's port on the site's LAN gateway address.
    public static let port = 3128
    /// The ports the proxy lets `CONNECT` reach (a typical corporate proxy: HTTPS only).
    public static let connectPorts = [443]
    /// The proxy program and its Debian package.
    public static let tool = "tinyproxy"
    public static let package = "tinyproxy"
    /// Seconds tinyproxy keeps an idle connection (a tunnel carries keepalives every 25 s).
    public static let idleTimeoutSeconds = 600
    /// Connections tinyproxy serves at once.
    public static let maximumClients = 128
    /// How long the runner gives tinyproxy to start listening, seconds.
    public static let startTime: TimeInterval = 0.5

    /// `http://GATEWAY:PORT`: the proxy URL for hosts behind `site`, or nil when the site has none.
    public static func url(for site: LabSitePlan) -> String? {
        site.spec.preset == .proxyOnly ? "http://\(site.lanGateway):\(port)" : nil
    }

    /// `peerway peer` options for a host behind `site`: `--proxy URL` behind a proxy-only site.
    public static func peerArguments(for site: LabSitePlan) -> [String] {
        url(for: site).map { ["--proxy", $0] } ?? []
    }

    /// The log file of the proxy of the router namespace `namespace`.
    public static func logFile(_ namespace: String) -> String { "\(LabRunner.stateDirectory)/tinyproxy-\(namespace).log" }

    /// tinyproxy's configuration for `site`: listening on the LAN gateway, serving the LAN only,
    /// `CONNECT` to `connectPorts` only, logging each connection to `logFile`.
    public static func configuration(for site: LabSitePlan) -> String {
        var lines = [
            "Port \(port)",
            "Listen \(site.lanGateway)",
            "Timeout \(idleTimeoutSeconds)",
            "MaxClients \(maximumClients)",
            "Allow \(site.lanNetwork)",
            "DisableViaHeader Yes",
            "LogLevel Connect",
            "LogFile \"\(logFile(site.routerNamespace))\"",
        ]
        lines += connectPorts.map { "ConnectPort \($0)" }
        return lines.joined(separator: "\n") + "\n"
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension LabRunner {
    /// Starts tinyproxy with `configuration` in `namespace`, detached (`lab down` kills it with
    /// everything else in the lab's namespaces); fails when it is missing or does not stay up.
    static func startProxy(namespace: String, configuration: String) throws(LabError) {
        guard let tinyproxy = path(of: LabProxy.tool) else { throw .missingTool(LabProxy.tool, package: LabProxy.package) }
        try? FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        let file = "\(stateDirectory)/tinyproxy-\(namespace).conf"
        guard FileManager.default.createFile(atPath: file, contents: Data(configuration.utf8)) else {
            throw .commandFailed(command: "write \(file)", status: -1, output: "cannot write the proxy's configuration")
        }
        let log = "\(stateDirectory)/tinyproxy-\(namespace).out"
        let process = try detach(["netns", "exec", namespace, tinyproxy, "-d", "-c", file], log: log)
        Thread.sleep(forTimeInterval: LabProxy.startTime)
        guard process.isRunning else {
            throw .commandFailed(command: "\(LabProxy.tool) in \(namespace)", status: process.terminationStatus,
                                 output: (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
        }
    }
}

extension LabTCPCheck {
    /// The ports of `ports` on `ip` that the HTTP proxy `proxy` (`http://IP:PORT`) connects a
    /// client in namespace `ns` to: `CONNECT ip:port` answered 2xx within the connect timeout.
    public static func portsThroughProxy(from ns: String, proxy: String, to ip: String) throws(LabError) -> [UInt16] {
        let hostPort = proxy.replacingOccurrences(of: "http://", with: "").split(separator: ":")
        guard hostPort.count == 2, let proxyPort = UInt16(hostPort[1]) else { throw .badConfiguration("proxy URL '\(proxy)'") }
        var reached: [UInt16] = []
        for port in ports {
            let fd = try inNamespace(ns) { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0) }
            defer { _ = Glibc.close(fd) }
            var a = address(String(hostPort[0]), proxyPort)
            _ = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            let deadline = Date().addingTimeInterval(TimeInterval(connectTimeoutMilliseconds) / 1000)
            var entry = [pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)]
            _ = poll(&entry, 1, connectTimeoutMilliseconds)
            guard entry[0].revents & Int16(POLLOUT) != 0 else { continue }
            let request = Array("CONNECT \(ip):\(port) HTTP/1.1\r\nHost: \(ip):\(port)\r\n\r\n".utf8)
            guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { continue }
            var answer: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 512)
            while Date() < deadline, !answer.contains(10), answer.count < buffer.count {
                entry = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
                _ = poll(&entry, 1, max(1, Int32(deadline.timeIntervalSinceNow * 1000)))
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                answer += buffer[0..<n]
            }
            // "HTTP/1.x 2xx ..."
            let status = String(decoding: answer, as: UTF8.self).split(separator: " ").dropFirst().first
            if status?.hasPrefix("2") == true { reached.append(port) }
        }
        return reached
    }
}
