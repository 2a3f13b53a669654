import PeerwayPortMap
import PeerwaySTUN
#if canImport(Glibc)
import Glibc
#endif

/// One blocking HTTP/1.1 exchange with an IGD on the LAN: connect, send the request, read until
/// the IGD closes (the request says `Connection: close`), all within a deadline. Used by
/// `PortMapSession`'s thread only; the gateway is one hop away, so the loop is short.
enum PortMapHTTP {
    /// Milliseconds one `poll` waits at most inside the exchange.
    static let pollMillis: Int32 = 50
    /// Bytes read per `recv`.
    static let chunkBytes = 4_096

    /// The whole answer, or why there is none.
    static func exchange(to address: STUNAddress, request: [UInt8],
                         timeoutMillis: UInt64 = PortMapLimits.httpTimeoutMillis) -> Result<[UInt8], PortMapDecodeError> {
        let deadline = UDPTraversal.millis() + Int(timeoutMillis)
        let socket: TunnelSocket
        do {
            socket = try TunnelSocket.tcp(bound: STUNAddress(ip: .v4(0), port: 0))
            try socket.connect(to: address)
        } catch {
            return .failure(PortMapDecodeError("connect to \(address): \(error)"))
        }
        defer { socket.close() }
        // Connected once writable with no pending error.
        while true {
            guard UDPTraversal.millis() < deadline else { return .failure(PortMapDecodeError("connect to \(address) timed out")) }
            let ready = TunnelSocket.poll([socket.fd], events: Int16(POLLOUT), timeoutMillis: pollMillis)
            if ready[0] != 0 {
                let e = socket.pendingError
                guard e == 0 else { return .failure(PortMapDecodeError("connect to \(address): \(String(cString: strerror(e)))")) }
                break
            }
        }
        var sent = 0
        while sent < request.count {
            guard UDPTraversal.millis() < deadline else { return .failure(PortMapDecodeError("sending to \(address) timed out")) }
            let n = request.withUnsafeBytes { send(socket.fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
                return .failure(PortMapDecodeError("send to \(address): \(String(cString: strerror(errno)))"))
            }
            _ = TunnelSocket.poll([socket.fd], events: Int16(POLLOUT), timeoutMillis: pollMillis)
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: chunkBytes)
        while answer.count <= PortMapLimits.maximumHTTPResponseBytes {
            guard UDPTraversal.millis() < deadline else { return .failure(PortMapDecodeError("answer from \(address) timed out")) }
            let n = buffer.withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                answer += buffer[0..<n]
                continue
            }
            if n == 0 { return .success(answer) }
            if errno != EAGAIN && errno != EWOULDBLOCK {
                return answer.isEmpty ? .failure(PortMapDecodeError("recv from \(address): \(String(cString: strerror(errno)))")) : .success(answer)
            }
            _ = TunnelSocket.poll([socket.fd], timeoutMillis: pollMillis)
        }
        return .failure(PortMapDecodeError("answer from \(address) longer than \(PortMapLimits.maximumHTTPResponseBytes) bytes"))
    }
}
