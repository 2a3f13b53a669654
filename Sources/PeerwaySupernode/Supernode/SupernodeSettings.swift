import PeerwayCheckpoint
import PeerwayIndexAPI
import PeerwaySTUN

/// The settings of `peerway supernode`, as its flags and its configuration file (`--config FILE`)
/// give them: one optional field per flag, `nil` when not given. A file's settings are
/// `overridden(by:)` the flags' (a flag wins over the file's key); what neither gives takes the
/// command's default. `SupernodeConfiguration` is then built from the merged settings.
///
/// In the file (TOML, `parse(toml:source:)`), each key is the long flag's name without its dashes
/// and takes the flag's value: `listen = "0.0.0.0:7400"`, `keepalive = 25`, `no-relay = true`.
/// Every key is in `SupernodeSettings.keys`; `docs/supernode.example.toml` shows them all.
public struct SupernodeSettings: Equatable, Sendable {
    /// `listen`: CHECKPOINT's UDP address (IP:PORT).
    public var listen: String?
    /// `tcp-listen`: CHECKPOINT's TCP address (IP:PORT).
    public var tcpListen: String?
    /// `no-tcp`: CHECKPOINT over UDP only.
    public var noTCP: Bool?
    /// `advertise`: the host peers dial.
    public var advertise: String?
    /// `keepalive`: the keepalive interval offered to peers, in seconds.
    public var keepalive: Int?
    /// `stun-listen`: the STUN pair's primary address (IP:PORT).
    public var stunListen: String?
    /// `stun-alternate`: the STUN pair's alternate address (IP:PORT), or `none`.
    public var stunAlternate: String?
    /// `stun-rate-limit`: STUN requests per second answered per source IP (0: unlimited).
    public var stunRateLimit: Int?
    /// `stun-rate-burst`: STUN burst allowance per source IP.
    public var stunRateBurst: Int?
    /// `stun-workers`: STUN sockets per address (0: one per core).
    public var stunWorkers: Int?
    /// `no-stun`: no STUN pair.
    public var noSTUN: Bool?
    /// `relay-listen`: the RELAY's UDP address (IP:PORT).
    public var relayListen: String?
    /// `relay-tcp-listen`: the RELAY's TCP address (IP:PORT).
    public var relayTCPListen: String?
    /// `no-relay`: no RELAY.
    public var noRelay: Bool?
    /// `data-dir`: the supernode's state directory.
    public var dataDirectory: String?
    /// `index`: the INDEX's storage (`postgres://...` or `sqlite:DIR`).
    public var index: String?
    /// `admin-listen`: the management API's address (HOST:PORT).
    public var adminListen: String?
    /// `admin-token`: the management API's token.
    public var adminToken: String?
    /// `no-admin`: no management API.
    public var noAdmin: Bool?
    /// `metrics-without-token`: serve `GET /metrics` without the admin token.
    public var metricsWithoutToken: Bool?
    /// `no-index`: no INDEX (and no management API).
    public var noIndex: Bool?
    /// `cluster`: the PostgreSQL of a network of supernodes (`postgres://...`).
    public var cluster: String?
    /// `cluster-listen`: where the other supernodes reach this one (IP:PORT).
    public var clusterListen: String?
    /// `verbose`: debug logging.
    public var verbose: Bool?

    /// Settings with nothing given.
    public init() {}

    /// These settings with every field `other` gives replaced by its value (flags over a file).
    public func overridden(by other: SupernodeSettings) -> SupernodeSettings {
        var result = self
        for key in Self.keys {
            switch key.field {
            case .string(let path): if let value = other[keyPath: path] { result[keyPath: path] = value }
            case .integer(let path, _): if let value = other[keyPath: path] { result[keyPath: path] = value }
            case .boolean(let path): if let value = other[keyPath: path] { result[keyPath: path] = value }
            }
        }
        return result
    }

    // MARK: Keys

    /// One key of the file: its name (the flag's) and the field it sets.
    public struct Key: Sendable {
        /// The key, as in the file (the long flag without `--`).
        public let name: String
        let field: Field
        /// The TOML type the key takes, in words ("a string").
        let type: String
        /// The form a value must have, in words, and its check (nil: anything non-empty).
        let form: String
        let check: (@Sendable (String) -> Bool)?
    }

    enum Field: @unchecked Sendable {
        case string(WritableKeyPath<SupernodeSettings, String?>)
        case integer(WritableKeyPath<SupernodeSettings, Int?>, ClosedRange<Int>)
        case boolean(WritableKeyPath<SupernodeSettings, Bool?>)
    }

    /// Every key the file may hold, in the order of `peerway supernode --help`.
    public static let keys: [Key] = [
        string("listen", \.listen, address),
        string("tcp-listen", \.tcpListen, address),
        boolean("no-tcp", \.noTCP),
        string("advertise", \.advertise, ("a host name or IP", nil)),
        integer("keepalive", \.keepalive, Int(ControlLimits.keepaliveSecondsRange.lowerBound)...Int(ControlLimits.keepaliveSecondsRange.upperBound)),
        string("stun-listen", \.stunListen, address),
        string("stun-alternate", \.stunAlternate, ("IP:PORT or \"none\"", { $0 == "none" || STUNAddress(parsing: $0, defaultPort: 0) != nil })),
        integer("stun-rate-limit", \.stunRateLimit, 0...maximumCount),
        integer("stun-rate-burst", \.stunRateBurst, 0...maximumCount),
        integer("stun-workers", \.stunWorkers, 0...maximumWorkers),
        boolean("no-stun", \.noSTUN),
        string("relay-listen", \.relayListen, address),
        string("relay-tcp-listen", \.relayTCPListen, address),
        boolean("no-relay", \.noRelay),
        string("data-dir", \.dataDirectory, ("a directory", nil)),
        string("index", \.index, ("postgres://user:pass@host:port/db or sqlite:DIR", { isPostgres($0) || ($0.hasPrefix("sqlite:") && $0.count > "sqlite:".count) })),
        string("admin-listen", \.adminListen, ("HOST:PORT, e.g. 127.0.0.1:7480", { IndexAdminConfiguration.parseListen($0) != nil })),
        string("admin-token", \.adminToken, ("\(IndexAPILimits.minimumTokenBytes)-\(IndexAPILimits.maximumTokenBytes) bytes of printable text without spaces", { (try? AdminToken($0)) != nil })),
        boolean("no-admin", \.noAdmin),
        boolean("metrics-without-token", \.metricsWithoutToken),
        boolean("no-index", \.noIndex),
        string("cluster", \.cluster, ("postgres://user:pass@host:port/db", isPostgres)),
        string("cluster-listen", \.clusterListen, address),
        boolean("verbose", \.verbose),
    ]

    /// The key of this name.
    public static func key(named name: String) -> Key? { keys.first { $0.name == name } }

    /// Largest rate, burst or count a file may give (the flags' `Int`s take no more in practice).
    public static let maximumCount = 1_000_000_000
    /// Most STUN workers per address a file may ask for.
    public static let maximumWorkers = 1_024

    private static let address: (String, (@Sendable (String) -> Bool)?) = ("IP:PORT, e.g. 0.0.0.0:7400 or [::]:7400", { STUNAddress(parsing: $0) != nil })

    private static func isPostgres(_ text: String) -> Bool { text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") }

    private static func string(_ name: String, _ path: WritableKeyPath<SupernodeSettings, String?>,
                               _ rule: (String, (@Sendable (String) -> Bool)?)) -> Key {
        Key(name: name, field: .string(path), type: "a string", form: rule.0, check: rule.1)
    }

    private static func integer(_ name: String, _ path: WritableKeyPath<SupernodeSettings, Int?>, _ range: ClosedRange<Int>) -> Key {
        Key(name: name, field: .integer(path, range), type: "an integer", form: "an integer within \(range.lowerBound)-\(range.upperBound)", check: nil)
    }

    private static func boolean(_ name: String, _ path: WritableKeyPath<SupernodeSettings, Bool?>) -> Key {
        Key(name: name, field: .boolean(path), type: "a boolean", form: "true or false", check: nil)
    }
}
