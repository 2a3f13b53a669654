import Foundation
import Peerway
import PeerwayCheckpoint
import PeerwaySupernode
import Testing

/// Issue 12's chaos test with real processes: three `peerway supernode --cluster` on loopback
/// sharing one PostgreSQL; one of them is killed with SIGKILL while peers exchange messages.
@Suite("Network of supernodes: kill -9 of one of three under load", .serialized, .timeLimit(.minutes(4)))
struct ClusterChaosTests {
    /// Keepalive of every supernode and peer here: failover is due within two of them. A peer
    /// notices a dead supernode when a keepalive goes unanswered for half an interval (7.5 s,
    /// `CheckpointClientLimits.keepaliveTimeout`) and then handshakes with the next supernode it
    /// learned, so the worst case is one keepalive plus about 8 s.
    static let keepalive: UInt16 = 15

    static func startSupernode(_ dir: String, url: String) async throws -> (LineProcess, SupernodeAddress) {
        let process = try LineProcess(Tools.peerway, ["supernode", "--data-dir", dir, "--listen", "127.0.0.1:0", "--no-stun", "--no-admin",
                                                      "--keepalive", "\(keepalive)", "--index", url, "--cluster", url])
        var address: String?
        for _ in 0..<600 where address == nil {
            address = try? String(contentsOfFile: dir + "/address", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            if address == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let text = try #require(address, "the supernode wrote no address: \(process.allLines)")
        return (process, try SupernodeAddress(parsing: text))
    }

    @Test("peers of the killed supernode are registered elsewhere within two keepalives; watchers see them go and come back; every message gets an outcome; INDEX data and tunnels survive")
    func killOne() async throws {
        guard let url = try await IndexCLITests.postgres() else { return }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("peerway-chaos-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        var processes: [LineProcess] = []
        var addresses: [SupernodeAddress] = []
        for n in 0..<3 {
            let (p, a) = try await Self.startSupernode(root + "/s\(n)", url: url)
            processes.append(p)
            addresses.append(a)
        }
        defer { for p in processes { p.kill9() } }
        let stun = STUNPairServer(configuration: SupernodeConfiguration.loopbackSTUN)
        let layout = try await stun.start()
        var options = PeerOptions()
        options.bindHost = "127.0.0.1"
        options.keepaliveSeconds = Self.keepalive
        options.stunServer = layout.primary
        // Two peers on each supernode; each is given only its own and learns the others from
        // its registration (or its first keepalive's answer).
        var peers: [Peer] = []
        for i in 0..<6 {
            peers.append(try await Peer.start(identity: PeerIdentity(), supernodes: [addresses[i % 3]], metadata: ["chaos": "\(i)"],
                                              options: options))
        }
        let victims = [peers[2], peers[5]]          // on supernode 2
        let watcher = peers[0], watcherLog = EventLog(peers[0])
        let victimLogs = victims.map { EventLog($0) }
        // Every supernode sees every peer (links up, snapshots exchanged).
        var visible = 0
        for _ in 0..<200 where visible != 6 {
            visible = (try? await watcher.search("chaos?"))?.count ?? 0
            if visible != 6 { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(visible == 6, "every peer of the network is visible from supernode 0")
        #expect(try await watcher.watch(victims.map(\.id)).allSatisfy { $0.online })
        // An acknowledged INDEX write through the supernode that will die.
        _ = try await victims[0].signup(username: "chaos-user", password: "correct horse battery")
        // A tunnel between supernode 0's peer and supernode 2's, made before the kill.
        let accepting = TunnelPeerTests.acceptAndEcho(victims[1], victimLogs[1])
        let tunnel = try await watcher.connect(to: victims[1].id, transport: .udp, options: TunnelPeerTests.loopbackTunnels)
        let payload = Array("before the kill".utf8)
        #expect(TunnelPeerTests.roundTrip(tunnel.fileDescriptor, payload) == payload)

        // Load: peers 0, 1, 3, 4 send to the victims, one message after the other, until told to stop.
        let stopLoad = ManagedFlag()
        let senders = [peers[0], peers[1], peers[3], peers[4]]
        let load = Task { () -> [MessageOutcome.Outcome: Int] in
            var outcomes: [MessageOutcome.Outcome: Int] = [:]
            var n = 0
            while !stopLoad.isSet {
                let from = senders[n % senders.count], to = victims[n % victims.count]
                n += 1
                do { outcomes[try await from.send("m\(n)", to: to.id), default: 0] += 1 } catch {
                    Issue.record("a message ended without an outcome: \(error)")
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return outcomes
        }
        try await Task.sleep(for: .milliseconds(500))

        let killedAt = ContinuousClock.now
        processes[2].kill9()
        // The victims register elsewhere by themselves.
        let dead = addresses[2]
        var failover: [Duration] = []
        for log in victimLogs {
            let moved = await log.waitFor(timeout: .seconds(Int64(Self.keepalive) * 2 + 5)) { e in
                if case .reregistered(_, let s) = e { return s != dead }
                return false
            }
            #expect(moved != nil, "a peer of the killed supernode registered elsewhere")
            failover.append(ContinuousClock.now - killedAt)
        }
        let worst = failover.max() ?? .seconds(999)
        print("cluster chaos: failover after kill -9: \(failover.map { "\($0)" }.joined(separator: ", ")) (keepalive \(Self.keepalive) s)")
        #expect(worst < .seconds(Int64(Self.keepalive) * 2), "failover within two keepalive periods")
        // The watcher on supernode 0 saw each victim go and come back.
        for v in victims {
            #expect(await watcherLog.waitFor(timeout: .seconds(10)) { if case .status(v.id, false, _, _) = $0 { return true }; return false } != nil,
                    "the watcher saw a victim go offline")
            #expect(await watcherLog.waitFor(timeout: .seconds(10)) { if case .status(v.id, true, .online, _) = $0 { return true }; return false } != nil,
                    "the watcher saw a victim come back")
        }
        // Messages reach the victims again where they are now.
        #expect(try await peers[1].send("after", to: victims[0].id) == .delivered)
        stopLoad.set()
        let outcomes = await load.value
        print("cluster chaos: message outcomes under load: \(outcomes)")
        #expect((outcomes[.delivered] ?? 0) > 0)
        // Nothing acknowledged in the INDEX was lost; the tunnel never needed a supernode.
        #expect(try await victims[0].currentUser().name == "chaos-user")
        // Echoes of the first round trip's retransmissions may still wait in the socket.
        var stale = [UInt8](repeating: 0, count: 2048)
        while stale.withUnsafeMutableBytes({ recv(tunnel.fileDescriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
        #expect(TunnelPeerTests.roundTrip(tunnel.fileDescriptor, Array("after the kill".utf8)) == Array("after the kill".utf8))
        tunnel.close()
        await accepting.value?.close()
        for p in peers { await p.stop() }
        await stun.stop()
    }
}

/// A flag one task sets and another polls.
final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
