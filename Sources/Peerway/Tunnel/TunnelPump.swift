import Foundation
import PeerwayCheckpoint
import PeerwaySTUN
import PeerwayTunnel
#if canImport(Glibc)
import Glibc
#endif

/// Moves a TCP-carried tunnel's payload between the application's end of a socket pair and the
/// network connection, sealing and opening records (docs/traversal-protocol.md, Encrypted
/// records), on a thread of its own. (A UDP tunnel over UDP has `UDPTunnelPump`, which also
/// moves it between paths.)
final class TunnelPump: @unchecked Sendable {
    enum Mode {
        /// TCP network socket, stream application socket: a record stream.
        case stream
        /// TCP network socket (the relay's splice), datagram application socket: one record per datagram.
        case datagramsOverStream
        /// The same, unencrypted: `length(2) payload` per datagram.
        case rawDatagramsOverStream
    }

    /// Largest datagram read from either side.
    static let bufferBytes = 65_536
    /// Bytes read from a stream at once (at most one record's plaintext).
    static let streamChunkBytes = TunnelLimits.maximumStreamPlaintextBytes

    private let mode: Mode
    private let network: TunnelSocket
    private let app: TunnelSocket
    private var crypto: TunnelRecordCrypto
    private let wake = PumpWake()

    init(mode: Mode, network: TunnelSocket, app: TunnelSocket, keys: TunnelKeys) {
        self.mode = mode
        self.network = network
        self.app = app
        crypto = TunnelRecordCrypto(keys: keys)
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "peerway-tunnel"
        thread.start()
    }

    /// Ends the pump: an encrypted tunnel tells the other side, then both sockets close. Safe
    /// after the pump ended by itself (the other side closed): its descriptors are not touched
    /// again, since their numbers may belong to another tunnel by then.
    func stop() { wake.stop() }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: Self.bufferBytes)
        network.makeBlocking()
        let debug = ProcessInfo.processInfo.environment["PEERWAY_DEBUG_TRAVERSAL"] != nil
        var fromApp = 0, fromNetwork = 0
        defer {
            if debug {
                FileHandle.standardError.write(Data("tunnel pump \(mode) to \(network.remoteAddress.map(\.description) ?? "?"): \(fromApp) from the application, \(fromNetwork) from the network\n".utf8))
            }
            network.close()
            app.close()
            wake.exit()
        }
        while !wake.stopRequested {
            var entries = [pollfd(fd: app.fd, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: network.fd, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wake.descriptor, events: Int16(POLLIN), revents: 0)]
            let rc = entries.withUnsafeMutableBufferPointer { poll($0.baseAddress, 3, 1000) }
            if rc < 0 && errno != EINTR { return }
            if entries[2].revents != 0 { return }
            if entries[0].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { recv(app.fd, $0.baseAddress, mode == .stream ? Self.streamChunkBytes : $0.count, 0) }
                if n <= 0 { return }  // the application closed its end
                fromApp += 1
                // The bytes are read inside withUnsafeBytes: a pointer to an array is only
                // valid there.
                let record: [UInt8] = buffer.withUnsafeBytes { all in
                    let payload = UnsafeRawBufferPointer(rebasing: all[..<n])
                    switch mode {
                    case .stream, .datagramsOverStream: return crypto.sealStream(payload)
                    case .rawDatagramsOverStream: return [UInt8(n >> 8), UInt8(n & 0xFF)] + Array(payload)
                    }
                }
                writeNetwork(record)
            }
            if entries[1].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { recv(network.fd, $0.baseAddress, $0.count, 0) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                fromNetwork += 1
                let handled = buffer.withUnsafeBytes { handleNetwork(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
                if !handled { return }
            }
        }
    }

    /// False when the other side closed the tunnel.
    private func handleNetwork(_ bytes: UnsafeRawBufferPointer) -> Bool {
        switch mode {
        case .stream, .datagramsOverStream:
            switch crypto.openStream(bytes) {
            case .records(let records): for r in records { writeApp(r) }
            case .closed: return false
            }
        case .rawDatagramsOverStream:
            for d in crypto.unframe(bytes) { writeApp(d) }
        }
        return true
    }

    private func writeNetwork(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(network.fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                return  // the connection failed: the reader sees the close
            }
            offset += n
        }
    }

    private func writeApp(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count || (bytes.isEmpty && offset == 0) {
            let n = bytes.withUnsafeBytes { send(app.fd, $0.baseAddress.map { $0 + offset }, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += n
            if mode != .stream { return }
            if bytes.isEmpty { return }
        }
    }
}
