#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PeerwayCheckpoint
import PeerwayIndex

/*
 The INDEX beside the checkpoint's thread.

     checkpoint thread                         cooperative pool
       machine -> .index(context) ----------->  Task: service.handle(context)
       machine -> .presence(peer, online) --->  one Task, in order: service.peerOnline/peerOffline
                                                   |
       wake pipe readable <-- inbox (answers, notifications) <-+
       machine.answerIndex / pushNetworkStatus -> sealed datagrams

 The machine stays on its thread; the store's work runs on the pool and comes back through a
 locked inbox and a pipe the thread polls. Presence changes go to `presenceLanes` lanes by PeerID:
 one peer's changes are handled in the order the machine saw them (its online and offline never
 swap); a lane takes everything queued at once, so the session lookups of peers that registered
 meanwhile go in one read, and lanes overlap (a restarted supernode sees its peers register again
 thousands a second).
*/

/// Connects a checkpoint's machine to an `IndexControlService` (see the flow above).
final class CheckpointIndexBridge: @unchecked Sendable {
    /// What comes back to the checkpoint's thread.
    enum Inbound {
        case answer(IndexCallContext, Result<IndexReply, ControlFailure>)
        case notify(IndexNotification)
    }

    let service: IndexControlService
    /// Rung when the inbox has something: the checkpoint's loop polls it.
    let doorbell: Doorbell
    private let inbox = NIOLockedValueBox<[Inbound]>([])
    /// Lanes of presence changes handled in parallel (a peer always goes to the same lane).
    static let presenceLanes = 8
    /// A lane that wakes waits this long for more changes before it reads their sessions: at
    /// thousands of registrations a second one read then covers many peers (notices are this
    /// much later).
    static let presenceGatherMillis = 10
    /// Each lane: the changes not yet handled (taken all at once: their session lookups go in
    /// one read), and a doorbell its task waits on.
    private let presenceQueues: [NIOLockedValueBox<[(peer: PeerID, online: Bool)]>]
    private let presenceBells: [AsyncStream<Void>.Continuation]
    private let presenceTasks: [Task<Void, Never>]

    init(service: IndexControlService) throws {
        let doorbell = try Doorbell()
        self.doorbell = doorbell
        self.service = service
        let inbox = self.inbox
        var queues: [NIOLockedValueBox<[(peer: PeerID, online: Bool)]>] = []
        var bells: [AsyncStream<Void>.Continuation] = []
        var tasks: [Task<Void, Never>] = []
        for _ in 0..<Self.presenceLanes {
            let queue = NIOLockedValueBox<[(peer: PeerID, online: Bool)]>([])
            let (rings, bell) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
            queues.append(queue)
            bells.append(bell)
            tasks.append(Task {
                for await _ in rings {
                    try? await Task.sleep(for: .milliseconds(Self.presenceGatherMillis))
                    let changes = queue.withLockedValue { q in
                        defer { q.removeAll(keepingCapacity: true) }
                        return q
                    }
                    guard !changes.isEmpty else { continue }
                    let notes = await service.presenceChanged(changes)
                    Self.deliver(notes.map { .notify($0) }, inbox: inbox, doorbell: doorbell)
                }
            })
        }
        presenceQueues = queues
        presenceBells = bells
        presenceTasks = tasks
    }

    /// From the checkpoint's thread: runs the call on the pool; its answer comes back through the inbox.
    func call(_ context: IndexCallContext) {
        let inbox = self.inbox, doorbell = self.doorbell, service = self.service
        Task {
            let outcome = await service.handle(context)
            Self.deliver([.answer(context, outcome.result)] + outcome.notifications.map { .notify($0) }, inbox: inbox, doorbell: doorbell)
        }
    }

    /// From the checkpoint's thread: a peer registered or its registration ended.
    func presenceChanged(_ peer: PeerID, online: Bool) {
        service.presence.set(peer, online: online)
        let lane = Int(peer.low % UInt64(Self.presenceLanes))
        presenceQueues[lane].withLockedValue { $0.append((peer, online)) }
        presenceBells[lane].yield()
    }

    /// From the checkpoint's thread, when the doorbell rang: what came back.
    func drain() -> [Inbound] {
        doorbell.silence()
        return inbox.withLockedValue { items in
            defer { items.removeAll(keepingCapacity: true) }
            return items
        }
    }

    private static func deliver(_ items: [Inbound], inbox: NIOLockedValueBox<[Inbound]>, doorbell: Doorbell) {
        guard !items.isEmpty else { return }
        inbox.withLockedValue { $0.append(contentsOf: items) }
        doorbell.ring()
    }

    /// Stops the presence task and closes the pipe (after the checkpoint's thread stopped).
    func close() {
        presenceBells.forEach { $0.finish() }
        presenceTasks.forEach { $0.cancel() }
        doorbell.close()
    }
}
