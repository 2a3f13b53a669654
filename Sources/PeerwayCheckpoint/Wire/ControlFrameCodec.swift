import NIOCore

/// A frame with its id (transaction id for requests/responses, push id for pushes/acks).
public struct ControlEnvelope: Equatable, Sendable {
    public var id: UInt32
    public var frame: ControlFrame

    public init(id: UInt32, frame: ControlFrame) {
        self.id = id
        self.frame = frame
    }
}

extension ControlFrame {
    /// The frame's kind code.
    public var kind: Kind {
        switch self {
        case .register: .register
        case .keepalive: .keepalive
        case .unregister: .unregister
        case .lookup: .lookup
        case .publish: .publish
        case .search: .search
        case .sendMessage: .sendMessage
        case .watch: .watch
        case .unwatch: .unwatch
        case .connect: .connect
        case .answerConnect: .answerConnect
        case .registered: .registered
        case .ok: .ok
        case .keepaliveAck: .keepaliveAck
        case .lookupResult: .lookupResult
        case .searchResult: .searchResult
        case .messageOutcome: .messageOutcome
        case .watchResult: .watchResult
        case .error: .error
        case .deliver: .deliver
        case .status: .status
        case .connectRequested: .connectRequested
        case .connectAnswered: .connectAnswered
        case .messageStatus: .messageStatus
        case .ack: .ack
        case .welcome: .welcome
        case .traversalOffer: .traversalOffer
        case .traversalResult: .traversalResult
        case .traversalPlan: .traversalPlan
        case .indexRequest: .indexRequest
        case .indexResult: .indexResult
        case .networkStatus: .networkStatus
        }
    }
}

extension ByteBuffer {
    /// Writes `kind(1) id(4) body`; returns bytes written.
    ///
    /// Traps only on values the wire cannot represent (keys and signatures of the wrong size,
    /// lists over 255 items, text over 65,535 bytes, an online `lookupResult` without `observed`).
    /// Values over a protocol limit are written as given and refused by `readControlFrame()`.
    @discardableResult
    public mutating func writeControlFrame(_ frame: ControlFrame, id: UInt32) -> Int {
        let start = writerIndex
        writeInteger(frame.kind.rawValue)
        writeInteger(id)
        switch frame {
        case .register(let body): body.writeWire(into: &self)
        case .keepalive, .unregister, .ok, .ack: break
        case .lookup(let peer): writeWirePeerID(peer)
        case .publish(let body): body.writeWire(into: &self)
        case .search(let body): body.writeWire(into: &self)
        case .sendMessage(let body): body.writeWire(into: &self)
        case .watch(let peers), .unwatch(let peers): ControlPeerList.write(peers, into: &self)
        case .connect(let body): body.writeWire(into: &self)
        case .answerConnect(let body), .connectAnswered(let body): body.writeWire(into: &self)
        case .registered(let body): body.writeWire(into: &self)
        case .keepaliveAck(let observed, let supernodes):
            writeWireEndpoint(observed)
            writeWireSupernodes(supernodes)
        case .lookupResult(let body): body.writeWire(into: &self)
        case .searchResult(let body): body.writeWire(into: &self)
        case .messageOutcome(let body), .messageStatus(let body): body.writeWire(into: &self)
        case .watchResult(let statuses): ControlStatusList.write(statuses, into: &self)
        case .error(let body): body.writeWire(into: &self)
        case .deliver(let body): body.writeWire(into: &self)
        case .status(let body): body.writeWire(into: &self)
        case .connectRequested(let body): body.writeWire(into: &self)
        case .welcome(let body): body.writeWire(into: &self)
        case .traversalOffer(let body): body.writeWire(into: &self)
        case .traversalResult(let body): body.writeWire(into: &self)
        case .traversalPlan(let body): body.writeWire(into: &self)
        case .indexRequest(let body): body.writeWire(into: &self)
        case .indexResult(let body): body.writeWire(into: &self)
        case .networkStatus(let body): body.writeWire(into: &self)
        }
        return writerIndex - start
    }

    /// Reads one frame that fills the rest of the buffer (the plaintext of one sealed packet).
    /// Throws on anything malformed, including trailing bytes; on error the reader index does not move.
    ///
    /// Errors: `.truncated` when a field is cut short, `.unknownType` for an unknown kind,
    /// `.invalid` for a value the protocol forbids (over a limit, bad UTF-8, a boolean byte
    /// other than 0/1, an unknown enum value, an address family other than 4/6, bad metadata),
    /// `.trailingBytes` when bytes follow the frame. The frame's length itself is not checked
    /// against `maximumFrameBytes`: a frame decrypted from a sealed packet cannot exceed it.
    public mutating func readControlFrame() throws(ControlDecodingError) -> ControlEnvelope {
        try readWhole(ControlFrame.decode)
    }
}

extension ControlFrame {
    /// Decodes `kind(1) id(4) body` at the reader's position.
    static func decode(_ r: inout ControlWireReader) throws(ControlDecodingError) -> ControlEnvelope {
        let rawKind = try r.u8("frame kind")
        guard let kind = Kind(rawValue: rawKind) else { throw .unknownType(rawKind) }
        let id = try r.u32("frame id")
        let frame: ControlFrame
        switch kind {
        case .register: frame = .register(try RegisterRequest(wire: &r))
        case .keepalive: frame = .keepalive
        case .unregister: frame = .unregister
        case .lookup: frame = .lookup(try r.peerID("lookup.peer"))
        case .publish: frame = .publish(try MetadataUpdate(wire: &r))
        case .search: frame = .search(try SearchRequest(wire: &r))
        case .sendMessage: frame = .sendMessage(try OutgoingMessage(wire: &r))
        case .watch: frame = .watch(try ControlPeerList.read(&r, "watch"))
        case .unwatch: frame = .unwatch(try ControlPeerList.read(&r, "unwatch"))
        case .connect: frame = .connect(try ConnectRequest(wire: &r))
        case .answerConnect: frame = .answerConnect(try ConnectDecision(wire: &r, "answerConnect"))
        case .registered: frame = .registered(try Registered(wire: &r))
        case .ok: frame = .ok
        case .keepaliveAck:
            frame = .keepaliveAck(observed: try r.endpoint("keepaliveAck.observed"), supernodes: try r.supernodes("keepaliveAck.supernodes"))
        case .lookupResult: frame = .lookupResult(try LookupResult(wire: &r))
        case .searchResult: frame = .searchResult(try SearchResult(wire: &r))
        case .messageOutcome: frame = .messageOutcome(try MessageOutcome(wire: &r, "messageOutcome"))
        case .watchResult: frame = .watchResult(try ControlStatusList.read(&r))
        case .error: frame = .error(try ControlFailure(wire: &r))
        case .deliver: frame = .deliver(try IncomingMessage(wire: &r))
        case .status: frame = .status(try StatusEvent(wire: &r))
        case .connectRequested: frame = .connectRequested(try IncomingConnectRequest(wire: &r))
        case .connectAnswered: frame = .connectAnswered(try ConnectDecision(wire: &r, "connectAnswered"))
        case .messageStatus: frame = .messageStatus(try MessageOutcome(wire: &r, "messageStatus"))
        case .ack: frame = .ack
        case .welcome: frame = .welcome(try Welcome(wire: &r))
        case .traversalOffer: frame = .traversalOffer(try TraversalOffer(wire: &r))
        case .traversalResult: frame = .traversalResult(try TraversalResult(wire: &r))
        case .traversalPlan: frame = .traversalPlan(try TraversalPlan(wire: &r))
        case .indexRequest: frame = .indexRequest(try IndexCall(wire: &r))
        case .indexResult: frame = .indexResult(try IndexReply(wire: &r))
        case .networkStatus: frame = .networkStatus(try NetworkMemberStatus(wire: &r))
        }
        return ControlEnvelope(id: id, frame: frame)
    }
}

extension RegisterRequest {
    /// The label that starts the bytes a registration signature covers.
    public static let signatureLabel: [UInt8] = Array("peerway register v1".utf8)

    /// The bytes the Ed25519 signature covers: "peerway register v1" (UTF-8) ‖ transcript (32 bytes) ‖ the register body encoding up to (not including) the signature.
    public func signedBytes(transcript: [UInt8]) -> [UInt8] {
        precondition(transcript.count == 32, "the handshake transcript is 32 bytes, not \(transcript.count)")
        var buffer = ByteBuffer()
        buffer.reserveCapacity(Self.signatureLabel.count + 32 + 40 + candidates.count * 19 + 1 + metadata.count * 2 + metadata.totalBytes)
        buffer.writeBytes(Self.signatureLabel)
        buffer.writeBytes(transcript)
        writeWireUnsigned(into: &buffer)
        return buffer.readBytes(length: buffer.readableBytes)!
    }
}
