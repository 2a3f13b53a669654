// The Peerway client library: `Peer` (presence, search, messages, watches, connection
// negotiation) and `Netcheck` (NAT behaviour discovery).
//
// The identity and protocol value types (`PeerID`, `PeerIdentity`, `SupernodeAddress`,
// `PeerMetadata`, ...) live in PeerwayCheckpoint and are re-exported, so an application needs
// only `import Peerway`.
@_exported import PeerwayCheckpoint
