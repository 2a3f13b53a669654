import Foundation
@testable import Peerway
import PeerwayCheckpoint
import PeerwayRelay
import PeerwaySTUN
import PeerwaySupernode
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 14 part 1 on loopback: every way to reach a relay. The HANDSHAKE's grants name the
/// relay's supernode's shared TCP port (CHECKPOINT's, which hands "PWRB" binds to the RELAY) as an
/// alternative to the relay's own TCP port; the client dials them in turn and a tunnel comes up
/// through whichever answers.
@Suite("Relay through the supernode's shared TCP port (loopback)", .serialized)
struct RelaySharedPortTests {
    @Test("grants: the relay's own TCP port, then the shared port; without an own TCP port the shared one is the TCP endpoint")
    func grants() throws {
        let relay = RelayServer(configuration: .init(udp: SupernodeConfiguration.loopback, tcp: SupernodeConfiguration.loopback))
        try relay.start()
        defer { Task { await relay.stop() } }
        let relays = SupernodeRelays(relay)
        let own = try #require(relay.tcpAddress)
        #expect(relays.grant(transport: .tcp, lifetimeSeconds: 60)?.initiator.alternatives == [])
        let shared = STUNAddress(ip: .v4(0x7F00_0001), port: 443)
        relays.setLocalShared(shared)
        let (a, b) = try #require(relays.grant(transport: .tcp, lifetimeSeconds: 60))
        #expect(a.tcp == own && a.alternatives == [shared] && a.tcpEndpoints == [own, shared])
        #expect(b.tcp == own && b.alternatives == [shared] && a.token != b.token)
        // A member of the network whose RELAY has no TCP port of its own is reached on its shared one.
        let remote = RelayLoad(id: "other", endpoint: "198.51.100.2:7401", tcpEndpoint: nil, sharedTCPEndpoint: "198.51.100.2:443",
                               allocations: 0, capacity: 100, bytesPerSecond: 0)
        let alone = SupernodeRelays(local: nil, key: relay.configuration.key)
        alone.setRemote([remote])
        let grant = try #require(alone.grant(transport: .tcp, lifetimeSeconds: 60)?.initiator)
        #expect(grant.tcp == STUNAddress(parsing: "198.51.100.2:443") && grant.alternatives.isEmpty)
        // No TCP way at all: no TCP grant.
        alone.setRemote([RelayLoad(id: "udp-only", endpoint: "198.51.100.2:7401", allocations: 0, bytesPerSecond: 0)])
        #expect(alone.grant(transport: .tcp, lifetimeSeconds: 60) == nil)
        #expect(alone.grant(transport: .udp, lifetimeSeconds: 60) != nil)
    }

    @Test("the dialer skips a refused endpoint for the next that accepts, at once; a typed error names every endpoint")
    func dialer() throws {
        // A listener that accepts nothing (backlog 0 still completes handshakes into the queue).
        let listener = try TunnelSocket.tcp(bound: STUNAddress(ip: .v4(0x7F00_0001), port: 0))
        defer { listener.close() }
        #expect(listen(listener.fd, 4) == 0)
        let open = try #require(listener.localAddress)
        // A port nothing listens on: refused at once.
        let probe = try TunnelSocket.tcp(bound: STUNAddress(ip: .v4(0x7F00_0001), port: 0))
        let closed = try #require(probe.localAddress)
        probe.close()
        let started = UDPTraversal.millis()
        let result = RelayDialer.connect([closed, open], deadline: started + 5_000)
        let (socket, reached) = try result.get()
        socket.close()
        #expect(reached == open)
        // Refused: the next one starts at once, not a stagger later.
        #expect(UDPTraversal.millis() - started < RelayDialSchedule.staggerMillis, "took \(UDPTraversal.millis() - started) ms")
        // Nothing answers within the deadline: a typed error naming every endpoint.
        guard case .failure(.traversalFailed(let why)) = RelayDialer.connect([closed], deadline: UDPTraversal.millis() + 900) else {
            Issue.record("a refused endpoint connected")
            return
        }
        #expect(why.contains("\(closed)") && why.contains("refused"), "\(why)")
    }

    @Test("a relayed TCP tunnel through the shared port when the RELAY has no TCP port of its own", .timeLimit(.minutes(1)))
    func tunnelThroughSharedPort() async throws {
        var configuration = SupernodeConfiguration()
        configuration.relay = SupernodeConfiguration.Relay(tcp: nil)
        let supernode = try await Supernode.start(configuration)
        let options = TunnelPeerTests.peerOptions(supernode)
        let a = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: options)
        let b = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: options)
        let bLog = EventLog(b)
        let tunnels = TunnelOptions(bindHost: "127.0.0.1", directPaths: false)
        let accepting = TunnelPeerTests.acceptAndEcho(b, bLog, options: tunnels)
        let tunnel = try await a.connect(to: b.id, transport: .tcp, options: tunnels)
        let theirs = await accepting.value
        #expect(tunnel.path == .relayed && theirs?.path == .relayed)
        #expect(tunnel.remote == supernode.address.tcpEndpoint, "\(tunnel.remote)")
        let payload = (0..<4000).map { UInt8(truncatingIfNeeded: $0 * 13) }
        _ = payload.withUnsafeBytes { send(tunnel.fileDescriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var echoed: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        for _ in 0..<100 where echoed.count < payload.count {
            var entry = [pollfd(fd: tunnel.fileDescriptor, events: Int16(POLLIN), revents: 0)]
            _ = entry.withUnsafeMutableBufferPointer { poll($0.baseAddress, 1, 100) }
            guard entry[0].revents != 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(tunnel.fileDescriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { echoed += buffer[0..<n] }
        }
        #expect(echoed == payload)
        #expect(supernode.checkpoint.statistics().tcp.relayHandoffs >= 2)
        tunnel.close()
        theirs?.close()
        await a.stop()
        await b.stop()
        await supernode.stop()
    }
}
