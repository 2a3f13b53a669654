import NIOCore

/// The outer packets of the control protocol (see `ControlLimits` for the flow).
///
/// Wire layout, all integers big-endian; every packet begins with
/// `version(1) type(1) flags(1) reserved(1)`:
/// - `hello` (type 1, peer → checkpoint): `ephemeral(32)`, then `cookie(16)` when flags bit 0 is
///   set, then zero padding up to at least `ControlLimits.minimumHelloBytes`.
/// - `cookie` (type 2, checkpoint → peer): `echo(8)` (first bytes of the hello's ephemeral key),
///   `cookie(16)`. 28 bytes.
/// - `helloReply` (type 3): `session(8)`, `ephemeral(32)`, `sealed welcome frame` (counter 0;
///   associated data: the 44 bytes before it).
/// - `sealed` (type 4, both ways): `session(8)`, `counter(8)`, `ciphertext ‖ tag(16)`.
/// - `sessionUnknown` (type 5, checkpoint → peer): `session(8)`. 12 bytes.
public enum ControlPacket: Equatable, Sendable {
    case hello(ControlHello)
    case cookie(ControlCookie)
    case helloReply(ControlHelloReply)
    case sealed(ControlSealed)
    case sessionUnknown(sessionID: UInt64)

    /// Packet type codes (the second byte).
    public enum Kind: UInt8, Sendable {
        case hello = 1
        case cookie = 2
        case helloReply = 3
        case sealed = 4
        case sessionUnknown = 5
    }

    public var kind: Kind {
        switch self {
        case .hello: .hello
        case .cookie: .cookie
        case .helloReply: .helloReply
        case .sealed: .sealed
        case .sessionUnknown: .sessionUnknown
        }
    }
}

/// A peer's opening packet: its ephemeral X25519 key and, on the second try, the cookie.
public struct ControlHello: Equatable, Sendable {
    /// Raw X25519 public key (32 bytes).
    public var ephemeralKey: [UInt8]
    /// The cookie from the checkpoint's `cookie` packet, or `nil` on the first try.
    public var cookie: [UInt8]?
    /// Total bytes of the packet including padding (at least `minimumHelloBytes` when sent).
    public var paddedLength: Int

    public init(ephemeralKey: [UInt8], cookie: [UInt8]?, paddedLength: Int = ControlLimits.minimumHelloBytes) {
        self.ephemeralKey = ephemeralKey
        self.cookie = cookie
        self.paddedLength = paddedLength
    }
}

/// The checkpoint's stateless answer to a hello from an unproven source.
public struct ControlCookie: Equatable, Sendable {
    /// First `cookieEchoBytes` bytes of the hello's ephemeral key.
    public var echo: [UInt8]
    /// `cookieBytes` bytes to send back in the next hello.
    public var cookie: [UInt8]

    public init(echo: [UInt8], cookie: [UInt8]) {
        self.echo = echo
        self.cookie = cookie
    }
}

/// The checkpoint's answer to a hello with a valid cookie: the new session.
public struct ControlHelloReply: Equatable, Sendable {
    public var sessionID: UInt64
    /// Raw X25519 public key of the checkpoint's ephemeral key (32 bytes).
    public var ephemeralKey: [UInt8]
    /// The sealed `welcome` frame (ciphertext and tag).
    public var sealedWelcome: ByteBuffer

    public init(sessionID: UInt64, ephemeralKey: [UInt8], sealedWelcome: ByteBuffer) {
        self.sessionID = sessionID
        self.ephemeralKey = ephemeralKey
        self.sealedWelcome = sealedWelcome
    }
}

/// An encrypted packet of an established session.
public struct ControlSealed: Equatable, Sendable {
    public var sessionID: UInt64
    /// The AEAD nonce; strictly increasing per direction, checked against the replay window.
    public var counter: UInt64
    /// Ciphertext followed by the 16-byte tag.
    public var ciphertext: ByteBuffer

    public init(sessionID: UInt64, counter: UInt64, ciphertext: ByteBuffer) {
        self.sessionID = sessionID
        self.counter = counter
        self.ciphertext = ciphertext
    }
}

/// Why a datagram is not a control packet. Decoding leaves the buffer's reader untouched.
public enum ControlDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The first byte is not a version this build speaks.
    case unsupportedVersion(UInt8)
    /// The second byte is not a known packet or frame type.
    case unknownType(UInt8)
    /// The packet or frame ends before a field it must hold.
    case truncated(what: String)
    /// A field has a value the protocol forbids (the text says which and why).
    case invalid(what: String)
    /// The datagram is over `ControlLimits.maximumDatagramBytes`.
    case tooLarge(bytes: Int)
    /// Bytes are left over after a complete frame.
    case trailingBytes(Int)

    public var description: String {
        switch self {
        case .unsupportedVersion(let v): return "control packet version \(v) is not supported (this build speaks \(ControlLimits.version))"
        case .unknownType(let t): return "unknown control packet or frame type \(t)"
        case .truncated(let what): return "control packet truncated in \(what)"
        case .invalid(let what): return "invalid control packet: \(what)"
        case .tooLarge(let n): return "control datagram of \(n) bytes is over the \(ControlLimits.maximumDatagramBytes)-byte limit"
        case .trailingBytes(let n): return "\(n) unexpected bytes after a control frame"
        }
    }
}
