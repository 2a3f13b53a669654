import NIOCore

// Body encodings of the INDEX frames (`indexRequest`, `indexResult`, `networkStatus`); layouts
// in IndexFrames.swift. Names are `length(1)` UTF-8 of at most `IndexWireLimits.maximumNameBytes`,
// passwords and queries `length(2)`, cursors `length(1)` (empty: none).

extension ByteBuffer {
    mutating func writeWireName(_ name: String) {
        writeWireShortString(name, "index name")
    }

    mutating func writeWirePage(_ page: IndexPageRequest) {
        writeWireShortString(page.after ?? "", "index cursor")
        writeInteger(page.limit)
    }
}

extension ControlWireReader {
    mutating func name(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> String {
        let length = Int(try u8(what()))
        guard length >= 1, length <= IndexWireLimits.maximumNameBytes else {
            throw .invalid(what: "\(what()): name of \(length) bytes is not 1-\(IndexWireLimits.maximumNameBytes)")
        }
        return try utf8(length, what())
    }

    mutating func cursor(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> String? {
        let length = Int(try u8(what()))
        guard length <= IndexWireLimits.maximumCursorBytes else {
            throw .invalid(what: "\(what()): cursor of \(length) bytes, over IndexWireLimits.maximumCursorBytes (\(IndexWireLimits.maximumCursorBytes))")
        }
        return length == 0 ? nil : try utf8(length, what())
    }

    mutating func page(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> IndexPageRequest {
        let after = try cursor(what() + ".after")
        let limit = try u16(what() + ".limit")
        guard limit <= IndexWireLimits.maximumPage else {
            throw .invalid(what: "\(what()).limit: \(limit), over IndexWireLimits.maximumPage (\(IndexWireLimits.maximumPage))")
        }
        return IndexPageRequest(after: after, limit: limit)
    }

    mutating func password(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> String {
        try text(what(), limit: IndexWireLimits.maximumPasswordBytes, limitName: "IndexWireLimits.maximumPasswordBytes")
    }

    mutating func access(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> NetworkAccess {
        let code = try u8(what())
        guard let access = NetworkAccess(wireCode: code) else { throw .invalid(what: "\(what()): access \(code) is neither 0 (open) nor 1 (invite-only)") }
        return access
    }

    mutating func role(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> NetworkRole {
        let code = try u8(what())
        guard let role = NetworkRole(rawValue: Int(code)) else { throw .invalid(what: "\(what()): role \(code) is not 0 (member), 1 (admin) or 2 (owner)") }
        return role
    }

    mutating func int64(_ what: @autoclosure () -> String) throws(ControlDecodingError) -> Int64 {
        Int64(bitPattern: try u64(what()))
    }
}

// MARK: - Requests

extension IndexCall {
    func writeWire(into b: inout ByteBuffer) {
        b.writeInteger(operation.rawValue)
        switch self {
        case .signup(let username, let password, let metadata):
            b.writeWireName(username)
            b.writeWireText(password)
            b.writeWireMetadata(metadata)
        case .login(let username, let password):
            b.writeWireName(username)
            b.writeWireText(password)
        case .logout, .whoami, .invitations:
            break
        case .changePassword(let old, let new):
            b.writeWireText(old)
            b.writeWireText(new)
        case .updateProfile(let update):
            update.writeWire(into: &b)
        case .deleteAccount(let password):
            b.writeWireText(password)
        case .createNetwork(let name, let access, let metadata):
            b.writeWireName(name)
            b.writeInteger(access.wireCode)
            b.writeWireMetadata(metadata)
        case .updateNetwork(let name, let access, let update):
            b.writeWireName(name)
            b.writeInteger(access?.wireCode ?? 0xFF)
            update.writeWire(into: &b)
        case .deleteNetwork(let name), .join(let name), .leave(let name), .watchNetwork(let name), .unwatchNetwork(let name):
            b.writeWireName(name)
        case .invite(let network, let user), .remove(let network, let user):
            b.writeWireName(network)
            b.writeWireName(user)
        case .members(let network, let page):
            b.writeWireName(network)
            b.writeWirePage(page)
        case .setRole(let network, let user, let role):
            b.writeWireName(network)
            b.writeWireName(user)
            b.writeInteger(UInt8(role.rawValue))
        case .searchUsers(let query, let page), .searchNetworks(let query, let page):
            b.writeWireText(query)
            b.writeWirePage(page)
        case .myNetworks(let page):
            b.writeWirePage(page)
        }
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let code = try r.u8("indexRequest.operation")
        guard let operation = Operation(rawValue: code) else { throw .invalid(what: "indexRequest.operation: unknown operation \(code)") }
        switch operation {
        case .signup:
            self = .signup(username: try r.name("signup.username"), password: try r.password("signup.password"),
                           metadata: try r.metadata("signup.metadata"))
        case .login:
            self = .login(username: try r.name("login.username"), password: try r.password("login.password"))
        case .logout: self = .logout
        case .changePassword:
            self = .changePassword(old: try r.password("changePassword.old"), new: try r.password("changePassword.new"))
        case .whoami: self = .whoami
        case .updateProfile: self = .updateProfile(try MetadataUpdate(wire: &r))
        case .deleteAccount: self = .deleteAccount(password: try r.password("deleteAccount.password"))
        case .createNetwork:
            self = .createNetwork(name: try r.name("createNetwork.name"), access: try r.access("createNetwork.access"),
                                  metadata: try r.metadata("createNetwork.metadata"))
        case .updateNetwork:
            let name = try r.name("updateNetwork.name")
            let code = try r.u8("updateNetwork.access")
            var access: NetworkAccess?
            if code != 0xFF {
                guard let a = NetworkAccess(wireCode: code) else {
                    throw .invalid(what: "updateNetwork.access: \(code) is not 0 (open), 1 (invite-only) or 255 (unchanged)")
                }
                access = a
            }
            self = .updateNetwork(name: name, access: access, metadata: try MetadataUpdate(wire: &r))
        case .deleteNetwork: self = .deleteNetwork(name: try r.name("deleteNetwork.name"))
        case .join: self = .join(network: try r.name("join.network"))
        case .invite: self = .invite(network: try r.name("invite.network"), user: try r.name("invite.user"))
        case .remove: self = .remove(network: try r.name("remove.network"), user: try r.name("remove.user"))
        case .leave: self = .leave(network: try r.name("leave.network"))
        case .members: self = .members(network: try r.name("members.network"), page: try r.page("members.page"))
        case .watchNetwork: self = .watchNetwork(try r.name("watchNetwork.network"))
        case .unwatchNetwork: self = .unwatchNetwork(try r.name("unwatchNetwork.network"))
        case .setRole:
            self = .setRole(network: try r.name("setRole.network"), user: try r.name("setRole.user"), role: try r.role("setRole.role"))
        case .searchUsers:
            self = .searchUsers(query: try r.text("searchUsers.query", limit: ControlLimits.maximumQueryBytes, limitName: "maximumQueryBytes"),
                                page: try r.page("searchUsers.page"))
        case .searchNetworks:
            self = .searchNetworks(query: try r.text("searchNetworks.query", limit: ControlLimits.maximumQueryBytes, limitName: "maximumQueryBytes"),
                                   page: try r.page("searchNetworks.page"))
        case .myNetworks: self = .myNetworks(try r.page("myNetworks.page"))
        case .invitations: self = .invitations
        }
    }
}

// MARK: - Replies

extension IndexUserEntry {
    func writeWire(into b: inout ByteBuffer) {
        b.writeInteger(UInt64(bitPattern: id))
        b.writeWireName(name)
        b.writeWireMetadata(metadata)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        self.init(id: try r.int64("user.id"), name: try r.name("user.name"), metadata: try r.metadata("user.metadata"))
    }

    /// Bytes on the wire.
    public var wireBytes: Int { 8 + 1 + name.utf8.count + 1 + metadata.count * 2 + metadata.totalBytes }
}

extension IndexNetworkEntry {
    func writeWire(into b: inout ByteBuffer) {
        b.writeInteger(UInt64(bitPattern: id))
        b.writeWireName(name)
        b.writeWireName(owner)
        b.writeInteger(access.wireCode)
        b.writeInteger(role.map { UInt8($0.rawValue) } ?? 0xFF)
        b.writeWireMetadata(metadata)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let id = try r.int64("network.id")
        let name = try r.name("network.name")
        let owner = try r.name("network.owner")
        let access = try r.access("network.access")
        let roleCode = try r.u8("network.role")
        var role: NetworkRole?
        if roleCode != 0xFF {
            guard let known = NetworkRole(rawValue: Int(roleCode)) else { throw .invalid(what: "network.role: \(roleCode) is not 0, 1, 2 or 255 (not a member)") }
            role = known
        }
        self.init(id: id, name: name, owner: owner, access: access, role: role, metadata: try r.metadata("network.metadata"))
    }

    /// Bytes on the wire.
    public var wireBytes: Int { 8 + 1 + name.utf8.count + 1 + owner.utf8.count + 2 + 1 + metadata.count * 2 + metadata.totalBytes }
}

extension IndexMemberEntry {
    func writeWire(into b: inout ByteBuffer) {
        b.writeInteger(UInt64(bitPattern: user))
        b.writeWireName(name)
        b.writeInteger(UInt8(role.rawValue))
        b.writeWireCount(onlinePeers.count, "member peers")
        for peer in onlinePeers { b.writeWirePeerID(peer) }
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let user = try r.int64("member.user")
        let name = try r.name("member.name")
        let role = try r.role("member.role")
        let n = try r.count("member.peers", limit: IndexWireLimits.maximumPeersPerMember, limitName: "IndexWireLimits.maximumPeersPerMember")
        var peers: [PeerID] = []
        for _ in 0..<n { peers.append(try r.peerID("member.peer")) }
        self.init(user: user, name: name, role: role, onlinePeers: peers)
    }

    /// Bytes on the wire.
    public var wireBytes: Int { 8 + 1 + name.utf8.count + 1 + 1 + 16 * onlinePeers.count }
}

extension IndexEntryPage {
    func writeWire(into b: inout ByteBuffer, item: (Item, inout ByteBuffer) -> Void) {
        b.writeWireCount(items.count, "index page")
        for i in items { item(i, &b) }
        b.writeWireShortString(next ?? "", "index cursor")
    }

    init(wire r: inout ControlWireReader, _ what: String,
         item: (inout ControlWireReader) throws(ControlDecodingError) -> Item) throws(ControlDecodingError) {
        let n = try r.count(what, limit: Int(IndexWireLimits.maximumPage), limitName: "IndexWireLimits.maximumPage")
        var items: [Item] = []
        items.reserveCapacity(n)
        for _ in 0..<n { items.append(try item(&r)) }
        self.init(items: items, next: try r.cursor(what + ".next"))
    }
}

extension IndexReply {
    func writeWire(into b: inout ByteBuffer) {
        b.writeInteger(kind.rawValue)
        switch self {
        case .done: break
        case .user(let user): user.writeWire(into: &b)
        case .network(let network): network.writeWire(into: &b)
        case .members(let network, let page):
            b.writeWireName(network)
            page.writeWire(into: &b) { $0.writeWire(into: &$1) }
        case .users(let page): page.writeWire(into: &b) { $0.writeWire(into: &$1) }
        case .networks(let page): page.writeWire(into: &b) { $0.writeWire(into: &$1) }
        }
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        let code = try r.u8("indexResult.kind")
        guard let kind = Kind(rawValue: code) else { throw .invalid(what: "indexResult.kind: unknown reply \(code)") }
        switch kind {
        case .done: self = .done
        case .user: self = .user(try IndexUserEntry(wire: &r))
        case .network: self = .network(try IndexNetworkEntry(wire: &r))
        case .members:
            let network = try r.name("members.network")
            self = .members(network: network, try IndexEntryPage(wire: &r, "members") { (r: inout ControlWireReader) throws(ControlDecodingError) in try IndexMemberEntry(wire: &r) })
        case .users:
            self = .users(try IndexEntryPage(wire: &r, "users") { (r: inout ControlWireReader) throws(ControlDecodingError) in try IndexUserEntry(wire: &r) })
        case .networks:
            self = .networks(try IndexEntryPage(wire: &r, "networks") { (r: inout ControlWireReader) throws(ControlDecodingError) in try IndexNetworkEntry(wire: &r) })
        }
    }
}

extension NetworkMemberStatus {
    func writeWire(into b: inout ByteBuffer) {
        b.writeWireName(network)
        b.writeInteger(UInt64(bitPattern: user))
        b.writeWireName(name)
        b.writeWirePeerID(peer)
        b.writeWireBool(online)
    }

    init(wire r: inout ControlWireReader) throws(ControlDecodingError) {
        self.init(network: try r.name("networkStatus.network"), user: try r.int64("networkStatus.user"),
                  name: try r.name("networkStatus.name"), peer: try r.peerID("networkStatus.peer"),
                  online: try r.bool("networkStatus.online"))
    }
}
