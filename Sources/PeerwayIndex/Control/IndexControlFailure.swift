import PeerwayCheckpoint

extension IndexError {
    /// The control channel's error code for this refusal.
    public var controlCode: ControlFailure.Code {
        switch self {
        case .invalidUsername, .invalidNetworkName, .invalidPassword, .invalidMetadata, .invalidCursor, .invalidPageSize, .invalidRole:
            return .badRequest
        case .invalidQuery:
            return .badQuery
        case .usernameTaken, .networkNameTaken, .alreadyMember, .alreadyInvited:
            return .conflict
        case .noSuchUser, .noSuchNetwork, .notMember:
            return .notFound
        case .notLoggedIn:
            return .notLoggedIn
        case .badCredentials:
            return .badCredentials
        case .rateLimited:
            return .rateLimited
        case .notInvited, .notYourRecord, .notNetworkManager, .notNetworkOwner, .inviteOnly, .ownerCannotLeave,
             .cannotRemoveOwner, .adminCannotManageAdmin, .ownsNetworks:
            return .forbidden
        case .tooManyNetworks, .tooManyMembers, .tooManyInvitations:
            return .limitReached
        case .storage, .closed, .unreachable:
            return .unavailable
        }
    }

    /// Whether the store's database did not answer (the call may work later as it is).
    public var isUnreachable: Bool {
        if case .unreachable = self { return true }
        return false
    }

    /// The user and network ids the description names.
    var namedIDs: (users: [UserID], networks: [NetworkID]) {
        func actorID(_ a: IndexActor) -> [UserID] { if case .user(let id) = a { return [id] }; return [] }
        switch self {
        case .notMember(let u, let n), .alreadyMember(let u, let n), .notInvited(let u, let n), .alreadyInvited(let u, let n):
            return ([u], [n])
        case .notYourRecord(let actor, let u): return (actorID(actor) + [u], [])
        case .notNetworkManager(let actor, let n), .notNetworkOwner(let actor, let n): return (actorID(actor), [n])
        case .inviteOnly(let n), .ownerCannotLeave(let n), .cannotRemoveOwner(let n): return ([], [n])
        case .adminCannotManageAdmin(let n, let u): return ([u], [n])
        case .ownsNetworks(let u, _), .tooManyNetworks(let u, _): return ([u], [])
        case .tooManyMembers(let n, _), .tooManyInvitations(let n, _): return ([], [n])
        default: return ([], [])
        }
    }
}

extension IndexControlService {
    /// The refusal as peers see it: the store's words with user and network ids replaced by
    /// their names, cut to `ControlLimits.maximumErrorTextBytes`.
    func failure(for error: IndexError) async -> ControlFailure {
        var text = error.description
        let ids = error.namedIDs
        for u in ids.users {
            if let name = await name(of: u) { text = Self.replacing(u.description, with: "'\(name)'", in: text) }
        }
        for n in ids.networks {
            if let network = try? await store.network(id: n) { text = Self.replacing(n.description, with: "'\(network.name)'", in: text) }
        }
        return ControlFailure(error.controlCode, Self.truncated(text, to: ControlLimits.maximumErrorTextBytes))
    }

    /// Replaces `token` where it stands as a whole word (so "u1" does not touch "u12").
    static func replacing(_ token: String, with replacement: String, in text: String) -> String {
        var result = ""
        var rest = Substring(text)
        while let range = rest.range(of: token) {
            let before = rest[..<range.lowerBound]
            let after = rest[range.upperBound...]
            let boundaryBefore = before.last.map { !$0.isLetter && !$0.isNumber } ?? true
            let boundaryAfter = after.first.map { !$0.isLetter && !$0.isNumber } ?? true
            result += before
            result += (boundaryBefore && boundaryAfter) ? replacement : token
            rest = after
        }
        return result + rest
    }

    /// `text` cut at a character boundary to at most `bytes` bytes of UTF-8.
    static func truncated(_ text: String, to bytes: Int) -> String {
        guard text.utf8.count > bytes else { return text }
        var out = ""
        for c in text {
            guard out.utf8.count + c.utf8.count <= bytes else { break }
            out.append(c)
        }
        return out
    }
}
