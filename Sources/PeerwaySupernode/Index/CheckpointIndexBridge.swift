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
 one peer's changes are handled one at a time in the order the machine saw them (its online and
 offline never swap), while different peers' session lookups overlap (a restarted supernode sees
 its peers register again thousands a second).
*/

/// Connects a checkpoint's machine to an `IndexControlService` (see the flow above).
final class CheckpointIndexBridge: @unchecked Sendable {
    /// What comes back to the checkpoint's thread.
    enum Inbound {
        case answer(IndexCallContext, Result<IndexReply, ControlFailure>)
        case notify(IndexNotification)
    }

    let service: IndexControlService
    /// Readable when the inbox has something: the checkpoint's loop polls it.
    let wakeDescriptor: Int32
    private let wakeWriter: Int32
    private let inbox = NIOLockedValueBox<[Inbound]>([])
    /// Lanes of presence changes handled in parallel (a peer always goes to the same lane).
    static let presenceLanes = 8
    private let presenceChanges: [AsyncStream<(PeerID, Bool)>.Continuation]
    private let presenceTasks: [Task<Void, Never>]

    init(service: IndexControlService) throws {
        var p: [Int32] = [0, 0]
        guard pipe(&p) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        _ = fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK)
        _ = fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK)
        wakeDescriptor = p[0]
        wakeWriter = p[1]
        self.service = service
        let inbox = self.inbox, writer = p[1]
        var continuations: [AsyncStream<(PeerID, Bool)>.Continuation] = []
        var tasks: [Task<Void, Never>] = []
        for _ in 0..<Self.presenceLanes {
            let (stream, continuation) = AsyncStream<(PeerID, Bool)>.makeStream()
            continuations.append(continuation)
            tasks.append(Task {
                for await (peer, online) in stream {
                    let notes = online ? await service.peerOnline(peer) : await service.peerOffline(peer)
                    Self.deliver(notes.map { .notify($0) }, inbox: inbox, writer: writer)
                }
            })
        }
        presenceChanges = continuations
        presenceTasks = tasks
    }

    /// From the checkpoint's thread: runs the call on the pool; its answer comes back through the inbox.
    func call(_ context: IndexCallContext) {
        let inbox = self.inbox, writer = wakeWriter, service = self.service
        Task {
            let outcome = await service.handle(context)
            Self.deliver([.answer(context, outcome.result)] + outcome.notifications.map { .notify($0) }, inbox: inbox, writer: writer)
        }
    }

    /// From the checkpoint's thread: a peer registered or its registration ended.
    func presenceChanged(_ peer: PeerID, online: Bool) {
        service.presence.set(peer, online: online)
        presenceChanges[Int(peer.low % UInt64(Self.presenceLanes))].yield((peer, online))
    }

    /// From the checkpoint's thread, when `wakeDescriptor` is readable: what came back.
    func drain() -> [Inbound] {
        var scratch = [UInt8](repeating: 0, count: 256)
        while read(wakeDescriptor, &scratch, scratch.count) > 0 {}
        return inbox.withLockedValue { items in
            defer { items.removeAll(keepingCapacity: true) }
            return items
        }
    }

    private static func deliver(_ items: [Inbound], inbox: NIOLockedValueBox<[Inbound]>, writer: Int32) {
        guard !items.isEmpty else { return }
        inbox.withLockedValue { $0.append(contentsOf: items) }
        var byte: UInt8 = 1
        // A full pipe already wakes the loop; the byte is only a doorbell.
        _ = write(writer, &byte, 1)
    }

    /// Stops the presence task and closes the pipe (after the checkpoint's thread stopped).
    func close() {
        presenceChanges.forEach { $0.finish() }
        presenceTasks.forEach { $0.cancel() }
        #if canImport(Glibc)
        _ = Glibc.close(wakeDescriptor)
        _ = Glibc.close(wakeWriter)
        #else
        _ = Darwin.close(wakeDescriptor)
        _ = Darwin.close(wakeWriter)
        #endif
    }
}
