import Foundation

/// The management API's credential: a secret string that requests carry as
/// `Authorization: Bearer TOKEN`.
///
/// `peerway supernode` takes it from `--admin-token TOKEN`, else from the environment variable
/// `PEERWAY_ADMIN_TOKEN`, else from `DATA_DIR/admin-token`, which it creates on first start:
/// 32 random bytes as base64url (43 characters) and a newline, mode 0600 (the directory 0700).
/// An existing file that group or others may read is refused, as are tokens shorter than
/// `IndexAPILimits.minimumTokenBytes`. `peerway index` reads the same file (or the same variable).
public struct AdminToken: Sendable, Hashable, CustomStringConvertible {
    /// The token file's name under the data directory.
    public static let fileName = "admin-token"
    /// The environment variable that gives the token (to the supernode and to `peerway index`).
    public static let environmentVariable = "PEERWAY_ADMIN_TOKEN"

    /// The token's text.
    public let value: String

    /// A token an operator gave; refused unless it is 16-512 bytes of printable ASCII (no spaces).
    public init(_ value: String) throws(AdminTokenError) {
        let bytes = value.utf8
        guard (IndexAPILimits.minimumTokenBytes...IndexAPILimits.maximumTokenBytes).contains(bytes.count) else {
            throw .invalid("the admin token must be \(IndexAPILimits.minimumTokenBytes)-\(IndexAPILimits.maximumTokenBytes) bytes, not \(bytes.count)")
        }
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .invalid("the admin token must be printable ASCII without spaces")
        }
        self.value = value
    }

    /// A new random token: `IndexAPILimits.generatedTokenBytes` bytes from the system's secure
    /// generator, as base64url without padding.
    public static func generate() -> AdminToken {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<IndexAPILimits.generatedTokenBytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let text = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        return try! AdminToken(text)
    }

    /// Never the secret itself (so that logging a configuration does not leak it).
    public var description: String { "AdminToken(\(value.utf8.count) bytes)" }

    /// Whether `candidate` is this token, in time that depends only on the lengths.
    public func matches(_ candidate: some StringProtocol) -> Bool {
        let a = Array(value.utf8)
        let b = Array(candidate.utf8)
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0xFF)
        }
        return difference == 0
    }

    /// The token in `directory/admin-token`; created (with the directory) when missing.
    public static func loadOrCreate(directory: String) throws(AdminTokenError) -> AdminToken {
        let path = (directory as NSString).appendingPathComponent(fileName)
        if let existing = try load(path: path) { return existing }
        let token = generate()
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch { throw .io(path: directory, reason: "\(error)") }
        // O_EXCL: never overwrite a token another process wrote meanwhile; 0600 from the start.
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        if fd < 0 {
            if errno == EEXIST, let raced = try load(path: path) { return raced }
            throw .io(path: path, reason: String(cString: strerror(errno)))
        }
        let line = Array((token.value + "\n").utf8)
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == line.count, synced == 0 else {
            unlink(path)
            throw .io(path: path, reason: "cannot write the token")
        }
        return token
    }

    /// The token in the file at `path`; nil when there is no file.
    public static func load(path: String) throws(AdminTokenError) -> AdminToken? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let text: String
        let mode: Int
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch { throw .io(path: path, reason: "\(error)") }
        if mode & 0o077 != 0 { throw .tooOpen(path: path, mode: mode) }
        do { return try AdminToken(text.trimmingCharacters(in: .whitespacesAndNewlines)) } catch {
            throw .malformed(path: path, reason: error.description)
        }
    }
}

/// Why the admin token could not be had, and what to do.
public enum AdminTokenError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A token given is not acceptable.
    case invalid(String)
    /// The file could not be read or written.
    case io(path: String, reason: String)
    /// The file does not hold a token.
    case malformed(path: String, reason: String)
    /// Group or others may read the file.
    case tooOpen(path: String, mode: Int)

    public var description: String {
        switch self {
        case .invalid(let why): return why
        case .io(let path, let reason): return "admin token file \(path): \(reason)"
        case .malformed(let path, let reason): return "admin token file \(path) is malformed (\(reason)); remove it to create a new token"
        case .tooOpen(let path, let mode):
            return "admin token file \(path) has mode \(String(mode, radix: 8)); others may read it. Run: chmod 600 \(path)"
        }
    }
}
