import Foundation
import Peerway
import PeerwayCheckpoint
import PeerwaySupernode
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Loopback integration: tunnels between real `Peer`s through a real supernode (CHECKPOINT with
/// its HANDSHAKE, the STUN pair and the RELAY) in this process.
@Suite("Tunnels on loopback: HANDSHAKE, probes, encrypted records, relay", .serialized)
struct TunnelPeerTests {
    static func peerOptions(_ supernode: Supernode) -> PeerOptions {
        var o = PeerOptions()
        o.bindHost = "127.0.0.1"
        o.stunServer = supernode.stunLayout?.primary
        return o
    }

    static let loopbackTunnels = TunnelOptions(bindHost: "127.0.0.1")

    /// Sends `payload` on a datagram tunnel and waits for it to come back (the other side echoes).
    static func roundTrip(_ fd: Int32, _ payload: [UInt8], attempts: Int = 20) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        for _ in 0..<attempts {
            _ = payload.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            var entry = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            _ = entry.withUnsafeMutableBufferPointer { poll($0.baseAddress, 1, 250) }
            if entry[0].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n >= 0 { return Array(buffer[0..<n]) }
            }
        }
        return nil
    }

    /// Echoes datagrams (or stream bytes) on `fd` on a thread until it closes.
    static func echo(_ fd: Int32) {
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return }
                _ = buffer.withUnsafeBytes { send(fd, $0.baseAddress, n, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    /// A accepts every request B... the acceptor side: accept the first request and echo.
    static func acceptAndEcho(_ peer: Peer, _ log: EventLog, options: TunnelOptions = loopbackTunnels) -> Task<Tunnel?, Never> {
        Task {
            guard case .connectRequest(let request)? = await log.waitFor(timeout: .seconds(20), {
                if case .connectRequest = $0 { return true }; return false
            }) else { return nil }
            let tunnel: Tunnel
            do { tunnel = try await peer.accept(request, options: options) } catch {
                Issue.record("accept failed: \(error)")
                return nil
            }
            echo(tunnel.fileDescriptor)
            return tunnel
        }
    }

    @Test("a UDP tunnel: direct on the shared host, verified, encrypted, echo intact; it outlives the supernode")
    func udpTunnelOutlivesSupernode() async throws {
        let supernode = try await Supernode.start(SupernodeConfiguration())
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: Self.peerOptions(supernode))
        let b = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: Self.peerOptions(supernode))
        let bLog = EventLog(b)
        let accepting = Self.acceptAndEcho(b, bLog)
        let tunnel = try await a.connect(to: b.id, transport: .udp, options: Self.loopbackTunnels)
        let theirs = await accepting.value
        #expect(tunnel.path == .direct)
        #expect(tunnel.method == .lan)
        #expect(tunnel.isEncrypted)
        #expect(theirs?.peer == a.id)
        let payload = (0..<1200).map { UInt8(truncatingIfNeeded: $0 * 7) }
        #expect(Self.roundTrip(tunnel.fileDescriptor, payload) == payload)
        // Every supernode stops: the tunnel keeps working.
        await supernode.stop()
        try await Task.sleep(for: .milliseconds(300))
        let later = Array("still here".utf8)
        #expect(Self.roundTrip(tunnel.fileDescriptor, later) == later)
        tunnel.close()
        theirs?.close()
        await a.stop()
        await b.stop()
    }
}

extension TunnelPeerTests {
    /// Writes `count` patterned bytes on a stream socket and reads them back; true when intact.
    static func streamEcho(_ fd: Int32, count: Int) -> Bool {
        var sent = 0, received = 0
        var out = [UInt8](repeating: 0, count: 16_384), input = [UInt8](repeating: 0, count: 65_536)
        let deadline = Date().addingTimeInterval(20)
        while received < count && Date() < deadline {
            var entry = [pollfd(fd: fd, events: Int16(POLLIN) | (sent < count ? Int16(POLLOUT) : 0), revents: 0)]
            _ = entry.withUnsafeMutableBufferPointer { poll($0.baseAddress, 1, 100) }
            if entry[0].revents & Int16(POLLOUT) != 0 {
                let n = min(out.count, count - sent)
                for i in 0..<n { out[i] = UInt8(truncatingIfNeeded: (sent + i) % 251) }
                let w = out.withUnsafeBytes { send(fd, $0.baseAddress, n, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                if w > 0 { sent += w }
            }
            if entry[0].revents & Int16(POLLIN) != 0 {
                let n = input.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n <= 0 { return false }
                for i in 0..<n where input[i] != UInt8(truncatingIfNeeded: (received + i) % 251) { return false }
                received += n
            }
        }
        return received == count
    }

    @Test("a TCP tunnel: direct, stream hello verified, 1 MiB echoed intact through encrypted records", arguments: [true, false])
    func tcpTunnel(encrypted: Bool) async throws {
        let supernode = try await Supernode.start(SupernodeConfiguration())
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: Self.peerOptions(supernode))
        let b = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: Self.peerOptions(supernode))
        let bLog = EventLog(b)
        let options = TunnelOptions(encrypted: encrypted, bindHost: "127.0.0.1")
        let accepting = Task { () -> Tunnel? in
            guard case .connectRequest(let request)? = await bLog.waitFor(timeout: .seconds(20), {
                if case .connectRequest = $0 { return true }; return false
            }) else { return nil }
            guard let t = try? await b.accept(request, options: options) else { return nil }
            Self.echo(t.fileDescriptor)
            return t
        }
        let tunnel = try await a.connect(to: b.id, transport: .tcp, options: options)
        let theirs = await accepting.value
        #expect(tunnel.transport == .tcp && tunnel.path == .direct && tunnel.isEncrypted == encrypted)
        #expect(theirs != nil)
        #expect(Self.streamEcho(tunnel.fileDescriptor, count: 1 << 20))
        tunnel.close()
        theirs?.close()
        await a.stop()
        await b.stop()
        await supernode.stop()
    }
}

extension TunnelPeerTests {
    @Test("relay only: the RELAY carries the tunnel, payload untouched (0 bytes added), UDP and TCP", arguments: [TunnelTransport.udp, .tcp])
    func relayedTunnel(transport: TunnelTransport) async throws {
        let supernode = try await Supernode.start(SupernodeConfiguration())
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: Self.peerOptions(supernode))
        let b = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: Self.peerOptions(supernode))
        let bLog = EventLog(b)
        let options = TunnelOptions(encrypted: transport == .tcp, bindHost: "127.0.0.1", directPaths: false)
        let accepting = Self.acceptAndEcho(b, bLog, options: options)
        let tunnel = try await a.connect(to: b.id, transport: transport, options: options)
        let theirs = await accepting.value
        #expect(tunnel.path == .relayed && tunnel.method == .relay)
        #expect(theirs?.path == .relayed)
        if transport == .udp {
            // Raw: the application's datagram is what the relay forwards, byte for byte.
            #expect(!tunnel.isEncrypted)
            let relay = try #require(supernode.relay)
            let before = relay.statistics().udp
            let payload = (0..<1000).map { UInt8(truncatingIfNeeded: $0) }
            #expect(Self.roundTrip(tunnel.fileDescriptor, payload) == payload)
            // The relay's thread counts a datagram after sending it: give the last count a moment.
            var after = relay.statistics().udp
            for _ in 0..<50 where after.forwardedDatagrams - before.forwardedDatagrams < 2 {
                try await Task.sleep(for: .milliseconds(20))
                after = relay.statistics().udp
            }
            let datagrams = after.forwardedDatagrams - before.forwardedDatagrams
            #expect(datagrams >= 2)
            #expect(after.forwardedBytes - before.forwardedBytes == UInt64(datagrams * 1000), "the relay adds and removes nothing")
        } else {
            #expect(Self.streamEcho(tunnel.fileDescriptor, count: 256 * 1024))
        }
        tunnel.close()
        theirs?.close()
        await a.stop()
        await b.stop()
        await supernode.stop()
    }
}
