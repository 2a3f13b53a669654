import PeerwayCheckpoint
import PeerwayTunnel

/// The pumps' view of a tunnel's records: the ciphers of `PeerwayTunnel` for each direction, the
/// stream decoder, and raw datagram framing over a stream.
struct TunnelRecordCrypto {
    enum Opened {
        case data([UInt8])
        /// An authentic keepalive: nothing for the application, but the path works.
        case keepalive
        /// A replay, a forgery: nothing at all.
        case nothing
        /// The other side closed the tunnel.
        case closed
    }

    enum StreamOpened {
        case records([[UInt8]])
        /// The other side closed, or the stream failed authentication (it cannot continue).
        case closed
    }

    let keys: TunnelKeys
    private var datagrams: TunnelDatagramCipher
    private var streamOut: TunnelStreamCipher
    private var streamIn: TunnelStreamDecoder
    private var rawFraming: [UInt8] = []

    init(keys: TunnelKeys) {
        self.keys = keys
        datagrams = TunnelDatagramCipher(keys: keys)
        streamOut = TunnelStreamCipher(keys: keys)
        streamIn = TunnelStreamDecoder(keys: keys)
    }

    mutating func sealDatagram(_ payload: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(payload.count + TunnelLimits.datagramOverheadBytes)
        // Over the size limit or out of counters: the datagram is dropped, as the network would.
        try? datagrams.seal(payload, type: .data, appendingTo: &out)
        return out
    }

    mutating func keepaliveDatagram() -> [UInt8] {
        var out: [UInt8] = []
        try? datagrams.seal(UnsafeRawBufferPointer(start: nil, count: 0), type: .keepalive, appendingTo: &out)
        return out
    }

    /// The record that tells the other side the tunnel closed (datagram tunnels only; a stream
    /// closes with its connection).
    mutating func closeRecord(stream: Bool) -> [UInt8]? {
        guard !stream else { return nil }
        var out: [UInt8] = []
        try? datagrams.seal(UnsafeRawBufferPointer(start: nil, count: 0), type: .close, appendingTo: &out)
        return out.isEmpty ? nil : out
    }

    mutating func openDatagram(_ bytes: UnsafeRawBufferPointer) -> Opened {
        guard let record = try? datagrams.open(bytes) else { return .nothing }
        switch record.type {
        case .data: return .data(record.payload)
        case .keepalive: return .keepalive
        case .close: return .closed
        }
    }

    mutating func sealStream(_ plaintext: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = []
        var offset = 0
        // A chunk over one record's limit goes out as several records (stream mode only reads
        // that much at once; a datagram that large cannot come from a datagram socket pair).
        repeat {
            let n = min(TunnelLimits.maximumStreamPlaintextBytes, plaintext.count - offset)
            try? streamOut.seal(UnsafeRawBufferPointer(rebasing: plaintext[offset..<offset + n]), appendingTo: &out)
            offset += n
        } while offset < plaintext.count
        return out
    }

    mutating func openStream(_ bytes: UnsafeRawBufferPointer) -> StreamOpened {
        streamIn.append(bytes)
        var records: [[UInt8]] = []
        do {
            while let r = try streamIn.next() { records.append(r) }
        } catch {
            return .closed
        }
        return .records(records)
    }

    /// Raw datagrams over a stream: `length(2) payload` each; returns the complete ones.
    mutating func unframe(_ bytes: UnsafeRawBufferPointer) -> [[UInt8]] {
        rawFraming.append(contentsOf: bytes)
        var out: [[UInt8]] = []
        var offset = 0
        while rawFraming.count - offset >= 2 {
            let length = Int(rawFraming[offset]) << 8 | Int(rawFraming[offset + 1])
            guard rawFraming.count - offset - 2 >= length else { break }
            out.append(Array(rawFraming[offset + 2..<offset + 2 + length]))
            offset += 2 + length
        }
        rawFraming.removeFirst(offset)
        return out
    }
}
