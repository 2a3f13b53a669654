import Crypto
import NIOCore
import PeerwayCheckpoint
import Testing
@testable import PeerwayTunnel

@Suite("Tunnel key shares and keys (docs/traversal-protocol.md, Tunnel keys)")
struct TunnelKeyShareTests {
    @Test func bothSidesDeriveMatchingKeys() throws {
        let (a, b) = try Fixture.keys()
        #expect(a.role == .initiator && b.role == .acceptor)
        #expect(a.sendKey == b.receiveKey)
        #expect(a.receiveKey == b.sendKey)
        #expect(a.initiatorToAcceptor == b.initiatorToAcceptor)
        #expect(a.acceptorToInitiator == b.acceptorToInitiator)
        #expect(a.probeKey == b.probeKey)
        #expect(a.tag == b.tag)
        #expect(a.sendKey != a.receiveKey)
        #expect(a.probeKey != a.sendKey && a.probeKey != a.receiveKey)
    }

    @Test func freshSharesAgreeToo() throws {
        let a = Fixture.context(.initiator, transport: .tcp), b = Fixture.context(.acceptor, transport: .tcp)
        let (aliceShare, aliceKey) = TunnelKeyShare.make(identity: Fixture.alice, context: a)
        let (bobShare, bobKey) = TunnelKeyShare.make(identity: Fixture.bob, context: b)
        #expect(aliceShare.bytes.count == TunnelLimits.keyShareBytes)
        #expect(aliceShare.peerID == Fixture.alice.peerID)
        try bobShare.verify(expectedPeer: Fixture.bob.peerID, context: a)
        try aliceShare.verify(expectedPeer: Fixture.alice.peerID, context: b)
        let ka = try TunnelKeys.derive(ephemeralPrivateKey: aliceKey, theirShare: bobShare, context: a)
        let kb = try TunnelKeys.derive(ephemeralPrivateKey: bobKey, theirShare: aliceShare, context: b)
        #expect(ka.sendKey == kb.receiveKey && ka.receiveKey == kb.sendKey && ka.probeKey == kb.probeKey && ka.tag == kb.tag)
        // Fresh ephemeral keys: another traversal between the same peers gets other keys.
        let (_, again) = try Fixture.keys(transport: .tcp)
        #expect(again.probeKey != kb.probeKey && again.tag != kb.tag)
    }

    @Test func transportIsBoundIntoTheKeys() throws {
        let (udp, _) = try Fixture.keys(transport: .udp)
        let (tcp, _) = try Fixture.keys(transport: .tcp)
        #expect(udp.sendKey != tcp.sendKey)
        #expect(udp.tag != tcp.tag)
    }

    @Test func shareOfAnotherIdentityIsRefused() {
        // Carol (say, the supernode) sends her own share where Bob's is expected.
        let carolShare = TunnelKeyShare.make(identity: Fixture.carol, context: Fixture.context(.acceptor),
                                             ephemeralPrivateKey: Fixture.bobEphemeral)
        #expect(throws: TunnelError.wrongPeer(expected: Fixture.bob.peerID, actual: Fixture.carol.peerID)) {
            try carolShare.verify(expectedPeer: Fixture.bob.peerID, context: Fixture.context(.initiator))
        }
        #expect(throws: TunnelError.self) {
            try TunnelKeys.derive(ephemeralPrivateKey: Fixture.aliceEphemeral, theirShare: carolShare,
                                  context: Fixture.context(.initiator))
        }
        // Carol keeps Bob's identity key but signs with her own: the signature fails.
        let forged = TunnelKeyShare(ephemeral: carolShare.ephemeral,
                                    identityPublicKey: Array(Fixture.bob.publicKey.rawRepresentation),
                                    signature: carolShare.signature)!
        #expect(throws: TunnelError.badShareSignature) {
            try forged.verify(expectedPeer: Fixture.bob.peerID, context: Fixture.context(.initiator))
        }
    }

    @Test func shareForAnotherContextIsRefused() {
        let bobShare = TunnelKeyShare.make(identity: Fixture.bob, context: Fixture.context(.acceptor),
                                           ephemeralPrivateKey: Fixture.bobEphemeral)
        let bob = Fixture.bob.peerID
        // The right context verifies.
        #expect(throws: Never.self) { try bobShare.verify(expectedPeer: bob, context: Fixture.context(.initiator)) }
        // Another request, another transport.
        #expect(throws: TunnelError.badShareSignature) {
            try bobShare.verify(expectedPeer: bob, context: Fixture.context(.initiator, requestID: Fixture.requestID + 1))
        }
        #expect(throws: TunnelError.badShareSignature) {
            try bobShare.verify(expectedPeer: bob, context: Fixture.context(.initiator, transport: .tcp))
        }
        // The peers swapped (Bob the initiator of this request).
        let swapped = TunnelContext(requestID: Fixture.requestID, initiator: Fixture.bob.peerID,
                                    acceptor: Fixture.alice.peerID, role: .acceptor, transport: .udp)
        #expect(throws: TunnelError.badShareSignature) { try bobShare.verify(expectedPeer: bob, context: swapped) }
        // Bob's share signed for the wrong role (as if he were the initiator).
        let wrongRole = TunnelKeyShare.make(identity: Fixture.bob, context: Fixture.context(.initiator),
                                            ephemeralPrivateKey: Fixture.bobEphemeral)
        #expect(throws: TunnelError.badShareSignature) {
            try wrongRole.verify(expectedPeer: bob, context: Fixture.context(.initiator))
        }
        // Alice's own share reflected back to her.
        let aliceShare = TunnelKeyShare.make(identity: Fixture.alice, context: Fixture.context(.initiator),
                                             ephemeralPrivateKey: Fixture.aliceEphemeral)
        #expect(throws: TunnelError.self) {
            try TunnelKeys.derive(ephemeralPrivateKey: Fixture.aliceEphemeral, theirShare: aliceShare,
                                  context: Fixture.context(.initiator))
        }
        #expect(throws: TunnelError.badShareSignature) {
            try aliceShare.verify(expectedPeer: Fixture.alice.peerID, context: Fixture.context(.initiator))
        }
    }

    @Test func everyTamperedBitIsRefused() {
        let bytes = TunnelKeyShare.make(identity: Fixture.bob, context: Fixture.context(.acceptor),
                                        ephemeralPrivateKey: Fixture.bobEphemeral).bytes
        var refused = 0
        for bit in 0..<(bytes.count * 8) {
            let share = TunnelKeyShare(bytes: bytes.flipping(bit: bit))!
            do {
                try share.verify(expectedPeer: Fixture.bob.peerID, context: Fixture.context(.initiator))
            } catch { refused += 1 }
        }
        #expect(refused == bytes.count * 8)
    }

    @Test func lowOrderEphemeralKeyIsRefused() throws {
        let zero = [UInt8](repeating: 0, count: 32)
        let signed = TunnelKeyShare.signedBytes(context: Fixture.context(.acceptor), ephemeral: zero)
        let share = TunnelKeyShare(ephemeral: zero, identityPublicKey: Array(Fixture.bob.publicKey.rawRepresentation),
                                   signature: try Fixture.bob.signature(for: signed))!
        #expect(throws: TunnelError.badKey) {
            try TunnelKeys.derive(ephemeralPrivateKey: Fixture.aliceEphemeral, theirShare: share,
                                  context: Fixture.context(.initiator))
        }
    }

    @Test func signedBytesLayout() {
        let ephemeral = Array(Fixture.bobEphemeral.publicKey.rawRepresentation)
        let signed = TunnelKeyShare.signedBytes(context: Fixture.context(.acceptor, transport: .tcp), ephemeral: ephemeral)
        #expect(signed.count == TunnelLimits.signedShareBytes)
        #expect(Array(signed[0..<17]) == Array("peerway-tunnel-v1".utf8))
        #expect(Array(signed[17..<25]) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Array(signed[25..<41]) == Fixture.alice.peerID.bytes)
        #expect(Array(signed[41..<57]) == Fixture.bob.peerID.bytes)
        #expect(signed[57] == 1 && signed[58] == TunnelTransport.tcp.rawValue)
        #expect(Array(signed[59...]) == ephemeral)
    }

    @Test func byteBufferCodec() throws {
        let share = TunnelKeyShare.make(identity: Fixture.alice, context: Fixture.context(.initiator)).share
        var buffer = ByteBuffer()
        #expect(buffer.writeTunnelKeyShare(share) == 128)
        buffer.writeInteger(UInt8(0xEE))
        #expect(buffer.readTunnelKeyShare() == share)
        #expect(buffer.readableBytes == 1)
        #expect(TunnelKeyShare(bytes: share.bytes) == share)
        #expect(TunnelKeyShare(bytes: share.bytes.dropLast()) == nil)
        #expect(TunnelKeyShare(bytes: share.bytes + [0]) == nil)

        for length in 0..<TunnelLimits.keyShareBytes {
            var short = ByteBuffer(bytes: share.bytes.prefix(length))
            let reader = short.readerIndex
            #expect(short.readTunnelKeyShare() == nil)
            #expect(short.readerIndex == reader && short.readableBytes == length)
        }
    }
}
