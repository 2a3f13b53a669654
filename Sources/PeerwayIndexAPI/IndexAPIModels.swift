import Foundation
import PeerwayCheckpoint
import PeerwayIndex

// The management API's JSON shapes, shared by the server and `IndexAdminClient`.
//
// Conventions (the OpenAPI document repeats them):
// - field names are camelCase and stable;
// - ids are strings: `u<number>` for users, `n<number>` for networks (the model's descriptions);
//   users and networks are named by name in paths and in bodies;
// - dates are ISO 8601 in UTC with milliseconds (`2025-01-02T03:04:05.678Z`);
// - metadata is an object of string values; in updates a `null` value removes the key;
// - a page is `{"items": [...], "next": "CURSOR"}`, `next` absent on the last page.

/// A user as the API shows it. `sessions` only on `GET /v1/users/{name}`.
public struct IndexAPIUser: Codable, Hashable, Sendable {
    public var id: String
    public var name: String
    public var metadata: [String: String]
    public var created: Date
    public var updated: Date
    /// The peers the user is logged in from, oldest first, each with whether it is online now.
    public var sessions: [IndexAPISession]?

    init(_ user: IndexUser, sessions: [IndexAPISession]? = nil) {
        id = user.id.description
        name = user.name
        metadata = user.metadata.dictionary
        created = user.created
        updated = user.updated
        self.sessions = sessions
    }
}

/// A peer a user is logged in from.
public struct IndexAPISession: Codable, Hashable, Sendable {
    /// The peer's PeerID (26 characters of base32).
    public var peer: String
    /// Whether the peer is registered with a CHECKPOINT now.
    public var online: Bool
    /// When the session began.
    public var since: Date
}

/// A network as the API shows it.
public struct IndexAPINetwork: Codable, Hashable, Sendable {
    public var id: String
    public var name: String
    /// The owner's username (null only if the owner changed while the answer was made).
    public var owner: String?
    public var ownerId: String
    /// `open` or `invite-only`.
    public var access: String
    public var metadata: [String: String]
    public var created: Date
    public var updated: Date

    init(_ network: IndexNetwork, ownerName: String?) {
        id = network.id.description
        name = network.name
        owner = ownerName
        ownerId = network.owner.description
        access = network.access.rawValue
        metadata = network.metadata.dictionary
        created = network.created
        updated = network.updated
    }
}

/// A user's membership of a network.
public struct IndexAPIMembership: Codable, Hashable, Sendable {
    /// The network's name (null only if it was deleted while the answer was made).
    public var network: String?
    public var networkId: String
    /// The member's username (null only if they were deleted while the answer was made).
    public var user: String?
    public var userId: String
    /// `member`, `admin` or `owner`.
    public var role: String
    public var joined: Date
    /// In a network's member list: whether the member is logged in from a peer that is online
    /// now (absent elsewhere).
    public var online: Bool?
}

/// A pending invitation of a user to a network.
public struct IndexAPIInvitation: Codable, Hashable, Sendable {
    public var network: String?
    public var networkId: String
    public var user: String?
    public var userId: String
    /// The inviter's username; absent when the administrator invited (or the inviter is gone).
    public var invitedBy: String?
    public var created: Date
}

/// One page of a listing or search; pass `next` back as `after` for the following page.
public struct IndexAPIPage<Item: Codable & Hashable & Sendable>: Codable, Hashable, Sendable {
    public var items: [Item]
    public var next: String?

    public init(items: [Item], next: String?) {
        self.items = items
        self.next = next
    }
}

/// A list that is not paged (invitations).
public struct IndexAPIList<Item: Codable & Hashable & Sendable>: Codable, Hashable, Sendable {
    public var items: [Item]

    public init(items: [Item]) { self.items = items }
}

// MARK: Request bodies

/// A request body: its fields, so that unknown (misspelt) fields are refused rather than ignored.
public protocol IndexAPIBody: Codable, Sendable {
    static var fields: Set<String> { get }
}

/// `POST /v1/users`.
public struct IndexAPICreateUser: IndexAPIBody, Hashable {
    public static let fields: Set<String> = ["name", "password", "metadata"]
    public var name: String
    public var password: String
    public var metadata: [String: String]?

    public init(name: String, password: String, metadata: [String: String]? = nil) {
        self.name = name
        self.password = password
        self.metadata = metadata
    }
}

/// `PATCH /v1/users/{name}`: metadata changes (null removes a key) and/or a new password.
public struct IndexAPIUpdateUser: IndexAPIBody, Hashable {
    public static let fields: Set<String> = ["metadata", "password"]
    public var metadata: [String: String?]?
    public var password: String?

    public init(metadata: [String: String?]? = nil, password: String? = nil) {
        self.metadata = metadata
        self.password = password
    }
}

/// `POST /v1/networks`.
public struct IndexAPICreateNetwork: IndexAPIBody, Hashable {
    public static let fields: Set<String> = ["name", "owner", "access", "metadata"]
    public var name: String
    /// The owner's username.
    public var owner: String
    /// `open` (the default) or `invite-only`.
    public var access: String?
    public var metadata: [String: String]?

    public init(name: String, owner: String, access: String? = nil, metadata: [String: String]? = nil) {
        self.name = name
        self.owner = owner
        self.access = access
        self.metadata = metadata
    }
}

/// `PATCH /v1/networks/{name}`: access, metadata changes (null removes a key), and/or a new owner
/// (a member, who is given the network; the old owner becomes an admin).
public struct IndexAPIUpdateNetwork: IndexAPIBody, Hashable {
    public static let fields: Set<String> = ["access", "metadata", "owner"]
    public var access: String?
    public var metadata: [String: String?]?
    public var owner: String?

    public init(access: String? = nil, metadata: [String: String?]? = nil, owner: String? = nil) {
        self.access = access
        self.metadata = metadata
        self.owner = owner
    }
}

/// `POST /v1/networks/{name}/members`: adds a user (inviting them first to an invite-only network),
/// then names their role when it is `admin`.
public struct IndexAPIAddMember: IndexAPIBody, Hashable {
    public static let fields: Set<String> = ["user", "role"]
    public var user: String
    /// `member` (the default) or `admin`.
    public var role: String?

    public init(user: String, role: String? = nil) {
        self.user = user
        self.role = role
    }
}

/// `PATCH /v1/networks/{name}/members/{user}`.
public struct IndexAPISetRole: IndexAPIBody, Hashable {
    public static let fields: Set<String> = ["role"]
    /// `member` or `admin`.
    public var role: String

    public init(role: String) { self.role = role }
}

/// `POST /v1/networks/{name}/invitations`.
public struct IndexAPIInvite: IndexAPIBody, Hashable {
    public static let fields: Set<String> = ["user"]
    public var user: String

    public init(user: String) { self.user = user }
}

// MARK: Coding

/// The API's JSON coders: ISO 8601 dates with milliseconds, sorted keys.
public enum IndexAPIJSON {
    /// Dates as `2025-01-02T03:04:05.678Z`.
    static let dateStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// The encoder of responses (and of the client's requests).
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(dateStyle.format(date))
        }
        return encoder
    }

    /// The decoder of requests (and of the client's responses); takes dates with or without milliseconds.
    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            if let date = try? dateStyle.parse(text) { return date }
            if let date = try? Date.ISO8601FormatStyle().parse(text) { return date }
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected an ISO 8601 date, got '\(text)'")
        }
        return decoder
    }
}

extension NetworkRole {
    /// The role a body names (`member` or `admin`; `owner` is refused: ownership is transferred).
    static func parsing(_ text: String) throws(IndexAPIError) -> NetworkRole {
        switch text {
        case "member": return .member
        case "admin": return .admin
        case "owner": throw IndexAPIError(IndexError.invalidRole("owner"))
        default: throw .invalidParameter("role '\(text)' is not one of member, admin")
        }
    }
}

extension NetworkAccess {
    /// The access a body names.
    static func parsing(_ text: String) throws(IndexAPIError) -> NetworkAccess {
        guard let access = NetworkAccess(rawValue: text) else {
            throw .invalidParameter("access '\(text)' is not one of open, invite-only")
        }
        return access
    }
}
