import CLibFuzzer
import NIOCore
import PeerwaySTUN

// libFuzzer entry point for the STUN decoder (built with -sanitize=fuzzer; libFuzzer supplies
// `main`). For every input it checks properties that must hold for any bytes at all:
//
// 1. The datagram decoder (`STUNMessage(bytes:)`) and the stream decoder
//    (`ByteBuffer.readSTUNMessage()`) agree: same message, or same error.
// 2. The stream decoder, run in a loop, only ever moves the reader index forward past a whole
//    message, never on nil or on an error, and each message it returns is also what the datagram
//    decoder makes of exactly the bytes it consumed.
// 3. Every decoded message re-encodes to bytes that decode to the same message, and re-encoding
//    that is a fixed point; adding a fresh FINGERPRINT, or fresh MESSAGE-INTEGRITY(-SHA256) to a
//    message that has none, keeps the attributes and verifies.
// 4. `verifySTUNIntegrity(key:)` never crashes and agrees with the decoder: `.malformed` exactly
//    when decoding fails, `.missing` exactly when no integrity attribute was decoded.
// 5. Every decoded address formats to text that parses back to it, and converts to a NIO
//    `SocketAddress` and back unchanged.
//
// A violated property stops the run through `fail`, which libFuzzer reports as a crash with the
// input saved.

private let fixedKey: [UInt8] = Array("peerway-fuzz-key".utf8)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    checkDatagram(bytes)
    checkStream(bytes)
    // Most mutations of a message that carries FINGERPRINT only break its CRC. Check the same
    // bytes with the FINGERPRINT repaired too, so that what lies before it gets explored.
    if let repaired = repairingFingerprint(bytes) {
        checkDatagram(repaired)
        checkStream(repaired)
    }
    return 0
}

/// `bytes` with the FINGERPRINT of its first message set to what the decoder expected, when
/// that is the only reason the first message does not decode.
private func repairingFingerprint(_ bytes: [UInt8]) -> [UInt8]? {
    var buffer = ByteBuffer(bytes: bytes)
    let expected: UInt32
    do {
        _ = try buffer.readSTUNMessage()
        return nil
    } catch {
        guard case .fingerprintMismatch(let e, _) = error else { return nil }
        expected = e
    }
    // The decoder stopped at the first FINGERPRINT: an earlier one that matched would have made
    // the next attribute fail with attributeAfterFingerprint instead.
    var offset = 20
    while offset + 8 <= bytes.count {
        let type = UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
        let length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        if type == 0x8028, length == 4 {
            var repaired = bytes
            for i in 0..<4 { repaired[offset + 4 + i] = UInt8(truncatingIfNeeded: expected >> (24 - 8 * i)) }
            return repaired
        }
        offset += 4 + ((length + 3) & ~3)
    }
    fail("fingerprintMismatch without a FINGERPRINT attribute", bytes)
}

/// The executable's entry point. SwiftPM links executables with `main` aliased to
/// `<module>_main` (so tests can import executable modules); with `-parse-as-library` there is no
/// Swift top-level code, so this function is that symbol and hands over to libFuzzer's driver.
@_cdecl("STUNDecoderFuzzer_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        guard let data else { return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1) { fuzz($0.baseAddress!, 0) } }
        return fuzz(data, size)
    }
}

private func fail(_ message: String, _ bytes: [UInt8]) -> Never {
    let hex = bytes.prefix(256).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
    fatalError("STUN fuzz property violated: \(message)\ninput (\(bytes.count) bytes): \(hex)")
}

private func decodeDatagram(_ bytes: [UInt8]) -> Result<STUNMessage, STUNDecodingError> {
    do { return .success(try STUNMessage(bytes: bytes)) } catch { return .failure(error) }
}

private func verify(_ buffer: ByteBuffer) -> Result<STUNAttributeType, STUNIntegrityError> {
    do { return .success(try buffer.verifySTUNIntegrity(key: fixedKey)) } catch { return .failure(error) }
}

private func hasIntegrity(_ m: STUNMessage) -> Bool {
    m.attributes.contains { $0.type == .messageIntegrity || $0.type == .messageIntegritySHA256 }
}

// MARK: - 1 and 4: datagram vs stream vs integrity

private func checkDatagram(_ bytes: [UInt8]) {
    let buffer = ByteBuffer(bytes: bytes)
    let datagram = decodeDatagram(bytes)

    var stream = buffer
    let streamed: Result<STUNMessage?, STUNDecodingError>
    do { streamed = .success(try stream.readSTUNMessage()) } catch { streamed = .failure(error) }

    switch (datagram, streamed) {
    case (.success(let m), .success(let s?)):
        guard s == m, stream.readableBytes == 0 else { fail("stream and datagram decoders disagree", bytes) }
        guard STUNMessage.looksLikeSTUN(buffer) else { fail("a decodable datagram does not look like STUN", bytes) }
        checkMessage(m, bytes)
    case (.success, _):
        fail("the datagram decoded but the stream decoder did not", bytes)
    case (.failure(let e), .failure(let f)):
        guard e == f else { fail("different errors: datagram \(e), stream \(f)", bytes) }
    case (.failure(.lengthMismatch), .success(nil)):
        break  // incomplete
    case (.failure(.lengthMismatch), .success(_?)):
        guard stream.readableBytes > 0 else { fail("lengthMismatch but the stream consumed everything", bytes) }
    case (.failure(let e), .success):
        fail("datagram error \(e) but the stream decoder did not fail", bytes)
    }

    let verdict = verify(buffer)
    switch (streamed, verdict) {
    case (.failure(let e), .failure(.malformed(let f))):
        guard e == f else { fail("verify reports \(f), the decoder \(e)", bytes) }
    case (.failure(let e), _):
        fail("verify did not report the decoding error \(e): \(verdict)", bytes)
    case (.success(nil), .failure(.malformed(.lengthMismatch))):
        break
    case (.success(nil), _):
        fail("verify on an incomplete message: \(verdict)", bytes)
    case (.success(let m?), .failure(.missing)):
        guard !hasIntegrity(m) else { fail("verify says missing but the message has integrity", bytes) }
    case (.success(let m?), .failure(.mismatch(let type))), (.success(let m?), .success(let type)):
        let expected: STUNAttributeType = m.attribute(.messageIntegritySHA256) != nil ? .messageIntegritySHA256 : .messageIntegrity
        guard hasIntegrity(m), type == expected else { fail("verify checked \(type), expected \(expected)", bytes) }
    case (.success(_?), .failure(.malformed(let e))):
        fail("verify says malformed (\(e)) but the message decoded", bytes)
    }
}

// MARK: - 2: stream mode

private func checkStream(_ bytes: [UInt8]) {
    var buffer = ByteBuffer(bytes: bytes)
    while true {
        let before = buffer.readerIndex
        let readable = buffer.readableBytes
        do {
            guard let m = try buffer.readSTUNMessage() else {
                guard buffer.readerIndex == before else { fail("nil moved the reader index", bytes) }
                return
            }
            let consumed = buffer.readerIndex - before
            guard consumed >= 20, consumed % 4 == 0, consumed <= readable else { fail("consumed \(consumed) bytes", bytes) }
            guard case .success(let alone) = decodeDatagram(Array(bytes[before..<(before + consumed)])), alone == m else {
                fail("the consumed bytes alone do not decode to the same message", bytes)
            }
            checkMessage(m, bytes)
        } catch {
            guard buffer.readerIndex == before, buffer.readableBytes == readable else {
                fail("an error (\(error)) moved the reader index", bytes)
            }
            return
        }
    }
}

// MARK: - 3 and 5: re-encoding and addresses

private func decodeOrFail(_ encoded: [UInt8], _ what: String, _ input: [UInt8]) -> STUNMessage {
    switch decodeDatagram(encoded) {
    case .success(let m): return m
    case .failure(let e): fail("\(what) does not decode: \(e)", input)
    }
}

private func checkMessage(_ m: STUNMessage, _ input: [UInt8]) {
    // The decoded FINGERPRINT, if any, covers the original bytes (padding content, ignored
    // attributes), not the re-encoding: drop it and add a fresh one where wanted.
    var core = m
    if case .fingerprint? = core.attributes.last { core.attributes.removeLast() }
    guard !core.attributes.contains(where: { $0.type == .fingerprint }) else { fail("FINGERPRINT not last", input) }

    let plain = core.encodedBytes()
    let again = decodeOrFail(plain, "the re-encoding", input)
    guard again == core else { fail("re-encoding changed the message:\n\(core)\n\(again)", input) }
    guard again.encodedBytes() == plain else { fail("re-encoding is not a fixed point", input) }

    let roomForOne = core.attributes.count < STUNLimits.maximumAttributeCount && plain.count + 8 <= STUN.maximumMessageSize
    if roomForOne {
        let withFingerprint = decodeOrFail(core.encodedBytes(options: STUNEncodingOptions(fingerprint: true)), "the re-encoding with FINGERPRINT", input)
        guard Array(withFingerprint.attributes.dropLast()) == core.attributes,
            withFingerprint.attributes.last?.type == .fingerprint
        else { fail("adding FINGERPRINT changed the attributes", input) }
    }

    let roomForThree = core.attributes.count + 3 <= STUNLimits.maximumAttributeCount && plain.count + 68 <= STUN.maximumMessageSize
    if !hasIntegrity(core), roomForThree {
        let options = STUNEncodingOptions(messageIntegrityKey: fixedKey, messageIntegritySHA256Key: fixedKey, fingerprint: true)
        let signed = core.encodedBytes(options: options)
        let decoded = decodeOrFail(signed, "the signed re-encoding", input)
        guard Array(decoded.attributes.prefix(core.attributes.count)) == core.attributes,
            decoded.attributes.dropFirst(core.attributes.count).map(\.type) == [.messageIntegrity, .messageIntegritySHA256, .fingerprint]
        else { fail("signing changed the attributes", input) }
        guard case .success(.messageIntegritySHA256) = verify(ByteBuffer(bytes: signed)) else {
            fail("a freshly signed message does not verify", input)
        }
    }

    _ = "\(m.type) \(m.transactionID) \(m.isClassic)"
    for attribute in m.attributes {
        _ = attribute.type.description
        switch attribute {
        case .mappedAddress(let a), .xorMappedAddress(let a), .responseOrigin(let a), .otherAddress(let a),
            .changedAddress(let a), .sourceAddress(let a), .responseAddress(let a):
            checkAddress(a, input)
        case .errorCode(let e):
            guard (300...699).contains(e.code) else { fail("error code \(e.code)", input) }
            _ = e.description
        default:
            break
        }
    }
}

private func checkAddress(_ a: STUNAddress, _ input: [UInt8]) {
    guard STUNAddress(parsing: a.description) == a else { fail("\(a) does not parse back", input) }
    guard STUNAddress(parsing: a.ipString, defaultPort: a.port) == a else { fail("\(a.ipString) does not parse back", input) }
    guard let socket = try? a.socketAddress(), STUNAddress(socket) == a else {
        fail("\(a) does not survive SocketAddress", input)
    }
}
