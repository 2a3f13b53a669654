import PeerwayCheckpoint

/// Why the INDEX refused or failed an operation. A refusal changes nothing. Descriptions are
/// written for the user or operator who asked, and say what to do.
public enum IndexError: Error, Hashable, Sendable, CustomStringConvertible {
    // Input.
    case invalidUsername(String)
    case invalidNetworkName(String)
    case invalidPassword(bytes: Int)
    case invalidMetadata(String)
    case invalidQuery(String)
    case invalidCursor(String)
    case invalidPageSize(Int, maximum: Int)
    case invalidRole(String)

    // Existence and uniqueness.
    case usernameTaken(String)
    case networkNameTaken(String)
    case noSuchUser(String)
    case noSuchNetwork(String)
    case notMember(user: UserID, network: NetworkID)
    case alreadyMember(user: UserID, network: NetworkID)
    case notInvited(user: UserID, network: NetworkID)
    case alreadyInvited(user: UserID, network: NetworkID)
    case notLoggedIn(PeerID)

    // Authentication and authorisation.
    case badCredentials
    case rateLimited(retryAfterSeconds: Int)
    case notYourRecord(actor: IndexActor, user: UserID)
    case notNetworkManager(actor: IndexActor, network: NetworkID)
    case notNetworkOwner(actor: IndexActor, network: NetworkID)
    case inviteOnly(NetworkID)
    case ownerCannotLeave(NetworkID)
    case cannotRemoveOwner(NetworkID)
    case adminCannotManageAdmin(network: NetworkID, user: UserID)
    case ownsNetworks(user: UserID, count: Int)

    // Limits.
    case tooManyNetworks(user: UserID, limit: Int)
    case tooManyMembers(network: NetworkID, limit: Int)
    case tooManyInvitations(network: NetworkID, limit: Int)

    // The store itself.
    case storage(String)
    case closed
    /// The store's database does not answer (PostgreSQL stopped or out of reach); calls work
    /// again once it does. The text says why, for the person who asked.
    case unreachable(String)

    public var description: String {
        switch self {
        case .invalidUsername(let name):
            return "username '\(name)' is invalid: use \(IndexLimits.usernameBytes.lowerBound)-\(IndexLimits.usernameBytes.upperBound) characters of a-z 0-9 _ . -, starting with a letter or digit"
        case .invalidNetworkName(let name):
            return "network name '\(name)' is invalid: use \(IndexLimits.networkNameBytes.lowerBound)-\(IndexLimits.networkNameBytes.upperBound) characters of a-z 0-9 _ . -, starting with a letter or digit"
        case .invalidPassword(let bytes):
            return "password is \(bytes) bytes: use \(IndexLimits.passwordBytes.lowerBound)-\(IndexLimits.passwordBytes.upperBound)"
        case .invalidMetadata(let why):
            return why
        case .invalidQuery(let why):
            return why
        case .invalidCursor(let text):
            return "cursor '\(text)' is invalid: pass back the cursor of the previous page as it was given"
        case .invalidPageSize(let size, let maximum):
            return "page size \(size) is invalid: ask for 1-\(maximum)"
        case .invalidRole(let role):
            return "role '\(role)' cannot be given this way: name members or admins; transfer ownership to change the owner"
        case .usernameTaken(let name):
            return "username '\(name)' is taken: choose another"
        case .networkNameTaken(let name):
            return "network name '\(name)' is taken: choose another"
        case .noSuchUser(let who):
            return "no user \(who)"
        case .noSuchNetwork(let which):
            return "no network \(which)"
        case .notMember(let user, let network):
            return "user \(user) is not a member of network \(network)"
        case .alreadyMember(let user, let network):
            return "user \(user) is already a member of network \(network)"
        case .notInvited(let user, let network):
            return "user \(user) has no invitation to network \(network): ask its owner or an admin"
        case .alreadyInvited(let user, let network):
            return "user \(user) is already invited to network \(network)"
        case .notLoggedIn(let peer):
            return "peer \(peer) is not logged in: log in first"
        case .badCredentials:
            return "wrong username or password"
        case .rateLimited(let seconds):
            return "too many login attempts: try again in \(seconds) s"
        case .notYourRecord(let actor, let user):
            return "\(actor) may not change user \(user): users change only their own record"
        case .notNetworkManager(let actor, let network):
            return "\(actor) may not manage the members of network \(network): only its owner and admins can"
        case .notNetworkOwner(let actor, let network):
            return "\(actor) may not do this to network \(network): only its owner can"
        case .inviteOnly(let network):
            return "network \(network) is invite-only: ask its owner or an admin for an invitation"
        case .ownerCannotLeave(let network):
            return "the owner cannot leave network \(network): transfer ownership to a member or delete the network"
        case .cannotRemoveOwner(let network):
            return "the owner of network \(network) cannot be removed: the owner transfers ownership or deletes the network"
        case .adminCannotManageAdmin(let network, let user):
            return "user \(user) is an admin of network \(network): only the owner removes or changes admins"
        case .ownsNetworks(let user, let count):
            return "user \(user) owns \(count) network(s): transfer or delete them first"
        case .tooManyNetworks(let user, let limit):
            return "user \(user) already belongs to \(limit) networks, the limit: leave one first"
        case .tooManyMembers(let network, let limit):
            return "network \(network) already has \(limit) members, the limit"
        case .tooManyInvitations(let network, let limit):
            return "network \(network) already has \(limit) pending invitations, the limit: wait for answers or withdraw some"
        case .storage(let why):
            return "index storage failed: \(why)"
        case .closed:
            return "the index store is closed"
        case .unreachable(let why):
            return "the INDEX database is unreachable (\(why)); everything but the INDEX keeps working: try again in a minute"
        }
    }
}
