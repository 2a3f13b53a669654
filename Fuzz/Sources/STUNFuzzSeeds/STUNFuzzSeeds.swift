import Foundation
import PeerwaySTUN

// Writes the seed corpus for STUNDecoderFuzzer into the directory given as the only argument:
// the four RFC 5769 vectors (RFC5769Vectors.swift is shared with the unit tests through a
// symlink) and a handful of messages from the encoder covering the classic RFC 3489 form, the
// RFC 5780 attributes, errors, integrity and stream framing. Deterministic: same files each run.

@main
struct STUNFuzzSeeds {
    static func main() throws {
        guard CommandLine.arguments.count == 2 else {
            FileHandle.standardError.write(Data("usage: STUNFuzzSeeds <corpus-directory>\n".utf8))
            exit(2)
        }
        let directory = URL(fileURLWithPath: CommandLine.arguments[1], isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)

        let id = STUNTransactionID(cookieAnd96Bits: [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C])
        let classicID = STUNTransactionID(high: 0x0011_2233_4455_6677, low: 0x8899_AABB_CCDD_EEFF)
        let v4 = STUNAddress(parsing: "192.0.2.1:32853")!
        let v6 = STUNAddress(parsing: "[2001:db8::1]:3478")!
        let key = STUNIntegrity.shortTermKey(password: "peerway-fuzz-key")

        var seeds: [(String, [UInt8])] = [
            ("rfc5769-2.1-request", RFC5769.sampleRequest),
            ("rfc5769-2.2-ipv4-response", RFC5769.ipv4Response),
            ("rfc5769-2.3-ipv6-response", RFC5769.ipv6Response),
            ("rfc5769-2.4-long-term-request", RFC5769.longTermRequest),
        ]

        let classicRequest = STUNMessage(type: .bindingRequest, transactionID: classicID, attributes: [
            .changeRequest(STUNChangeRequest(changeIP: true, changePort: true)),
        ])
        seeds.append(("classic-request-change-ip-port", classicRequest.encodedBytes()))

        let classicResponse = STUNMessage(type: .bindingSuccess, transactionID: classicID, attributes: [
            .mappedAddress(v4), .sourceAddress(v4.with(port: 3478)), .changedAddress(v6),
        ])
        seeds.append(("classic-response", classicResponse.encodedBytes()))

        seeds.append(("binding-request-empty", STUNMessage(type: .bindingRequest, transactionID: id).encodedBytes()))

        let rfc5780Request = STUNMessage(type: .bindingRequest, transactionID: id, attributes: [
            .username("alice:bob"), .responsePort(40000), .padding(13), .changeRequest(STUNChangeRequest(changePort: true)),
        ])
        seeds.append(("rfc5780-request-mi-fp", rfc5780Request.encodedBytes(options: STUNEncodingOptions(messageIntegrityKey: key, fingerprint: true))))

        let rfc5780Response = STUNMessage(type: .bindingSuccess, transactionID: id, attributes: [
            .xorMappedAddress(v6), .mappedAddress(v4), .responseOrigin(v4), .otherAddress(v6), .software("Peerway fuzz seed"),
        ])
        seeds.append(("rfc5780-response-sha256-fp", rfc5780Response.encodedBytes(
            options: STUNEncodingOptions(messageIntegrityKey: key, messageIntegritySHA256Key: key, fingerprint: true))))

        let errorResponse = STUNMessage(type: .bindingError, transactionID: id, attributes: [
            .errorCode(.unknownAttribute), .unknownAttributes([0x0024, 0x8029, 0x0031]),
            .unknown(type: 0x0014, value: Array("example.org".utf8)), .responseAddress(v4),
        ])
        seeds.append(("error-response-420", errorResponse.encodedBytes(options: STUNEncodingOptions(fingerprint: true))))

        // Every attribute kind once, without FINGERPRINT, so that mutations keep decoding.
        let everything = STUNMessage(type: .bindingSuccess, transactionID: id, attributes: [
            .mappedAddress(v4), .xorMappedAddress(v6), .username("user"), .errorCode(.badRequest),
            .unknownAttributes([0x0003]), .changeRequest(STUNChangeRequest(changeIP: true)), .responseOrigin(v6),
            .otherAddress(v4), .responsePort(3478), .padding(3), .changedAddress(v4), .sourceAddress(v6),
            .responseAddress(v4), .software("s"), .unknown(type: 0x8023, value: [0, 1, 0x0D, 0x96, 192, 0, 2, 9]),
        ])
        seeds.append(("every-attribute-plain", everything.encodedBytes()))

        // Two messages back to back, for the stream loop.
        seeds.append(("stream-two-messages", classicRequest.encodedBytes() + RFC5769.ipv4Response))

        for (name, bytes) in seeds {
            try Data(bytes).write(to: directory.appendingPathComponent(name + ".bin"))
        }
        print("wrote \(seeds.count) seeds to \(directory.path)")
    }
}
