import CLibFuzzer
import NIOCore
import PeerwayCheckpoint

// libFuzzer entry point for the CHECKPOINT control codec (built with -sanitize=fuzzer; libFuzzer
// supplies `main`). The first input byte chooses what the rest is:
//
// - even: a datagram, decoded with `readControlPacket()`; when it is a sealed packet (or a hello
//   reply) its ciphertext is also decoded as a frame, as the plaintext a peer would decrypt;
// - odd: the plaintext of one sealed packet, decoded with `readControlFrame()`.
//
// Properties checked for any bytes at all:
// 1. A failed decode leaves the reader index and the readable bytes alone; a successful one
//    consumes every readable byte.
// 2. Whatever decodes re-encodes to bytes of the same length that decode to an equal value, and
//    encoding that again gives the same bytes (a fixed point).
// 3. Error descriptions, and a decoded registration's signed bytes, never crash.
//
// A violated property stops the run through `fail`, which libFuzzer reports as a crash with the
// input saved.

private let transcript = [UInt8](repeating: 0x5A, count: 32)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    if data[0] & 1 == 0 {
        checkPacket(bytes)
    } else {
        checkFrame(bytes)
    }
    return 0
}

/// The executable's entry point. SwiftPM links executables with `main` aliased to
/// `<module>_main`; with `-parse-as-library` this function is that symbol and hands over to
/// libFuzzer's driver.
@_cdecl("ControlDecoderFuzzer_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        guard let data else { return 0 }
        return fuzz(data, size)
    }
}

private func fail(_ message: String, _ bytes: [UInt8]) -> Never {
    let hex = bytes.prefix(256).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
    fatalError("control fuzz property violated: \(message)\ninput (\(bytes.count) bytes): \(hex)")
}

/// A buffer whose reader index is not zero, so that offsets relative to it get exercised.
private func buffer(_ bytes: [UInt8]) -> ByteBuffer {
    var b = ByteBuffer()
    b.writeBytes([0xEE, 0xEE])
    b.writeBytes(bytes)
    b.moveReaderIndex(forwardBy: 2)
    return b
}

private func checkPacket(_ bytes: [UInt8]) {
    var input = buffer(bytes)
    let packet: ControlPacket
    do {
        packet = try input.readControlPacket()
    } catch {
        guard input.readerIndex == 2, input.readableBytes == bytes.count else { fail("a failed packet decode (\(error)) moved the reader", bytes) }
        _ = error.description
        return
    }
    guard input.readableBytes == 0 else { fail("a decoded packet left \(input.readableBytes) bytes", bytes) }

    var encoded = ByteBuffer()
    let written = encoded.writeControlPacket(packet)
    guard written == bytes.count, encoded.readableBytes == written else {
        fail("the packet re-encodes to \(written) bytes, not \(bytes.count)", bytes)
    }
    var again = encoded
    let redecoded: ControlPacket
    do { redecoded = try again.readControlPacket() } catch { fail("the re-encoded packet does not decode: \(error)", bytes) }
    guard redecoded == packet else { fail("the re-encoded packet decodes differently", bytes) }
    var third = ByteBuffer()
    third.writeControlPacket(redecoded)
    guard third == encoded else { fail("packet re-encoding is not a fixed point", bytes) }

    switch packet {
    case .sealed(let sealed): checkFrame(Array(sealed.ciphertext.readableBytesView))
    case .helloReply(let reply): checkFrame(Array(reply.sealedWelcome.readableBytesView))
    case .hello(let hello):
        guard hello.paddedLength == bytes.count, hello.ephemeralKey.count == 32, hello.cookie?.count ?? 16 == 16 else {
            fail("hello fields of the wrong size", bytes)
        }
    case .cookie, .sessionUnknown: break
    }
}

private func checkFrame(_ bytes: [UInt8]) {
    var input = buffer(bytes)
    let envelope: ControlEnvelope
    do {
        envelope = try input.readControlFrame()
    } catch {
        guard input.readerIndex == 2, input.readableBytes == bytes.count else { fail("a failed frame decode (\(error)) moved the reader", bytes) }
        _ = error.description
        return
    }
    guard input.readableBytes == 0 else { fail("a decoded frame left \(input.readableBytes) bytes", bytes) }

    var encoded = ByteBuffer()
    let written = encoded.writeControlFrame(envelope.frame, id: envelope.id)
    // Every field has one encoding except the order of metadata entries: same length.
    guard written == bytes.count else { fail("the frame re-encodes to \(written) bytes, not \(bytes.count)", bytes) }
    var again = encoded
    let redecoded: ControlEnvelope
    do { redecoded = try again.readControlFrame() } catch { fail("the re-encoded frame does not decode: \(error)", bytes) }
    guard redecoded == envelope else { fail("the re-encoded frame decodes differently", bytes) }
    var third = ByteBuffer()
    third.writeControlFrame(redecoded.frame, id: redecoded.id)
    guard third == encoded else { fail("frame re-encoding is not a fixed point", bytes) }

    if case .register(let register) = envelope.frame {
        let signed = register.signedBytes(transcript: transcript)
        // label(19) transcript(32) then the body without its 64-byte signature.
        guard signed.count == 19 + 32 + bytes.count - 5 - 64,
              Array(signed[51...]) == Array(encoded.readableBytesView.dropFirst(5).dropLast(64))
        else { fail("signed bytes do not match the register body", bytes) }
    }
}
