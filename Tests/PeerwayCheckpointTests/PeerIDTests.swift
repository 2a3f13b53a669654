import Crypto
import Foundation
import PeerwayCheckpoint
import Testing

@Suite("PeerID")
struct PeerIDTests {
    static let bytes: [UInt8] = (0..<16).map { UInt8($0 * 17) }

    @Test("16 bytes, two big-endian halves, 26 lowercase base32 characters")
    func bytesAndText() throws {
        let id = try #require(PeerID(bytes: Self.bytes))
        #expect(id.high == 0x0011_2233_4455_6677 && id.low == 0x8899_AABB_CCDD_EEFF)
        #expect(id.bytes == Self.bytes)
        #expect(id.description.count == PeerID.textLength)
        #expect(id.description == Base32.encode(Self.bytes))
        #expect(id.description == id.description.lowercased())
        #expect(PeerID(id.description) == id)
        #expect(PeerID(id.description.uppercased()) == id)
    }

    @Test("wrong sizes and bad text are refused")
    func refusals() {
        #expect(PeerID(bytes: Array(Self.bytes.prefix(15))) == nil)
        #expect(PeerID(bytes: Self.bytes + [0]) == nil)
        let text = PeerID(bytes: Self.bytes)!.description
        #expect(PeerID(String(text.dropLast())) == nil)
        #expect(PeerID(text + "a") == nil)
        #expect(PeerID(String(text.dropLast()) + "1") == nil)
        // 26 characters carry 130 bits: the last character's two low bits must be zero.
        let all = PeerID(high: .max, low: .max).description
        #expect(all.hasSuffix("4"))  // 3 one-bits and 2 zero bits: 0b11100
        #expect(PeerID(all) == PeerID(high: .max, low: .max))
        #expect(PeerID(String(all.dropLast()) + "7") == nil)
    }

    @Test("derived from the public key: the first 16 bytes of its SHA-256")
    func derivation() {
        let key = Curve25519.Signing.PrivateKey().publicKey
        let digest = Array(SHA256.hash(data: key.rawRepresentation))
        let id = PeerID(publicKey: key)
        #expect(id.bytes == Array(digest.prefix(16)))
        #expect(PeerID(digestOf: Array(key.rawRepresentation)) == id)
        #expect(PeerID(publicKey: Curve25519.Signing.PrivateKey().publicKey) != id)
    }

    @Test("ordered by bytes; hashable; Codable as its text")
    func orderAndCoding() throws {
        let a = PeerID(high: 1, low: .max), b = PeerID(high: 2, low: 0), c = PeerID(high: 2, low: 1)
        #expect(a < b && b < c && !(c < a))
        #expect([c, a, b].sorted() == [a, b, c])
        #expect(Set([a, b, a]).count == 2)
        let data = try JSONEncoder().encode([a])
        #expect(String(decoding: data, as: UTF8.self) == "[\"\(a.description)\"]")
        #expect(try JSONDecoder().decode([PeerID].self, from: data) == [a])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([PeerID].self, from: Data("[\"nope\"]".utf8)) }
    }
}
