import PeerwaySTUN
import Testing

/// The 14-bit message type interleaves the 12-bit method with the 2-bit class (RFC 8489 §5):
///
///     bit: 13 12 11 10  9  8  7  6  5  4  3  2  1  0
///          M11 ....... M7 C1 M6 M5 M4 C0 M3 M2 M1 M0
@Suite("Message type")
struct STUNMessageTypeTests {
    @Test("the four Binding classes: 0x0001, 0x0011, 0x0101, 0x0111")
    func bindingClasses() throws {
        let expected: [(STUNMessageType, UInt16, STUNClass)] = [
            (.bindingRequest, 0x0001, .request),
            (.bindingIndication, 0x0011, .indication),
            (.bindingSuccess, 0x0101, .successResponse),
            (.bindingError, 0x0111, .errorResponse),
        ]
        for (type, raw, cls) in expected {
            #expect(type.rawValue == raw)
            #expect(type.method == .binding)
            #expect(type.messageClass == cls)
            let parsed = try #require(STUNMessageType(rawValue: raw))
            #expect(parsed == type)
        }
    }

    @Test("a method with its high bits set is spread around the class bits")
    func highMethodBits() throws {
        let all = STUNMethod(rawValue: 0xFFF)
        #expect(STUNMessageType(method: all, class: .request).rawValue == 0x3EEF)
        #expect(STUNMessageType(method: all, class: .indication).rawValue == 0x3EFF)
        #expect(STUNMessageType(method: all, class: .successResponse).rawValue == 0x3FEF)
        #expect(STUNMessageType(method: all, class: .errorResponse).rawValue == 0x3FFF)
        // One method bit at a time lands where the figure says.
        let placements: [(UInt16, UInt16)] = [
            (0x001, 0x0001), (0x008, 0x0008), (0x010, 0x0020), (0x040, 0x0080),
            (0x080, 0x0200), (0x800, 0x2000),
        ]
        for (method, raw) in placements {
            let type = STUNMessageType(method: STUNMethod(rawValue: method), class: .request)
            #expect(type.rawValue == raw, "method 0x\(String(method, radix: 16))")
            #expect(STUNMessageType(rawValue: raw)?.method.rawValue == method)
        }
        // TURN's Allocate (0x003) success response and a method in the top range.
        #expect(STUNMessageType(method: STUNMethod(rawValue: 0x003), class: .successResponse).rawValue == 0x0103)
        let parsed = try #require(STUNMessageType(rawValue: 0x3EEF))
        #expect(parsed.method.rawValue == 0xFFF)
        #expect(parsed.messageClass == .request)
    }

    @Test("the method is masked to 12 bits")
    func methodMask() {
        #expect(STUNMethod(rawValue: 0xF001) == .binding)
        #expect(STUNMethod(rawValue: 0x1000).rawValue == 0)
        #expect(STUNMethod.binding.description == "Binding")
        #expect(STUNMethod(rawValue: 0xABC).description == "method 0xabc")
    }

    @Test("every 14-bit value decodes and encodes back to itself")
    func bijection() throws {
        var seen = Set<STUNMessageType>()
        for raw in UInt16(0)...0x3FFF {
            let type = try #require(STUNMessageType(rawValue: raw))
            #expect(type.rawValue == raw)
            seen.insert(type)
        }
        #expect(seen.count == 0x4000)
    }

    @Test("a value with either top bit set is not a STUN type")
    func topBits() {
        for raw: UInt16 in [0x4000, 0x8000, 0xC000, 0x4001, 0x8101, 0xFFFF] {
            #expect(STUNMessageType(rawValue: raw) == nil)
        }
    }

    @Test("the decoder reads the type from the header; any method round-trips")
    func typeInHeader() throws {
        for raw: UInt16 in [0x0001, 0x0011, 0x0101, 0x0111, 0x0003, 0x3FFF, 0x0000] {
            let decoded = try STUNMessage(bytes: TestSupport.message(type: raw, body: []))
            #expect(decoded.type.rawValue == raw)
            #expect(decoded.encodedBytes() == TestSupport.message(type: raw, body: []))
        }
    }

    @Test("descriptions")
    func descriptions() {
        #expect(STUNMessageType.bindingRequest.description == "Binding request")
        #expect(STUNAttributeType.xorMappedAddress.description == "XOR-MAPPED-ADDRESS")
        #expect(STUNAttributeType(rawValue: 0x0C01).description == "0x0c01")
        #expect(STUNAttributeType(rawValue: 0x7FFF).isComprehensionRequired)
        #expect(!STUNAttributeType(rawValue: 0x8000).isComprehensionRequired)
        #expect(TestSupport.id.description == "2112a442" + "0102030405060708090a0b0c")
    }

    @Test("transaction ids: cookie detection and random generation")
    func transactionIDs() {
        #expect(TestSupport.id.hasMagicCookie)
        #expect(!TestSupport.classicID.hasMagicCookie)
        #expect(TestSupport.id.bytes == [0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
        var g1 = STUNSeededRandom(seed: 5)
        var g2 = STUNSeededRandom(seed: 5)
        let a = STUNTransactionID.random(using: &g1)
        #expect(a == STUNTransactionID.random(using: &g2))
        #expect(a.hasMagicCookie)
        #expect(a != STUNTransactionID.random(using: &g1))
        for _ in 0..<100 { #expect(!STUNTransactionID.randomClassic().hasMagicCookie) }
        #expect(STUNTransactionID.random().hasMagicCookie)
        #expect(STUNMessage(type: .bindingRequest).transactionID != STUNMessage(type: .bindingRequest).transactionID)
    }
}
