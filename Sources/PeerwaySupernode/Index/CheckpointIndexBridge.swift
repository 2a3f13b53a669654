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
       machine -> .presence(peer, online) --->  lanes, in order: service.presenceChanged
       cluster frame .index(event) ---------->  the same lanes: service.apply(event)
                                                   |
       wake pipe readable <-- inbox (answers, notifications, events for the other supernodes) <-+
       machine.answerIndex / pushNetworkStatus -> sealed datagrams; events -> every other supernode

 The machine stays on its thread; the store's work runs on the pool and comes back through a
 locked inbox and a pipe the thread polls. Presence changes go to `presenceLanes` lanes by PeerID:
 one peer's changes are handled in the order the machine saw them (its online and offline never
 swap); a lane takes everything queued at once, so the session lookups of peers that registered
 meanwhile go in one read, and lanes overlap (a restarted supernode sees its peers register again
 thousands a second). Another supernode's INDEX events go to the lane of the peer they are about
 (after that peer's registration, which came first on the same link), others to lane 0.

 Bounded: a lane holds at most `maximumQueuedPerLane` items; past it, items are dropped and
 every online peer's login is read again (`resync`) once the lane has room. A resync (also due
 when the store did not answer, or a link to another supernode came back) runs on one task and
 is retried every `resyncRetryMillis` until the store answers.
*/

/// Connects a checkpoint's machine to an `IndexControlService` (see the flow above).
final class CheckpointIndexBridge: @unchecked Sendable {
    /// What comes back to the checkpoint's thread.
    enum Inbound {
        case answer(IndexCallContext, Result<IndexReply, ControlFailure>)
        case notify(IndexNotification)
        /// For every other supernode of the network.
        case broadcast(ClusterIndexEvent)
    }

    /// What a lane handles, in order.
    enum LaneItem {
        case presence(PeerID, online: Bool)
        case event(ClusterIndexEvent)
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
    /// Items one lane holds at most (a million peers registering at once fit); past it they are
    /// dropped and a full resync repairs what they would have done.
    static let maximumQueuedPerLane = 200_000
    /// Wait between two attempts of a resync the store did not answer.
    static let resyncRetryMillis = 2_000
    /// Each lane: the items not yet handled (taken all at once: their session lookups go in one
    /// read), and a doorbell its task waits on.
    private let presenceQueues: [NIOLockedValueBox<[LaneItem]>]
    private let presenceBells: [AsyncStream<Void>.Continuation]
    private let presenceTasks: [Task<Void, Never>]
    private let resyncBell: AsyncStream<Void>.Continuation
    private let resyncTask: Task<Void, Never>
    /// Set when every login is to be read again; the resync task takes it.
    private let fullResyncWanted = NIOLockedValueBox(false)

    init(service: IndexControlService) throws {
        let doorbell = try Doorbell()
        self.doorbell = doorbell
        self.service = service
        let inbox = self.inbox
        let (resyncRings, resyncBell) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        self.resyncBell = resyncBell
        let fullResyncWanted = self.fullResyncWanted
        resyncTask = Task {
            for await _ in resyncRings {
                let full = fullResyncWanted.withLockedValue { wanted -> Bool in
                    defer { wanted = false }
                    return wanted
                }
                if full { await service.requestFullResync() }
                while !Task.isCancelled {
                    let (notes, done) = await service.resync()
                    Self.deliver(notes.map { .notify($0) }, inbox: inbox, doorbell: doorbell)
                    if done { break }
                    try? await Task.sleep(for: .milliseconds(Self.resyncRetryMillis))
                }
            }
        }
        var queues: [NIOLockedValueBox<[LaneItem]>] = []
        var bells: [AsyncStream<Void>.Continuation] = []
        var tasks: [Task<Void, Never>] = []
        for _ in 0..<Self.presenceLanes {
            let queue = NIOLockedValueBox<[LaneItem]>([])
            let (rings, bell) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
            queues.append(queue)
            bells.append(bell)
            tasks.append(Task {
                for await _ in rings {
                    try? await Task.sleep(for: .milliseconds(Self.presenceGatherMillis))
                    let items = queue.withLockedValue { q in
                        defer { q.removeAll(keepingCapacity: true) }
                        return q
                    }
                    guard !items.isEmpty else { continue }
                    let notes = await Self.handle(items, service: service)
                    Self.deliver(notes.map { .notify($0) }, inbox: inbox, doorbell: doorbell)
                    if await service.needsResync { resyncBell.yield() }
                }
            })
        }
        presenceQueues = queues
        presenceBells = bells
        presenceTasks = tasks
    }

    /// A lane's items in order: runs of presence changes in one `presenceChanged` (one read of
    /// their logins), events one by one between them.
    private static func handle(_ items: [LaneItem], service: IndexControlService) async -> [IndexNotification] {
        var notes: [IndexNotification] = []
        var changes: [(peer: PeerID, online: Bool)] = []
        for item in items {
            switch item {
            case .presence(let peer, let online):
                changes.append((peer, online))
            case .event(let event):
                if !changes.isEmpty { notes += await service.presenceChanged(changes) }
                changes.removeAll()
                notes += await service.apply(event)
            }
        }
        if !changes.isEmpty { notes += await service.presenceChanged(changes) }
        return notes
    }

    /// From the checkpoint's thread: runs the call on the pool; its answer comes back through the inbox.
    func call(_ context: IndexCallContext) {
        let inbox = self.inbox, doorbell = self.doorbell, service = self.service
        Task {
            let outcome = await service.handle(context)
            Self.deliver([.answer(context, outcome.result)] + outcome.notifications.map { .notify($0) } + outcome.cluster.map { .broadcast($0) },
                         inbox: inbox, doorbell: doorbell)
        }
    }

    /// From the checkpoint's thread: a peer registered or its registration ended.
    func presenceChanged(_ peer: PeerID, online: Bool) {
        service.presence.set(peer, online: online)
        enqueue(.presence(peer, online: online), lane: Int(peer.low % UInt64(Self.presenceLanes)))
    }

    /// From the checkpoint's thread: another supernode's INDEX event (after the presence
    /// changes of the frames that came before it).
    func clusterEvent(_ event: ClusterIndexEvent) {
        enqueue(.event(event), lane: event.peer.map { Int($0.low % UInt64(Self.presenceLanes)) } ?? 0)
    }

    /// From the checkpoint's thread: a link to another supernode came back without it having
    /// been declared out: the events it sent meanwhile may be lost, so every login is read again.
    func linkRestored() {
        fullResyncWanted.withLockedValue { $0 = true }
        resyncBell.yield()
    }

    private func enqueue(_ item: LaneItem, lane: Int) {
        let taken = presenceQueues[lane].withLockedValue { q -> Bool in
            guard q.count < Self.maximumQueuedPerLane else { return false }
            q.append(item)
            return true
        }
        if taken {
            presenceBells[lane].yield()
        } else {
            linkRestored()
        }
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

    /// Stops the lanes' and the resync's tasks and closes the pipe (after the checkpoint's thread stopped).
    func close() {
        presenceBells.forEach { $0.finish() }
        presenceTasks.forEach { $0.cancel() }
        resyncBell.finish()
        resyncTask.cancel()
        doorbell.close()
    }
}
