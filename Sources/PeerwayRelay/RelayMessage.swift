/// A bind (`"PWRB" version token`) and its answer (`"PWRA" version token`), 37 bytes each.
public enum RelayMessage {
    /// The bind a peer sends for `token`.
    public static func bind(_ token: RelayToken) -> [UInt8] {
        RelayLimits.bindMagic + [RelayLimits.version] + token.bytes
    }

    /// The relay's answer to a bind for `token`.
    public static func answer(_ token: RelayToken) -> [UInt8] {
        RelayLimits.boundMagic + [RelayLimits.version] + token.bytes
    }

    /// True when `bytes` has a bind's length, magic and version (its token is not checked).
    @inlinable
    public static func isBind(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count == RelayLimits.bindBytes && bytes[0] == 0x50 && bytes[1] == 0x57 && bytes[2] == 0x52 && bytes[3] == 0x42
            && bytes[4] == RelayLimits.version
    }

    /// True when `bytes` starts with a bind's magic ("PWRB"): how a TCP listener tells a relay
    /// connection from a control channel.
    public static func startsWithBindMagic(_ bytes: some Collection<UInt8>) -> Bool {
        bytes.count >= 4 && bytes.prefix(4).elementsEqual(RelayLimits.bindMagic)
    }

    /// Turns a bind into its answer in place: the same 37 bytes with "PWRA" for "PWRB".
    /// Precondition: `isBind(bytes)`.
    @inlinable
    public static func makeAnswer(inPlace bytes: UnsafeMutableRawBufferPointer) {
        bytes[3] = 0x41  // "A"
    }

    /// The token of an answer, for the peer that sent the bind; nil when `bytes` is no answer.
    public static func answeredToken(_ bytes: some Collection<UInt8>) -> RelayToken? {
        let b = Array(bytes)
        guard b.count == RelayLimits.bindBytes, Array(b[0..<4]) == RelayLimits.boundMagic, b[4] == RelayLimits.version else { return nil }
        return RelayToken(bytes: b[5...])
    }
}
