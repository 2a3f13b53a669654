import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

/// Encode then decode gives back every value; every frame and packet kind is covered.
@Suite("Control round trips")
struct ControlRoundTripTests {
    typealias S = ControlSamples

    @Test("the samples cover every frame kind and every packet kind")
    func coverage() {
        let frameKinds = Set(S.frames.map { $0.1.kind })
        #expect(frameKinds == Set(ControlFrame.Kind.allCases))
        let packetKinds = Set(S.packets.map { $0.1.kind.rawValue })
        #expect(packetKinds == [1, 2, 3, 4, 5])
    }

    @Test("every frame sample round-trips", arguments: S.frames.map { ($0.0, $0.1, $0.2) })
    func frame(name: String, frame: ControlFrame, id: UInt32) throws {
        let bytes = ControlTest.frameBytes(frame, id: id)
        #expect(bytes.first == frame.kind.rawValue)
        #expect(Array(bytes[1..<5]) == [UInt8(id >> 24), UInt8(id >> 16 & 0xFF), UInt8(id >> 8 & 0xFF), UInt8(id & 0xFF)])
        let decoded = try ControlTest.decodeFrame(bytes).get()
        #expect(decoded == ControlEnvelope(id: id, frame: frame), "\(name)")
        #expect(ControlTest.frameBytes(decoded.frame, id: decoded.id) == bytes, "\(name): not a fixed point")
    }

    @Test("every packet sample round-trips", arguments: S.packets.map { ($0.0, $0.1) })
    func packet(name: String, packet: ControlPacket) throws {
        let bytes = ControlTest.packetBytes(packet)
        #expect(bytes.count <= ControlLimits.maximumDatagramBytes)
        #expect(try ControlTest.decodePacket(bytes).get() == packet, "\(name)")
    }

    @Test("a sealed packet carries an encoded frame of the largest size")
    func largestFrameInSealed() throws {
        // sendMessage with 1024 bytes of text: 5 + 16 + 8 + 2 + 1024 = 1055 ≤ maximumFrameBytes.
        let frame = ControlTest.frameBytes(.sendMessage(OutgoingMessage(to: S.peerA, messageID: 1, text: S.maxText)), id: 1)
        #expect(frame.count == 1055 && frame.count <= ControlLimits.maximumFrameBytes)
        let sealed = ControlPacket.sealed(ControlSealed(sessionID: 3, counter: 4, ciphertext: ByteBuffer(bytes: frame + Array(repeating: 0, count: 16))))
        #expect(try ControlTest.decodePacket(ControlTest.packetBytes(sealed)).get() == sealed)
    }

    @Test("the largest register fits a sealed packet")
    func largestRegister() {
        let bytes = ControlTest.frameBytes(S.frames[1].1, id: 0)
        #expect(bytes.count <= ControlLimits.maximumFrameBytes)
    }

    @Test("metadata on the wire in any order decodes to the same sorted metadata")
    func unsortedMetadata() throws {
        let sorted = ControlTest.hex("51 00000001 0011223344556677 8899aabbccddeeff 01 02 03 616765 02 3330 04 6e616d65 05 616c696365")
        let unsorted = ControlTest.hex("51 00000001 0011223344556677 8899aabbccddeeff 01 02 04 6e616d65 05 616c696365 03 616765 02 3330")
        let a = try ControlTest.decodeFrame(sorted).get()
        let b = try ControlTest.decodeFrame(unsorted).get()
        #expect(a == b)
        #expect(ControlTest.frameBytes(b.frame, id: b.id) == sorted)
    }

    @Test("an offline lookupResult or status drops what is only sent when online")
    func offlineDropsDetails() throws {
        let lookup = ControlFrame.lookupResult(LookupResult(peer: S.peerA, online: false, observed: S.v4, candidates: [S.v6], metadata: S.smallMetadata))
        let bytes = ControlTest.frameBytes(lookup, id: 1)
        #expect(bytes.count == 5 + 16 + 1)
        #expect(try ControlTest.decodeFrame(bytes).get().frame
            == .lookupResult(LookupResult(peer: S.peerA, online: false, observed: nil, candidates: [], metadata: PeerMetadata())))
        let status = ControlFrame.status(StatusEvent(peer: S.peerA, change: .offline, metadata: S.smallMetadata))
        let statusBytes = ControlTest.frameBytes(status, id: 2)
        #expect(statusBytes.count == 5 + 16 + 1)
        #expect(try ControlTest.decodeFrame(statusBytes).get().frame == .status(StatusEvent(peer: S.peerA, change: .offline)))
    }

    @Test("writes append after what the buffer already holds and report their own size")
    func appends() throws {
        var buffer = ByteBuffer(bytes: [1, 2, 3])
        let n = buffer.writeControlFrame(.ok, id: 9)
        #expect(n == 5 && buffer.readableBytes == 8)
        buffer.moveReaderIndex(forwardBy: 3)
        #expect(try buffer.readControlFrame() == ControlEnvelope(id: 9, frame: .ok))
        var packets = ByteBuffer(bytes: [9])
        #expect(packets.writeControlPacket(.sessionUnknown(sessionID: 5)) == 12)
        packets.moveReaderIndex(forwardBy: 1)
        #expect(try packets.readControlPacket() == .sessionUnknown(sessionID: 5))
    }
}

/// Every strict prefix of every valid encoding is refused as truncated (a hello under
/// `minimumHelloBytes` as invalid instead), and the reader index does not move.
@Suite("Control truncation")
struct ControlTruncationTests {
    static let frameEncodings: [(String, [UInt8])] =
        ControlGoldenBytesTests.frames.map { ($0.0, $0.1) }
        + ControlSamples.frames.filter { $0.0 != "searchResult 100" }.map { ($0.0, ControlTest.frameBytes($0.1, id: $0.2)) }

    static let packetEncodings: [(String, [UInt8])] =
        ControlGoldenBytesTests.packets.map { ($0.0, $0.1) } + ControlSamples.packets.map { ($0.0, ControlTest.packetBytes($0.1)) }

    @Test("every strict prefix of a frame is truncated", arguments: frameEncodings.indices)
    func framePrefixes(index: Int) {
        let (name, bytes) = Self.frameEncodings[index]
        for cut in 0..<bytes.count {
            let error = ControlTest.frameError(Array(bytes[0..<cut]))
            #expect(ControlTest.isTruncated(error), "\(name) cut at \(cut): \(String(describing: error))")
        }
        #expect(ControlTest.frameError(bytes) == nil, "\(name)")
    }

    /// Every strict prefix is truncated, except: a hello with a header is invalid under
    /// `minimumHelloBytes` and valid from there on (its padding is not checked); a sealed packet or
    /// hello reply that still holds a tag's worth of ciphertext is a valid, shorter packet (the
    /// ciphertext runs to the end of the datagram; the AEAD tag check catches the cut).
    @Test("every strict prefix of a packet is truncated, or a valid shorter packet where the layout allows", arguments: packetEncodings.indices)
    func packetPrefixes(index: Int) {
        let (name, bytes) = Self.packetEncodings[index]
        let type = bytes[1]
        let shortestValid: Int? = switch type {
        case 1: ControlLimits.minimumHelloBytes
        case 3: ControlLimits.headerBytes + 8 + 32 + ControlLimits.tagBytes
        case 4: ControlLimits.sealedHeaderBytes + ControlLimits.tagBytes
        default: nil
        }
        for cut in 0..<bytes.count {
            let error = ControlTest.packetError(Array(bytes[0..<cut]))
            if let shortestValid, cut >= shortestValid {
                #expect(error == nil, "\(name) cut at \(cut): \(String(describing: error))")
            } else if type == 1 && cut >= ControlLimits.headerBytes {
                #expect(ControlTest.invalidText(error)?.contains("minimumHelloBytes") == true, "\(name) cut at \(cut): \(String(describing: error))")
            } else {
                #expect(ControlTest.isTruncated(error), "\(name) cut at \(cut): \(String(describing: error))")
            }
        }
        #expect(ControlTest.packetError(bytes) == nil, "\(name)")
    }

    @Test("a truncation names the field it ended in")
    func namesTheField() {
        let register = ControlGoldenBytesTests.frames[0].1
        #expect(ControlTest.frameError(Array(register.dropLast())) == .truncated(what: "register.signature"))
        #expect(ControlTest.frameError([]) == .truncated(what: "frame kind"))
        #expect(ControlTest.frameError([0x11, 0, 0]) == .truncated(what: "frame id"))
        #expect(ControlTest.packetError([1, 4, 0]) == .truncated(what: "packet header"))
    }
}
