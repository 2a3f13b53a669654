import Crypto
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

@Suite("SupernodeAddress")
struct SupernodeAddressTests {
    static let key = Curve25519.KeyAgreement.PrivateKey().publicKey
    static var keyText: String { Base32.encode(Array(key.rawRepresentation)) }

    @Test("good forms: IPv4, [IPv6], DNS name, default port, trailing slash, upper-case key")
    func goodForms() throws {
        let k = Self.keyText
        #expect(k.count == 52)
        let v4 = try SupernodeAddress(parsing: "peerway://\(k)@192.0.2.1:7401")
        #expect(v4.host == "192.0.2.1" && v4.port == 7401 && v4.publicKeyBytes == Array(Self.key.rawRepresentation))
        #expect(v4.endpoint == STUNAddress(ip: .v4(0xC000_0201), port: 7401))
        let v6 = try SupernodeAddress(parsing: "peerway://\(k)@[::1]:7400")
        #expect(v6.host == "::1" && v6.port == 7400)
        #expect(v6.endpoint == STUNAddress(ip: .v6(high: 0, low: 1), port: 7400))
        #expect(v6.description == "peerway://\(k)@[::1]:7400")
        let v6Default = try SupernodeAddress(parsing: "peerway://\(k)@[2001:db8::7]")
        #expect(v6Default.host == "2001:db8::7" && v6Default.port == SupernodeAddress.defaultPort)
        let name = try SupernodeAddress(parsing: "peerway://\(k)@checkpoint.example.org")
        #expect(name.host == "checkpoint.example.org" && name.port == 7400 && name.endpoint == nil)
        let slash = try SupernodeAddress(parsing: "peerway://\(k)@checkpoint.example.org:9000/")
        #expect(slash.port == 9000)
        let upper = try SupernodeAddress(parsing: "peerway://\(k.uppercased())@10.0.0.1:1")
        #expect(upper.publicKeyBytes == v4.publicKeyBytes && upper.port == 1 && upper.keyText == k)
        for address in [v4, v6, v6Default, name, slash] {
            #expect(try SupernodeAddress(parsing: address.description) == address)
        }
        #expect(SupernodeAddress(publicKey: Self.key, host: "::1", port: 7400) == v6)
        #expect(v6.publicKey.rawRepresentation == Self.key.rawRepresentation)
    }

    @Test("each bad form gives its own error")
    func badForms() {
        let k = Self.keyText
        let cases: [(String, (String) -> SupernodeAddressError)] = [
            ("http://\(k)@host:7400", SupernodeAddressError.missingScheme),
            ("\(k)@host:7400", SupernodeAddressError.missingScheme),
            ("PEERWAY://\(k)@host", SupernodeAddressError.missingScheme),
            ("peerway://\(k)", SupernodeAddressError.missingKey),
            ("peerway://host:7400", SupernodeAddressError.missingKey),
            ("peerway://@host", SupernodeAddressError.badKey),
            ("peerway://\(k.dropLast())@host", SupernodeAddressError.badKey),
            ("peerway://\(k)a@host", SupernodeAddressError.badKey),
            ("peerway://\(k.dropLast())1@host", SupernodeAddressError.badKey),
            ("peerway://\(Base32.encode(Array(repeating: 7, count: 16)))@host", SupernodeAddressError.badKey),
            ("peerway://\(k)@", SupernodeAddressError.badHost),
            ("peerway://\(k)@:7400", SupernodeAddressError.badHost),
            ("peerway://\(k)@[::1", SupernodeAddressError.badHost),
            ("peerway://\(k)@[::1]7400", SupernodeAddressError.badHost),
            ("peerway://\(k)@[]:7400", SupernodeAddressError.badHost),
            ("peerway://\(k)@a b", SupernodeAddressError.badHost),
            ("peerway://\(k)@host/path", SupernodeAddressError.badHost),
            ("peerway://\(k)@host:0", SupernodeAddressError.badPort),
            ("peerway://\(k)@host:65536", SupernodeAddressError.badPort),
            ("peerway://\(k)@host:", SupernodeAddressError.badPort),
            ("peerway://\(k)@host:http", SupernodeAddressError.badPort),
            ("peerway://\(k)@[::1]:0", SupernodeAddressError.badPort),
            ("peerway://\(k)@[::1]:-1", SupernodeAddressError.badPort),
        ]
        for (text, error) in cases {
            #expect(throws: error(text), "\(text)") { try SupernodeAddress(parsing: text) }
        }
        #expect(SupernodeAddressError.badPort("x").description.contains("1-65535"))
    }

    @Test("an IPv6 host without brackets is the whole host, with the default port")
    func unbracketedIPv6() throws {
        let a = try SupernodeAddress(parsing: "peerway://\(Self.keyText)@::1")
        #expect(a.host == "::1")
        #expect(a.port == SupernodeAddress.defaultPort)
        #expect(a.description == "peerway://\(Self.keyText)@[::1]:\(SupernodeAddress.defaultPort)")
        #expect(throws: SupernodeAddressError.badHost("peerway://\(Self.keyText)@fe80::zz")) {
            try SupernodeAddress(parsing: "peerway://\(Self.keyText)@fe80::zz")
        }
    }

    @Test("?tcp=PORT: the TCP port when it differs; otherwise the UDP port; description round-trips")
    func tcpPort() throws {
        let k = Self.keyText
        let plain = try SupernodeAddress(parsing: "peerway://\(k)@192.0.2.1:7400")
        #expect(plain.tcpPort == 7400 && plain.tcpEndpoint == STUNAddress(ip: .v4(0xC000_0201), port: 7400))
        #expect(!plain.description.contains("?"))
        let other = try SupernodeAddress(parsing: "peerway://\(k)@192.0.2.1:7400?tcp=443")
        #expect(other.port == 7400 && other.tcpPort == 443)
        #expect(other.endpoint?.port == 7400 && other.tcpEndpoint == STUNAddress(ip: .v4(0xC000_0201), port: 443))
        #expect(other.description == "peerway://\(k)@192.0.2.1:7400?tcp=443")
        #expect(other != plain)
        let same = try SupernodeAddress(parsing: "peerway://\(k)@192.0.2.1:7400?tcp=7400")
        #expect(same == plain && same.description == plain.description)
        let v6 = try SupernodeAddress(parsing: "peerway://\(k)@[2001:db8::1]:7400?tcp=80")
        #expect(v6.host == "2001:db8::1" && v6.tcpPort == 80 && v6.description == "peerway://\(k)@[2001:db8::1]:7400?tcp=80")
        let defaultPort = try SupernodeAddress(parsing: "peerway://\(k)@checkpoint.example.org?tcp=443")
        #expect(defaultPort.port == SupernodeAddress.defaultPort && defaultPort.tcpPort == 443 && defaultPort.tcpEndpoint == nil)
        let slash = try SupernodeAddress(parsing: "peerway://\(k)@checkpoint.example.org:9000/?tcp=9001")
        #expect(slash.port == 9000 && slash.tcpPort == 9001)
        let bare6 = try SupernodeAddress(parsing: "peerway://\(k)@::1?tcp=9")
        #expect(bare6.host == "::1" && bare6.port == SupernodeAddress.defaultPort && bare6.tcpPort == 9)
        for address in [other, v6, defaultPort, slash, bare6] {
            #expect(try SupernodeAddress(parsing: address.description) == address, "\(address)")
        }
        let made = SupernodeAddress(publicKey: Self.key, host: "192.0.2.1", port: 7400, tcpPort: 443)
        #expect(made == other)
        #expect(SupernodeAddress(publicKey: Self.key, host: "192.0.2.1", port: 7400) == plain)
    }

    @Test("a bad ?tcp= part gives its own error, and the other parts keep theirs")
    func badTCPForms() {
        let k = Self.keyText
        let cases: [(String, (String) -> SupernodeAddressError)] = [
            ("peerway://\(k)@host:7400?tcp=0", SupernodeAddressError.badTCPPort),
            ("peerway://\(k)@host:7400?tcp=65536", SupernodeAddressError.badTCPPort),
            ("peerway://\(k)@host:7400?tcp=", SupernodeAddressError.badTCPPort),
            ("peerway://\(k)@host:7400?tcp=https", SupernodeAddressError.badTCPPort),
            ("peerway://\(k)@host:7400?tcp=-1", SupernodeAddressError.badTCPPort),
            ("peerway://\(k)@host:7400?tcp=443&tcp=80", SupernodeAddressError.badTCPPort),
            ("peerway://\(k)@host:7400?udp=443", SupernodeAddressError.badParameter),
            ("peerway://\(k)@host:7400?tcp", SupernodeAddressError.badParameter),
            ("peerway://\(k)@host:7400?", SupernodeAddressError.badParameter),
            ("peerway://\(k)@host:7400?TCP=443", SupernodeAddressError.badParameter),
            ("peerway://\(k)@host:7400??tcp=443", SupernodeAddressError.badParameter),
            ("peerway://\(k)@host:0?tcp=443", SupernodeAddressError.badPort),
            ("peerway://\(k)@host:?tcp=443", SupernodeAddressError.badPort),
            ("peerway://\(k)@?tcp=443", SupernodeAddressError.badHost),
            ("peerway://\(k)@[::1?tcp=443", SupernodeAddressError.badHost),
            ("peerway://\(k.dropLast())@host?tcp=443", SupernodeAddressError.badKey),
            ("peerway://host:7400?tcp=443", SupernodeAddressError.missingKey),
            ("peerway://\(k)?tcp=443@host", SupernodeAddressError.badKey),
        ]
        for (text, error) in cases {
            #expect(throws: error(text), "\(text)") { try SupernodeAddress(parsing: text) }
        }
        #expect(SupernodeAddressError.badTCPPort("x").description.contains("?tcp=PORT"))
        #expect(SupernodeAddressError.badParameter("x").description.contains("tcp=PORT"))
    }
}
