import NIOCore
import PeerwaySTUN
import PeerwaySupernode
import Testing

/// The STUN pair on real loopback sockets (127.0.0.1 and 127.0.0.2, ephemeral ports).
@Suite("STUN pair server on loopback")
struct STUNPairServerTests {
    static func startPair(rate: Int = 0, burst: Int = 1, alternate: Bool = true) async throws -> (STUNPairServer, STUNPairLayout) {
        let layout = try STUNPairLayout(
            primary: STUNAddress(parsing: "127.0.0.1:0")!,
            alternate: alternate ? STUNAddress(parsing: "127.0.0.2:0")! : nil)
        let server = STUNPairServer(configuration: STUNPairConfiguration(layout: layout, ratePerSecond: rate, burst: burst, workers: 2))
        let bound = try await server.start()
        return (server, bound)
    }

    @Test("Binding request: XOR-MAPPED-ADDRESS is the source, RESPONSE-ORIGIN and OTHER-ADDRESS name the pair")
    func plainBinding() async throws {
        let (server, layout) = try await Self.startPair()
        let client = try await UDPTestSocket.bind()
        defer { Task { await client.close(); await server.stop() } }
        #expect(layout.primary.port != 0 && layout.alternate!.port != 0 && layout.primary.port != layout.alternate!.port)

        let request = STUNMessage(type: .bindingRequest)
        let answer = try #require(try await client.transact(request, to: layout.primary))
        #expect(answer.from == layout.primary)
        #expect(answer.message.type == .bindingSuccess)
        #expect(answer.message.transactionID == request.transactionID)
        #expect(answer.message.attribute(.xorMappedAddress) == .xorMappedAddress(client.localAddress))
        #expect(answer.message.responseOrigin == layout.primary)
        #expect(answer.message.otherAddress == layout.alternate)
        #expect(answer.message.attribute(.mappedAddress) == nil, "RFC 8489 clients get only the XOR form")
    }

    @Test("CHANGE-REQUEST is answered from the right socket of the four", arguments: [
        (false, false), (false, true), (true, false), (true, true),
    ])
    func changeRequest(changeIP: Bool, changePort: Bool) async throws {
        let (server, layout) = try await Self.startPair()
        let client = try await UDPTestSocket.bind()
        defer { Task { await client.close(); await server.stop() } }
        let request = STUNMessage(
            type: .bindingRequest, attributes: [.changeRequest(STUNChangeRequest(changeIP: changeIP, changePort: changePort))])
        let answer = try #require(try await client.transact(request, to: layout.primary))
        let expected = layout.address(of: STUNSocketRole(alternateIP: changeIP, alternatePort: changePort))!
        #expect(answer.from == expected)
        #expect(answer.message.responseOrigin == expected)
        #expect(answer.message.mappedAddress == client.localAddress)

        // Asked on the alternate socket B:p2, OTHER-ADDRESS is the primary A:p.
        let viaAlternate = try #require(try await client.transact(STUNMessage(type: .bindingRequest), to: layout.alternate!))
        #expect(viaAlternate.from == layout.alternate)
        #expect(viaAlternate.message.otherAddress == layout.primary)
    }

    @Test("A classic RFC 3489 request gets MAPPED-ADDRESS, SOURCE-ADDRESS and CHANGED-ADDRESS")
    func classicClient() async throws {
        let (server, layout) = try await Self.startPair()
        let client = try await UDPTestSocket.bind()
        defer { Task { await client.close(); await server.stop() } }
        let request = STUNMessage(
            type: .bindingRequest, transactionID: .randomClassic(),
            attributes: [.changeRequest(STUNChangeRequest(changeIP: true, changePort: false))])
        let answer = try #require(try await client.transact(request, to: layout.primary))
        let origin = layout.address(of: STUNSocketRole(alternateIP: true, alternatePort: false))!
        #expect(answer.from == origin)
        #expect(answer.message.transactionID == request.transactionID)
        #expect(answer.message.attributes == [
            .mappedAddress(client.localAddress), .sourceAddress(origin),
            .changedAddress(layout.alternate!),  // the diagonal of A:p, where the request arrived
        ])
    }

    @Test("RESPONSE-PORT sends the answer to the source IP on that port; FINGERPRINT and PADDING are echoed")
    func responsePortAndPadding() async throws {
        let (server, layout) = try await Self.startPair()
        let client = try await UDPTestSocket.bind()
        let other = try await UDPTestSocket.bind()
        defer { Task { await client.close(); await other.close(); await server.stop() } }
        let request = STUNMessage(type: .bindingRequest, attributes: [.responsePort(other.localAddress.port), .padding(100)])
        try await client.send(request, to: layout.primary, options: STUNEncodingOptions(fingerprint: true))
        let (_, data) = try #require(await other.receive())
        let answer = try STUNMessage(datagram: data)
        #expect(answer.mappedAddress == client.localAddress)
        #expect(answer.attribute(.padding) == .padding(100))
        #expect(answer.attributes.last?.type == .fingerprint)
        #expect(await client.receive(timeout: .milliseconds(200)) == nil)
    }

    @Test("Garbage is dropped silently and counted; the server keeps answering")
    func garbage() async throws {
        let (server, layout) = try await Self.startPair()
        let client = try await UDPTestSocket.bind()
        defer { Task { await client.close(); await server.stop() } }
        let junk: [[UInt8]] = [
            [], [0xFF], Array(repeating: 0, count: 19), [0x00, 0x01, 0x00, 0x03] + Array(repeating: 0, count: 19),
            [0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42] + Array(repeating: 0, count: 12) + [0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4],
            Array(repeating: 0x41, count: STUNLimits.maximumDatagramSize + 1),
        ]
        for j in junk { try await client.send(ByteBuffer(bytes: j), to: layout.primary) }
        // Responses and indications get nothing either.
        try await client.send(STUNMessage(type: .bindingSuccess), to: layout.primary)
        try await client.send(STUNMessage(type: .bindingIndication), to: layout.primary)
        #expect(await client.receive(timeout: .milliseconds(300)) == nil)
        let answer = try #require(try await client.transact(STUNMessage(type: .bindingRequest), to: layout.primary))
        #expect(answer.message.type == .bindingSuccess)
        let counters = await server.counters()
        #expect(counters.malformed == 5)
        #expect(counters.oversize == 1)
        #expect(counters.notARequest == 2)
        #expect(counters.answered == 1)
    }

    @Test("Unknown comprehension-required attributes get 420 with UNKNOWN-ATTRIBUTES; other methods 400")
    func errors() async throws {
        let (server, layout) = try await Self.startPair()
        let client = try await UDPTestSocket.bind()
        defer { Task { await client.close(); await server.stop() } }
        let unknown = STUNMessage(type: .bindingRequest, attributes: [.unknown(type: 0x7F01, value: [1, 2, 3, 4]), .unknown(type: 0xC001, value: [])])
        let a = try #require(try await client.transact(unknown, to: layout.primary))
        #expect(a.message.type == .bindingError)
        #expect(a.message.errorCode?.code == 420)
        #expect(a.message.attribute(.unknownAttributes) == .unknownAttributes([0x7F01]))

        let allocate = STUNMessage(type: STUNMessageType(method: STUNMethod(rawValue: 0x003), class: .request))
        let b = try #require(try await client.transact(allocate, to: layout.primary))
        #expect(b.message.type == STUNMessageType(method: STUNMethod(rawValue: 0x003), class: .errorResponse))
        #expect(b.message.errorCode?.code == 400)
    }

    @Test("Without an alternate address CHANGE-REQUEST gets 420 naming CHANGE-REQUEST (RFC 5780 §6.1)")
    func singleAddress() async throws {
        let (server, layout) = try await Self.startPair(alternate: false)
        let client = try await UDPTestSocket.bind()
        defer { Task { await client.close(); await server.stop() } }
        let plain = try #require(try await client.transact(STUNMessage(type: .bindingRequest), to: layout.primary))
        #expect(plain.message.mappedAddress == client.localAddress)
        #expect(plain.message.otherAddress == nil && plain.message.responseOrigin == nil)
        let change = STUNMessage(type: .bindingRequest, attributes: [.changeRequest(STUNChangeRequest(changeIP: true, changePort: true))])
        let answer = try #require(try await client.transact(change, to: layout.primary))
        #expect(answer.message.errorCode?.code == 420)
        #expect(answer.message.attribute(.unknownAttributes) == .unknownAttributes([0x0003]))
    }

    @Test("The per-source rate limit answers the burst and drops the rest")
    func rateLimit() async throws {
        let (server, layout) = try await Self.startPair(rate: 1, burst: 5)
        let client = try await UDPTestSocket.bind()
        defer { Task { await client.close(); await server.stop() } }
        let started = ContinuousClock.now
        for _ in 0..<20 { try await client.send(STUNMessage(type: .bindingRequest), to: layout.primary) }
        let elapsed = ContinuousClock.now - started
        var answers = 0
        while await client.receive(timeout: .milliseconds(300)) != nil { answers += 1 }
        // The burst of 5, plus one token per second the sending took (a loaded CI machine can
        // take over a second to send 20 datagrams).
        let refilled = Int(elapsed.components.seconds) + 1
        #expect(answers >= 5 && answers <= 5 + refilled, "answers \(answers), sending took \(elapsed)")
        let counters = await server.counters()
        #expect(counters.rateLimited == 20 - answers)
        #expect(counters.answered == answers)
    }
}

@Suite("STUN pair server on IPv6 loopback")
struct STUNPairServerIPv6Tests {
    @Test("A single-address server on [::1] answers with an IPv6 XOR-MAPPED-ADDRESS")
    func ipv6() async throws {
        let layout = try STUNPairLayout(primary: STUNAddress(parsing: "[::1]:0")!, alternate: nil)
        let server = STUNPairServer(configuration: STUNPairConfiguration(layout: layout, workers: 1))
        let bound = try await server.start()
        let client = try await UDPTestSocket.bind(host: "::1")
        defer { Task { await client.close(); await server.stop() } }
        let answer = try #require(try await client.transact(STUNMessage(type: .bindingRequest), to: bound.primary))
        #expect(answer.from == bound.primary)
        #expect(answer.message.attribute(.xorMappedAddress) == .xorMappedAddress(client.localAddress))
        #expect(client.localAddress.family == .ipv6)
    }
}
