import NIOCore
import PeerwayCheckpoint
import Testing

@Suite("Control channel cipher")
struct CheckpointCipherTests {
    let key = ControlKey(bytes: (0..<32).map { UInt8($0) })

    @Test("a sealed packet starts with its header, decodes, and opens to the plaintext")
    func sealAndOpen() throws {
        let plain = ByteBuffer(bytes: Array("hello, checkpoint".utf8))
        let packet = ControlCipher.sealPacket(plain, sessionID: 0x0102_0304_0506_0708, counter: 0x1122_3344_5566_7788, key: key)
        #expect(Array(packet.readableBytesView.prefix(20))
                == ControlCipher.sealedHeader(sessionID: 0x0102_0304_0506_0708, counter: 0x1122_3344_5566_7788))
        #expect(Array(packet.readableBytesView.prefix(20))
                == [1, 4, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])
        #expect(packet.readableBytes == 20 + plain.readableBytes + ControlLimits.tagBytes)
        var copy = packet
        guard case .sealed(let sealed) = try copy.readControlPacket() else { Issue.record("not sealed"); return }
        #expect(try ControlCipher.openPacket(sealed, key: key) == plain)
    }

    @Test("a changed header, counter, key or ciphertext fails authentication")
    func tamper() throws {
        let plain = ByteBuffer(bytes: [1, 2, 3])
        var copy = ControlCipher.sealPacket(plain, sessionID: 9, counter: 5, key: key)
        guard case .sealed(let sealed) = try copy.readControlPacket() else { return }
        var other = sealed
        other.counter = 6
        #expect(throws: ControlCryptoError.authenticationFailed) { try ControlCipher.openPacket(other, key: key) }
        other = sealed
        other.sessionID = 10
        #expect(throws: ControlCryptoError.authenticationFailed) { try ControlCipher.openPacket(other, key: key) }
        #expect(throws: ControlCryptoError.authenticationFailed) {
            try ControlCipher.openPacket(sealed, key: ControlKey(bytes: [UInt8](repeating: 9, count: 32)))
        }
        other = sealed
        other.ciphertext.setInteger(other.ciphertext.getInteger(at: other.ciphertext.readerIndex, as: UInt8.self)! ^ 0x80,
                                    at: other.ciphertext.readerIndex)
        #expect(throws: ControlCryptoError.authenticationFailed) { try ControlCipher.openPacket(other, key: key) }
    }
}
