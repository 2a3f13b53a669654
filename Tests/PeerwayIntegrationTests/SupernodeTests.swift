#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Peerway
import PeerwayCheckpoint
import PeerwayIndex
import PeerwayIndexAPI
import PeerwaySTUN
import PeerwaySupernode
import Testing

/// `Supernode` on loopback: every service composed from one `SupernodeConfiguration`, several
/// supernodes in one process, and starts that fail part-way.
@Suite("Supernode: composed services on loopback")
struct SupernodeTests {
    static let token = try! AdminToken("supernode-tests-admin-token")

    static func temporaryDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("peerway-supernode-\(UUID().uuidString)").path
    }

    /// Every address a running supernode has bound, with whether it is TCP.
    static func boundAddresses(_ supernode: Supernode) -> [(address: STUNAddress, tcp: Bool)] {
        var bound: [(STUNAddress, Bool)] = []
        if let udp = supernode.checkpoint.boundAddress { bound.append((udp, false)) }
        if let tcp = supernode.checkpoint.boundTCPAddress { bound.append((tcp, true)) }
        if let udp = supernode.relay?.udpAddress { bound.append((udp, false)) }
        if let tcp = supernode.relay?.tcpAddress { bound.append((tcp, true)) }
        if let layout = supernode.stunLayout { bound += STUNSocketRole.allCases.compactMap { layout.address(of: $0) }.map { ($0, false) } }
        if let url = supernode.adminURL.flatMap(URL.init(string:)), let port = url.port {
            bound.append((SupernodeConfiguration.loopback.with(port: UInt16(port)), true))
        }
        return bound
    }

    /// Whether nothing holds `address` now: a plain UDP socket can bind it, or a TCP socket can
    /// (with SO_REUSEADDR, so that connections in TIME_WAIT do not count, but a listener does).
    static func isFree(_ address: STUNAddress, tcp: Bool) -> Bool {
        guard case .v4(let ip) = address.ip else { return false }
        let fd = socket(AF_INET, Int32(tcp ? SOCK_STREAM.rawValue : SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var one: Int32 = 1
        if tcp { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = address.port.bigEndian
        socketAddress.sin_addr.s_addr = ip.bigEndian
        return withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// A loopback port free for UDP and TCP a moment ago.
    static func freePort() throws -> UInt16 {
        for _ in 0..<100 {
            let port = try RawTCP.freePort()
            let address = SupernodeConfiguration.loopback.with(port: port)
            if isFree(address, tcp: false), isFree(SupernodeConfiguration.loopbackAlternate.with(port: port), tcp: false) { return port }
        }
        throw POSIXError(.EADDRINUSE)
    }

    @Test("three supernodes in one process, one line each: every service up on its own ports; a peer registers, signs up and shows in the management API; stop frees everything, twice is harmless",
          .timeLimit(.minutes(2)))
    func threeSupernodes() async throws {
        let sqlite = Self.temporaryDirectory(), data = Self.temporaryDirectory()
        defer {
            try? FileManager.default.removeItem(atPath: sqlite)
            try? FileManager.default.removeItem(atPath: data)
        }
        let a = try await Supernode.start(SupernodeConfiguration(index: .sqlite(directory: sqlite, hasher: .testing), admin: .init(token: Self.token)))
        let b = try await Supernode.start(SupernodeConfiguration(dataDirectory: data, index: .sqlite(directory: data, hasher: .testing), admin: .init()))
        let c = try await Supernode.start(SupernodeConfiguration())
        let supernodes = [a, b, c]

        for supernode in supernodes {
            #expect(supernode.checkpoint.boundTCPAddress?.port == supernode.address.port, "TCP takes the UDP port's number")
            #expect(supernode.relay?.udpAddress != nil && supernode.relay?.tcpAddress != nil)
            #expect(supernode.stunLayout?.supportsChangeRequest == true)
        }
        #expect(Set(supernodes.map { $0.address.publicKey.rawRepresentation }).count == 3)
        let udpPorts = supernodes.flatMap { s in Self.boundAddresses(s).filter { !$0.tcp && $0.address.isLoopback }.map(\.address) }
        #expect(Set(udpPorts).count == udpPorts.count, "no two sockets share an address: \(udpPorts)")
        #expect(a.indexLocation == sqlite + "/index.sqlite" && a.adminURL != nil)
        #expect(c.indexStore == nil && c.index == nil && c.admin == nil && c.adminURL == nil)

        // The data directory: the key it keeps, the admin token it created, the address and URL it wrote.
        let written = { (name: String) in try? String(contentsOfFile: data + "/" + name, encoding: .utf8) }
        #expect(written(SupernodeConfiguration.addressFileName) == b.address.description + "\n")
        #expect(written(SupernodeConfiguration.adminURLFileName) == b.adminURL.map { $0 + "\n" })
        let kept = try SupernodeKey.loadOrCreate(at: data + "/" + SupernodeConfiguration.keyFileName)
        #expect(kept.publicKey.rawRepresentation == b.address.publicKey.rawRepresentation)
        let bToken = try #require(try AdminToken.load(path: data + "/" + AdminToken.fileName))

        // A peer measures its NAT with a's STUN pair, registers with a, and signs up in a's INDEX.
        var options = PeerOptions()
        options.bindHost = "127.0.0.1"
        options.stunServer = a.stunLayout?.primary
        let peer = try await Peer.start(identity: PeerIdentity(), supernodes: [a.address], options: options)
        #expect(a.checkpoint.statistics().registered == 1)
        _ = try await peer.signup(username: "alice", password: "correct horse")
        let users = try await IndexAdminClient(url: try #require(a.adminURL), token: Self.token.value)
            .call(IndexAPIPage<IndexAPIUser>.self, "GET", ["v1", "users"])
        #expect(users.items.map(\.name) == ["alice"])
        #expect(a.index?.presence.isOnline(peer.id) == true)
        let none = try await IndexAdminClient(url: try #require(b.adminURL), token: bToken.value)
            .call(IndexAPIPage<IndexAPIUser>.self, "GET", ["v1", "users"])
        #expect(none.items.isEmpty, "b has an INDEX of its own")
        await peer.stop()

        let bound = supernodes.flatMap(Self.boundAddresses)
        for supernode in supernodes { await supernode.stop() }
        for supernode in supernodes { await supernode.stop() }
        for (address, tcp) in bound {
            #expect(Self.isFree(address, tcp: tcp), "\(tcp ? "tcp" : "udp") \(address) is still bound")
        }
    }

    @Test("a start whose CHECKPOINT address is taken by another supernode throws a SupernodeError naming CHECKPOINT and frees the RELAY it had started")
    func checkpointAddressTaken() async throws {
        let holder = try await Supernode.start(SupernodeConfiguration(tcp: .off, stun: nil, relay: nil))
        let sqlite = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: sqlite) }
        let relay = SupernodeConfiguration.Relay(udp: SupernodeConfiguration.loopback.with(port: try Self.freePort()),
                                                 tcp: SupernodeConfiguration.loopback.with(port: try Self.freePort()))
        let taken = try #require(holder.checkpoint.boundAddress)
        let error = await #expect(throws: SupernodeError.self) {
            try await Supernode.start(SupernodeConfiguration(listen: taken, relay: relay, index: .sqlite(directory: sqlite, hasher: .testing)))
        }
        #expect(error?.service == .checkpoint)
        #expect(error?.description == "CHECKPOINT could not bind udp \(taken): address in use; pick another --listen or stop the other process")
        #expect(Self.isFree(relay.udp, tcp: false) && Self.isFree(relay.tcp!, tcp: true))
        await holder.stop()
    }

    @Test("a start that fails at its last step (the management API's port is taken) stops every service it had started and writes no address",
          .timeLimit(.minutes(1)))
    func adminPortTaken() async throws {
        let holderIndex = Self.temporaryDirectory(), data = Self.temporaryDirectory()
        defer {
            try? FileManager.default.removeItem(atPath: holderIndex)
            try? FileManager.default.removeItem(atPath: data)
        }
        let holder = try await Supernode.start(SupernodeConfiguration(stun: nil, relay: nil, index: .sqlite(directory: holderIndex, hasher: .testing),
                                                                      admin: .init(token: Self.token)))
        let takenPort = try #require(holder.adminURL.flatMap(URL.init(string:))?.port)

        // Fixed ports throughout, so that the test can tell they are free again afterwards.
        let loopback = SupernodeConfiguration.loopback, alternate = SupernodeConfiguration.loopbackAlternate
        let (checkpointPort, relayUDP, relayTCP) = (try Self.freePort(), try Self.freePort(), try Self.freePort())
        let (stunPort, stunAlternatePort) = (try Self.freePort(), try Self.freePort())
        let stun = STUNPairConfiguration(layout: try STUNPairLayout(primary: loopback.with(port: stunPort),
                                                                    alternate: alternate.with(port: stunAlternatePort)), workers: 1)
        let configuration = SupernodeConfiguration(
            dataDirectory: data, listen: loopback.with(port: checkpointPort), stun: stun,
            relay: .init(udp: loopback.with(port: relayUDP), tcp: loopback.with(port: relayTCP)),
            index: .sqlite(directory: data, hasher: .testing), admin: .init(port: takenPort))
        let error = await #expect(throws: SupernodeError.self) { try await Supernode.start(configuration) }
        #expect(error?.service == .admin)
        #expect(error?.description.contains("address in use; pick another --admin-listen") == true, "\(String(describing: error))")

        let expectedFree: [(STUNAddress, Bool)] = [
            (loopback.with(port: checkpointPort), false), (loopback.with(port: checkpointPort), true),
            (loopback.with(port: relayUDP), false), (loopback.with(port: relayTCP), true),
        ] + [loopback, alternate].flatMap { ip in [stunPort, stunAlternatePort].map { (ip.with(port: $0), false) } }
        for (address, tcp) in expectedFree {
            #expect(Self.isFree(address, tcp: tcp), "\(tcp ? "tcp" : "udp") \(address) is still bound")
        }
        #expect(!FileManager.default.fileExists(atPath: data + "/" + SupernodeConfiguration.addressFileName))
        await holder.stop()
    }

    @Test("a store the caller opened serves the INDEX and is still open after stop")
    func callersStore() async throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteIndexStore(directory: directory, hasher: .testing)
        let supernode = try await Supernode.start(SupernodeConfiguration(stun: nil, relay: nil, index: .store(store)))
        #expect(supernode.indexLocation == store.path)
        let peer = try await Peer.start(identity: PeerIdentity(), supernodes: [supernode.address], options: IndexScene.options())
        _ = try await peer.signup(username: "bob", password: "correct horse")
        await peer.stop()
        await supernode.stop()
        #expect(try await store.user(named: "bob")?.name == "bob")
        await store.close()
    }

    @Test("configurations that cannot work are refused before anything is opened")
    func refusedConfigurations() async throws {
        let noIndex = await #expect(throws: SupernodeError.self) {
            try await Supernode.start(SupernodeConfiguration(admin: .init(token: Self.token)))
        }
        #expect(noIndex?.service == .admin)
        let sqlite = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: sqlite) }
        let noToken = await #expect(throws: SupernodeError.self) {
            try await Supernode.start(SupernodeConfiguration(index: .sqlite(directory: sqlite), admin: .init()))
        }
        #expect(noToken?.service == .admin)
        #expect(!FileManager.default.fileExists(atPath: sqlite), "the INDEX was not opened")
        let keepalive = await #expect(throws: SupernodeError.self) {
            try await Supernode.start(SupernodeConfiguration(keepaliveSeconds: 1))
        }
        #expect(keepalive?.service == .checkpoint)
    }
}
