/// The checkpoint's sessions, in fixed-size chunks indexed by a slot carried in the session id.
///
/// A session id is `slot << 32 | nonce`: the slot finds the session without hashing, the
/// 32-bit random nonce makes a reused slot's old id miss. Compared with a dictionary this keeps
/// one million sessions at their own size (no power-of-two bucket array at up to 2.7 times the
/// count), and growing never rehashes or copies: a new chunk is added, so the loop never stalls
/// on a large move. Ids are not secrets: a packet is only accepted under the session's keys.
struct CheckpointSessionTable {
    /// Sessions per chunk.
    static let chunkSize = 4096

    private var chunks: [[CheckpointSession?]] = []
    private var free: [UInt32] = []
    private var used: UInt32 = 0
    private(set) var count = 0

    private static func place(_ id: UInt64) -> (chunk: Int, index: Int) {
        let slot = Int(id >> 32)
        return (slot / chunkSize, slot % chunkSize)
    }

    /// A fresh id for a session about to be stored; its slot is taken from the free list or new.
    mutating func newID(using random: inout some RandomNumberGenerator) -> UInt64 {
        let slot: UInt32
        if let reused = free.popLast() {
            slot = reused
        } else {
            slot = used
            used += 1
            if Int(slot) / Self.chunkSize == chunks.count {
                chunks.append([CheckpointSession?](repeating: nil, count: Self.chunkSize))
            }
        }
        let nonce = UInt32.random(in: 1...UInt32.max, using: &random)
        return UInt64(slot) << 32 | UInt64(nonce)
    }

    /// Gives back an id from `newID` that was never stored (the handshake failed).
    mutating func release(_ id: UInt64) {
        guard self[id] == nil else { return }
        free.append(UInt32(id >> 32))
    }

    /// The session with this id; setting stores it (its slot must come from `newID`), setting
    /// `nil` removes it.
    subscript(id: UInt64) -> CheckpointSession? {
        get {
            let (c, i) = Self.place(id)
            guard c < chunks.count, let s = chunks[c][i], s.id == id else { return nil }
            return s
        }
        set {
            let (c, i) = Self.place(id)
            guard c < chunks.count else { return }
            if let newValue {
                precondition(newValue.id == id, "a session is stored under its own id")
                if chunks[c][i] == nil { count += 1 }
                chunks[c][i] = newValue
            } else if chunks[c][i]?.id == id {
                chunks[c][i] = nil
                count -= 1
                free.append(UInt32(id >> 32))
            }
        }
    }

    /// Calls `body` with every session, in slot order.
    func forEach(_ body: (CheckpointSession) -> Void) {
        for chunk in chunks {
            for case let session? in chunk { body(session) }
        }
    }

    /// Removes and returns the session with this id.
    mutating func removeValue(forKey id: UInt64) -> CheckpointSession? {
        guard let s = self[id] else { return nil }
        self[id] = nil
        return s
    }
}
