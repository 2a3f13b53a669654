import ArgumentParser
import Peerway
import Logging
import NIOCore
import PeerwaySTUN
import PeerwaySupernode

/// Command-line options of the STUN pair, shared by `peerway stun` and `peerway supernode`.
struct STUNOptions: ParsableArguments {
    @Option(name: .customLong("listen"), help: "Primary STUN address A:p (IP:PORT).")
    var listen: String = "127.0.0.1:3478"

    @Option(name: .customLong("alternate"), help: ArgumentHelp(
        "Alternate address B:p2 for RFC 5780 (IP:PORT, another IP and port).",
        discussion: "Default: 127.0.0.2 and the next port on loopback; elsewhere another address of this host of the same family, if any; otherwise 'none'."))
    var alternate: String?

    @Option(name: .customLong("rate-limit"), help: "Requests per second answered per source IP (0: unlimited).")
    var rateLimit: Int = SourceRateLimiter.defaultRatePerSecond

    @Option(name: .customLong("rate-burst"), help: "Burst allowance per source IP.")
    var rateBurst: Int = SourceRateLimiter.defaultBurst

    @Option(name: .customLong("workers"), help: "Sockets per address, one per event loop (0: one per core).")
    var workers: Int = 0

    @Option(name: .customLong("software"), help: "SOFTWARE attribute to put in answers (default none: smaller answers).")
    var software: String?

    func configuration() throws -> STUNPairConfiguration {
        try STUNOptions.configuration(
            listen: listen, alternate: alternate, rateLimit: rateLimit, rateBurst: rateBurst, workers: workers,
            software: software, flag: "")
    }

    /// Builds the configuration from option values; `flag` prefixes option names in messages.
    static func configuration(
        listen: String, alternate: String?, rateLimit: Int, rateBurst: Int, workers: Int, software: String?, flag: String
    ) throws -> STUNPairConfiguration {
        guard let primary = STUNAddress(parsing: listen, defaultPort: STUN.defaultPort) else {
            throw ValidationError("--\(flag)listen \(listen): expected IP:PORT such as 127.0.0.1:3478 or [::1]:3478")
        }
        var alternateAddress: STUNAddress?
        switch alternate {
        case "none":
            alternateAddress = nil
        case let text?:
            guard let a = STUNAddress(parsing: text, defaultPort: primary.port &+ 1) else {
                throw ValidationError("--\(flag)alternate \(text): expected IP:PORT such as 127.0.0.2:3479, or 'none'")
            }
            alternateAddress = a
        case nil:
            alternateAddress = Self.defaultAlternate(for: primary)
        }
        do {
            let layout = try STUNPairLayout(primary: primary, alternate: alternateAddress)
            return STUNPairConfiguration(
                layout: layout, software: software, ratePerSecond: rateLimit, burst: rateBurst, workers: workers)
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// 127.0.0.2:p+1 for 127.0.0.1; another local address of the same family otherwise.
    static func defaultAlternate(for primary: STUNAddress) -> STUNAddress? {
        let nextPort: UInt16 = primary.port == 0 ? 0 : primary.port &+ 1
        if case .v4(let ip) = primary.ip, ip >> 24 == 127 {
            return STUNAddress(ip: .v4(ip == 0x7F00_0002 ? 0x7F00_0001 : 0x7F00_0002), port: nextPort)
        }
        if primary.isLoopback { return nil }  // ::1 has no second loopback address
        return LocalAddresses.firstRoutable(primary.family, excluding: primary.ip)?.with(port: nextPort)
    }
}

/// The STUN pair's options inside `peerway supernode`, prefixed `--stun-` (its `--listen` is CHECKPOINT's).
/// Optional, so that a value the command line does not give comes from `--config`'s file.
struct SupernodeSTUNOptions: ParsableArguments {
    @Option(name: .customLong("stun-listen"), help: "Primary STUN address A:p (IP:PORT; default 127.0.0.1:3478).")
    var listen: String?

    @Option(name: .customLong("stun-alternate"), help: ArgumentHelp(
        "Alternate STUN address B:p2 for RFC 5780 (IP:PORT), or 'none'.",
        discussion: "Default: 127.0.0.2 and the next port on loopback; elsewhere another address of this host of the same family, if any."))
    var alternate: String?

    @Option(name: .customLong("stun-rate-limit"), help: "STUN requests per second answered per source IP (0: unlimited; default \(SourceRateLimiter.defaultRatePerSecond)).")
    var rateLimit: Int?

    @Option(name: .customLong("stun-rate-burst"), help: "STUN burst allowance per source IP (default \(SourceRateLimiter.defaultBurst)).")
    var rateBurst: Int?

    @Option(name: .customLong("stun-workers"), help: "STUN sockets per address, one per event loop (0, the default: one per core).")
    var workers: Int?

    func configuration() throws -> STUNPairConfiguration {
        try STUNOptions.configuration(
            listen: listen ?? "127.0.0.1:3478", alternate: alternate, rateLimit: rateLimit ?? SourceRateLimiter.defaultRatePerSecond,
            rateBurst: rateBurst ?? SourceRateLimiter.defaultBurst, workers: workers ?? 0, software: nil, flag: "stun-")
    }
}
