import Foundation
import PeerwayCheckpoint

/// Which peers are online right now: the CHECKPOINT's live directory as the INDEX sees it.
///
/// The INDEX keeps who a user is logged in from (`IndexSession`, permanent); presence says which of
/// those peers are registered with a checkpoint at this moment, so member lists and the management
/// API show live online state. Implementations answer from memory and never block.
public protocol IndexPresence: Sendable {
    /// Whether `peer` is registered (online) now.
    func isOnline(_ peer: PeerID) -> Bool
}

/// Presence when no checkpoint feeds one (an INDEX on its own, tests): nobody is online.
public struct NoIndexPresence: IndexPresence {
    public init() {}
    public func isOnline(_ peer: PeerID) -> Bool { false }
}

/// Presence as a lock-protected set, fed by the thread that owns the checkpoint (`set`) and read
/// from anywhere (`isOnline`).
public final class IndexPresenceTable: IndexPresence, @unchecked Sendable {
    private let lock = NSLock()
    private var online: Set<PeerID> = []

    public init() {}

    /// Records that `peer` registered (`true`) or its registration ended (`false`).
    public func set(_ peer: PeerID, online isOnline: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if isOnline { online.insert(peer) } else { online.remove(peer) }
    }

    public func isOnline(_ peer: PeerID) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return online.contains(peer)
    }

    /// Every peer online now (a copy).
    public func onlinePeers() -> [PeerID] {
        lock.lock()
        defer { lock.unlock() }
        return Array(online)
    }
}
