import NIOCore

// The outer packets (layouts in the doc comment of `ControlPacket`): the common header
// `version(1) type(1) flags(1) reserved(1)`, then per type a fixed part and, for `helloReply` and
// `sealed`, the ciphertext to the end of the datagram.

extension ControlPacket {
    /// Flags bit 0 of a hello: a cookie follows the ephemeral key.
    static let cookieFlag: UInt8 = 0x01
}

extension ByteBuffer {
    /// Writes one whole packet (header included). Hello is zero-padded to hello.paddedLength.
    ///
    /// Traps when a key, cookie or echo is not its fixed size. A hello whose `paddedLength` is less
    /// than its content gets no padding (and is then too short for a checkpoint to accept unless
    /// `paddedLength` is at least `minimumHelloBytes`, the default).
    @discardableResult
    public mutating func writeControlPacket(_ packet: ControlPacket) -> Int {
        let start = writerIndex
        writeInteger(ControlLimits.version)
        writeInteger(packet.kind.rawValue)
        switch packet {
        case .hello(let hello):
            writeInteger(hello.cookie == nil ? 0 : ControlPacket.cookieFlag)
            writeInteger(0 as UInt8)
            writeWireFixed(hello.ephemeralKey, count: ControlLimits.keyBytes, "hello ephemeral key")
            if let cookie = hello.cookie { writeWireFixed(cookie, count: ControlLimits.cookieBytes, "hello cookie") }
            let padding = hello.paddedLength - (writerIndex - start)
            if padding > 0 { writeRepeatingByte(0, count: padding) }
        case .cookie(let cookie):
            writeInteger(0 as UInt16)
            writeWireFixed(cookie.echo, count: ControlLimits.cookieEchoBytes, "cookie echo")
            writeWireFixed(cookie.cookie, count: ControlLimits.cookieBytes, "cookie")
        case .helloReply(let reply):
            writeInteger(0 as UInt16)
            writeInteger(reply.sessionID)
            writeWireFixed(reply.ephemeralKey, count: ControlLimits.keyBytes, "hello reply ephemeral key")
            writeImmutableBuffer(reply.sealedWelcome)
        case .sealed(let sealed):
            writeInteger(0 as UInt16)
            writeInteger(sealed.sessionID)
            writeInteger(sealed.counter)
            writeImmutableBuffer(sealed.ciphertext)
        case .sessionUnknown(let session):
            writeInteger(0 as UInt16)
            writeInteger(session)
        }
        return writerIndex - start
    }

    /// Reads one whole datagram as a packet (consumes all readable bytes on success; reader untouched on error).
    ///
    /// Errors, in the order checked: `.tooLarge` over `maximumDatagramBytes`; `.truncated` without a
    /// whole header; `.unsupportedVersion`; `.unknownType`; `.invalid` for a nonzero reserved byte
    /// or flag bits other than a hello's cookie bit; `.invalid` for a hello under
    /// `minimumHelloBytes` (dropped unanswered, so that no answer outgrows its request);
    /// `.truncated` for a fixed part cut short or a ciphertext shorter than its tag;
    /// `.trailingBytes` after a `cookie` or `sessionUnknown`. The ciphertexts are slices of this
    /// buffer (no copy); a hello's padding content is not checked and `paddedLength` is the
    /// datagram's length.
    public mutating func readControlPacket() throws(ControlDecodingError) -> ControlPacket {
        let packet = try peekControlPacket()
        moveReaderIndex(to: writerIndex)
        return packet
    }

    private func peekControlPacket() throws(ControlDecodingError) -> ControlPacket {
        let length = readableBytes
        guard length <= ControlLimits.maximumDatagramBytes else { throw .tooLarge(bytes: length) }
        guard length >= ControlLimits.headerBytes,
              let header = getInteger(at: readerIndex, as: UInt32.self)
        else { throw .truncated(what: "packet header") }
        let version = UInt8(truncatingIfNeeded: header >> 24)
        let rawType = UInt8(truncatingIfNeeded: header >> 16)
        let flags = UInt8(truncatingIfNeeded: header >> 8)
        let reserved = UInt8(truncatingIfNeeded: header)
        guard version == ControlLimits.version else { throw .unsupportedVersion(version) }
        guard let kind = ControlPacket.Kind(rawValue: rawType) else { throw .unknownType(rawType) }
        guard reserved == 0 else { throw .invalid(what: "packet header: reserved byte is \(reserved), not 0") }
        let allowedFlags: UInt8 = kind == .hello ? ControlPacket.cookieFlag : 0
        guard flags & ~allowedFlags == 0 else {
            throw .invalid(what: "packet header: flags 0x\(String(flags, radix: 16)) of a \(kind) packet has unknown bits set")
        }

        var at = readerIndex + ControlLimits.headerBytes
        let end = readerIndex + length
        func need(_ count: Int, _ what: String) throws(ControlDecodingError) {
            guard end - at >= count else { throw .truncated(what: what) }
        }
        func u64(_ what: String) throws(ControlDecodingError) -> UInt64 {
            try need(8, what)
            defer { at += 8 }
            return getInteger(at: at, as: UInt64.self)!
        }
        func bytes(_ count: Int, _ what: String) throws(ControlDecodingError) -> [UInt8] {
            try need(count, what)
            defer { at += count }
            return getBytes(at: at, length: count)!
        }
        func ciphertext(_ what: String) throws(ControlDecodingError) -> ByteBuffer {
            try need(ControlLimits.tagBytes, "\(what) (at least the \(ControlLimits.tagBytes)-byte tag)")
            defer { at = end }
            return getSlice(at: at, length: end - at)!
        }
        func noTrailingBytes() throws(ControlDecodingError) {
            guard at == end else { throw .trailingBytes(end - at) }
        }

        switch kind {
        case .hello:
            guard length >= ControlLimits.minimumHelloBytes else {
                throw .invalid(what: "hello of \(length) bytes is under minimumHelloBytes (\(ControlLimits.minimumHelloBytes))")
            }
            let key = try bytes(ControlLimits.keyBytes, "hello ephemeral key")
            let cookie = flags & ControlPacket.cookieFlag != 0 ? try bytes(ControlLimits.cookieBytes, "hello cookie") : nil
            return .hello(ControlHello(ephemeralKey: key, cookie: cookie, paddedLength: length))
        case .cookie:
            let echo = try bytes(ControlLimits.cookieEchoBytes, "cookie echo")
            let cookie = try bytes(ControlLimits.cookieBytes, "cookie")
            try noTrailingBytes()
            return .cookie(ControlCookie(echo: echo, cookie: cookie))
        case .helloReply:
            let session = try u64("hello reply session")
            let key = try bytes(ControlLimits.keyBytes, "hello reply ephemeral key")
            return .helloReply(ControlHelloReply(sessionID: session, ephemeralKey: key, sealedWelcome: try ciphertext("hello reply sealed welcome")))
        case .sealed:
            let session = try u64("sealed session")
            let counter = try u64("sealed counter")
            return .sealed(ControlSealed(sessionID: session, counter: counter, ciphertext: try ciphertext("sealed ciphertext")))
        case .sessionUnknown:
            let session = try u64("sessionUnknown session")
            try noTrailingBytes()
            return .sessionUnknown(sessionID: session)
        }
    }
}
