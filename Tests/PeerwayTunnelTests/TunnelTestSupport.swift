import Crypto
import Foundation
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
@testable import PeerwayTunnel

/// Deterministic identities, contexts and keys for the tunnel tests.
enum Fixture {
    static let alice = try! PeerIdentity(seed: Array(repeating: 0x11, count: 32))
    static let bob = try! PeerIdentity(seed: Array(repeating: 0x22, count: 32))
    static let carol = try! PeerIdentity(seed: Array(repeating: 0x33, count: 32))
    static let aliceEphemeral = try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Array(repeating: 0x44, count: 32))
    static let bobEphemeral = try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Array(repeating: 0x55, count: 32))
    static let requestID: UInt64 = 0x0102_0304_0506_0708

    /// Alice (initiator) and Bob (acceptor), as `role` sees it.
    static func context(_ role: TunnelRole, requestID: UInt64 = requestID, transport: TunnelTransport = .udp) -> TunnelContext {
        TunnelContext(requestID: requestID, initiator: alice.peerID, acceptor: bob.peerID, role: role, transport: transport)
    }

    /// Both sides' keys from the fixed seeds: (Alice's, Bob's).
    static func keys(transport: TunnelTransport = .udp) throws -> (TunnelKeys, TunnelKeys) {
        let a = context(.initiator, transport: transport), b = context(.acceptor, transport: transport)
        let aliceShare = TunnelKeyShare.make(identity: alice, context: a, ephemeralPrivateKey: aliceEphemeral)
        let bobShare = TunnelKeyShare.make(identity: bob, context: b, ephemeralPrivateKey: bobEphemeral)
        return (try TunnelKeys.derive(ephemeralPrivateKey: aliceEphemeral, theirShare: bobShare, context: a),
                try TunnelKeys.derive(ephemeralPrivateKey: bobEphemeral, theirShare: aliceShare, context: b))
    }

    static let v4 = PeerEndpoint(ip: .v4(0xC633_6407), port: 40_000)  // 198.51.100.7
    static let v6 = PeerEndpoint(ip: .v6(high: 0x2001_0DB8_0000_0000, low: 0x0000_0000_0000_0042), port: 3_478)
}

/// SplitMix64: reproducible "random" sizes.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Array where Element == UInt8 {
    var hex: String { map { String(format: "%02x", $0) }.joined() }

    init(hex: String) {
        var bytes: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            bytes.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        self = bytes
    }

    /// A copy with bit `bit` (0 = most significant of byte 0) flipped.
    func flipping(bit: Int) -> [UInt8] {
        var copy = self
        copy[bit / 8] ^= 0x80 >> UInt8(bit % 8)
        return copy
    }
}

/// Bytes of SymmetricKey, for comparisons in failure messages.
extension SymmetricKey {
    var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
}
