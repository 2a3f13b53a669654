import Foundation
import PeerwayCheckpoint
import PeerwayIndexAPI
import PeerwaySTUN
import Testing
@testable import PeerwaySupernode

/// `peerway supernode --config FILE`: the TOML file's keys are the command's long flags; unknown
/// keys, wrong types and values the flag would refuse are errors naming the key; flags override it.
@Suite("Supernode configuration file")
struct SupernodeSettingsTests {
    /// A file that sets every key.
    static let everyKey = """
        # every key of peerway supernode
        listen = "0.0.0.0:7400"
        tcp-listen = "0.0.0.0:443"
        no-tcp = true
        advertise = "203.0.113.7"
        keepalive = 20
        stun-listen = "0.0.0.0:3478"
        stun-alternate = "none"
        stun-rate-limit = 10
        stun-rate-burst = 20
        stun-workers = 2
        no-stun = true
        relay-listen = "0.0.0.0:7401"
        relay-tcp-listen = "[::]:7401"
        no-relay = true
        data-dir = "/var/lib/peerway"
        index = "postgres://peerway:secret@db:5432/peerway"
        admin-listen = "[::1]:7480"
        admin-token = "0123456789abcdef-token"
        no-admin = true
        metrics-without-token = true
        no-index = true
        cluster = "postgresql://peerway@db/peerway"
        cluster-listen = "10.0.0.1:7402"
        verbose = true
        """

    @Test("a file with every key sets every field")
    func everyKeyParses() throws {
        let s = try SupernodeSettings.parse(toml: Self.everyKey, source: "every.toml")
        var expected = SupernodeSettings()
        expected.listen = "0.0.0.0:7400"
        expected.tcpListen = "0.0.0.0:443"
        expected.noTCP = true
        expected.advertise = "203.0.113.7"
        expected.keepalive = 20
        expected.stunListen = "0.0.0.0:3478"
        expected.stunAlternate = "none"
        expected.stunRateLimit = 10
        expected.stunRateBurst = 20
        expected.stunWorkers = 2
        expected.noSTUN = true
        expected.relayListen = "0.0.0.0:7401"
        expected.relayTCPListen = "[::]:7401"
        expected.noRelay = true
        expected.dataDirectory = "/var/lib/peerway"
        expected.index = "postgres://peerway:secret@db:5432/peerway"
        expected.adminListen = "[::1]:7480"
        expected.adminToken = "0123456789abcdef-token"
        expected.noAdmin = true
        expected.metricsWithoutToken = true
        expected.noIndex = true
        expected.cluster = "postgresql://peerway@db/peerway"
        expected.clusterListen = "10.0.0.1:7402"
        expected.verbose = true
        #expect(s == expected)
        // The test file names every key there is.
        for key in SupernodeSettings.keys {
            #expect(Self.everyKey.contains("\n\(key.name) = "), "the test misses key \(key.name)")
        }
        #expect(SupernodeSettings.keys.count == Set(SupernodeSettings.keys.map(\.name)).count)
        // An empty file sets nothing.
        #expect(try SupernodeSettings.parse(toml: "# nothing\n") == SupernodeSettings())
    }

    @Test("docs/supernode.example.toml parses, names every key, and its values are the defaults")
    func exampleFile() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/supernode.example.toml").path
        let s = try SupernodeSettings.load(path: path)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for key in SupernodeSettings.keys {
            #expect(text.contains("\n\(key.name) = ") || text.contains("\n# \(key.name) = "), "the example misses key \(key.name)")
        }
        #expect(s.keepalive == Int(ControlLimits.defaultKeepaliveSeconds))
        #expect(s.stunRateLimit == SourceRateLimiter.defaultRatePerSecond)
        #expect(s.stunRateBurst == SourceRateLimiter.defaultBurst)
        #expect(s.adminListen == IndexAPILimits.defaultListen)
        #expect(s.noTCP == false && s.noRelay == false && s.noIndex == false && s.verbose == false)
    }

    @Test("an unknown key is an error naming it (and the nearest key)")
    func unknownKey() {
        #expect(throws: SupernodeSettingsError.unknownKey(source: "f.toml", key: "lisen", suggestion: "listen")) {
            try SupernodeSettings.parse(toml: "lisen = \"0.0.0.0:7400\"\n", source: "f.toml")
        }
        #expect(throws: SupernodeSettingsError.unknownKey(source: "f.toml", key: "checkpoint", suggestion: nil)) {
            try SupernodeSettings.parse(toml: "[checkpoint]\nlisten = \"0.0.0.0:7400\"\n", source: "f.toml")
        }
        let message = SupernodeSettingsError.unknownKey(source: "f.toml", key: "lisen", suggestion: "listen").description
        #expect(message.contains("'lisen'") && message.contains("did you mean 'listen'") && message.contains("keepalive"))
    }

    @Test("a value of the wrong type is an error naming the key and the type expected")
    func wrongType() throws {
        let cases: [(String, String, String)] = [
            ("keepalive = \"25\"", "keepalive", "a string"),
            ("listen = 7400", "listen", "an integer"),
            ("no-relay = \"yes\"", "no-relay", "a string"),
            ("stun-workers = 1.5", "stun-workers", "a floating-point number"),
            ("verbose = 1", "verbose", "an integer"),
            ("index = [\"sqlite:/x\"]", "index", "an array"),
        ]
        for (line, key, found) in cases {
            do {
                _ = try SupernodeSettings.parse(toml: line + "\n", source: "f.toml")
                Issue.record("\(line) was taken")
            } catch {
                guard case .wrongType(let source, let named, let expected, let actual) = error else {
                    Issue.record("\(line): \(error)")
                    continue
                }
                #expect(source == "f.toml" && named == key && actual == found, "\(error)")
                #expect(error.description.contains("'\(key)' must be \(expected)"), "\(error)")
            }
        }
        #expect(throws: SupernodeSettingsError.self) { try SupernodeSettings.parse(toml: "keepalive = true\n") }
    }

    @Test("a value its flag would refuse is an error naming the key")
    func invalidValues() {
        for line in ["listen = \"localhost\"", "keepalive = 0", "keepalive = 100000", "stun-workers = -1", "index = \"mysql://x\"",
                     "admin-listen = \"7480\"", "admin-token = \"short\"", "cluster = \"sqlite:/x\"", "stun-alternate = \"somewhere\"",
                     "advertise = \"\"", "relay-listen = \"0.0.0.0\""] {
            do {
                _ = try SupernodeSettings.parse(toml: line + "\n", source: "f.toml")
                Issue.record("\(line) was taken")
            } catch {
                let key = String(line.prefix { $0 != " " })
                guard case .invalidValue(_, let named, _, _) = error else {
                    Issue.record("\(line): \(error)")
                    continue
                }
                #expect(named == key, "\(error)")
                #expect(error.description.contains("f.toml: key '\(key)'"), "\(error)")
            }
        }
    }

    @Test("syntax errors name the line; unreadable files the path")
    func syntaxAndFiles() {
        do {
            _ = try SupernodeSettings.parse(toml: "listen = \"0.0.0.0:7400\"\nkeepalive = \n", source: "f.toml")
            Issue.record("taken")
        } catch {
            guard case .syntax(let source, let line, _, _) = error else { Issue.record("\(error)"); return }
            #expect(source == "f.toml" && line == 2, "\(error)")
        }
        #expect(throws: SupernodeSettingsError.self) { try SupernodeSettings.load(path: "/nonexistent/peerway.toml") }
        do {
            _ = try SupernodeSettings.load(path: "/nonexistent/peerway.toml")
        } catch {
            #expect(error.description.contains("/nonexistent/peerway.toml"))
        }
    }

    @Test("flags override the file, key by key")
    func flagsOverride() throws {
        let file = try SupernodeSettings.parse(toml: """
            listen = "0.0.0.0:7400"
            keepalive = 20
            no-relay = true
            data-dir = "/var/lib/peerway"
            """)
        var flags = SupernodeSettings()
        flags.keepalive = 30
        flags.listen = "127.0.0.1:0"
        flags.verbose = true
        let merged = file.overridden(by: flags)
        #expect(merged.listen == "127.0.0.1:0")
        #expect(merged.keepalive == 30)
        #expect(merged.noRelay == true)
        #expect(merged.dataDirectory == "/var/lib/peerway")
        #expect(merged.verbose == true)
        #expect(merged.index == nil)
        #expect(SupernodeSettings().overridden(by: file) == file)
        #expect(file.overridden(by: SupernodeSettings()) == file)
    }
}
