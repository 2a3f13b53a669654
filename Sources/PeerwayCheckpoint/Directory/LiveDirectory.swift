/// Where a registered peer is and what it published: one row of the live directory.
public struct DirectoryEntry: Equatable, Sendable {
    public var peer: PeerID
    /// The source address the checkpoint sees (its NAT's public mapping).
    public var observed: PeerEndpoint
    /// The peer's own interface addresses.
    public var candidates: [PeerEndpoint]
    public var metadata: PeerMetadata
    /// The supernode the peer is registered on: `nil` for this one, else another supernode of
    /// the network whose row this is a replica of.
    public var home: ClusterNode?
    /// Orders competing registrations of the peer on two supernodes (ClusterFrame.swift).
    public var version: UInt64

    public init(peer: PeerID, observed: PeerEndpoint, candidates: [PeerEndpoint], metadata: PeerMetadata,
                home: ClusterNode? = nil, version: UInt64 = 0) {
        self.peer = peer
        self.observed = observed
        self.candidates = candidates
        self.metadata = metadata
        self.home = home
        self.version = version
    }
}

/// The live directory: who is online, where, with what metadata.
///
/// CHECKPOINT's protocol code (`CheckpointMachine`) reads and writes presence only through this
/// interface. In a network of supernodes it holds the peers of every supernode: its own (home
/// `nil`) and replicas of the others' rows, kept current over the mesh (ClusterFrame.swift), so
/// lookups, searches and watches stay local and synchronous.
public protocol LiveDirectory {
    /// Peers online.
    var count: Int { get }
    /// Adds the peer or replaces its row.
    mutating func upsert(_ entry: DirectoryEntry)
    /// Removes the peer; no effect when absent.
    mutating func remove(_ peer: PeerID)
    /// The peer's row when it is online.
    func entry(for peer: PeerID) -> DirectoryEntry?
    /// Online peers whose metadata matches, in ascending PeerID order after `after`, at most
    /// `limit`; `more` tells whether further matches exist.
    func search(_ query: CheckpointQuery, after: PeerID?, limit: Int) -> (entries: [DirectoryEntry], more: Bool)
}

/// The live directory of one supernode, in memory: endpoints by PeerID, metadata in a
/// `MetadataIndex` so that searches never scan every peer.
public struct InMemoryLiveDirectory: LiveDirectory, Sendable {
    private struct Location: Sendable {
        var observed: PeerEndpoint
        var candidates: [PeerEndpoint]
        var home: ClusterNode?
        var version: UInt64
    }

    private var locations: [PeerID: Location] = [:]
    private var index = MetadataIndex()

    public init() {}

    public var count: Int { locations.count }

    public mutating func upsert(_ entry: DirectoryEntry) {
        let previous = locations.updateValue(Location(observed: entry.observed, candidates: entry.candidates,
                                                                    home: entry.home, version: entry.version), forKey: entry.peer)
        if previous == nil || index.metadata(of: entry.peer) != entry.metadata {
            index.insert(entry.peer, metadata: entry.metadata)
        }
    }

    public mutating func remove(_ peer: PeerID) {
        guard locations.removeValue(forKey: peer) != nil else { return }
        index.remove(peer)
    }

    public func entry(for peer: PeerID) -> DirectoryEntry? {
        guard let l = locations[peer] else { return nil }
        return DirectoryEntry(peer: peer, observed: l.observed, candidates: l.candidates,
                              metadata: index.metadata(of: peer) ?? PeerMetadata(), home: l.home, version: l.version)
    }

    public func search(_ query: CheckpointQuery, after: PeerID?, limit: Int) -> (entries: [DirectoryEntry], more: Bool) {
        let found = index.search(query, after: after, limit: limit)
        return (found.peers.compactMap { entry(for: $0) }, found.more)
    }
}
