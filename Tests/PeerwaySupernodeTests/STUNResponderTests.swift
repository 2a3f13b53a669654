import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwaySupernode

/// The pure decision logic of the STUN pair: no sockets.
@Suite("STUN responder")
struct STUNResponderTests {
    let layout = try! STUNPairLayout(
        primary: STUNAddress(parsing: "198.51.100.1:3478")!, alternate: STUNAddress(parsing: "198.51.100.2:3479")!)
    let client = STUNAddress(parsing: "203.0.113.7:40000")!

    func answer(_ request: STUNMessage, on role: STUNSocketRole = .primary, options: STUNEncodingOptions = .plain)
        throws -> (message: STUNMessage, from: STUNSocketRole, to: STUNAddress)
    {
        let action = STUNResponder(layout: layout).respond(to: request.encoded(options: options), from: client, on: role)
        guard case .reply(let bytes, let from, let to) = action else {
            Issue.record("expected a reply, got \(action)")
            throw CancellationError()
        }
        return (try STUNMessage(datagram: bytes), from, to)
    }

    @Test("Every socket role and change combination answers from the XOR-ed role")
    func roleArithmetic() throws {
        for role in STUNSocketRole.allCases {
            for (ip, port) in [(false, false), (false, true), (true, false), (true, true)] {
                let change = STUNChangeRequest(changeIP: ip, changePort: port)
                let a = try answer(STUNMessage(type: .bindingRequest, attributes: [.changeRequest(change)]), on: role)
                #expect(a.from == STUNSocketRole(alternateIP: role.alternateIP != ip, alternatePort: role.alternatePort != port))
                #expect(a.message.responseOrigin == layout.address(of: a.from))
                #expect(a.message.otherAddress == layout.address(of: role.diagonal))
                #expect(a.to == client)
            }
        }
    }

    @Test("Layout addresses: A:p, A:p2, B:p, B:p2")
    func layoutAddresses() {
        #expect(layout.address(of: .primary)?.description == "198.51.100.1:3478")
        #expect(layout.address(of: STUNSocketRole(alternateIP: false, alternatePort: true))?.description == "198.51.100.1:3479")
        #expect(layout.address(of: STUNSocketRole(alternateIP: true, alternatePort: false))?.description == "198.51.100.2:3478")
        #expect(layout.address(of: STUNSocketRole(alternateIP: true, alternatePort: true))?.description == "198.51.100.2:3479")
    }

    @Test("Invalid layouts are refused with a reason")
    func invalidLayouts() {
        let a = STUNAddress(parsing: "198.51.100.1:3478")!
        #expect(throws: STUNPairLayoutError.sameIP(a, a.with(port: 3479))) {
            try STUNPairLayout(primary: a, alternate: a.with(port: 3479))
        }
        let b = STUNAddress(parsing: "198.51.100.2:3478")!
        #expect(throws: STUNPairLayoutError.samePort(a, b)) { try STUNPairLayout(primary: a, alternate: b) }
        let v6 = STUNAddress(parsing: "[2001:db8::1]:3479")!
        #expect(throws: STUNPairLayoutError.familyMismatch(a, v6)) { try STUNPairLayout(primary: a, alternate: v6) }
    }

    @Test("IPv6 clients get an IPv6 XOR-MAPPED-ADDRESS")
    func ipv6Client() throws {
        let v6 = STUNAddress(parsing: "[2001:db8::7]:5555")!
        let action = STUNResponder(layout: layout).respond(to: STUNMessage(type: .bindingRequest).encoded(), from: v6, on: .primary)
        guard case .reply(let bytes, _, let to) = action else { Issue.record("no reply"); return }
        #expect(to == v6)
        #expect(try STUNMessage(datagram: bytes).attribute(.xorMappedAddress) == .xorMappedAddress(v6))
    }

    @Test("Drops: malformed, oversize, responses and indications")
    func drops() {
        let r = STUNResponder(layout: layout)
        #expect(r.respond(to: ByteBuffer(bytes: [0xC0, 0, 0, 0]), from: client, on: .primary) == .drop(.malformed))
        #expect(r.respond(to: ByteBuffer(repeating: 0, count: STUNLimits.maximumDatagramSize + 1), from: client, on: .primary) == .drop(.oversize))
        #expect(r.respond(to: STUNMessage(type: .bindingSuccess).encoded(), from: client, on: .primary) == .drop(.notARequest))
        #expect(r.respond(to: STUNMessage(type: .bindingIndication).encoded(), from: client, on: .primary) == .drop(.notARequest))
    }

    @Test("RFC 3489 RESPONSE-ADDRESS is never honoured: the answer goes to the source")
    func responseAddressIgnored() throws {
        let victim = STUNAddress(parsing: "192.0.2.99:53")!
        let a = try answer(STUNMessage(type: .bindingRequest, transactionID: .randomClassic(), attributes: [.responseAddress(victim)]))
        #expect(a.to == client)
    }

    @Test("PADDING echo is capped at maximumEchoedPadding")
    func paddingCap() throws {
        let a = try answer(STUNMessage(type: .bindingRequest, attributes: [.padding(1500)]))
        #expect(a.message.attribute(.padding) == .padding(1500), "coturn's client pads to 1500 and needs the echo")
        let big = try answer(STUNMessage(type: .bindingRequest, attributes: [.padding(3000)]))
        #expect(big.message.attribute(.padding) == .padding(STUNResponder.maximumEchoedPadding))
    }

    @Test("SOFTWARE is added only when configured")
    func software() throws {
        let plain = try answer(STUNMessage(type: .bindingRequest))
        #expect(plain.message.attribute(.software) == nil)
        let r = STUNResponder(layout: layout, software: "peerway test")
        guard case .reply(let bytes, _, _) = r.respond(to: STUNMessage(type: .bindingRequest).encoded(), from: client, on: .primary) else {
            Issue.record("no reply"); return
        }
        #expect(try STUNMessage(datagram: bytes).attribute(.software) == .software("peerway test"))
    }
}

@Suite("STUN rate limiter")
struct SourceRateLimiterTests {
    let ip = STUNAddress.IP.v4(0xCB00_7107)
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test("A burst is admitted, then one request per 1/rate seconds")
    func tokenBucket() {
        var limiter = SourceRateLimiter(ratePerSecond: 10, burst: 3)
        #expect((0..<5).map { _ in limiter.admit(ip, now: t0) } == [true, true, true, false, false])
        #expect(limiter.admit(ip, now: t0 + .milliseconds(50)) == false)
        #expect(limiter.admit(ip, now: t0 + .milliseconds(100)) == true)
        #expect(limiter.admit(ip, now: t0 + .milliseconds(101)) == false)
        // Other sources have their own bucket.
        #expect(limiter.admit(.v4(1), now: t0) == true)
    }

    @Test("Rate 0 disables limiting")
    func disabled() {
        var limiter = SourceRateLimiter(ratePerSecond: 0, burst: 1)
        #expect((0..<1000).allSatisfy { _ in limiter.admit(ip, now: t0) })
        #expect(limiter.trackedSources == 0)
    }

    @Test("Idle sources are swept once their bucket has refilled")
    func sweep() {
        var limiter = SourceRateLimiter(ratePerSecond: 10, burst: 2)
        _ = limiter.admit(ip, now: t0)
        _ = limiter.admit(.v4(2), now: t0 + .seconds(9))
        #expect(limiter.trackedSources == 2)
        limiter.sweep(now: t0 + .milliseconds(9_050))
        #expect(limiter.trackedSources == 1, "the first source refilled and is forgotten; the second is still draining")
    }
}

@Suite("STUN responder under hostile input")
struct STUNResponderHostileInputTests {
    /// Largest growth of an answer over its request: header-only IPv6 request answered with
    /// XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN and OTHER-ADDRESS (3 x 24 bytes).
    static let maximumGrowth = 72


    @Test("Mutated requests never crash it; every answer decodes and grows the request by at most 72 bytes")
    func mutatedRequests() throws {
        let layout = try STUNPairLayout(
            primary: STUNAddress(parsing: "[2001:db8::1]:3478")!, alternate: STUNAddress(parsing: "[2001:db8::2]:3479")!)
        let responder = STUNResponder(layout: layout)
        let client = STUNAddress(parsing: "[2001:db8::99]:5000")!
        let seeds: [[UInt8]] = [
            STUNMessage(type: .bindingRequest).encodedBytes(),
            STUNMessage(type: .bindingRequest, attributes: [.changeRequest(STUNChangeRequest(changeIP: true, changePort: true))])
                .encodedBytes(options: STUNEncodingOptions(fingerprint: true)),
            STUNMessage(type: .bindingRequest, transactionID: .randomClassic(), attributes: [.responseAddress(client)]).encodedBytes(),
            STUNMessage(type: .bindingRequest, attributes: [.padding(64), .responsePort(9), .unknown(type: 0x0042, value: [1, 2])]).encodedBytes(),
        ]
        var rng = STUNSeededRandom(seed: 0x5EED)
        var replies = 0
        for i in 0..<20_000 {
            var bytes = seeds[i % seeds.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                switch Int.random(in: 0..<4, using: &rng) {
                case 0 where !bytes.isEmpty: bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                case 1 where !bytes.isEmpty: bytes.removeLast(Int.random(in: 1...min(8, bytes.count), using: &rng))
                case 2: bytes += (0..<4).map { _ in UInt8.random(in: 0...255, using: &rng) }
                default: if bytes.count > 3 { bytes[3] = UInt8(truncatingIfNeeded: bytes.count - 20) }
                }
            }
            guard case .reply(let answer, _, let to) = responder.respond(to: ByteBuffer(bytes: bytes), from: client, on: .primary) else {
                continue
            }
            replies += 1
            #expect(to.ip == client.ip, "answers go to the source IP only")
            #expect(answer.readableBytes <= max(bytes.count, STUN.headerSize) + Self.maximumGrowth)
            #expect(throws: Never.self) { try STUNMessage(datagram: answer) }
        }
        #expect(replies > 1_000, "the mutations must leave many requests valid, or the test proves little")
    }
}
