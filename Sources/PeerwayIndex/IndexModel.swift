import Foundation
import PeerwayCheckpoint

/// A user's permanent id in the INDEX: assigned at sign-up, never reused (also not after the user
/// is deleted), and the order users are listed and searched in.
public struct UserID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: Int64
    public init(_ rawValue: Int64) { self.rawValue = rawValue }
    public static func < (a: UserID, b: UserID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "u\(rawValue)" }
}

/// A virtual network's permanent id: assigned at creation, never reused.
public struct NetworkID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: Int64
    public init(_ rawValue: Int64) { self.rawValue = rawValue }
    public static func < (a: NetworkID, b: NetworkID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "n\(rawValue)" }
}

/// A user as the INDEX keeps it. The password is never part of it: only `IndexStore` sees the
/// stored hash record, and only to verify.
public struct IndexUser: Hashable, Sendable {
    public let id: UserID
    /// Unique; see `IndexLimits.validate(username:)`.
    public let name: String
    /// Searchable key/value metadata, with `PeerMetadata`'s rules and limits.
    public var metadata: PeerMetadata
    public let created: Date
    /// Last change of metadata or password.
    public var updated: Date

    public init(id: UserID, name: String, metadata: PeerMetadata, created: Date, updated: Date) {
        self.id = id
        self.name = name
        self.metadata = metadata
        self.created = created
        self.updated = updated
    }
}

/// A virtual network: a named group of users, searchable by its metadata.
public struct IndexNetwork: Hashable, Sendable {
    public let id: NetworkID
    /// Unique; see `IndexLimits.validate(networkName:)`.
    public let name: String
    /// The user who holds the `owner` role (exactly one per network).
    public var owner: UserID
    public var access: NetworkAccess
    public var metadata: PeerMetadata
    public let created: Date
    public var updated: Date

    public init(id: NetworkID, name: String, owner: UserID, access: NetworkAccess, metadata: PeerMetadata, created: Date, updated: Date) {
        self.id = id
        self.name = name
        self.owner = owner
        self.access = access
        self.metadata = metadata
        self.created = created
        self.updated = updated
    }
}

/// A user's membership of a network.
public struct IndexMembership: Hashable, Sendable {
    public let network: NetworkID
    public let user: UserID
    public var role: NetworkRole
    public let joined: Date

    public init(network: NetworkID, user: UserID, role: NetworkRole, joined: Date) {
        self.network = network
        self.user = user
        self.role = role
        self.joined = joined
    }
}

/// A pending invitation of a user to a network; accepting it makes a membership.
public struct IndexInvitation: Hashable, Sendable {
    public let network: NetworkID
    public let user: UserID
    /// Who invited (nil when an administrator did, or the inviter's account is gone).
    public let invitedBy: UserID?
    public let created: Date

    public init(network: NetworkID, user: UserID, invitedBy: UserID?, created: Date) {
        self.network = network
        self.user = user
        self.invitedBy = invitedBy
        self.created = created
    }
}

/// A peer logged in as a user: the session is bound to the peer's key, so only the holder of that
/// key (authenticated by the control channel) acts as the user. A peer is logged in as one user at
/// a time; a user from at most `IndexLimits.maximumSessionsPerUser` peers.
public struct IndexSession: Hashable, Sendable {
    public let user: UserID
    public let peer: PeerID
    public let created: Date

    public init(user: UserID, peer: PeerID, created: Date) {
        self.user = user
        self.peer = peer
        self.created = created
    }
}

/// Who asks for an operation, which `IndexPolicy` decides on.
public enum IndexActor: Hashable, Sendable, CustomStringConvertible {
    /// A logged-in user (a peer's session, resolved by the service).
    case user(UserID)
    /// The management API, behind its admin token: may do anything a rule allows anybody.
    case administrator

    public var description: String {
        switch self {
        case .user(let id): return "user \(id)"
        case .administrator: return "administrator"
        }
    }
}

/// Where a page ends, to ask for the next one. Opaque to callers; its text form (numbers joined by
/// `.`) travels through the control channel and the management API.
public struct IndexCursor: Hashable, Sendable, Codable, LosslessStringConvertible {
    let parts: [Int64]

    init(_ parts: [Int64]) { self.parts = parts }

    public init?(_ description: String) {
        let fields = description.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(fields.count) else { return nil }
        var parts: [Int64] = []
        for field in fields {
            guard field.count <= 19, field.allSatisfy(\.isASCII), let value = Int64(field), value >= 0 else { return nil }
            parts.append(value)
        }
        self.parts = parts
    }

    public var description: String { parts.map(String.init).joined(separator: ".") }
}

/// One page of a listing or search, in a stable order (ids ascending); `next` is nil on the last page.
public struct IndexPage<Item: Sendable>: Sendable {
    public var items: [Item]
    public var next: IndexCursor?

    public init(items: [Item], next: IndexCursor?) {
        self.items = items
        self.next = next
    }
}

extension IndexPage: Equatable where Item: Equatable {}

/// A change to a network's settings: nil fields stay as they are.
public struct NetworkUpdate: Hashable, Sendable {
    public var access: NetworkAccess?
    /// Keys set (non-nil value) or removed (nil), all or nothing.
    public var metadata: [String: String?]

    public init(access: NetworkAccess? = nil, metadata: [String: String?] = [:]) {
        self.access = access
        self.metadata = metadata
    }
}
