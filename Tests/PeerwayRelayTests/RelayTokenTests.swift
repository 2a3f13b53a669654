import Crypto
import PeerwayRelay
import Testing

@Suite("RELAY tokens")
struct RelayTokenTests {
    let minter = RelayTokenMinter(key: SymmetricKey(data: [UInt8](repeating: 7, count: 32)))

    @Test("a minted token is 32 bytes in the spec's layout and verifies with the same key")
    func layout() throws {
        let token = minter.mint(allocation: 0x0102_0304_0506_0708, expires: 0x6A00_0000, side: 1, transport: .tcp)
        let bytes = token.bytes
        #expect(bytes.count == 32)
        #expect(Array(bytes[0..<8]) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Array(bytes[8..<12]) == [0x6A, 0, 0, 0])
        #expect(bytes[12] == 1 && bytes[13] == 2 && bytes[14] == 0 && bytes[15] == 0)
        // mac = HMAC-SHA256(key, the 16 bytes before it)[0..<16]
        let mac = Array(HMAC<SHA256>.authenticationCode(for: Array(bytes[0..<16]), using: SymmetricKey(data: [UInt8](repeating: 7, count: 32))))
        #expect(Array(bytes[16..<32]) == Array(mac[0..<16]))
        let verified = try minter.verify(bytes, now: 0x6A00_0000 - 1)
        #expect(verified == token)
        #expect(RelayToken(bytes: bytes) == token)
    }

    @Test("forged, tampered, expired and malformed tokens are refused with their reason")
    func refusals() {
        let token = minter.mint(allocation: 42, expires: 1_000, side: 0, transport: .udp)
        let other = RelayTokenMinter(key: SymmetricKey(data: [UInt8](repeating: 8, count: 32)))
        #expect(throws: RelayError.forged) { try minter.verify(other.mint(allocation: 42, expires: 1_000, side: 0, transport: .udp).bytes, now: 0) }
        for i in 0..<32 where !(12...15).contains(i) {
            var tampered = token.bytes
            tampered[i] ^= 0x01
            #expect(throws: RelayError.forged) { try minter.verify(tampered, now: 0) }
        }
        var sideFlipped = token.bytes
        sideFlipped[12] = 1
        #expect(throws: RelayError.forged) { try minter.verify(sideFlipped, now: 0) }
        #expect(throws: RelayError.expired) { try minter.verify(token.bytes, now: 1_000) }
        #expect(throws: RelayError.malformed) { try minter.verify(Array(token.bytes.dropLast()), now: 0) }
        var badTransport = token.bytes
        badTransport[13] = 3
        #expect(throws: RelayError.malformed) { try minter.verify(badTransport, now: 0) }
        var badReserved = token.bytes
        badReserved[15] = 1
        #expect(throws: RelayError.malformed) { try minter.verify(badReserved, now: 0) }
    }

    @Test("a bind and its answer are 37 bytes: PWRB/PWRA, version, token")
    func messages() {
        let token = minter.mint(allocation: 9, expires: 5, side: 1, transport: .udp)
        let bind = RelayMessage.bind(token)
        let answer = RelayMessage.answer(token)
        #expect(bind.count == 37 && answer.count == 37)
        #expect(Array(bind[0..<5]) == Array("PWRB".utf8) + [1])
        #expect(Array(answer[0..<5]) == Array("PWRA".utf8) + [1])
        #expect(Array(bind[5...]) == token.bytes && Array(answer[5...]) == token.bytes)
        #expect(bind.withUnsafeBytes { RelayMessage.isBind($0) })
        #expect(!answer.withUnsafeBytes { RelayMessage.isBind($0) })
        var inPlace = bind
        inPlace.withUnsafeMutableBytes { RelayMessage.makeAnswer(inPlace: $0) }
        #expect(inPlace == answer)
        #expect(RelayMessage.answeredToken(answer) == token)
        #expect(RelayMessage.answeredToken(bind) == nil)
        #expect(RelayMessage.startsWithBindMagic(Array(bind[0..<4])))
        #expect(!RelayMessage.startsWithBindMagic([0, 1, 2, 3]))
    }
}
