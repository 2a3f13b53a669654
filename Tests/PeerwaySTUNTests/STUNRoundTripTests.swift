import NIOCore
import PeerwaySTUN
import Testing

/// Generates arbitrary well-formed messages from a seeded generator.
enum RandomMessages {
    /// Attribute types the decoder maps to a typed case; `.unknown` must avoid them.
    static let typedCodes: Set<UInt16> = [
        0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0008, 0x0009, 0x000A, 0x001C,
        0x0020, 0x0026, 0x0027, 0x8022, 0x8028, 0x802B, 0x802C,
    ]

    static func address<G: RandomNumberGenerator>(_ g: inout G) -> STUNAddress {
        let port = UInt16.random(in: 0...UInt16.max, using: &g)
        if Bool.random(using: &g) { return STUNAddress(ip: .v4(UInt32.random(in: 0...UInt32.max, using: &g)), port: port) }
        return STUNAddress(ip: .v6(high: UInt64.random(in: 0...UInt64.max, using: &g), low: UInt64.random(in: 0...UInt64.max, using: &g)), port: port)
    }

    /// Text of at most `maxBytes` UTF-8 bytes, mixing ASCII with 2-, 3- and 4-byte scalars.
    static func text<G: RandomNumberGenerator>(_ g: inout G, maxBytes: Int) -> String {
        let alphabet: [Unicode.Scalar] = ["a", "Z", "0", " ", ":", "\u{0}", "é", "ß", "マ", "€", "\u{1F600}", "\u{10FFFF}"]
        var s = String.UnicodeScalarView()
        var bytes = 0
        let target = Int.random(in: 0...maxBytes, using: &g)
        while true {
            let scalar = alphabet.randomElement(using: &g)!
            let size = String(scalar).utf8.count
            if bytes + size > target { break }
            s.append(scalar)
            bytes += size
        }
        return String(s)
    }

    static func bytes<G: RandomNumberGenerator>(_ g: inout G, max: Int) -> [UInt8] {
        (0..<Int.random(in: 0...max, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    /// One attribute of any case except MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT, which change
    /// how what follows them decodes and are added through `STUNEncodingOptions` instead.
    static func attribute<G: RandomNumberGenerator>(_ g: inout G) -> STUNAttribute {
        switch Int.random(in: 0..<15, using: &g) {
        case 0: return .mappedAddress(address(&g))
        case 1: return .xorMappedAddress(address(&g))
        case 2: return .username(text(&g, maxBytes: STUNLimits.maximumUsernameBytes))
        case 3: return .software(text(&g, maxBytes: 40))
        case 4: return .errorCode(STUNErrorCode(code: Int.random(in: 300...699, using: &g), reason: text(&g, maxBytes: 30)))
        case 5: return .unknownAttributes((0..<Int.random(in: 0...5, using: &g)).map { _ in UInt16.random(in: 0...UInt16.max, using: &g) })
        case 6: return .changeRequest(STUNChangeRequest(changeIP: Bool.random(using: &g), changePort: Bool.random(using: &g)))
        case 7: return .responseOrigin(address(&g))
        case 8: return .otherAddress(address(&g))
        case 9: return .responsePort(UInt16.random(in: 0...UInt16.max, using: &g))
        case 10: return .padding(Int.random(in: 0...64, using: &g))
        case 11: return .changedAddress(address(&g))
        case 12: return .sourceAddress(address(&g))
        case 13: return .responseAddress(address(&g))
        default:
            var type: UInt16
            repeat { type = UInt16.random(in: 0...UInt16.max, using: &g) } while typedCodes.contains(type)
            return .unknown(type: type, value: bytes(&g, max: 23))
        }
    }

    static func message<G: RandomNumberGenerator>(_ g: inout G, maxAttributes: Int = 12) -> STUNMessage {
        let method = STUNMethod(rawValue: Bool.random(using: &g) ? 0x001 : UInt16.random(in: 0...0xFFF, using: &g))
        let type = STUNMessageType(method: method, class: STUNClass.allCases.randomElement(using: &g)!)
        let id = Int.random(in: 0..<4, using: &g) == 0
            ? STUNTransactionID(high: UInt64.random(in: 0...UInt64.max, using: &g), low: UInt64.random(in: 0...UInt64.max, using: &g))
            : STUNTransactionID.random(using: &g)
        let count = Int.random(in: 0...maxAttributes, using: &g)
        return STUNMessage(type: type, transactionID: id, attributes: (0..<count).map { _ in attribute(&g) })
    }
}

@Suite("Round trips")
struct STUNRoundTripTests {
    static let v4 = STUNAddress("192.0.2.1:32853")
    static let v6 = STUNAddress("[2001:db8:1234:5678:11:2233:4455:6677]:32853")

    /// Every attribute case (integrity and fingerprint excepted), each with IPv4 and IPv6 where
    /// it carries an address.
    static let everyAttribute: [STUNAttribute] = [v4, v6].flatMap { a -> [STUNAttribute] in
        [.mappedAddress(a), .xorMappedAddress(a), .responseOrigin(a), .otherAddress(a),
         .changedAddress(a), .sourceAddress(a), .responseAddress(a)]
    } + [
        .username("evtj:h6vY"), .username(String(repeating: "ü", count: 256)), .software("Peerway 1.0 ☃"),
        .errorCode(.badRequest), .errorCode(STUNErrorCode(code: 699, reason: "x")), .unknownAttributes([0x0024, 0x8029, 0x0031]),
        .changeRequest(STUNChangeRequest(changeIP: true, changePort: false)), .responsePort(65535),
        .padding(0), .padding(7), .unknown(type: 0x0014, value: Array("example.org".utf8)), .unknown(type: 0xFFFF, value: []),
    ]

    static let options: [(String, STUNEncodingOptions)] = [
        ("plain", .plain),
        ("MI", STUNEncodingOptions(messageIntegrityKey: Array("key".utf8))),
        ("MI-SHA256", STUNEncodingOptions(messageIntegritySHA256Key: Array("key256".utf8))),
        ("FINGERPRINT", STUNEncodingOptions(fingerprint: true)),
        ("MI+FINGERPRINT", STUNEncodingOptions(messageIntegrityKey: Array("key".utf8), fingerprint: true)),
        ("all", STUNEncodingOptions(messageIntegrityKey: Array("key".utf8), messageIntegritySHA256Key: Array("key256".utf8), fingerprint: true)),
    ]

    /// Encodes with `options`, decodes, and checks the message comes back with the requested
    /// trailer, that it verifies, and that re-encoding the decoded message is a fixed point.
    static func roundTrip(_ message: STUNMessage, _ options: STUNEncodingOptions, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let bytes = message.encodedBytes(options: options)
        let decoded = try STUNMessage(bytes: bytes)
        #expect(decoded.type == message.type, sourceLocation: sourceLocation)
        #expect(decoded.transactionID == message.transactionID, sourceLocation: sourceLocation)
        #expect(Array(decoded.attributes.prefix(message.attributes.count)) == message.attributes, sourceLocation: sourceLocation)
        var trailer: [STUNAttributeType] = []
        if options.messageIntegrityKey != nil { trailer.append(.messageIntegrity) }
        if options.messageIntegritySHA256Key != nil { trailer.append(.messageIntegritySHA256) }
        if options.fingerprint { trailer.append(.fingerprint) }
        #expect(decoded.attributes.dropFirst(message.attributes.count).map(\.type) == trailer, sourceLocation: sourceLocation)
        // The decoded message, trailer included, re-encodes to the very same bytes.
        #expect(decoded.encodedBytes() == bytes, sourceLocation: sourceLocation)
        #expect(try TestSupport.streamDecode(bytes) == decoded, sourceLocation: sourceLocation)
        let buffer = ByteBuffer(bytes: bytes)
        if let key = options.messageIntegritySHA256Key {
            #expect(try buffer.verifySTUNIntegrity(key: key) == .messageIntegritySHA256, sourceLocation: sourceLocation)
        } else if let key = options.messageIntegrityKey {
            #expect(try buffer.verifySTUNIntegrity(key: key) == .messageIntegrity, sourceLocation: sourceLocation)
        } else {
            #expect(throws: STUNIntegrityError.missing, sourceLocation: sourceLocation) { try buffer.verifySTUNIntegrity(key: []) }
        }
    }

    @Test("every attribute alone round-trips under every encoding option", arguments: everyAttribute)
    func singleAttribute(attribute: STUNAttribute) throws {
        for (_, options) in Self.options {
            try Self.roundTrip(STUNMessage(type: .bindingSuccess, transactionID: TestSupport.id, attributes: [attribute]), options)
            try Self.roundTrip(STUNMessage(type: .bindingRequest, transactionID: TestSupport.classicID, attributes: [attribute]), options)
        }
    }

    @Test("all attributes together round-trip in order", arguments: options.map(\.0))
    func allAttributes(optionName: String) throws {
        let options = try #require(Self.options.first { $0.0 == optionName }?.1)
        try Self.roundTrip(STUNMessage(type: .bindingSuccess, transactionID: TestSupport.id, attributes: Self.everyAttribute), options)
        try Self.roundTrip(STUNMessage(type: .bindingError, transactionID: TestSupport.classicID, attributes: Self.everyAttribute.reversed()), options)
    }

    @Test("XOR-MAPPED-ADDRESS with a classic id XORs with bytes 4-7 and still round-trips")
    func xorWithClassicID() throws {
        let message = STUNMessage(type: .bindingSuccess, transactionID: TestSupport.classicID, attributes: [.xorMappedAddress(Self.v4)])
        let bytes = message.encodedBytes()
        // Port XOR 0x0011 (top of bytes 4-5), address XOR 0x00112233.
        // 32853 = 0x8055 -> 0x8044; 192.0.2.1 = 0xC0000201 -> 0xC0112032.
        let expected: [UInt8] = [0x00, 0x01, 0x80, 0x44, 0xC0, 0x11, 0x20, 0x32]
        #expect(Array(bytes[24...]) == expected)
        #expect(try STUNMessage(bytes: bytes) == message)
    }

    @Test("the accessors prefer the RFC 5780 attributes over the classic ones")
    func accessors() throws {
        let classic = STUNAddress("192.0.2.7:1000")
        let modern = STUNAddress("192.0.2.8:2000")
        let message = try STUNMessage(bytes: STUNMessage(type: .bindingSuccess, transactionID: TestSupport.id, attributes: [
            .mappedAddress(classic), .changedAddress(classic), .sourceAddress(classic),
            .xorMappedAddress(modern), .otherAddress(modern), .responseOrigin(modern),
            .changeRequest(STUNChangeRequest(changePort: true)), .errorCode(.serverError),
        ]).encodedBytes())
        #expect(message.mappedAddress == modern)
        #expect(message.otherAddress == modern)
        #expect(message.responseOrigin == modern)
        #expect(message.changeRequest == STUNChangeRequest(changePort: true))
        #expect(message.errorCode == .serverError)
        #expect(message.attribute(.changedAddress) == .changedAddress(classic))
        let bare = STUNMessage(type: .bindingSuccess, attributes: [.mappedAddress(classic), .changedAddress(classic), .sourceAddress(classic)])
        #expect(bare.mappedAddress == classic)
        #expect(bare.otherAddress == classic)
        #expect(bare.responseOrigin == classic)
        #expect(bare.changeRequest == STUNChangeRequest())
        #expect(bare.errorCode == nil)
    }

    @Test("randomized: 3000 generated messages round-trip under random options (seeded)")
    func randomized() throws {
        var g = STUNSeededRandom(seed: 0x5EED_5700)
        var withTrailer = 0
        for _ in 0..<3000 {
            let message = RandomMessages.message(&g)
            let options = Self.options.randomElement(using: &g)!.1
            if options.fingerprint || options.messageIntegrityKey != nil { withTrailer += 1 }
            let bytes = message.encodedBytes(options: options)
            let decoded = try STUNMessage(bytes: bytes)
            #expect(Array(decoded.attributes.prefix(message.attributes.count)) == message.attributes)
            #expect(decoded.encodedBytes() == bytes)
            if options.messageIntegrityKey == nil && options.messageIntegritySHA256Key == nil && !options.fingerprint {
                #expect(decoded == message)
            }
        }
        #expect(withTrailer > 1000)
    }

    @Test("randomized: concatenated messages come back one by one from a stream (seeded)")
    func randomizedStream() throws {
        var g = STUNSeededRandom(seed: 42)
        let messages = (0..<200).map { _ in RandomMessages.message(&g, maxAttributes: 4) }
        var buffer = ByteBuffer()
        for m in messages { buffer.writeSTUNMessage(m, options: STUNEncodingOptions(fingerprint: true)) }
        var decoded: [STUNMessage] = []
        while let m = try buffer.readSTUNMessage() { decoded.append(m) }
        #expect(buffer.readableBytes == 0)
        #expect(decoded.map { Array($0.attributes.dropLast()) } == messages.map(\.attributes))
        #expect(decoded.map(\.transactionID) == messages.map(\.transactionID))
    }
}
