import NIOCore
import PeerwaySTUN
import Testing

@testable import PeerwayCheckpoint

@Suite("Client machine: instant messages")
struct ClientMachineMessageTests {
    /// Opens what was sent and returns the `sendMessage` envelopes.
    private func sentMessages(_ h: inout ClientHarness) -> [(id: UInt32, message: OutgoingMessage)] {
        h.openSent().compactMap { envelope in
            guard case .sendMessage(let m) = envelope.frame else { return nil }
            return (envelope.id, m)
        }
    }

    @Test("one message in flight per destination; queued waits for the pushed status; outcomes complete in order")
    func orderingAndOutcomes() throws {
        var h = ClientHarness()
        h.register()
        let bob = ClientHarness.peer(2), carol = ClientHarness.peer(3)
        let m1 = h.machine.sendMessage("one", to: bob, now: h.now)
        h.perform(m1.actions)
        let m2 = h.machine.sendMessage("two", to: bob, now: h.now)
        h.perform(m2.actions)
        let m3 = h.machine.sendMessage("three", to: carol, now: h.now)
        h.perform(m3.actions)

        var sent = sentMessages(&h)
        #expect(sent.map(\.message.text) == ["one", "three"], "the second message to bob waits for the first")
        let one = try #require(sent.first { $0.message.text == "one" })
        let three = try #require(sent.first { $0.message.text == "three" })
        #expect(one.message.messageID != three.message.messageID)

        h.push(.messageOutcome(MessageOutcome(to: bob, messageID: one.message.messageID, outcome: .queued)), id: one.id)
        #expect(h.completions[m1.token] == nil)
        let taken1 = sentMessages(&h)
        #expect(taken1.isEmpty, "queued is not final: nothing more goes to bob yet")

        h.push(.messageOutcome(MessageOutcome(to: carol, messageID: three.message.messageID, outcome: .delivered)), id: three.id)
        #expect(h.completions[m3.token] == .success(.messageOutcome(.delivered)))

        h.push(.messageStatus(MessageOutcome(to: bob, messageID: one.message.messageID, outcome: .delivered)), id: 400)
        #expect(h.completions[m1.token] == .success(.messageOutcome(.delivered)))
        sent = sentMessages(&h)  // the ack of the push and the next message
        #expect(sent.map(\.message.text) == ["two"])
        let two = try #require(sent.first)
        #expect(two.message.messageID > one.message.messageID, "message ids increase")

        h.push(.messageOutcome(MessageOutcome(to: bob, messageID: two.message.messageID, outcome: .offline)), id: two.id)
        #expect(h.completions[m2.token] == .success(.messageOutcome(.offline)))
    }

    @Test("a queued message without a final status completes as timedOut after messageTimeout; the next one goes")
    func queuedTimesOut() throws {
        var h = ClientHarness(keepaliveSeconds: 300)
        h.register()
        let bob = ClientHarness.peer(2)
        let m1 = h.machine.sendMessage("one", to: bob, now: h.now)
        h.perform(m1.actions)
        let m2 = h.machine.sendMessage("two", to: bob, now: h.now)
        h.perform(m2.actions)
        let taken2 = sentMessages(&h)
        let one = try #require(taken2.first)
        h.push(.messageOutcome(MessageOutcome(to: bob, messageID: one.message.messageID, outcome: .queued)), id: one.id)
        h.advance(by: CheckpointClientLimits.defaultMessageTimeout - .milliseconds(1))
        #expect(h.completions[m1.token] == nil)
        _ = h.takeSent()
        h.advance(by: .milliseconds(1))
        #expect(h.completions[m1.token] == .success(.messageOutcome(.timedOut)))
        let taken3 = sentMessages(&h)
        #expect(taken3.map(\.message.text) == ["two"])

        // The final status of the first message, arriving late, is reported as an event.
        let late = MessageOutcome(to: bob, messageID: one.message.messageID, outcome: .delivered)
        h.push(.messageStatus(late), id: 401)
        #expect(h.events.last == .messageOutcome(late))
        #expect(h.completions[m2.token] == nil)
    }

    @Test("a message nobody answers times out with the request timeout")
    func unansweredMessage() {
        var h = ClientHarness()
        h.register()
        let m = h.machine.sendMessage("lost", to: ClientHarness.peer(2), now: h.now)
        h.perform(m.actions)
        h.advance(by: CheckpointClientLimits.defaultRequestTimeout)
        #expect(h.completions[m.token] == .success(.messageOutcome(.timedOut)))
    }

    @Test("limits: text size, and the queue per destination")
    func limits() {
        var h = ClientHarness()
        h.register()
        let big = String(repeating: "é", count: 513)  // 1026 bytes
        let tooLarge = h.machine.sendMessage(big, to: ClientHarness.peer(2), now: h.now)
        h.perform(tooLarge.actions)
        #expect(h.completions[tooLarge.token] == .failure(.messageTooLarge(bytes: 1026)))
        let taken4 = h.takeSent()
        #expect(taken4.isEmpty)

        let fits = h.machine.sendMessage(String(repeating: "x", count: ControlLimits.maximumMessageBytes), to: ClientHarness.peer(2), now: h.now)
        h.perform(fits.actions)
        #expect(h.completions[fits.token] == nil)
        for _ in 0..<CheckpointClientLimits.maximumQueuedMessagesPerDestination {
            h.perform(h.machine.sendMessage("q", to: ClientHarness.peer(2), now: h.now).actions)
        }
        let overflow = h.machine.sendMessage("q", to: ClientHarness.peer(2), now: h.now)
        h.perform(overflow.actions)
        #expect(h.completions[overflow.token] == .failure(.queueFull(limit: CheckpointClientLimits.maximumQueuedMessagesPerDestination)))
        #expect(h.completions.count == 2)
    }

    @Test("an error answer to a message fails it and lets the next one go")
    func refusedMessage() throws {
        var h = ClientHarness()
        h.register()
        let bob = ClientHarness.peer(2)
        let m1 = h.machine.sendMessage("one", to: bob, now: h.now)
        h.perform(m1.actions)
        let m2 = h.machine.sendMessage("two", to: bob, now: h.now)
        h.perform(m2.actions)
        let taken5 = sentMessages(&h)
        let one = try #require(taken5.first)
        let failure = ControlFailure(.rateLimited, "slow down")
        h.push(.error(failure), id: one.id)
        #expect(h.completions[m1.token] == .failure(.refused(failure)))
        let taken6 = sentMessages(&h)
        #expect(taken6.map(\.message.text) == ["two"])
    }
}
