import PeerwayCheckpoint
import Testing

/// RFC 4648 §10 base32 vectors, lowercased and without padding (the form PeerIDs print in).
@Suite("Base32")
struct Base32Tests {
    static let vectors: [(String, String)] = [
        ("", ""), ("f", "my"), ("fo", "mzxq"), ("foo", "mzxw6"), ("foob", "mzxw6yq"), ("fooba", "mzxw6ytb"), ("foobar", "mzxw6ytboi"),
    ]

    @Test("RFC 4648 vectors encode and decode", arguments: vectors)
    func vector(plain: String, encoded: String) {
        #expect(Base32.encode(Array(plain.utf8)) == encoded)
        #expect(Base32.decode(encoded) == Array(plain.utf8))
        #expect(Base32.decode(encoded.uppercased()) == Array(plain.utf8), "input is case-insensitive")
    }

    @Test("non-zero trailing bits are refused, so every byte string has one spelling")
    func trailingBits() {
        #expect(Base32.decode("my") == [0x66])
        #expect(Base32.decode("mz") == nil)  // "f" with the low two leftover bits set
        #expect(Base32.decode("mzxr") == nil)
        #expect(Base32.decode("mzxw7") == nil)
        #expect(Base32.decode("mzxw6ytboj") == nil)
        // A leftover group of 5 bits or more is not a whole byte and cannot be padding.
        #expect(Base32.decode("m") == nil)
        #expect(Base32.decode("mzx") == nil)
        #expect(Base32.decode("mzxw6y") == nil)
    }

    @Test("characters outside the alphabet are refused", arguments: ["my=", "m1", "m8", "m0", "my ", " my", "m-y", "mé", "my\n", "MY==", "m_"])
    func badCharacters(text: String) {
        #expect(Base32.decode(text) == nil)
    }

    @Test("random byte strings round-trip; the encoding is lowercase and unpadded")
    func roundTrip() {
        var g = SystemRandomNumberGenerator()
        for n in 0..<70 {
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
            let text = Base32.encode(bytes)
            #expect(text.count == (n * 8 + 4) / 5)
            #expect(text.allSatisfy { "abcdefghijklmnopqrstuvwxyz234567".contains($0) })
            #expect(Base32.decode(text) == bytes)
        }
    }
}
