import Foundation
import PeerwayRelay
import PeerwaySTUN
#if canImport(Glibc)
import Glibc
#endif

/// Connects to one of a relay's TCP endpoints (its own port, then its supernode's shared port),
/// dialing them as `RelayDialSchedule` says: the first connection that completes is returned,
/// every other attempt is closed. Through an HTTP proxy (`ProxySetting`), each attempt connects to
/// the proxy and completes once the proxy answered `CONNECT endpoint` with 2xx; a refusal (403:
/// the port is not allowed) retires that endpoint. The I/O around the pure schedule and the pure
/// `HTTPConnect` codec; runs on the caller's thread.
enum RelayDialer {
    /// Longest single wait in `poll`, milliseconds (the deadline is checked at least this often).
    static let pollSliceMillis = 50
    /// Bytes read from a proxy's answer per call.
    static let readChunkBytes = 512

    /// What became of one endpoint's attempts, for the error when none connected.
    private struct Tally {
        var refused = 0
        var abandoned = 0
        var lastError: String?
    }

    /// One attempt under way: connecting, or (through a proxy) waiting for the answer to CONNECT.
    private struct Attempt {
        var socket: TunnelSocket
        var answer: [UInt8]?
    }

    /// The first of `endpoints` that accepts a connection before `deadline` (milliseconds of
    /// `UDPTraversal.millis()`), with the endpoint it reached.
    static func connect(_ endpoints: [STUNAddress], proxy setting: ProxySetting = .none,
                        deadline: Int) -> Result<(TunnelSocket, STUNAddress), PeerError> {
        guard !endpoints.isEmpty else { return .failure(.traversalFailed("the plan's relay has no TCP endpoint")) }
        let proxies = endpoints.map { setting.proxy(for: $0.ipString) }
        var proxyAddresses: [HTTPProxy: STUNAddress] = [:]
        for proxy in Set(proxies.compactMap { $0 }) {
            guard let address = resolve(proxy) else { return .failure(.proxyFailed("cannot resolve the proxy's host \(proxy.host)")) }
            proxyAddresses[proxy] = address
        }
        var schedule = RelayDialSchedule(endpoints: endpoints.count)
        var pending: [Int: Attempt] = [:]
        var tallies = [Tally](repeating: Tally(), count: endpoints.count)
        defer { pending.values.forEach { $0.socket.close() } }
        func failed(_ i: Int, _ why: String, retire: Bool = false) {
            pending.removeValue(forKey: i)?.socket.close()
            tallies[i].refused += 1
            tallies[i].lastError = why
            if retire { schedule.retire(i) } else { schedule.failed(i, now: UDPTraversal.millis()) }
        }
        while UDPTraversal.millis() < deadline, !schedule.exhausted {
            for action in schedule.actions(now: UDPTraversal.millis()) {
                switch action {
                case .abandon(let i):
                    pending.removeValue(forKey: i)?.socket.close()
                    tallies[i].abandoned += 1
                case .dial(let i):
                    switch open(proxies[i].flatMap { proxyAddresses[$0] } ?? endpoints[i]) {
                    case .success(let socket): pending[i] = Attempt(socket: socket)
                    case .failure(let failure): failed(i, failure.description)
                    }
                }
            }
            let order = pending.keys.sorted()
            let slice = min(pollSliceMillis, max(1, schedule.wait(now: UDPTraversal.millis())), max(1, deadline - UDPTraversal.millis()))
            let polls = order.map { pollfd(fd: pending[$0]!.socket.fd, events: Int16(pending[$0]!.answer == nil ? POLLOUT : POLLIN), revents: 0) }
            var entries = polls
            _ = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), Int32(slice)) }
            for (i, entry) in zip(order, entries) where entry.revents != 0 {
                guard var attempt = pending[i] else { continue }
                if attempt.answer == nil {
                    let error = attempt.socket.pendingError
                    guard error == 0 && entry.revents & Int16(POLLOUT) != 0 else {
                        failed(i, String(cString: strerror(error == 0 ? ECONNREFUSED : error)))
                        continue
                    }
                    guard let proxy = proxies[i] else {
                        pending[i] = nil
                        return .success((attempt.socket, endpoints[i]))
                    }
                    let request = HTTPConnect.request(target: endpoints[i].description, credentials: proxy.credentials)
                    guard request.withUnsafeBytes({ send(attempt.socket.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
                        failed(i, "cannot send CONNECT to the proxy \(proxy)")
                        continue
                    }
                    attempt.answer = []
                    pending[i] = attempt
                    continue
                }
                var chunk = [UInt8](repeating: 0, count: readChunkBytes)
                let n = chunk.withUnsafeMutableBytes { recv(attempt.socket.fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else {
                    if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { continue }
                    failed(i, "the proxy \(proxies[i]!) closed the connection before answering CONNECT \(endpoints[i])")
                    continue
                }
                attempt.answer! += chunk[0..<n]
                pending[i] = attempt
                switch HTTPConnect.parse(attempt.answer!) {
                case .incomplete:
                    continue
                case .established(let headerBytes) where headerBytes == attempt.answer!.count:
                    pending[i] = nil
                    return .success((attempt.socket, endpoints[i]))
                case .established:
                    failed(i, "the relay at \(endpoints[i]) spoke before the bind, through the proxy \(proxies[i]!)")
                case .refused(let status, let reason):
                    failed(i, HTTPConnect.explain(status, reason, target: endpoints[i].description, proxy: proxies[i]!), retire: status < 500)
                case .malformed(let why):
                    failed(i, "the proxy \(proxies[i]!) answered CONNECT with something else than HTTP: \(why)", retire: true)
                }
            }
        }
        let what = zip(endpoints, tallies).map { endpoint, t in
            "\(endpoint) (\(t.refused) refused\(t.lastError.map { ": \($0)" } ?? ""), \(t.abandoned) unanswered)"
        }
        let via = Set(proxies.compactMap { $0?.description }).sorted().map { " through the proxy \($0)" }.joined()
        return .failure(.traversalFailed("no TCP endpoint of the relay accepted a connection in time\(via): \(what.joined(separator: "; ")); "
                                         + "is TCP to these ports let out of this network?"))
    }

    /// A non-blocking connection to `endpoint` under way.
    private static func open(_ endpoint: STUNAddress) -> Result<TunnelSocket, TunnelSocket.Failure> {
        let any = STUNAddress(ip: endpoint.family == .ipv4 ? .v4(0) : .v6(high: 0, low: 0), port: 0)
        let socket: TunnelSocket
        do { socket = try TunnelSocket.tcp(bound: any) } catch { return .failure(error) }
        do { try socket.connect(to: endpoint) } catch {
            socket.close()
            return .failure(error)
        }
        return .success(socket)
    }

    /// The proxy's address: its IP literal, or its name's first address (getaddrinfo, blocking).
    static func resolve(_ proxy: HTTPProxy) -> STUNAddress? {
        if let ip = STUNAddress.parseIP(Substring(proxy.host)) { return STUNAddress(ip: ip, port: proxy.port) }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(proxy.host, String(proxy.port), &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(list) }
        var slot = SocketSlot()
        withUnsafeMutableBytes(of: &slot.storage) { storage in
            storage.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        }
        return slot.address
    }
}
