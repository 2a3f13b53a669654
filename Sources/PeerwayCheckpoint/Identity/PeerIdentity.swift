import Crypto
import Foundation

/// A peer's key pair (Ed25519). The PeerID is derived from the public half; the private half
/// signs registrations and, later, binds tunnels to this identity.
public struct PeerIdentity: Sendable {
    /// The signing key. Never leaves the process except into its key file.
    public let privateKey: Curve25519.Signing.PrivateKey

    /// A new random identity.
    public init() { privateKey = Curve25519.Signing.PrivateKey() }

    public init(privateKey: Curve25519.Signing.PrivateKey) { self.privateKey = privateKey }

    /// A deterministic identity from 32 seed bytes (tests and simulated peers).
    public init(seed: [UInt8]) throws {
        privateKey = try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
    }

    public var publicKey: Curve25519.Signing.PublicKey { privateKey.publicKey }
    public var peerID: PeerID { PeerID(publicKey: publicKey) }

    /// Signs `bytes`; 64 bytes (RFC 8032).
    public func signature(for bytes: some DataProtocol) throws -> [UInt8] {
        Array(try privateKey.signature(for: bytes))
    }

    /// Loads the identity kept in `path`, creating it (mode 0600, parent directories 0700) on
    /// first use. Refuses a file that others can read: a leaked identity file is a stolen PeerID.
    public static func loadOrCreate(at path: String) throws(KeyFileError) -> PeerIdentity {
        let seed = try KeyFile.loadOrCreate(at: path, kind: "peer identity") {
            Array(Curve25519.Signing.PrivateKey().rawRepresentation)
        }
        do { return try PeerIdentity(seed: seed) } catch {
            throw KeyFileError.malformed(path: path, reason: "not an Ed25519 private key")
        }
    }
}

/// A supernode's static key pair (X25519). Peers learn the public half from the supernode's
/// address (`peerway://<key>@host:port`) and the control channel's key exchange proves that the
/// server holds the private half.
public struct SupernodeKey: Sendable {
    public let privateKey: Curve25519.KeyAgreement.PrivateKey

    public init() { privateKey = Curve25519.KeyAgreement.PrivateKey() }

    public init(privateKey: Curve25519.KeyAgreement.PrivateKey) { self.privateKey = privateKey }

    /// A deterministic key from 32 seed bytes (tests).
    public init(seed: [UInt8]) throws {
        privateKey = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: seed)
    }

    public var publicKey: Curve25519.KeyAgreement.PublicKey { privateKey.publicKey }

    /// Loads `path` or creates it (mode 0600) on first use.
    public static func loadOrCreate(at path: String) throws(KeyFileError) -> SupernodeKey {
        let seed = try KeyFile.loadOrCreate(at: path, kind: "supernode key") {
            Array(Curve25519.KeyAgreement.PrivateKey().rawRepresentation)
        }
        do { return try SupernodeKey(seed: seed) } catch {
            throw KeyFileError.malformed(path: path, reason: "not an X25519 private key")
        }
    }
}

/// What went wrong with a key file, and what to do about it.
public enum KeyFileError: Error, Equatable, CustomStringConvertible {
    /// The file could not be read or written.
    case io(path: String, reason: String)
    /// The file exists but does not hold a key.
    case malformed(path: String, reason: String)
    /// Group or others may read the file.
    case tooOpen(path: String, mode: Int)

    public var description: String {
        switch self {
        case .io(let path, let reason): return "key file \(path): \(reason)"
        case .malformed(let path, let reason):
            return "key file \(path) is malformed (\(reason)); move it away to create a new identity"
        case .tooOpen(let path, let mode):
            return "key file \(path) has mode \(String(mode, radix: 8)); others may read it. Run: chmod 600 \(path)"
        }
    }
}

/// Key files: one line, `peerway-<kind>-v1 <base32 of 32 private bytes>`, mode 0600.
enum KeyFile {
    static let header = "peerway-key-v1"

    static func loadOrCreate(at path: String, kind: String, make: () -> [UInt8]) throws(KeyFileError) -> [UInt8] {
        let fm = FileManager.default
        if fm.fileExists(atPath: path) {
            let attributes: [FileAttributeKey: Any]
            let text: String
            do {
                attributes = try fm.attributesOfItem(atPath: path)
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch { throw .io(path: path, reason: "\(error)") }
            if let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue, mode & 0o077 != 0 {
                throw .tooOpen(path: path, mode: mode)
            }
            let parts = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            guard parts.count == 2, parts[0] == header, let bytes = Base32.decode(parts[1]), bytes.count == 32 else {
                throw .malformed(path: path, reason: "expected one line '\(header) <52 base32 characters>'")
            }
            return bytes
        }
        let bytes = make()
        let directory = (path as NSString).deletingLastPathComponent
        do {
            if !directory.isEmpty {
                try fm.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                       attributes: [.posixPermissions: 0o700])
            }
            let line = "\(header) \(Base32.encode(bytes))\n"
            guard fm.createFile(atPath: path, contents: Data(line.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw KeyFileError.io(path: path, reason: "cannot create the \(kind) file")
            }
        } catch let error as KeyFileError {
            throw error
        } catch { throw .io(path: path, reason: "\(error)") }
        return bytes
    }
}
