import NIOCore
import PeerwaySTUN
import Testing

@Suite("STUNAddress")
struct STUNAddressTests {
    @Test("IPv4 text: parse and format")
    func ipv4() throws {
        let a = try #require(STUNAddress(parsing: "192.0.2.1:32853"))
        #expect(a.ip == .v4(0xC000_0201))
        #expect(a.port == 32853)
        #expect(a.family == .ipv4)
        #expect(a.description == "192.0.2.1:32853")
        #expect(a.ipString == "192.0.2.1")
        #expect(STUNAddress(parsing: "0.0.0.0:0")?.ip == .v4(0))
        #expect(STUNAddress(parsing: "255.255.255.255:65535") == STUNAddress(ip: .v4(.max), port: 65535))
        #expect(STUNAddress(parsing: "10.1.2.3", defaultPort: 3478) == STUNAddress(ip: .v4(0x0A01_0203), port: 3478))
    }

    @Test("malformed text is rejected", arguments: [
        "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:-1", "1..2.3",
        "a.b.c.d:1", "1.2.3.4", "::1", "[::1]", "[::1]:", "[::1]x", "[::1:80", "1:2:3:4:5:6:7:8:9",
        "1::2::3", "12345::1", "fe80::1%eth0", "[fe80::1%eth0]:1", "g::1", ":::1", "1.2.3.4:80:90",
        "[1.2.3.4]:80x", "1,2,3,4",
    ])
    func rejects(text: String) {
        #expect(STUNAddress(parsing: text) == nil, "\(text) should not parse without a default port")
    }

    @Test("IPv6 text: parse bracketed with port, and bare with a default port")
    func ipv6Parse() throws {
        let a = try #require(STUNAddress(parsing: "[2001:db8:1234:5678:11:2233:4455:6677]:32853"))
        #expect(a.ip == .v6(high: 0x2001_0DB8_1234_5678, low: 0x0011_2233_4455_6677))
        #expect(a.port == 32853)
        #expect(a.family == .ipv6)
        #expect(STUNAddress(parsing: "::1", defaultPort: 3478) == STUNAddress(ip: .v6(high: 0, low: 1), port: 3478))
        #expect(STUNAddress(parsing: "[::1]", defaultPort: 7) == STUNAddress(ip: .v6(high: 0, low: 1), port: 7))
        #expect(STUNAddress(parsing: "[::]:0") == STUNAddress(ip: .v6(high: 0, low: 0), port: 0))
        #expect(STUNAddress(parsing: "[FE80::ABCD]:1")?.ip == .v6(high: 0xFE80_0000_0000_0000, low: 0xABCD))
        #expect(STUNAddress(parsing: "[1::]:1")?.ip == .v6(high: 0x0001_0000_0000_0000, low: 0))
        #expect(STUNAddress(parsing: "[::ffff:192.0.2.1]:1")?.ip == .v6(high: 0, low: 0x0000_FFFF_C000_0201))
        #expect(STUNAddress(parsing: "[1:2:3:4:5:6:7:8]:1")?.ip == .v6(high: 0x0001_0002_0003_0004, low: 0x0005_0006_0007_0008))
        #expect(STUNAddress.parseIP("1:2:3:4:5:6:7::") == .v6(high: 0x0001_0002_0003_0004, low: 0x0005_0006_0007_0000))
    }

    @Test("IPv6 formatting follows RFC 5952", arguments: [
        ("2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001"),
        ("::1", "0:0:0:0:0:0:0:1"),
        ("::", "0:0:0:0:0:0:0:0"),
        ("1::", "1:0:0:0:0:0:0:0"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  // a single zero group is not compressed
        ("2001:0:0:1::1", "2001:0:0:1:0:0:0:1"),  // the longest run is compressed
        ("2001:db8::1:0:0:1", "2001:db8:0:0:1:0:0:1"),  // of equal runs, the first
        ("2001:db8:1234:5678:11:2233:4455:6677", "2001:0DB8:1234:5678:0011:2233:4455:6677"),  // lower case, no leading zeros
        ("fe80::1:2", "FE80:0:0:0:0:0:1:2"),
    ])
    func ipv6Format(expected: String, input: String) throws {
        let ip = try #require(STUNAddress.parseIP(Substring(input)))
        let address = STUNAddress(ip: ip, port: 3478)
        #expect(address.ipString == expected)
        #expect(address.description == "[\(expected)]:3478")
        // The canonical form parses back to the same address.
        #expect(STUNAddress(parsing: address.description) == address)
    }

    @Test("loopback and with(port:)")
    func helpers() {
        #expect(STUNAddress("127.0.0.1:1").isLoopback)
        #expect(STUNAddress("127.255.0.9:1").isLoopback)
        #expect(!STUNAddress("128.0.0.1:1").isLoopback)
        #expect(STUNAddress("[::1]:1").isLoopback)
        #expect(!STUNAddress("[::2]:1").isLoopback)
        #expect(STUNAddress("192.0.2.1:1").with(port: 9) == STUNAddress("192.0.2.1:9"))
    }

    @Test("to and from NIO SocketAddress, IPv4")
    func socketAddressV4() throws {
        let socket = try SocketAddress(ipAddress: "192.0.2.1", port: 32853)
        let address = try #require(STUNAddress(socket))
        #expect(address == STUNAddress(ip: .v4(0xC000_0201), port: 32853))
        let back = try address.socketAddress()
        #expect(back.ipAddress == "192.0.2.1")
        #expect(back.port == 32853)
        #expect(back == socket)
    }

    @Test("to and from NIO SocketAddress, IPv6")
    func socketAddressV6() throws {
        let socket = try SocketAddress(ipAddress: "2001:db8:1234:5678:11:2233:4455:6677", port: 3478)
        let address = try #require(STUNAddress(socket))
        #expect(address.ip == .v6(high: 0x2001_0DB8_1234_5678, low: 0x0011_2233_4455_6677))
        #expect(address.port == 3478)
        let back = try address.socketAddress()
        #expect(back.port == 3478)
        #expect(back.protocol == .inet6)
        #expect(try STUNAddress(#require(STUNAddress(back)).socketAddress()) == address)
        #expect(STUNAddress(try SocketAddress(ipAddress: "::1", port: 1)) == STUNAddress("[::1]:1"))
    }

    @Test("every address round-trips through SocketAddress (seeded)")
    func socketAddressRandom() throws {
        var g = STUNSeededRandom(seed: 3)
        for _ in 0..<200 {
            let address = RandomMessages.address(&g)
            let socket = try address.socketAddress()
            #expect(STUNAddress(socket) == address)
            #expect(STUNAddress(parsing: address.description) == address)
            if case .v4 = address.ip { #expect(socket.ipAddress == address.ipString) }
        }
    }

    @Test("a Unix domain socket has no STUN address")
    func unixSocket() throws {
        #expect(STUNAddress(try SocketAddress(unixDomainSocketPath: "/tmp/peerway-test.sock")) == nil)
    }

    @Test("host:port text: names and IPv4 as they are, IPv6 literals in brackets")
    func hostPort() {
        #expect(STUNAddress.hostPort("example.org", 7400) == "example.org:7400")
        #expect(STUNAddress.hostPort("192.0.2.1", UInt16(7401)) == "192.0.2.1:7401")
        #expect(STUNAddress.hostPort("2001:db8::1", 7402) == "[2001:db8::1]:7402")
    }
}
