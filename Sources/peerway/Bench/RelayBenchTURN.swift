#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PeerwaySTUN

/*
 A minimal TURN client (RFC 8656) for `peerway bench relay`: just what it takes to make coturn relay
 one sender's datagrams to one peer, over UDP, with long-term credentials.

     client                                   TURN server
       |-- Allocate (REQUESTED-TRANSPORT udp) -->|
       |<-- 401 (REALM, NONCE) -------------------|
       |-- Allocate + USERNAME REALM NONCE MESSAGE-INTEGRITY -->|
       |<-- success (XOR-RELAYED-ADDRESS) --------|
       |-- CreatePermission (XOR-PEER-ADDRESS) + credentials -->|
       |-- ChannelBind (CHANNEL-NUMBER 0x4000, XOR-PEER-ADDRESS) + credentials -->|
       |== ChannelData: channel(2) length(2) payload ==>  relayed from XOR-RELAYED-ADDRESS to the peer

 MESSAGE-INTEGRITY is HMAC-SHA1 with MD5(username:realm:password) (PeerwaySTUN's encoder and
 STUNIntegrity.longTermKey); the TURN attributes the codec does not type travel as `.unknown`.
*/

/// TURN's methods and attributes beyond STUN's (RFC 8656 §17, §18).
enum TURN {
    static let allocate = STUNMethod(rawValue: 0x003)
    static let createPermission = STUNMethod(rawValue: 0x008)
    static let channelBind = STUNMethod(rawValue: 0x009)

    static let channelNumber: UInt16 = 0x000C
    static let lifetime: UInt16 = 0x000D
    static let xorPeerAddress: UInt16 = 0x0012
    static let xorRelayedAddress: UInt16 = 0x0016
    static let requestedTransport: UInt16 = 0x0019
    static let realm: UInt16 = 0x0014
    static let nonce: UInt16 = 0x0015

    /// Bytes a ChannelData message adds to each datagram (channel number and length).
    static let channelDataHeaderBytes = 4
    /// The first channel number a client may bind (RFC 8656 §12).
    static let firstChannel: UInt16 = 0x4000

    /// An IPv4 XOR-…-ADDRESS value (RFC 8489 §14.2): family, port and address XOR-ed with the cookie.
    static func xorAddress(_ a: STUNAddress) -> [UInt8] {
        guard case .v4(let ip) = a.ip else { preconditionFailure("the relay bench is IPv4 loopback only") }
        let port = a.port ^ UInt16(STUN.magicCookie >> 16)
        let x = ip ^ STUN.magicCookie
        return [0, 0x01, UInt8(port >> 8), UInt8(port & 0xFF),
                UInt8(x >> 24), UInt8((x >> 16) & 0xFF), UInt8((x >> 8) & 0xFF), UInt8(x & 0xFF)]
    }

    static func decodeXORAddress(_ v: [UInt8]) -> STUNAddress? {
        guard v.count == 8, v[1] == 0x01 else { return nil }
        let port = (UInt16(v[2]) << 8 | UInt16(v[3])) ^ UInt16(STUN.magicCookie >> 16)
        let ip = (UInt32(v[4]) << 24 | UInt32(v[5]) << 16 | UInt32(v[6]) << 8 | UInt32(v[7])) ^ STUN.magicCookie
        return STUNAddress(ip: .v4(ip), port: port)
    }

    /// A ChannelData message header for `length` payload bytes.
    static func channelDataHeader(channel: UInt16, length: Int) -> [UInt8] {
        [UInt8(channel >> 8), UInt8(channel & 0xFF), UInt8(length >> 8), UInt8(length & 0xFF)]
    }
}

enum TURNClientError: Error, CustomStringConvertible {
    case timeout(String)
    case refused(String, STUNErrorCode?)
    case malformed(String)

    var description: String {
        switch self {
        case .timeout(let what): return "TURN \(what): no answer"
        case .refused(let what, let e): return "TURN \(what) refused: \(e.map(\.description) ?? "no ERROR-CODE")"
        case .malformed(let what): return "TURN \(what): \(what == "allocate" ? "no XOR-RELAYED-ADDRESS" : "malformed answer")"
        }
    }
}

/// One TURN allocation over a UDP socket connected to the server.
struct TURNClient {
    /// Request retransmissions (every `retransmitMillis`) before giving up.
    static let attempts = 10
    static let retransmitMillis: Int32 = 200

    let fd: Int32
    let username: String
    let password: String
    private var realm: String?
    private var nonce: [UInt8]?
    private var key: [UInt8] = []

    init(fd: Int32, username: String, password: String) {
        self.fd = fd
        self.username = username
        self.password = password
    }

    /// Allocates a UDP relayed address; returns it.
    mutating func allocate() throws -> STUNAddress {
        let answer = try request(TURN.allocate, [.unknown(type: TURN.requestedTransport, value: [17, 0, 0, 0])], what: "allocate")
        for case .unknown(let type, let value) in answer.attributes where type == TURN.xorRelayedAddress {
            if let a = TURN.decodeXORAddress(value) { return a }
        }
        throw TURNClientError.malformed("allocate")
    }

    /// Lets `peer` send to and receive from the allocation.
    mutating func createPermission(peer: STUNAddress) throws {
        _ = try request(TURN.createPermission, [.unknown(type: TURN.xorPeerAddress, value: TURN.xorAddress(peer))], what: "CreatePermission")
    }

    /// Binds `channel` to `peer`, so data goes as 4-byte-header ChannelData.
    mutating func channelBind(_ channel: UInt16, peer: STUNAddress) throws {
        _ = try request(TURN.channelBind, [
            .unknown(type: TURN.channelNumber, value: [UInt8(channel >> 8), UInt8(channel & 0xFF), 0, 0]),
            .unknown(type: TURN.xorPeerAddress, value: TURN.xorAddress(peer)),
        ], what: "ChannelBind")
    }

    /// Sends a request, with credentials once the server named its realm and nonce; answers a 401
    /// or 438 (stale nonce) by retrying with the new ones, once each.
    private mutating func request(_ method: STUNMethod, _ attributes: [STUNAttribute], what: String) throws -> STUNMessage {
        for _ in 0..<3 {
            var message = STUNMessage(type: STUNMessageType(method: method, class: .request), attributes: attributes)
            var options = STUNEncodingOptions.plain
            if let realm, let nonce {
                message.attributes += [.username(username), .unknown(type: TURN.realm, value: Array(realm.utf8)),
                                       .unknown(type: TURN.nonce, value: nonce)]
                options = STUNEncodingOptions(messageIntegrityKey: key)
            }
            let answer = try transact(message.encodedBytes(options: options), id: message.transactionID, what: what)
            if answer.type.messageClass == .successResponse { return answer }
            let code = answer.errorCode?.code
            guard code == 401 || code == 438 else { throw TURNClientError.refused(what, answer.errorCode) }
            for case .unknown(let type, let value) in answer.attributes {
                if type == TURN.realm { realm = String(decoding: value, as: UTF8.self) }
                if type == TURN.nonce { nonce = value }
            }
            guard let realm else { throw TURNClientError.refused(what, answer.errorCode) }
            key = STUNIntegrity.longTermKey(username: username, realm: realm, password: password)
        }
        throw TURNClientError.refused(what, STUNErrorCode.unauthenticated)
    }

    /// Sends `bytes` until an answer with transaction id `id` arrives.
    private func transact(_ bytes: [UInt8], id: STUNTransactionID, what: String) throws -> STUNMessage {
        var buffer = [UInt8](repeating: 0, count: 2048)
        for _ in 0..<Self.attempts {
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let deadline = Date().addingTimeInterval(Double(Self.retransmitMillis) / 1000)
            while Date() < deadline {
                guard poll(&p, 1, Self.retransmitMillis) > 0 else { break }
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                guard n > 0 else { continue }
                if let m = try? STUNMessage(bytes: Array(buffer[0..<n])), m.transactionID == id { return m }
            }
        }
        throw TURNClientError.timeout(what)
    }
}
