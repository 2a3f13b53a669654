import Crypto
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

/// What a registration signature covers: the label, the session transcript and every body field
/// before the signature.
@Suite("Control register signed bytes")
struct ControlSignedBytesTests {
    typealias S = ControlSamples

    @Test("label ‖ transcript ‖ the body as encoded, up to the signature")
    func layout() {
        let signed = S.register.signedBytes(transcript: S.transcript)
        let label = Array("peerway register v1".utf8)
        #expect(Array(signed.prefix(label.count)) == label)
        #expect(Array(signed[label.count..<(label.count + 32)]) == S.transcript)
        let frame = ControlTest.frameBytes(.register(S.register), id: 77)
        // The frame is kind(1) id(4) body; the body ends with the 64-byte signature.
        #expect(Array(signed[(label.count + 32)...]) == Array(frame[5..<(frame.count - 64)]))
        #expect(RegisterRequest.signatureLabel == label)
    }

    @Test("changing any covered field changes the signed bytes; the signature is not covered")
    func coversEveryField() throws {
        let base = S.register
        let reference = base.signedBytes(transcript: S.transcript)
        var variants: [(String, RegisterRequest)] = []
        for i in [0, 17, 31] {
            var r = base; r.publicKey[i] ^= 0x01; variants.append(("publicKey[\(i)]", r))
        }
        do { var r = base; r.keepaliveSeconds = 26; variants.append(("keepaliveSeconds", r)) }
        do { var r = base; r.keepaliveSeconds = 25 | 0x100; variants.append(("keepaliveSeconds high byte", r)) }
        do { var r = base; r.candidates.removeLast(); variants.append(("one candidate fewer", r)) }
        do { var r = base; r.candidates.append(S.v4); variants.append(("one candidate more", r)) }
        do { var r = base; r.candidates.reverse(); variants.append(("candidate order", r)) }
        do { var r = base; r.candidates[0] = S.v4.with(port: 8081); variants.append(("candidate port", r)) }
        do { var r = base; r.candidates[0] = PeerEndpoint(ip: .v4(0xC000_0202), port: 8080); variants.append(("candidate IPv4", r)) }
        do { var r = base; r.candidates[1] = PeerEndpoint(ip: .v6(high: 0x2001_0DB8_0000_0000, low: 2), port: 7400); variants.append(("candidate IPv6", r)) }
        do { var r = base; try r.metadata.apply(["age": "31"]); variants.append(("metadata value", r)) }
        do { var r = base; try r.metadata.apply(["zip": ""]); variants.append(("metadata entry added", r)) }
        do { var r = base; try r.metadata.apply(["age": nil]); variants.append(("metadata entry removed", r)) }
        do { var r = base; r.metadata = try PeerMetadata(["agf": "30", "name": "alice"]); variants.append(("metadata key", r)) }
        do { var r = base; r.metadata = PeerMetadata(); variants.append(("metadata emptied", r)) }
        for (name, variant) in variants {
            #expect(variant.signedBytes(transcript: S.transcript) != reference, "\(name) is not covered")
        }
        var otherTranscript = S.transcript
        otherTranscript[31] ^= 0x80
        #expect(base.signedBytes(transcript: otherTranscript) != reference, "the transcript is not covered")
        var resigned = base
        resigned.signature = Array(repeating: 0, count: 64)
        #expect(resigned.signedBytes(transcript: S.transcript) == reference, "the signature must not cover itself")
    }

    @Test("an Ed25519 signature over the signed bytes verifies after a trip over the wire")
    func signAndVerify() throws {
        let key = Curve25519.Signing.PrivateKey()
        var request = RegisterRequest(publicKey: Array(key.publicKey.rawRepresentation), keepaliveSeconds: 25,
                                      candidates: [S.v6], metadata: S.smallMetadata, signature: Array(repeating: 0, count: 64))
        request.signature = Array(try key.signature(for: request.signedBytes(transcript: S.transcript)))
        let decoded = try ControlTest.decodeFrame(ControlTest.frameBytes(.register(request), id: 1)).get()
        guard case .register(let received) = decoded.frame else { Issue.record("not a register"); return }
        let publicKey = try Curve25519.Signing.PublicKey(rawRepresentation: received.publicKey)
        #expect(publicKey.isValidSignature(received.signature, for: received.signedBytes(transcript: S.transcript)))
        var otherSession = S.transcript
        otherSession[0] ^= 1
        #expect(!publicKey.isValidSignature(received.signature, for: received.signedBytes(transcript: otherSession)))
        #expect(PeerID(digestOf: received.publicKey) == PeerID(publicKey: key.publicKey))
    }
}

/// Seeded random mutations of valid encodings: decoding never crashes, failures leave the reader
/// index alone, and whatever decodes re-encodes to bytes that decode to the same value.
@Suite("Control mutations")
struct ControlMutationTests {
    static var seeds: [[UInt8]] {
        ControlGoldenBytesTests.frames.map(\.1) + ControlGoldenBytesTests.packets.map(\.1)
            + ControlSamples.frames.map { ControlTest.frameBytes($0.1, id: $0.2) }
            + ControlSamples.packets.map { ControlTest.packetBytes($0.1) }
    }

    static func mutate(_ input: [UInt8], _ g: inout STUNSeededRandom, seeds: [[UInt8]]) -> [UInt8] {
        var bytes = input
        let interesting: [UInt8] = [0, 1, 2, 3, 4, 6, 0x10, 0x20, 0x7F, 0x80, 0xC3, 0xE2, 0xED, 0xF0, 0xFF]
        for _ in 0..<Int.random(in: 1...4, using: &g) {
            let at = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &g)
            switch Int.random(in: 0..<8, using: &g) {
            case 0 where !bytes.isEmpty: bytes[at] ^= UInt8(1) << UInt8.random(in: 0...7, using: &g)
            case 1 where !bytes.isEmpty: bytes[at] = interesting.randomElement(using: &g)!
            case 2 where !bytes.isEmpty: bytes[at] = UInt8.random(in: 0...255, using: &g)
            case 3: bytes.insert(interesting.randomElement(using: &g)!, at: at)
            case 4 where !bytes.isEmpty: bytes.remove(at: at)
            case 5: bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &g)))
            case 6 where !bytes.isEmpty:
                // Splice a piece of another seed in.
                let other = seeds.randomElement(using: &g)!
                let from = Int.random(in: 0..<other.count, using: &g)
                let piece = other[from..<min(other.count, from + Int.random(in: 1...24, using: &g))]
                bytes.replaceSubrange(at..<min(bytes.count, at + piece.count), with: piece)
            case 7 where bytes.count > 5:
                // Lengths and counts: nudge a byte by a small amount.
                bytes[at] = bytes[at] &+ UInt8.random(in: 1...3, using: &g) &- 2
            default: bytes.append(UInt8.random(in: 0...255, using: &g))
            }
        }
        return bytes
    }

    @Test("20,000 mutated inputs decode or fail cleanly, and decoded values re-encode stably")
    func mutations() {
        var g = STUNSeededRandom(seed: 0xC0DE_C0DE)
        let seeds = Self.seeds
        var decodedFrames = 0, decodedPackets = 0
        for i in 0..<20_000 {
            let bytes = Self.mutate(seeds.randomElement(using: &g)!, &g, seeds: seeds)
            if case .success(let envelope) = ControlTest.decodeFrame(bytes) {
                decodedFrames += 1
                let again = ControlTest.frameBytes(envelope.frame, id: envelope.id)
                let redecoded = ControlTest.decodeFrame(again)
                #expect(redecoded == .success(envelope), "mutation \(i): \(bytes)")
                if case .success(let e) = redecoded { #expect(ControlTest.frameBytes(e.frame, id: e.id) == again) }
            }
            if case .success(let packet) = ControlTest.decodePacket(bytes) {
                decodedPackets += 1
                let again = ControlTest.packetBytes(packet)
                #expect(again.count == bytes.count, "mutation \(i)")
                #expect(ControlTest.decodePacket(again) == .success(packet), "mutation \(i): \(bytes)")
                // A sealed packet's plaintext is a frame: decode the ciphertext as one too.
                if case .sealed(let sealed) = packet, case .success(let e) = ControlTest.decodeFrame(Array(sealed.ciphertext.readableBytesView)) {
                    #expect(ControlTest.decodeFrame(ControlTest.frameBytes(e.frame, id: e.id)) == .success(e))
                }
            }
        }
        // The mutations must leave enough intact to exercise the decoders' success paths.
        #expect(decodedFrames > 2000, "only \(decodedFrames) mutated frames decoded")
        #expect(decodedPackets > 500, "only \(decodedPackets) mutated packets decoded")
    }
}
