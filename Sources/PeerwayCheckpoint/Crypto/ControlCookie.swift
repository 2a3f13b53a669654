import Crypto
import Foundation
import PeerwaySTUN

/// Stateless return-reachability cookies for new sources (the checkpoint's first answer).
///
/// `cookie = HMAC-SHA256(secret_period, ip ‖ port ‖ e_c)[0..<16]`. The secret changes every
/// `ControlLimits.cookieSecretPeriodSeconds`; cookies of the current and previous period verify.
/// A hello carrying a valid cookie proves its sender received the checkpoint's packet at that
/// address, so the checkpoint creates state (and spends a key exchange) only for sources that
/// can hear it, and never amplifies towards a spoofed address.
public struct ControlCookieJar: Sendable {
    private var current: [UInt8]
    private var previous: [UInt8]
    private var period: UInt64

    /// `secretSource` makes 32-byte secrets (random in production, fixed in tests).
    public init(nowMillis: UInt64, secretSource: @escaping @Sendable () -> [UInt8] = ControlCookieJar.randomSecret) {
        self.secretSource = secretSource
        current = secretSource()
        previous = secretSource()
        period = nowMillis / (UInt64(ControlLimits.cookieSecretPeriodSeconds) * 1000)
    }

    private let secretSource: @Sendable () -> [UInt8]

    public static let randomSecret: @Sendable () -> [UInt8] = {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    private mutating func rotate(nowMillis: UInt64) {
        let p = nowMillis / (UInt64(ControlLimits.cookieSecretPeriodSeconds) * 1000)
        guard p != period else { return }
        previous = p == period + 1 ? current : secretSource()
        current = secretSource()
        period = p
    }

    private static func mac(secret: [UInt8], source: PeerEndpoint, ephemeral: [UInt8]) -> [UInt8] {
        var h = HMAC<SHA256>(key: SymmetricKey(data: secret))
        var bytes = [UInt8]()
        switch source.ip {
        case .v4(let a): withUnsafeBytes(of: a.bigEndian) { bytes.append(contentsOf: $0) }
        case .v6(let hi, let lo):
            withUnsafeBytes(of: hi.bigEndian) { bytes.append(contentsOf: $0) }
            withUnsafeBytes(of: lo.bigEndian) { bytes.append(contentsOf: $0) }
        }
        withUnsafeBytes(of: source.port.bigEndian) { bytes.append(contentsOf: $0) }
        h.update(data: bytes)
        h.update(data: ephemeral)
        return Array(Array(h.finalize()).prefix(ControlLimits.cookieBytes))
    }

    /// The cookie for a hello from `source` with ephemeral key `ephemeral`.
    public mutating func cookie(for source: PeerEndpoint, ephemeral: [UInt8], nowMillis: UInt64) -> [UInt8] {
        rotate(nowMillis: nowMillis)
        return Self.mac(secret: current, source: source, ephemeral: ephemeral)
    }

    /// True when `cookie` was made for this source and key in this or the previous period.
    public mutating func verify(_ cookie: [UInt8], source: PeerEndpoint, ephemeral: [UInt8], nowMillis: UInt64) -> Bool {
        rotate(nowMillis: nowMillis)
        guard cookie.count == ControlLimits.cookieBytes else { return false }
        return constantTimeEqual(cookie, Self.mac(secret: current, source: source, ephemeral: ephemeral))
            || constantTimeEqual(cookie, Self.mac(secret: previous, source: source, ephemeral: ephemeral))
    }
}

/// Compares without an early exit, so timing does not reveal how many bytes matched.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in a.indices { diff |= a[i] ^ b[i] }
    return diff == 0
}
