import Crypto
import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing
@testable import PeerwayTunnel

@Suite("Tunnel probes (docs/traversal-protocol.md, Probes)")
struct TunnelProbeTests {
    @Test(arguments: TunnelProbe.Kind.allCases)
    func roundTrip(kind: TunnelProbe.Kind) throws {
        let (a, b) = try Fixture.keys()
        for observed in [Fixture.v4, Fixture.v6] {
            let bytes = TunnelProbe.seal(kind: kind, txid: 0xDEAD_BEEF_0000_0001, observed: observed, keys: a)
            let expectedLength = !kind.carriesEndpoint ? 37 : (observed == Fixture.v4 ? 44 : 56)
            #expect(bytes.count == expectedLength)
            #expect(TunnelProbe.isProbe(bytes))
            let probe = try TunnelProbe.open(bytes, keys: b)
            #expect(probe == TunnelProbe(kind: kind, tag: b.tag, role: .initiator, txid: 0xDEAD_BEEF_0000_0001,
                                         observed: kind.carriesEndpoint ? observed : nil))
            // The same through a ByteBuffer, both ways.
            var buffer = ByteBuffer()
            TunnelProbe.seal(kind: kind, txid: 7, observed: observed, keys: b, into: &buffer)
            #expect(TunnelProbe.isProbe(buffer))
            let back = try TunnelProbe.open(buffer, keys: a)
            #expect(back.kind == kind && back.role == .acceptor && back.txid == 7)
        }
    }

    /// Fixed seeds, fixed keys, fixed bytes: any change to the key derivation or the probe format
    /// breaks this test. The values were cross-checked against an independent implementation of
    /// docs/traversal-protocol.md (Python `cryptography`: X25519, HKDF-SHA256, HMAC-SHA256).
    @Test func goldenBytes() throws {
        let (a, b) = try Fixture.keys()
        #expect(String(a.tag, radix: 16) == "79b02f16b6190798")
        let request = TunnelProbe.seal(kind: .request, txid: 0x1122_3344_5566_7788, keys: a)
        #expect(request.hex == "5057500179b02f16b6190798001122334455667788" + "3a049b718995ab080126975213c2d99e")
        let response = TunnelProbe.seal(kind: .response, txid: 0x1122_3344_5566_7788, observed: Fixture.v4, keys: b)
        #expect(response.hex == "5057500279b02f16b6190798011122334455667788"
            + "04c63364079c40" + "c2061b32711eb53f30dad92ee7f6dd4b")
        #expect(try TunnelProbe.open([UInt8](hex: request.hex), keys: b).txid == 0x1122_3344_5566_7788)

        // The first UDP record from the initiator, and the acceptor's stream hello.
        var cipher = TunnelDatagramCipher(keys: a)
        #expect(try cipher.seal(Array("hi".utf8)).hex == "170000000000000001" + "0950" + "90146a48422ee9d97f6b4b00d37111e4")
        #expect(TunnelStreamHello.make(keys: b).hex == "5057540101" + "79b02f16b6190798" + "4f1b355d97b3482c12cc359d09592ed2")
    }

    @Test(arguments: TunnelProbe.Kind.allCases)
    func everySingleBitFlipIsRefused(kind: TunnelProbe.Kind) throws {
        let (a, b) = try Fixture.keys()
        for observed in [Fixture.v4, Fixture.v6] {
            let bytes = TunnelProbe.seal(kind: kind, txid: 42, observed: observed, keys: a)
            for bit in 0..<(bytes.count * 8) {
                #expect(throws: TunnelError.self, "bit \(bit)") { try TunnelProbe.open(bytes.flipping(bit: bit), keys: b) }
            }
        }
    }

    @Test func truncationsAreRefusedAndTheReaderIsUntouched() throws {
        let (a, b) = try Fixture.keys()
        for kind in TunnelProbe.Kind.allCases {
            let bytes = TunnelProbe.seal(kind: kind, txid: 42, observed: Fixture.v6, keys: a)
            for length in 0..<bytes.count {
                #expect(throws: TunnelError.self) { try TunnelProbe.open(Array(bytes.prefix(length)), keys: b) }
                let buffer = ByteBuffer(bytes: bytes.prefix(length))
                #expect(throws: TunnelError.self) { try TunnelProbe.open(buffer, keys: b) }
                #expect(buffer.readerIndex == 0 && buffer.readableBytes == length)
            }
            // A byte too many is refused as well.
            #expect(throws: TunnelError.self) { try TunnelProbe.open(bytes + [0], keys: b) }
        }
        let request = TunnelProbe.seal(kind: .request, txid: 1, keys: a)
        #expect(throws: TunnelError.truncated(what: "probe", needed: 37, got: 36)) {
            try TunnelProbe.open(Array(request.dropLast()), keys: b)
        }
    }

    @Test func probeOfAnotherTunnelHasItsOwnError() throws {
        let (a, _) = try Fixture.keys(transport: .udp)
        let (_, otherB) = try Fixture.keys(transport: .tcp)
        let bytes = TunnelProbe.seal(kind: .request, txid: 1, keys: a)
        #expect(throws: TunnelError.foreignProbe(tag: a.tag)) { try TunnelProbe.open(bytes, keys: otherB) }
    }

    @Test func ownProbeReflectedIsRefused() throws {
        let (a, _) = try Fixture.keys()
        let bytes = TunnelProbe.seal(kind: .request, txid: 1, keys: a)
        #expect(throws: TunnelError.reflectedProbe) { try TunnelProbe.open(bytes, keys: a) }
    }

    @Test func wrongMagicAndKindAndMAC() throws {
        let (a, b) = try Fixture.keys()
        var bytes = TunnelProbe.seal(kind: .select, txid: 1, keys: a)
        var notProbe = bytes
        notProbe[0] = 0x17
        #expect(!TunnelProbe.isProbe(notProbe))
        #expect(!TunnelProbe.isProbe(Array(bytes.prefix(36))))
        #expect(throws: TunnelError.notAProbe) { try TunnelProbe.open(notProbe, keys: b) }
        #expect(throws: TunnelError.notAProbe) { try TunnelProbe.open([0x50, 0x57, 0x51], keys: b) }
        var badKind = bytes
        badKind[3] = 9
        #expect(throws: TunnelError.malformed("probe kind 9 is not 1-5")) { try TunnelProbe.open(badKind, keys: b) }
        bytes[bytes.count - 1] ^= 1
        #expect(throws: TunnelError.authenticationFailed(.probe)) { try TunnelProbe.open(bytes, keys: b) }
        // Right tag, wrong probe key.
        let impostor = TunnelKeys(role: .initiator, initiatorToAcceptor: a.initiatorToAcceptor,
                                  acceptorToInitiator: a.acceptorToInitiator,
                                  probeKey: SymmetricKey(size: .bits256), tag: a.tag)
        #expect(throws: TunnelError.authenticationFailed(.probe)) {
            try TunnelProbe.open(TunnelProbe.seal(kind: .request, txid: 1, keys: impostor), keys: b)
        }
    }
}
