import NIOCore
import PeerwayCheckpoint
import PeerwaySTUN
import Testing

@Suite("CHECKPOINT machine: mutated and hostile input")
struct CheckpointMachineRobustnessTests {
    @Test("10,000 mutations of real packets: nothing is accepted that was changed, state stays intact")
    func mutatedPackets() throws {
        var h = CheckpointHarness()
        let a = WirePeer(1), b = WirePeer(2)
        a.join(&h, metadata: ["app": "x"])
        b.join(&h)
        var rng = STUNSeededRandom(seed: 77)
        let templates: [ControlFrame] = [
            .keepalive, .lookup(b.id), .sendMessage(OutgoingMessage(to: b.id, messageID: 1, text: "hi")),
            .publish(MetadataUpdate(replace: true, changes: [("evil", "1")])), .unregister,
            .register(a.registerRequest(metadata: ["evil": "1"])),
        ]
        let before = (h.machine.registeredCount, h.machine.directory.entry(for: a.id)?.metadata)
        var answered = 0
        for i in 0..<10_000 {
            let original = a.seal(templates[i % templates.count], id: UInt32(i + 100))
            var packet = original
            // Flip 1-4 random bits anywhere in the packet, or truncate it, or extend it.
            switch rng.next() % 3 {
            case 0, 1:
                for _ in 0...(rng.next() % 4) {
                    let at = packet.readerIndex + Int(rng.next() % UInt64(packet.readableBytes))
                    let byte = packet.getInteger(at: at, as: UInt8.self)!
                    packet.setInteger(byte ^ (1 << UInt8(rng.next() % 8)), at: at)
                }
            default:
                let cut = Int(rng.next() % UInt64(packet.readableBytes))
                packet.moveWriterIndex(to: packet.readerIndex + cut)
            }
            // Two flips of one bit cancel out: such a packet is not a mutation.
            if packet == original { continue }
            for (answer, to) in h.deliver(packet, from: a.endpoint) {
                #expect(to == a.endpoint)
                // Only the unauthenticated hint may answer a changed packet, and it is smaller.
                guard case .sessionUnknown = try decode(answer) else {
                    Issue.record("a mutated packet got an authenticated answer")
                    continue
                }
                #expect(answer.readableBytes < packet.readableBytes)
                answered += 1
            }
        }
        #expect(h.machine.registeredCount == before.0)
        #expect(h.machine.directory.entry(for: a.id)?.metadata == before.1)
        #expect(b.pushes().isEmpty)
        // The session still works after all that.
        guard case .lookupResult(let l) = a.request(.lookup(b.id), &h) else { Issue.record("session broken"); return }
        #expect(l.online)
        print("mutations: \(answered) session-unknown hints, \(h.machine.counters.authenticationFailures) authentication failures, \(h.machine.counters.malformed) malformed")
    }
}
