import Crypto
import NIOCore
import Testing
@testable import PeerwayCheckpoint

@Suite("Cluster link: handshake and records between supernodes (issue 12)")
struct ClusterLinkTests {
    static func seed(_ byte: UInt8) -> [UInt8] { (0..<32).map { UInt8(truncatingIfNeeded: Int(byte) &* 31 &+ $0) } }
    static func key(_ byte: UInt8) throws -> SupernodeKey { try SupernodeKey(seed: seed(byte)) }
    static func ephemeral(_ byte: UInt8) throws -> Curve25519.KeyAgreement.PrivateKey {
        try .init(rawRepresentation: seed(byte &+ 100))
    }
    static func pub(_ key: SupernodeKey) -> [UInt8] { Array(key.publicKey.rawRepresentation) }

    /// A dialer from `a` to `b` and `b`'s acceptor allowing `allowed` (default: `a`), fixed ephemerals.
    static func pair(_ a: SupernodeKey, _ b: SupernodeKey, allowed: [[UInt8]]? = nil) throws -> (ClusterLink, ClusterLink) {
        let allow = allowed ?? [pub(a)]
        let dialer = try ClusterLink(dialing: pub(b), key: a, ephemeral: ephemeral(1))
        let acceptor = ClusterLink(accepting: b, isAllowed: { allow.contains($0) }, ephemeral: try ephemeral(2))
        return (dialer, acceptor)
    }

    /// Feeds `bytes` to `link` in chunks of `chunk` bytes; returns every action.
    static func feed(_ link: inout ClusterLink, _ bytes: [UInt8], chunk: Int = .max) throws -> [ClusterLinkAction] {
        var out: [ClusterLinkAction] = []
        var i = 0
        while i < bytes.count {
            let end = min(i + max(1, min(chunk, bytes.count)), bytes.count)
            out += try link.receive(ByteBuffer(bytes: bytes[i..<end]))
            i = end
        }
        return out
    }

    static func sent(_ actions: [ClusterLinkAction]) -> [UInt8] {
        actions.flatMap { action -> [UInt8] in
            if case .send(let b) = action { return Array(b.readableBytesView) }
            return []
        }
    }

    static func delivered(_ actions: [ClusterLinkAction]) -> [[UInt8]] {
        actions.compactMap { action in
            if case .deliver(let b) = action { return Array(b.readableBytesView) }
            return nil
        }
    }

    /// Runs the handshake between the two; returns the bytes each side sent.
    @discardableResult
    static func handshake(_ dialer: inout ClusterLink, _ acceptor: inout ClusterLink,
                          chunk: Int = .max) throws -> (hello: [UInt8], reply: [UInt8], confirmation: [UInt8]) {
        let hello = Array(dialer.hello.readableBytesView)
        let acceptorActions = try feed(&acceptor, hello, chunk: chunk)
        let reply = sent(acceptorActions)
        #expect(!acceptor.isEstablished)
        let dialerActions = try feed(&dialer, reply, chunk: chunk)
        let confirmation = sent(dialerActions)
        #expect(dialer.isEstablished)
        #expect(dialerActions.last == .established(peer: acceptor.localKey))
        let last = try feed(&acceptor, confirmation, chunk: chunk)
        #expect(last == [.established(peer: dialer.localKey)])
        #expect(acceptor.isEstablished)
        return (hello, reply, confirmation)
    }

    static func payload(_ size: Int, _ seed: Int = 0) -> ByteBuffer {
        ByteBuffer(bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ seed) })
    }

    // MARK: handshake

    @Test func handshakeBothWays() throws {
        let a = try Self.key(1), b = try Self.key(2)
        for (x, y) in [(a, b), (b, a)] {
            var (dialer, acceptor) = try Self.pair(x, y)
            #expect(dialer.role == .dialer && acceptor.role == .acceptor)
            #expect(acceptor.hello.readableBytes == 0)
            let bytes = try Self.handshake(&dialer, &acceptor)
            #expect(bytes.hello.count == ClusterLinkLimits.helloBytes && bytes.hello.count == 101)
            #expect(Array(bytes.hello.prefix(5)) == Array("PWCL".utf8) + [1])
            #expect(Array(bytes.hello[5..<37]) == Self.pub(x))
            #expect(Array(bytes.hello[69..<101]) == Self.pub(y))
            #expect(bytes.reply.count == ClusterLinkLimits.replyBytes && bytes.reply.count == 57)
            #expect(bytes.confirmation.count == ClusterLinkLimits.emptyRecordBytes)
            #expect(try ClusterLinkHello(decoding: bytes.hello).dialerStatic == Self.pub(x))
            let reply = try ClusterLinkReply(decoding: bytes.reply)
            #expect(reply.bytes == bytes.reply && reply.header.count == ClusterLinkLimits.replyHeaderBytes)
            #expect(dialer.peerKey == Self.pub(y) && acceptor.peerKey == Self.pub(x))
            // Fixed keys and ephemerals give the same bytes every time.
            var (dialer2, acceptor2) = try Self.pair(x, y)
            #expect(try Self.handshake(&dialer2, &acceptor2) == bytes)
        }
    }

    @Test func roundTripBothDirections() throws {
        var (dialer, acceptor) = try Self.pair(try Self.key(1), try Self.key(2))
        try Self.handshake(&dialer, &acceptor)
        let sizes = [1, 200, 16_384, 65_537, ClusterLinkLimits.maximumRecordPayloadBytes]
        for (i, size) in sizes.enumerated() {
            let p = Self.payload(size, i)
            let record = try dialer.seal(p)
            #expect(record.readableBytes == size + ClusterLinkLimits.recordOverheadBytes)
            #expect(record.getInteger(at: 0, as: UInt32.self) == UInt32(size + 16))
            #expect(try acceptor.receive(record) == [.deliver(p)])
            let back = try acceptor.seal(p)
            #expect(try dialer.receive(back) == [.deliver(p)])
        }
        // A keepalive opens but delivers nothing; records after it still arrive.
        var wire = try dialer.seal(ByteBuffer())
        #expect(wire.readableBytes == ClusterLinkLimits.emptyRecordBytes)
        try dialer.seal(Self.payload(5), into: &wire)
        try dialer.seal(ByteBuffer(), into: &wire)
        try dialer.seal(Self.payload(7), into: &wire)
        #expect(try acceptor.receive(wire) == [.deliver(Self.payload(5)), .deliver(Self.payload(7))])
    }

    @Test func byteAtATime() throws {
        var (dialer, acceptor) = try Self.pair(try Self.key(3), try Self.key(4), allowed: [Self.pub(try Self.key(3))])
        try Self.handshake(&dialer, &acceptor, chunk: 1)
        var wire: [UInt8] = []
        var expected: [[UInt8]] = []
        for i in 0..<20 {
            let p = Self.payload(i * 37 + 1, i)
            expected.append(Array(p.readableBytesView))
            wire += try dialer.seal(p).readableBytesView
            if i % 5 == 0 { wire += try dialer.seal(ByteBuffer()).readableBytesView }
        }
        #expect(Self.delivered(try Self.feed(&acceptor, wire, chunk: 1)) == expected)
        // Odd chunk sizes straddling record boundaries too.
        for chunk in [2, 3, 19, 20, 21, 1000] {
            var got: [[UInt8]] = []
            var sentBack: [UInt8] = []
            for p in expected { sentBack += try acceptor.seal(ByteBuffer(bytes: p)).readableBytesView }
            got = Self.delivered(try Self.feed(&dialer, sentBack, chunk: chunk))
            #expect(got == expected, "chunk \(chunk)")
        }
    }

    @Test func handshakeAndFirstRecordsInOneChunk() throws {
        var (dialer, acceptor) = try Self.pair(try Self.key(1), try Self.key(2))
        let reply = Self.sent(try acceptor.receive(dialer.hello))
        let dialerActions = try Self.feed(&dialer, reply)
        // The dialer may send payloads right behind its confirmation, in the same write.
        var flight = Self.sent(dialerActions)
        flight += try dialer.seal(Self.payload(10)).readableBytesView
        flight += try dialer.seal(Self.payload(20)).readableBytesView
        let actions = try acceptor.receive(ByteBuffer(bytes: flight))
        #expect(actions == [.established(peer: dialer.localKey), .deliver(Self.payload(10)), .deliver(Self.payload(20))])
    }

    // MARK: records that must fail

    @Test func tamperedRecordFails() throws {
        var (dialer, acceptor) = try Self.pair(try Self.key(1), try Self.key(2))
        try Self.handshake(&dialer, &acceptor)
        let record = Array(try dialer.seal(Self.payload(64)).readableBytesView)
        // Every bit after the length field: the tag fails (counter 1: the confirmation was 0).
        for bit in (ClusterLinkLimits.lengthBytes * 8)..<(record.count * 8) {
            var copy = acceptor
            var bad = record
            bad[bit / 8] ^= UInt8(1 << (bit % 8))
            #expect(throws: ClusterLinkError.authenticationFailed(counter: 1), "bit \(bit)") {
                try copy.receive(ByteBuffer(bytes: bad))
            }
        }
        // A length one shorter moves the tag: it fails too.
        var shorter = record
        shorter[3] -= 1
        var copy = acceptor
        #expect(throws: ClusterLinkError.authenticationFailed(counter: 1)) { try copy.receive(ByteBuffer(bytes: shorter)) }
        // The failure is final: even the genuine record is refused afterwards.
        #expect(throws: ClusterLinkError.authenticationFailed(counter: 1)) { try copy.receive(ByteBuffer(bytes: record)) }
        #expect(copy.failure == .authenticationFailed(counter: 1))
        #expect(throws: ClusterLinkError.notEstablished) { try copy.seal(Self.payload(1)) }
        // The untouched acceptor still opens it.
        #expect(try acceptor.receive(ByteBuffer(bytes: record)) == [.deliver(Self.payload(64))])
    }

    @Test func replayedReorderedOrDroppedRecordFails() throws {
        var (dialer, acceptor) = try Self.pair(try Self.key(1), try Self.key(2))
        try Self.handshake(&dialer, &acceptor)
        let r1 = try dialer.seal(Self.payload(10, 1))
        let r2 = try dialer.seal(Self.payload(10, 2))
        let r3 = try dialer.seal(Self.payload(10, 3))
        // Replayed.
        var replay = acceptor
        #expect(try replay.receive(r1) == [.deliver(Self.payload(10, 1))])
        #expect(throws: ClusterLinkError.authenticationFailed(counter: 2)) { try replay.receive(r1) }
        // Reordered.
        var reorder = acceptor
        #expect(throws: ClusterLinkError.authenticationFailed(counter: 1)) { try reorder.receive(r2) }
        // Dropped (r2 missing).
        var dropped = acceptor
        _ = try dropped.receive(r1)
        #expect(throws: ClusterLinkError.authenticationFailed(counter: 2)) { try dropped.receive(r3) }
        // A reflected record (the acceptor's own, sent back to it) is under the other key.
        var reflect = acceptor
        let own = try reflect.seal(Self.payload(10))
        #expect(throws: ClusterLinkError.authenticationFailed(counter: 1)) { try reflect.receive(own) }
        // The handshake replayed into an established link is garbage too.
        var again = acceptor
        #expect(throws: (any Error).self) { try again.receive(dialer.hello) }
        // In order, all three arrive.
        #expect(Self.delivered(try acceptor.receive(ByteBuffer(bytes: Array((r1.readableBytesView)) + Array(r2.readableBytesView)
                                                                + Array(r3.readableBytesView))))
                == [1, 2, 3].map { Array(Self.payload(10, $0).readableBytesView) })
    }

    @Test func oversizeLengthRefused() throws {
        var (dialer, acceptor) = try Self.pair(try Self.key(1), try Self.key(2))
        try Self.handshake(&dialer, &acceptor)
        // Refused from the 4 length bytes alone, before any payload is buffered.
        for length in [ClusterLinkLimits.maximumRecordLength + 1, Int(UInt32.max), 15, 0] {
            var copy = acceptor
            var header = ByteBuffer()
            header.writeInteger(UInt32(length))
            #expect(throws: ClusterLinkError.badRecordLength(length)) { try copy.receive(header) }
        }
        // The largest length is fine (waits for the rest).
        var header = ByteBuffer()
        header.writeInteger(UInt32(ClusterLinkLimits.maximumRecordLength))
        var copy = acceptor
        #expect(try copy.receive(header) == [])
        #expect(throws: ClusterLinkError.payloadTooLarge(ClusterLinkLimits.maximumRecordPayloadBytes + 1)) {
            try dialer.seal(Self.payload(ClusterLinkLimits.maximumRecordPayloadBytes + 1))
        }
        // During the handshake even a long first record is refused at its length.
        var (dialer2, acceptor2) = try Self.pair(try Self.key(1), try Self.key(2))
        let reply = Self.sent(try acceptor2.receive(dialer2.hello))
        var fake = Array(reply.prefix(ClusterLinkLimits.replyHeaderBytes))
        fake += [0, 0x10, 0, 0]
        #expect(throws: ClusterLinkError.badConfirmation("the first record has length 1048576, not 16")) {
            try Self.feed(&dialer2, fake)
        }
    }

    // MARK: who may connect

    @Test func unknownDialerRefused() throws {
        let a = try Self.key(1), b = try Self.key(2), c = try Self.key(3)
        var (dialer, acceptor) = try Self.pair(a, b, allowed: [Self.pub(c)])
        #expect(throws: ClusterLinkError.dialerNotAllowed(Self.pub(a))) { try acceptor.receive(dialer.hello) }
        #expect(!acceptor.isEstablished && acceptor.failure == .dialerNotAllowed(Self.pub(a)))
        // Nothing was answered, so the dialer cannot finish.
        #expect(try dialer.receive(ByteBuffer()) == [])
        // Its own key as dialer is refused even when listed.
        var (selfDialer, selfAcceptor) = try Self.pair(b, b, allowed: [Self.pub(b)])
        #expect(throws: ClusterLinkError.dialerIsSelf) { try selfAcceptor.receive(selfDialer.hello) }
        _ = selfDialer
    }

    @Test func wrongExpectedAcceptorRefused() throws {
        let a = try Self.key(1), b = try Self.key(2), c = try Self.key(3)
        // `a` means to reach `c` but its connection lands on `b`.
        let dialer = try ClusterLink(dialing: Self.pub(c), key: a, ephemeral: try Self.ephemeral(1))
        var acceptor = ClusterLink(accepting: b, isAllowed: { _ in true })
        #expect(throws: ClusterLinkError.wrongAcceptor(expected: Self.pub(c))) { try acceptor.receive(dialer.hello) }
        #expect(throws: ClusterLinkError.badKey("the acceptor's key has 31 bytes, not 32")) {
            try ClusterLink(dialing: Array(Self.pub(c).prefix(31)), key: a)
        }
    }

    @Test func impostorDialerCannotProduceAnOpenableRecord() throws {
        let a = try Self.key(1), b = try Self.key(2), mallory = try Self.key(9)
        // Mallory presents a's (public, listed) static key with its own ephemeral.
        let eph = try Self.ephemeral(7)
        let hello = ClusterLinkHello(dialerStatic: Self.pub(a), dialerEphemeral: Array(eph.publicKey.rawRepresentation),
                                     acceptorStatic: Self.pub(b)).bytes
        var acceptor = ClusterLink(accepting: b, isAllowed: { $0 == Self.pub(a) }, ephemeral: try Self.ephemeral(2))
        let reply = try ClusterLinkReply(decoding: Self.sent(try acceptor.receive(ByteBuffer(bytes: hello))))
        // Mallory computes ee and es but must guess se without a's private key.
        let acceptorEphemeral = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: reply.acceptorEphemeral)
        let ee = try eph.sharedSecretFromKeyAgreement(with: acceptorEphemeral).withUnsafeBytes { Array($0) }
        let es = try eph.sharedSecretFromKeyAgreement(with: b.publicKey).withUnsafeBytes { Array($0) }
        let guesses: [[UInt8]] = [
            try mallory.privateKey.sharedSecretFromKeyAgreement(with: acceptorEphemeral).withUnsafeBytes { Array($0) },
            ee, es, [UInt8](repeating: 1, count: 32),
        ]
        for guess in guesses {
            let keys = try ClusterLinkKeys.derive(ee: ee, es: es, se: guess, transcript: hello + reply.header)
            // Mallory cannot even read the acceptor's confirmation.
            var opener = ClusterLinkOpener(key: keys.acceptorToDialer)
            #expect(throws: ClusterLinkError.authenticationFailed(counter: 0)) {
                try opener.open(ByteBuffer(bytes: reply.confirmation))
            }
            var sealer = ClusterLinkSealer(key: keys.dialerToAcceptor)
            var copy = acceptor
            #expect(throws: ClusterLinkError.authenticationFailed(counter: 0)) { try copy.receive(try sealer.seal(ByteBuffer())) }
            #expect(!copy.isEstablished)
        }
        // Nor does a confirmation copied from another link open.
        var (dialer2, acceptor2) = try Self.pair(a, b)
        let other = try Self.handshake(&dialer2, &acceptor2)
        var copy = acceptor
        #expect(throws: ClusterLinkError.authenticationFailed(counter: 0)) {
            try copy.receive(ByteBuffer(bytes: other.confirmation))
        }
    }

    @Test func impostorAcceptorCannotProduceAnOpenableRecord() throws {
        let a = try Self.key(1), b = try Self.key(2), mallory = try Self.key(9)
        var (dialer, _) = try Self.pair(a, b)
        // Mallory rewrites the hello to name itself and answers as a genuine acceptor would.
        var hello = try ClusterLinkHello(decoding: Array(dialer.hello.readableBytesView))
        hello.acceptorStatic = Self.pub(mallory)
        var fake = ClusterLink(accepting: mallory, isAllowed: { _ in true })
        let reply = Self.sent(try fake.receive(ByteBuffer(bytes: hello.bytes)))
        var copy = dialer
        #expect(throws: ClusterLinkError.authenticationFailed(counter: 0)) { try Self.feed(&copy, reply) }
        #expect(!copy.isEstablished)
        // Or keeps the hello and guesses es without b's private key.
        let eph = try Self.ephemeral(8)
        let dialerEphemeral = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: hello.dialerEphemeral)
        let dialerStatic = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: hello.dialerStatic)
        let header = ClusterLinkReply.header(acceptorEphemeral: Array(eph.publicKey.rawRepresentation))
        let keys = try ClusterLinkKeys.derive(
            ee: try eph.sharedSecretFromKeyAgreement(with: dialerEphemeral).withUnsafeBytes { Array($0) },
            es: try mallory.privateKey.sharedSecretFromKeyAgreement(with: dialerEphemeral).withUnsafeBytes { Array($0) },
            se: try eph.sharedSecretFromKeyAgreement(with: dialerStatic).withUnsafeBytes { Array($0) },
            transcript: Array(dialer.hello.readableBytesView) + header)
        var sealer = ClusterLinkSealer(key: keys.acceptorToDialer)
        let forged = header + Array(try sealer.seal(ByteBuffer()).readableBytesView)
        #expect(throws: ClusterLinkError.authenticationFailed(counter: 0)) { try Self.feed(&dialer, forged) }
    }

    // MARK: malformed handshakes

    @Test func malformedHello() throws {
        let a = try Self.key(1), b = try Self.key(2)
        let (dialer, acceptor) = try Self.pair(a, b)
        let hello = Array(dialer.hello.readableBytesView)
        // Truncated: the decoder names it; the state machine waits for the rest.
        for length in 0..<hello.count {
            #expect(throws: ClusterLinkError.truncated(what: "cluster link hello", needed: 101, got: length)) {
                try ClusterLinkHello(decoding: Array(hello.prefix(length)))
            }
            var copy = acceptor
            #expect(try copy.receive(ByteBuffer(bytes: hello.prefix(length))) == [])
            #expect(!copy.isEstablished && copy.failure == nil)
        }
        // Bad magic: refused at the first byte that differs.
        var badMagic = hello
        badMagic[0] = UInt8(ascii: "X")
        #expect(throws: ClusterLinkError.badMagic(Array("XWCL".utf8))) { try ClusterLinkHello(decoding: badMagic) }
        var copy = acceptor
        #expect(throws: ClusterLinkError.badMagic([UInt8(ascii: "X")])) { try copy.receive(ByteBuffer(bytes: [UInt8(ascii: "X")])) }
        copy = acceptor
        #expect(throws: ClusterLinkError.badMagic(Array("GET ".utf8))) {
            try copy.receive(ByteBuffer(bytes: Array("GET / HTTP/1.1\r\n".utf8)))
        }
        // Bad version: refused at the fifth byte.
        var badVersion = hello
        badVersion[4] = 2
        #expect(throws: ClusterLinkError.unsupportedVersion(2)) { try ClusterLinkHello(decoding: badVersion) }
        copy = acceptor
        #expect(throws: ClusterLinkError.unsupportedVersion(2)) { try copy.receive(ByteBuffer(bytes: badVersion.prefix(5))) }
        // A low-order ephemeral key gives no shared secret.
        var zero = hello
        for i in 37..<69 { zero[i] = 0 }
        copy = acceptor
        #expect(throws: ClusterLinkError.self) { try copy.receive(ByteBuffer(bytes: zero)) }
        if case .badKey = copy.failure {} else { Issue.record("expected badKey, got \(String(describing: copy.failure))") }
    }

    @Test func malformedReply() throws {
        var (dialer, acceptor) = try Self.pair(try Self.key(1), try Self.key(2))
        let reply = Self.sent(try acceptor.receive(dialer.hello))
        for length in 0..<reply.count {
            #expect(throws: ClusterLinkError.truncated(what: "cluster link reply", needed: 57, got: length)) {
                try ClusterLinkReply(decoding: Array(reply.prefix(length)))
            }
            var copy = dialer
            #expect(try Self.feed(&copy, Array(reply.prefix(length))) == [])
            #expect(!copy.isEstablished && copy.failure == nil)
        }
        var bad = reply
        bad[1] = 0
        var copy = dialer
        #expect(throws: ClusterLinkError.badMagic([UInt8(ascii: "P"), 0, UInt8(ascii: "C"), UInt8(ascii: "L")])) {
            try Self.feed(&copy, bad)
        }
        bad = reply
        bad[4] = 0
        copy = dialer
        #expect(throws: ClusterLinkError.unsupportedVersion(0)) { try Self.feed(&copy, bad) }
        // A tampered ephemeral key changes the keys: the confirmation fails.
        bad = reply
        bad[10] ^= 0x40
        copy = dialer
        #expect(throws: ClusterLinkError.authenticationFailed(counter: 0)) { try Self.feed(&copy, bad) }
        // Before the handshake neither side seals.
        #expect(throws: ClusterLinkError.notEstablished) { try dialer.seal(Self.payload(1)) }
        #expect(throws: ClusterLinkError.notEstablished) { try acceptor.seal(Self.payload(1)) }
        // The genuine reply still works.
        #expect(Self.sent(try Self.feed(&dialer, reply)).count == ClusterLinkLimits.emptyRecordBytes)
    }

    @Test func errorsDescribeThemselves() {
        let errors: [ClusterLinkError] = [
            .truncated(what: "x", needed: 2, got: 1), .badMagic([1, 2]), .unsupportedVersion(9),
            .wrongAcceptor(expected: [0xAB]), .dialerNotAllowed([0xCD]), .dialerIsSelf, .badKey("k"),
            .badRecordLength(3), .payloadTooLarge(5), .authenticationFailed(counter: 4), .badConfirmation("c"),
            .counterExhausted, .notEstablished,
        ]
        for error in errors { #expect(!error.description.isEmpty) }
        #expect(ClusterLinkError.badMagic([0x0F, 0xA0]).description.contains("0fa0"))
    }
}
