import PeerwayCheckpoint
import PeerwaySTUN
import PeerwayTunnel
import Testing
@testable import Peerway

/// The tunnel pumps' record layer: records both ways, keepalives told apart, raw framing. (Late
/// probes are the path machine's: TunnelPathMachineTests.)
@Suite("Tunnel record layer")
struct TunnelRecordCryptoTests {
    /// Keys for both sides of one tunnel.
    static func keys() throws -> (initiator: TunnelKeys, acceptor: TunnelKeys) {
        let a = PeerIdentity(), b = PeerIdentity()
        let ca = TunnelContext(requestID: 5, initiator: a.peerID, acceptor: b.peerID, role: .initiator, transport: .udp)
        let cb = TunnelContext(requestID: 5, initiator: a.peerID, acceptor: b.peerID, role: .acceptor, transport: .udp)
        let (sa, ea) = TunnelKeyShare.make(identity: a, context: ca)
        let (sb, eb) = TunnelKeyShare.make(identity: b, context: cb)
        return (try TunnelKeys.derive(ephemeralPrivateKey: ea, theirShare: sb, context: ca),
                try TunnelKeys.derive(ephemeralPrivateKey: eb, theirShare: sa, context: cb))
    }

    @Test("datagram records both ways; keepalives and replays reach no application; close is seen")
    func datagrams() throws {
        let (ki, ka) = try Self.keys()
        var i = TunnelRecordCrypto(keys: ki), a = TunnelRecordCrypto(keys: ka)
        let payload: [UInt8] = Array("hello through the tunnel".utf8)
        let record = payload.withUnsafeBytes { i.sealDatagram($0) }
        #expect(record.count == payload.count + TunnelLimits.datagramOverheadBytes)
        guard case .data(let got) = record.withUnsafeBytes({ a.openDatagram($0) }) else {
            Issue.record("no data")
            return
        }
        #expect(got == payload)
        guard case .nothing = record.withUnsafeBytes({ a.openDatagram($0) }) else {
            Issue.record("a replay reached the application")
            return
        }
        // A keepalive is told apart (it shows the path works) and carries nothing.
        guard case .keepalive = i.keepaliveDatagram().withUnsafeBytes({ a.openDatagram($0) }) else {
            Issue.record("a keepalive was not recognised")
            return
        }
        let closing = i.closeRecord(stream: false)
        let bye = try #require(closing)
        guard case .closed = bye.withUnsafeBytes({ a.openDatagram($0) }) else {
            Issue.record("close not seen")
            return
        }
    }

    @Test("stream records split at the record limit and come back whole; raw datagram framing over a stream")
    func streams() throws {
        let (ki, ka) = try Self.keys()
        var i = TunnelRecordCrypto(keys: ki), a = TunnelRecordCrypto(keys: ka)
        let big = (0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let sealed = big.withUnsafeBytes { i.sealStream($0) }
        var received: [UInt8] = []
        for chunk in stride(from: 0, to: sealed.count, by: 777) {
            let piece = Array(sealed[chunk..<min(chunk + 777, sealed.count)])
            guard case .records(let records) = piece.withUnsafeBytes({ a.openStream($0) }) else {
                Issue.record("stream refused")
                return
            }
            for r in records { received += r }
        }
        #expect(received == big)
        var framing = TunnelRecordCrypto(keys: ka)
        let framed: [UInt8] = [0, 3, 1, 2, 3, 0, 1, 9, 0]
        #expect(framed.withUnsafeBytes { framing.unframe($0) } == [[1, 2, 3], [9]])
        // The trailing 0 was the first length byte of the next datagram: [0, 2] then [7, 7].
        #expect([UInt8]([2, 7]).withUnsafeBytes { framing.unframe($0) } == [])
        #expect([UInt8]([7]).withUnsafeBytes { framing.unframe($0) } == [[7, 7]])
    }
}
