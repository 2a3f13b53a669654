/*
 INDEX operations over the control channel.

 A registered peer reaches the INDEX through the same sealed session it uses for the CHECKPOINT:

     peer                                   checkpoint                        INDEX (store)
      |-- indexRequest(id, call) ------------>|-- (peer, source, call) ---------->|  async: the store
      |                                       |<-- reply or failure --------------|  runs the operation
      |<-- indexResult(id, reply) / error ----|                                   |
      |                                       |<-- member online/offline ---------|  (presence changes)
      |<-- networkStatus(push) ---------------|                                   |
      |-- ack ------------------------------->|                                   |

 `login` binds this session's PeerID (proved by the registration's signature) to the user: every
 later call from that PeerID acts as the user, until `logout`, another login, or the session
 limit pushes it out. Passwords travel only inside the sealed channel. A request is answered once
 the store has made the change durable; the peer retransmits as for any request, so operations
 that are not idempotent (sign-up, create) answer a repeat with the refusal the store gives (a
 taken name), never a second record.

 Names identify users and networks on the wire (they are unique and what people type); pages are
 cut to fit one frame (`maximumFrameBytes`) and carry the cursor of the next page.
*/

/// Who may join a network.
public enum NetworkAccess: String, Hashable, Sendable, Codable, CaseIterable {
    /// Any user may join.
    case open
    /// Users join by accepting an invitation from the owner or an admin.
    case inviteOnly = "invite-only"

    /// The byte that stands for it on the wire.
    public var wireCode: UInt8 { self == .open ? 0 : 1 }

    public init?(wireCode: UInt8) {
        switch wireCode {
        case 0: self = .open
        case 1: self = .inviteOnly
        default: return nil
        }
    }
}

/// A member's role in a network, from least to most powerful (its raw value is its wire code).
public enum NetworkRole: Int, Hashable, Comparable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// Belongs to the network.
    case member = 0
    /// Also invites and removes members.
    case admin = 1
    /// Also names admins, updates, transfers and deletes the network; one per network.
    case owner = 2

    public static func < (a: NetworkRole, b: NetworkRole) -> Bool { a.rawValue < b.rawValue }
    public var description: String {
        switch self {
        case .member: return "member"
        case .admin: return "admin"
        case .owner: return "owner"
        }
    }

    /// Parses "member", "admin" or "owner".
    public init?(name: String) {
        guard let role = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = role
    }
}

/// Limits of INDEX frames (the store's own limits, `IndexLimits`, are at most these).
public enum IndexWireLimits {
    /// Longest username or network name on the wire, in bytes.
    public static let maximumNameBytes = 64
    /// Longest password on the wire, in bytes.
    public static let maximumPasswordBytes = 1024
    /// Longest page cursor, in bytes.
    public static let maximumCursorBytes = 40
    /// Most items a page may ask for (fewer come back when they do not fit one frame).
    public static let maximumPage: UInt16 = 100
    /// Most online peers listed for one member.
    public static let maximumPeersPerMember = 16
}

/// Which page of a listing or search: `after(short text; empty: the first page) limit(2)`.
public struct IndexPageRequest: Equatable, Sendable {
    /// The previous page's `next`, or nil for the first page.
    public var after: String?
    /// Most items wanted (1...`IndexWireLimits.maximumPage`; 0 asks for the default).
    public var limit: UInt16

    public init(after: String? = nil, limit: UInt16 = 0) {
        self.after = after
        self.limit = limit
    }
}

/// `indexRequest` body: `operation(1)` then the operation's fields (names and passwords as
/// `length(1|2)` UTF-8, metadata and metadata changes as in `register` and `publish`).
public enum IndexCall: Equatable, Sendable {
    /// 0x01: create an account (and log this peer in as it). Answered with `.user`.
    case signup(username: String, password: String, metadata: PeerMetadata)
    /// 0x02: bind this peer to the user. Answered with `.user`.
    case login(username: String, password: String)
    /// 0x03: end this peer's session. Answered with `.done`.
    case logout
    /// 0x04: answered with `.done`; other sessions of the user stay.
    case changePassword(old: String, new: String)
    /// 0x05: the logged-in user. Answered with `.user`.
    case whoami
    /// 0x06: change the own metadata (`replace` drops keys not named). Answered with `.user`.
    case updateProfile(MetadataUpdate)
    /// 0x07: delete the own account (its sessions, memberships and invitations go with it),
    /// confirmed by its password; refused while the user owns a network. Answered with `.done`.
    case deleteAccount(password: String)
    /// 0x10: answered with `.network`; the caller is its owner.
    case createNetwork(name: String, access: NetworkAccess, metadata: PeerMetadata)
    /// 0x11: owner only; nil access stays. Answered with `.network`.
    case updateNetwork(name: String, access: NetworkAccess?, metadata: MetadataUpdate)
    /// 0x12: owner only. Answered with `.done`.
    case deleteNetwork(name: String)
    /// 0x13: join an open network, or one the caller is invited to. Answered with `.network`.
    case join(network: String)
    /// 0x14: owner or admins. Answered with `.done`.
    case invite(network: String, user: String)
    /// 0x15: owner or admins. Answered with `.done`.
    case remove(network: String, user: String)
    /// 0x16: answered with `.done`.
    case leave(network: String)
    /// 0x17: members only: the members with their live online state. Answered with `.members`.
    case members(network: String, page: IndexPageRequest)
    /// 0x18: members only: push `networkStatus` when a member comes online or goes offline, for
    /// as long as this peer is registered. Answered with `.members` (the first page, as `members`).
    case watchNetwork(String)
    /// 0x19: answered with `.done`.
    case unwatchNetwork(String)
    /// 0x1A: the owner names a member admin or member. Answered with `.done`.
    case setRole(network: String, user: String, role: NetworkRole)
    /// 0x20: users whose metadata matches (the CHECKPOINT query language). Answered with `.users`.
    case searchUsers(query: String, page: IndexPageRequest)
    /// 0x21: networks whose metadata matches. Answered with `.networks`.
    case searchNetworks(query: String, page: IndexPageRequest)
    /// 0x22: the networks the caller belongs to, with its role. Answered with `.networks`.
    case myNetworks(IndexPageRequest)
    /// 0x23: networks the caller is invited to. Answered with `.networks`.
    case invitations

    /// Operation codes (the body's first byte).
    public enum Operation: UInt8, Sendable, CaseIterable {
        case signup = 0x01, login = 0x02, logout = 0x03, changePassword = 0x04, whoami = 0x05, updateProfile = 0x06, deleteAccount = 0x07
        case createNetwork = 0x10, updateNetwork = 0x11, deleteNetwork = 0x12, join = 0x13, invite = 0x14
        case remove = 0x15, leave = 0x16, members = 0x17, watchNetwork = 0x18, unwatchNetwork = 0x19, setRole = 0x1A
        case searchUsers = 0x20, searchNetworks = 0x21, myNetworks = 0x22, invitations = 0x23
    }

    public var operation: Operation {
        switch self {
        case .signup: .signup
        case .login: .login
        case .logout: .logout
        case .changePassword: .changePassword
        case .whoami: .whoami
        case .updateProfile: .updateProfile
        case .deleteAccount: .deleteAccount
        case .createNetwork: .createNetwork
        case .updateNetwork: .updateNetwork
        case .deleteNetwork: .deleteNetwork
        case .join: .join
        case .invite: .invite
        case .remove: .remove
        case .leave: .leave
        case .members: .members
        case .watchNetwork: .watchNetwork
        case .unwatchNetwork: .unwatchNetwork
        case .setRole: .setRole
        case .searchUsers: .searchUsers
        case .searchNetworks: .searchNetworks
        case .myNetworks: .myNetworks
        case .invitations: .invitations
        }
    }
}

/// A user as peers see it: `id(8) name(short) metadata`.
public struct IndexUserEntry: Equatable, Sendable {
    public var id: Int64
    public var name: String
    public var metadata: PeerMetadata

    public init(id: Int64, name: String, metadata: PeerMetadata) {
        self.id = id
        self.name = name
        self.metadata = metadata
    }
}

/// A network as peers see it: `id(8) name(short) owner(short) access(1) role(1) metadata`;
/// `role` is the asking user's (0xFF on the wire when not a member).
public struct IndexNetworkEntry: Equatable, Sendable {
    public var id: Int64
    public var name: String
    /// The owner's username.
    public var owner: String
    public var access: NetworkAccess
    /// The asking user's role, nil when they are not a member.
    public var role: NetworkRole?
    public var metadata: PeerMetadata

    public init(id: Int64, name: String, owner: String, access: NetworkAccess, role: NetworkRole?, metadata: PeerMetadata) {
        self.id = id
        self.name = name
        self.owner = owner
        self.access = access
        self.role = role
        self.metadata = metadata
    }
}

/// A member with live state: `user(8) name(short) role(1) peers(count(1) × peer id)`: the peers
/// the user is logged in from that are online now (none: offline).
public struct IndexMemberEntry: Equatable, Sendable {
    public var user: Int64
    public var name: String
    public var role: NetworkRole
    public var onlinePeers: [PeerID]

    public var online: Bool { !onlinePeers.isEmpty }

    public init(user: Int64, name: String, role: NetworkRole, onlinePeers: [PeerID]) {
        self.user = user
        self.name = name
        self.role = role
        self.onlinePeers = onlinePeers
    }
}

/// One page: `count(1) items next(short text; empty: last page)`.
public struct IndexEntryPage<Item: Equatable & Sendable>: Equatable, Sendable {
    public var items: [Item]
    /// Pass back as `IndexPageRequest.after` for the next page; nil on the last.
    public var next: String?

    public init(items: [Item], next: String?) {
        self.items = items
        self.next = next
    }
}

/// `indexResult` body: `kind(1)` then the reply.
public enum IndexReply: Equatable, Sendable {
    /// 0x00: done, nothing to say.
    case done
    /// 0x01
    case user(IndexUserEntry)
    /// 0x02
    case network(IndexNetworkEntry)
    /// 0x03: `network(short)` then a page of members.
    case members(network: String, IndexEntryPage<IndexMemberEntry>)
    /// 0x04
    case users(IndexEntryPage<IndexUserEntry>)
    /// 0x05
    case networks(IndexEntryPage<IndexNetworkEntry>)

    public enum Kind: UInt8, Sendable, CaseIterable {
        case done = 0x00, user = 0x01, network = 0x02, members = 0x03, users = 0x04, networks = 0x05
    }

    public var kind: Kind {
        switch self {
        case .done: .done
        case .user: .user
        case .network: .network
        case .members: .members
        case .users: .users
        case .networks: .networks
        }
    }
}

/// `networkStatus` push body: `network(short) user(8) name(short) peer(16) online(1)`: a member of
/// a watched network came online or went offline from one of their peers.
public struct NetworkMemberStatus: Equatable, Sendable {
    public var network: String
    public var user: Int64
    public var name: String
    public var peer: PeerID
    public var online: Bool

    public init(network: String, user: Int64, name: String, peer: PeerID, online: Bool) {
        self.network = network
        self.user = user
        self.name = name
        self.peer = peer
        self.online = online
    }
}

extension IndexCall {
    /// Why this call cannot be sent (a field the wire cannot carry or the INDEX will refuse
    /// anyway), or nil. Checked before sending, so oversized input is an error, never a trap.
    public var validationFailure: String? {
        func name(_ n: String, _ what: String) -> String? {
            (1...IndexWireLimits.maximumNameBytes).contains(n.utf8.count) ? nil : "\(what) must be 1-\(IndexWireLimits.maximumNameBytes) bytes"
        }
        func password(_ p: String, _ what: String) -> String? {
            p.utf8.count <= IndexWireLimits.maximumPasswordBytes ? nil : "\(what) is over \(IndexWireLimits.maximumPasswordBytes) bytes"
        }
        func update(_ u: MetadataUpdate) -> String? {
            guard u.changes.count <= PeerMetadata.maximumEntries * 2 else { return "at most \(PeerMetadata.maximumEntries * 2) metadata changes at once" }
            var seen: Set<String> = []
            for c in u.changes {
                guard seen.insert(c.key).inserted else { return "metadata key '\(c.key)' is named twice" }
                do { try PeerMetadata.validate(key: c.key, value: c.value ?? "") } catch { return "\(error)" }
            }
            return nil
        }
        func page(_ p: IndexPageRequest) -> String? {
            if let a = p.after, a.utf8.count > IndexWireLimits.maximumCursorBytes { return "cursor is over \(IndexWireLimits.maximumCursorBytes) bytes" }
            return p.limit <= IndexWireLimits.maximumPage ? nil : "a page holds at most \(IndexWireLimits.maximumPage) items"
        }
        func query(_ q: String) -> String? {
            q.utf8.count <= ControlLimits.maximumQueryBytes ? nil : "query is over \(ControlLimits.maximumQueryBytes) bytes"
        }
        switch self {
        case .signup(let u, let p, _): return name(u, "username") ?? password(p, "password")
        case .login(let u, let p): return name(u, "username") ?? password(p, "password")
        case .logout, .whoami, .invitations: return nil
        case .changePassword(let o, let n): return password(o, "old password") ?? password(n, "new password")
        case .deleteAccount(let p): return password(p, "password")
        case .updateProfile(let u): return update(u)
        case .createNetwork(let n, _, _), .deleteNetwork(let n), .join(let n), .leave(let n), .watchNetwork(let n), .unwatchNetwork(let n):
            return name(n, "network name")
        case .updateNetwork(let n, _, let u): return name(n, "network name") ?? update(u)
        case .invite(let n, let u), .remove(let n, let u), .setRole(let n, let u, _):
            return name(n, "network name") ?? name(u, "username")
        case .members(let n, let p): return name(n, "network name") ?? page(p)
        case .searchUsers(let q, let p), .searchNetworks(let q, let p): return query(q) ?? page(p)
        case .myNetworks(let p): return page(p)
        }
    }
}
