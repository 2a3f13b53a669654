import Crypto
import _CryptoExtras
import Foundation

/// A stored password: scrypt's parameters, a random salt and the derived key, in one text record
/// `scrypt$<log2 N>$<r>$<p>$<salt base64>$<key base64>`. The password itself is never stored;
/// verification derives again with the record's own parameters, so the cost can be raised later
/// without invalidating existing records.
public struct PasswordRecord: Hashable, Sendable, CustomStringConvertible {
    public let logN: Int
    public let r: Int
    public let p: Int
    public let salt: [UInt8]
    public let key: [UInt8]

    public var description: String {
        "scrypt$\(logN)$\(r)$\(p)$\(Data(salt).base64EncodedString())$\(Data(key).base64EncodedString())"
    }

    public init(logN: Int, r: Int, p: Int, salt: [UInt8], key: [UInt8]) {
        self.logN = logN
        self.r = r
        self.p = p
        self.salt = salt
        self.key = key
    }

    /// Parses a stored record; nil when it is not one (bounded parameters, so that a corrupted or
    /// hostile record cannot make verification allocate without bound).
    public init?(parsing text: String) {
        let fields = text.split(separator: "$", omittingEmptySubsequences: false)
        guard fields.count == 6, fields[0] == "scrypt",
              let logN = Int(fields[1]), (1...20).contains(logN),
              let r = Int(fields[2]), (1...32).contains(r),
              let p = Int(fields[3]), (1...16).contains(p),
              let salt = Data(base64Encoded: String(fields[4])), (8...64).contains(salt.count),
              let key = Data(base64Encoded: String(fields[5])), (16...64).contains(key.count)
        else { return nil }
        self.init(logN: logN, r: r, p: p, salt: Array(salt), key: Array(key))
    }
}

/// Derives and checks password records with scrypt (memory-hard) from swift-crypto's extras.
public struct PasswordHasher: Hashable, Sendable {
    /// log2 of scrypt's CPU/memory cost N.
    public let logN: Int
    /// scrypt's block size r.
    public let r: Int
    /// scrypt's parallelism p.
    public let p: Int

    public static let saltBytes = 16
    public static let keyBytes = 32

    /// N = 2^15, r = 8, p = 1: 32 MiB and about 0.1 s per derivation, the interactive-login
    /// figures scrypt's author recommends.
    public static let interactive = PasswordHasher(logN: 15, r: 8, p: 1)
    /// N = 2^10: cheap, for tests and benchmarks that create many users. Never for real passwords.
    public static let testing = PasswordHasher(logN: 10, r: 8, p: 1)

    public init(logN: Int, r: Int, p: Int) {
        self.logN = logN
        self.r = r
        self.p = p
    }

    /// A new record for `password`, with a fresh random salt.
    public func record(for password: String) throws(IndexError) -> PasswordRecord {
        var rng = SystemRandomNumberGenerator()
        let salt = (0..<Self.saltBytes).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        let key = try Self.derive(password, salt: salt, logN: logN, r: r, p: p, count: Self.keyBytes)
        return PasswordRecord(logN: logN, r: r, p: p, salt: salt, key: key)
    }

    /// Whether `password` derives `record`'s key (compared in constant time).
    public static func verify(_ password: String, against record: PasswordRecord) throws(IndexError) -> Bool {
        let key = try derive(password, salt: record.salt, logN: record.logN, r: record.r, p: record.p, count: record.key.count)
        return constantTimeEqual(key, record.key)
    }

    /// Spends a derivation's time on nothing, so that an unknown username costs what a wrong
    /// password does and timing does not tell which usernames exist.
    public func burn(_ password: String) {
        _ = try? Self.derive(password, salt: [UInt8](repeating: 0, count: Self.saltBytes), logN: logN, r: r, p: p, count: Self.keyBytes)
    }

    /// Equal length and equal bytes, reading every byte whatever the first difference.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    private static func derive(_ password: String, salt: [UInt8], logN: Int, r: Int, p: Int, count: Int) throws(IndexError) -> [UInt8] {
        do {
            let key = try KDF.Scrypt.deriveKey(from: Array(password.utf8), salt: salt, outputByteCount: count,
                                               rounds: 1 << logN, blockSize: r, parallelism: p)
            return key.withUnsafeBytes { Array($0) }
        } catch {
            throw .storage("scrypt failed: \(error)")
        }
    }
}
