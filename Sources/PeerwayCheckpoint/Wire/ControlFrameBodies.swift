import Crypto
import NIOCore
import PeerwaySTUN

// Body encodings of the control frames (layouts in the doc comments of `ControlFrame` and of
// each body type). Each body type writes itself with `writeWire(into:)` and reads itself with
// `init(wire:_:)`, where the reader stands at the first body byte; the frame codec
// (ControlFrameCodec.swift) adds `kind(1) id(4)` and checks that nothing is left over.
//
// Encoders write what the types hold. They trap only where a value cannot be represented at all
// (a key that is not 32 bytes, a list of more than 255 items, text over 65,535 bytes); values that
// are representable but over a protocol limit are written as they are and refused by the decoder,
// so callers validate before sending.

// MARK: - Primitive writers

extension ByteBuffer {
    mutating func writeWireBool(_ value: Bool) {
        writeInteger(value ? 1 as UInt8 : 0)
    }

    mutating func writeWirePeerID(_ id: PeerID) {
        writeInteger(id.high)
        writeInteger(id.low)
    }

    mutating func writeWireOptionalPeerID(_ id: PeerID?) {
        if let id {
            writeInteger(1 as UInt8)
            writeWirePeerID(id)
        } else {
            writeInteger(0 as UInt8)
        }
    }

    mutating func writeWireEndpoint(_ endpoint: PeerEndpoint) {
        switch endpoint.ip {
        case .v4(let address):
            writeInteger(4 as UInt8)
            writeInteger(address)
        case .v6(let high, let low):
            writeInteger(6 as UInt8)
            writeInteger(high)
            writeInteger(low)
        }
        writeInteger(endpoint.port)
    }

    /// `length(2)` then the UTF-8 bytes.
    mutating func writeWireText(_ text: String) {
        let length = text.utf8.count
        precondition(length <= Int(UInt16.max), "control text of \(length) bytes does not fit its 16-bit length")
        writeInteger(UInt16(length))
        writeString(text)
    }

    /// A one-byte list count.
    mutating func writeWireCount(_ count: Int, _ what: StaticString) {
        precondition(count <= Int(UInt8.max), "\(what): \(count) items do not fit a one-byte count")
        writeInteger(UInt8(count))
    }

    /// The optional supernode list that ends `registered` and `keepaliveAck`: nothing when empty,
    /// else `count(1)` and per supernode `key(32) endpoint tcpPort(2)`. Supernodes beyond
    /// `maximumAdvertisedSupernodes` or without an IP-literal host are left out (the list is
    /// advice, not a contract).
    mutating func writeWireSupernodes(_ supernodes: [SupernodeAddress]) {
        let listed = supernodes.compactMap { a in a.endpoint.map { (a, $0) } }.prefix(ControlLimits.maximumAdvertisedSupernodes)
        guard !listed.isEmpty else { return }
        writeWireCount(listed.count, "supernodes")
        for (address, endpoint) in listed {
            writeBytes(address.publicKeyBytes)
            writeWireEndpoint(endpoint)
            writeInteger(address.tcpPort)
        }
    }

    /// `length(1)` then the UTF-8 bytes (metadata keys and values).
    mutating func writeWireShortString(_ text: String, _ what: StaticString) {
        let length = text.utf8.count
        precondition(length <= Int(UInt8.max), "\(what) of \(length) bytes does not fit a one-byte length")
        writeInteger(UInt8(length))
        writeString(text)
    }

    mutating func writeWireMetadata(_ metadata: PeerMetadata) {
        writeWireCount(metadata.count, "metadata")
        for entry in metadata {
            writeWireShortString(entry.key, "metadata key")
            writeWireShortString(entry.value, "metadata value")
        }
    }

    mutating func writeWireFixed(_ bytes: [UInt8], count: Int, _ what: StaticString) {
        precondition(bytes.count == count, "\(what) must be \(count) bytes, not \(bytes.count)")
        writeBytes(bytes)
    }
}

// MARK: - Requests

extension RegisterRequest {
    /// Everything before the signature (also what the signature covers, after label and transcript).
    func writeWireUnsigned(into buffer: inout ByteBuffer) {
        buffer.writeWireFixed(publicKey, count: 32, "register public key")
        buffer.writeInteger(keepaliveSeconds)
        buffer.writeWireCount(candidates.count, "register candidates")
        for candidate in candidates { buffer.writeWireEndpoint(candidate) }
        buffer.writeWireMetadata(metadata)
    }

    func writeWire(into buffer: inout ByteBuffer) {
        writeWireUnsigned(into: &buffer)
        buffer.writeWireFixed(signature, count: 64, "register signature")
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let publicKey = try r.array(32, "register.publicKey")
        let keepalive = try r.u16("register.keepaliveSeconds")
        let n = try r.count("register.candidates", limit: ControlLimits.maximumCandidates, limitName: "maximumCandidates")
        var candidates: [PeerEndpoint] = []
        candidates.reserveCapacity(n)
        for _ in 0..<n { candidates.append(try r.endpoint("register.candidates")) }
        let metadata = try r.metadata("register.metadata")
        let signature = try r.array(64, "register.signature")
        self.init(publicKey: publicKey, keepaliveSeconds: keepalive, candidates: candidates, metadata: metadata, signature: signature)
    }
}

extension MetadataUpdate {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWireBool(replace)
        buffer.writeWireCount(changes.count, "publish changes")
        for change in changes {
            buffer.writeWireShortString(change.key, "publish key")
            if let value = change.value {
                buffer.writeInteger(1 as UInt8)
                buffer.writeWireShortString(value, "publish value")
            } else {
                buffer.writeInteger(0 as UInt8)
            }
        }
    }

    /// Each key and value is checked like metadata (key alphabet and length, value length, valid
    /// UTF-8) and a key may appear once. Whether the update fits the entry and size limits
    /// depends on the metadata it applies to, so that is the checkpoint's to check
    /// (`PeerMetadata.apply`), answering `tooLarge` rather than dropping the request.
    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let replace = try r.bool("publish.replace")
        let n = Int(try r.u8("publish.changes"))
        var changes: [(key: String, value: String?)] = []
        changes.reserveCapacity(n)
        for _ in 0..<n {
            let key = try r.metadataKey("publish.key")
            let value: String?
            if try r.bool("publish.present") {
                let length = Int(try r.u8("publish.value"))
                guard length <= PeerMetadata.maximumValueBytes else {
                    throw .invalid(what: "publish.value of '\(key)': \(length) bytes, over PeerMetadata.maximumValueBytes (\(PeerMetadata.maximumValueBytes))")
                }
                value = try r.utf8(length, "publish.value")
            } else {
                value = nil
            }
            guard !changes.contains(where: { $0.key == key }) else { throw .invalid(what: "publish.changes: duplicate key '\(key)'") }
            changes.append((key, value))
        }
        self.init(replace: replace, changes: changes)
    }
}

extension SearchRequest {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWireText(query)
        buffer.writeInteger(limit)
        buffer.writeWireOptionalPeerID(after)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let query = try r.text("search.query", limit: ControlLimits.maximumQueryBytes, limitName: "maximumQueryBytes")
        let limit = try r.u16("search.limit")
        self.init(query: query, limit: limit, after: try r.optionalPeerID("search.after"))
    }
}

extension OutgoingMessage {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWirePeerID(to)
        buffer.writeInteger(messageID)
        buffer.writeWireText(text)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let to = try r.peerID("sendMessage.to")
        let id = try r.u64("sendMessage.messageID")
        self.init(to: to, messageID: id, text: try r.text("sendMessage.text", limit: ControlLimits.maximumMessageBytes, limitName: "maximumMessageBytes"))
    }
}

extension ConnectRequest {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWirePeerID(to)
        buffer.writeInteger(requestID)
        buffer.writeInteger(transport.rawValue)
        buffer.writeWireText(note)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let to = try r.peerID("connect.to")
        let id = try r.u64("connect.requestID")
        let transport = try TunnelTransport(wire: &r, "connect.transport")
        self.init(to: to, requestID: id, transport: transport,
                  note: try r.text("connect.note", limit: ControlLimits.maximumNoteBytes, limitName: "maximumNoteBytes"))
    }
}

extension TunnelTransport {
    init(wire r: inout ControlWireReader, _ what: String) throws(ControlDecodingError) {
        let raw = try r.u8(what)
        guard let transport = TunnelTransport(rawValue: raw) else { throw .invalid(what: "\(what): unknown transport \(raw)") }
        self = transport
    }
}

extension ConnectDecision {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWirePeerID(peer)
        buffer.writeInteger(requestID)
        buffer.writeWireBool(accepted)
        buffer.writeWireText(reason)
    }

    init(wire r: inout ControlWireReader, _ frame: String) throws(ControlDecodingError) {
        let peer = try r.peerID("\(frame).peer")
        let id = try r.u64("\(frame).requestID")
        let accepted = try r.bool("\(frame).accepted")
        self.init(peer: peer, requestID: id, accepted: accepted,
                  reason: try r.text("\(frame).reason", limit: ControlLimits.maximumNoteBytes, limitName: "maximumNoteBytes"))
    }
}

/// `watch` / `unwatch` body, and the count of `watchResult`.
enum ControlPeerList {
    static func write(_ peers: [PeerID], into buffer: inout ByteBuffer) {
        buffer.writeWireCount(peers.count, "watch list")
        for peer in peers { buffer.writeWirePeerID(peer) }
    }

    static func read(_ r: inout ControlWireReader, _ frame: String) throws(ControlDecodingError) -> [PeerID] {
        let n = try r.count("\(frame).peers", limit: ControlLimits.maximumWatchBatch, limitName: "maximumWatchBatch")
        var peers: [PeerID] = []
        peers.reserveCapacity(n)
        for _ in 0..<n { peers.append(try r.peerID("\(frame).peers")) }
        return peers
    }
}

// MARK: - Responses

extension Registered {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWirePeerID(peer)
        buffer.writeWireEndpoint(observed)
        buffer.writeInteger(keepaliveSeconds)
        buffer.writeInteger(expiryMisses)
        buffer.writeWireSupernodes(supernodes)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let peer = try r.peerID("registered.peer")
        let observed = try r.endpoint("registered.observed")
        let keepalive = try r.u16("registered.keepaliveSeconds")
        let misses = try r.u8("registered.expiryMisses")
        let supernodes = try r.supernodes("registered.supernodes")
        self.init(peer: peer, observed: observed, keepaliveSeconds: keepalive, expiryMisses: misses, supernodes: supernodes)
    }
}

extension LookupResult {
    /// When offline only `peer online(0)` is written: `observed`, `candidates` and `metadata` are
    /// not sent. When online, `observed` must be set.
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWirePeerID(peer)
        buffer.writeWireBool(online)
        guard online else { return }
        guard let observed else { preconditionFailure("lookupResult: an online peer needs its observed endpoint") }
        buffer.writeWireEndpoint(observed)
        buffer.writeWireCount(candidates.count, "lookupResult candidates")
        for candidate in candidates { buffer.writeWireEndpoint(candidate) }
        buffer.writeWireMetadata(metadata)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let peer = try r.peerID("lookupResult.peer")
        guard try r.bool("lookupResult.online") else {
            self.init(peer: peer, online: false, observed: nil, candidates: [], metadata: PeerMetadata())
            return
        }
        let observed = try r.endpoint("lookupResult.observed")
        let n = try r.count("lookupResult.candidates", limit: ControlLimits.maximumCandidates, limitName: "maximumCandidates")
        var candidates: [PeerEndpoint] = []
        candidates.reserveCapacity(n)
        for _ in 0..<n { candidates.append(try r.endpoint("lookupResult.candidates")) }
        self.init(peer: peer, online: true, observed: observed, candidates: candidates, metadata: try r.metadata("lookupResult.metadata"))
    }
}

extension SearchResult {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWireCount(hits.count, "searchResult hits")
        for hit in hits {
            buffer.writeWirePeerID(hit.peer)
            buffer.writeWireMetadata(hit.metadata)
        }
        buffer.writeWireOptionalPeerID(next)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let n = try r.count("searchResult.hits", limit: ControlLimits.maximumSearchPage, limitName: "maximumSearchPage")
        var hits: [SearchHit] = []
        hits.reserveCapacity(n)
        for _ in 0..<n {
            let peer = try r.peerID("searchResult.hits.peer")
            hits.append(SearchHit(peer: peer, metadata: try r.metadata("searchResult.hits.metadata")))
        }
        self.init(hits: hits, next: try r.optionalPeerID("searchResult.next"))
    }
}

extension MessageOutcome {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWirePeerID(to)
        buffer.writeInteger(messageID)
        buffer.writeInteger(outcome.rawValue)
    }

    init(wire r: inout ControlWireReader, _ frame: String) throws(ControlDecodingError) {
        let to = try r.peerID("\(frame).to")
        let id = try r.u64("\(frame).messageID")
        let raw = try r.u8("\(frame).outcome")
        guard let outcome = Outcome(rawValue: raw) else { throw .invalid(what: "\(frame).outcome: unknown outcome \(raw)") }
        self.init(to: to, messageID: id, outcome: outcome)
    }
}

/// `watchResult` body: `count(1)` (at most `maximumWatchBatch`) then `peer(16) online(1)` each.
enum ControlStatusList {
    static func write(_ statuses: [PeerStatus], into buffer: inout ByteBuffer) {
        buffer.writeWireCount(statuses.count, "watchResult")
        for status in statuses {
            buffer.writeWirePeerID(status.peer)
            buffer.writeWireBool(status.online)
        }
    }

    static func read(_ r: inout ControlWireReader) throws(ControlDecodingError) -> [PeerStatus] {
        let n = try r.count("watchResult.peers", limit: ControlLimits.maximumWatchBatch, limitName: "maximumWatchBatch")
        var statuses: [PeerStatus] = []
        statuses.reserveCapacity(n)
        for _ in 0..<n {
            let peer = try r.peerID("watchResult.peer")
            statuses.append(PeerStatus(peer: peer, online: try r.bool("watchResult.online")))
        }
        return statuses
    }
}

extension ControlFailure {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeInteger(code.rawValue)
        buffer.writeWireText(text)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let raw = try r.u16("error.code")
        guard let code = Code(rawValue: raw) else { throw .invalid(what: "error.code: unknown code \(raw)") }
        self.init(code, try r.text("error.text", limit: ControlLimits.maximumErrorTextBytes, limitName: "maximumErrorTextBytes"))
    }
}

// MARK: - Pushes and the welcome

extension IncomingMessage {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWirePeerID(from)
        buffer.writeInteger(messageID)
        buffer.writeWireText(text)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let from = try r.peerID("deliver.from")
        let id = try r.u64("deliver.messageID")
        self.init(from: from, messageID: id, text: try r.text("deliver.text", limit: ControlLimits.maximumMessageBytes, limitName: "maximumMessageBytes"))
    }
}

extension StatusEvent {
    /// Metadata is only carried for `online` and `metadataChanged`; for the other changes it is
    /// not written (and decodes as empty).
    var carriesMetadata: Bool { change == .online || change == .metadataChanged }

    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWirePeerID(peer)
        buffer.writeInteger(change.rawValue)
        if carriesMetadata { buffer.writeWireMetadata(metadata) }
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let peer = try r.peerID("status.peer")
        let raw = try r.u8("status.change")
        guard let change = Change(rawValue: raw) else { throw .invalid(what: "status.change: unknown change \(raw)") }
        self.init(peer: peer, change: change)
        if carriesMetadata { metadata = try r.metadata("status.metadata") }
    }
}

extension IncomingConnectRequest {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWirePeerID(from)
        buffer.writeInteger(requestID)
        buffer.writeInteger(transport.rawValue)
        buffer.writeWireText(note)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let from = try r.peerID("connectRequested.from")
        let id = try r.u64("connectRequested.requestID")
        let transport = try TunnelTransport(wire: &r, "connectRequested.transport")
        self.init(from: from, requestID: id, transport: transport,
                  note: try r.text("connectRequested.note", limit: ControlLimits.maximumNoteBytes, limitName: "maximumNoteBytes"))
    }
}

extension Welcome {
    func writeWire(into buffer: inout ByteBuffer) {
        buffer.writeWireEndpoint(observed)
        buffer.writeInteger(keepaliveSeconds)
        buffer.writeInteger(serverTimeMillis)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let observed = try r.endpoint("welcome.observed")
        let keepalive = try r.u16("welcome.keepaliveSeconds")
        self.init(observed: observed, keepaliveSeconds: keepalive, serverTimeMillis: try r.u64("welcome.serverTimeMillis"))
    }
}

extension ControlWireReader {
    /// The optional supernode list at the end of a body (`writeWireSupernodes`): none when the
    /// body ends here; a present list is never empty (one encoding per frame).
    mutating func supernodes(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> [SupernodeAddress] {
        guard remaining > 0 else { return [] }
        let n = try count(what(), limit: ControlLimits.maximumAdvertisedSupernodes, limitName: "maximumAdvertisedSupernodes")
        guard n > 0 else { throw .invalid(what: "\(what()): a present list is empty") }
        var supernodes: [SupernodeAddress] = []
        for _ in 0..<n {
            let key = try array(ControlLimits.keyBytes, "\(what()).key")
            let endpoint = try self.endpoint("\(what()).endpoint")
            let tcpPort = try u16("\(what()).tcpPort")
            guard endpoint.port != 0, tcpPort != 0,
                  let publicKey = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: key) else {
                throw .invalid(what: "\(what()): a supernode with port 0 or an unusable key")
            }
            supernodes.append(SupernodeAddress(publicKey: publicKey, host: endpoint.ipString, port: endpoint.port, tcpPort: tcpPort))
        }
        return supernodes
    }
}
