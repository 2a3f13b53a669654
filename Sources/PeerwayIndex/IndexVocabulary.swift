// Network access and roles are wire vocabulary (`IndexFrames.swift` in PeerwayCheckpoint) as well
// as the store's; they are re-exported so users of PeerwayIndex need no other import for them.
@_exported import enum PeerwayCheckpoint.NetworkAccess
@_exported import enum PeerwayCheckpoint.NetworkRole
