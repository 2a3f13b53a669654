import NIOCore

/// The control channel over TCP, for peers that cannot use UDP (docs/traversal-protocol.md,
/// "Control channel over TCP"): the stream is `length(2, big-endian) controlPacket` frames, each
/// exactly what one UDP datagram would carry. A stream whose first 4 bytes are "PWRB" is a relay
/// bind instead (its first two bytes, as a length, are over `maximumFrameBytes`, so no control
/// stream can start that way).
public enum ControlStreamFraming {
    /// Bytes of a frame's length prefix.
    public static let lengthBytes = 2
    /// Largest frame payload accepted; a longer length closes the stream. Control packets are at
    /// most `ControlLimits.maximumDatagramBytes`; the margin is for the packet types to come.
    public static let maximumFrameBytes = 1500
    /// First bytes of a relay bind arriving on the control channel's TCP port.
    public static let relayBindPrefix: [UInt8] = Array("PWRB".utf8)

    /// Appends `packet` framed (length prefix, then the bytes) to `out`.
    /// - Precondition: the packet is 1...`maximumFrameBytes` bytes.
    public static func write(_ packet: ByteBuffer, into out: inout ByteBuffer) {
        precondition(packet.readableBytes > 0 && packet.readableBytes <= maximumFrameBytes,
                     "a control frame carries 1...\(maximumFrameBytes) bytes")
        out.writeInteger(UInt16(packet.readableBytes))
        var copy = packet
        out.writeBuffer(&copy)
    }

    /// `packet` framed, in a new buffer.
    public static func framed(_ packet: ByteBuffer) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(lengthBytes + packet.readableBytes)
        write(packet, into: &out)
        return out
    }
}

/// Why a control stream was closed.
public enum ControlStreamError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A frame announced 0 bytes: no control packet is empty.
    case emptyFrame
    /// A frame announced more than `ControlStreamFraming.maximumFrameBytes`.
    case frameTooLarge(bytes: Int)

    public var description: String {
        switch self {
        case .emptyFrame: return "a control stream frame of 0 bytes"
        case .frameTooLarge(let n):
            return "a control stream frame of \(n) bytes is over the \(ControlStreamFraming.maximumFrameBytes)-byte limit"
        }
    }
}

/// Splits a control stream into its frames, whatever the segmentation: append bytes as they
/// arrive, then take frames with `next()` until it returns `nil`. After an error the stream is
/// unusable (the framing is lost): close it. Holds at most one partial frame plus what was
/// appended since the last `next()`.
public struct ControlStreamDeframer: Sendable {
    private var buffer = ByteBuffer()
    private var failed: ControlStreamError?

    public init() {}

    /// Bytes received and not yet returned as frames.
    public var bufferedBytes: Int { buffer.readableBytes }

    /// Appends received bytes (ignored once the stream failed).
    public mutating func append(_ bytes: ByteBuffer) {
        guard failed == nil else { return }
        var bytes = bytes
        buffer.writeBuffer(&bytes)
    }

    /// Appends received bytes (ignored once the stream failed).
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard failed == nil else { return }
        buffer.writeBytes(bytes)
    }

    /// The next complete frame's payload, `nil` while it is incomplete; throws (and keeps
    /// throwing) once a length is out of range.
    public mutating func next() throws(ControlStreamError) -> ByteBuffer? {
        if let failed { throw failed }
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self).map(Int.init) else {
            compact()
            return nil
        }
        guard length > 0 else { return try fail(.emptyFrame) }
        guard length <= ControlStreamFraming.maximumFrameBytes else { return try fail(.frameTooLarge(bytes: length)) }
        guard buffer.readableBytes >= ControlStreamFraming.lengthBytes + length else {
            compact()
            return nil
        }
        buffer.moveReaderIndex(forwardBy: ControlStreamFraming.lengthBytes)
        // A slice: a value, which stays valid when the buffer is compacted or written later.
        return buffer.readSlice(length: length)!
    }

    private mutating func fail(_ error: ControlStreamError) throws(ControlStreamError) -> ByteBuffer? {
        failed = error
        buffer = ByteBuffer()
        throw error
    }

    /// Drops consumed bytes once they are most of the buffer, so it stays about one frame large.
    private mutating func compact() {
        if buffer.readableBytes == 0 {
            buffer.clear()
        } else if buffer.readerIndex > ControlStreamFraming.maximumFrameBytes {
            buffer.discardReadBytes()
        }
    }
}
