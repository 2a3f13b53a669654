import NIOCore
import PeerwaySTUN

/// What the STUN pair does with one received datagram.
public enum STUNResponderAction: Equatable, Sendable {
    /// Send `bytes` from the socket with role `from` to `to`.
    case reply(bytes: ByteBuffer, from: STUNSocketRole, to: STUNAddress)
    /// Send nothing; `reason` says why (each reason has its own counter).
    case drop(STUNDropReason)
}

/// Why a datagram got no answer.
public enum STUNDropReason: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Not STUN at all, or a STUN message the codec refused (see `STUNDecodingError`).
    case malformed
    /// Larger than `STUNLimits.maximumDatagramSize`.
    case oversize
    /// A response or indication: nothing to answer (Binding indications are keepalives).
    case notARequest
    /// Over the per-source rate limit (`SourceRateLimiter`).
    case rateLimited

    public var description: String { rawValue }
}

/// Answers Binding requests for a STUN pair: pure, no sockets, no clock (RFC 8489 §6.3, RFC 5780 §6.1,
/// RFC 3489 §8.2).
///
/// - RFC 8489 clients get XOR-MAPPED-ADDRESS, plus RESPONSE-ORIGIN and OTHER-ADDRESS when the pair
///   has an alternate address; FINGERPRINT when the request had one; PADDING echoed in length.
/// - Classic RFC 3489 clients (no magic cookie) get MAPPED-ADDRESS, SOURCE-ADDRESS and
///   CHANGED-ADDRESS, which their parsers understand.
/// - RESPONSE-PORT (RFC 5780 §7.5) is honoured: the answer goes to the request's source IP on that
///   port. RFC 3489 RESPONSE-ADDRESS is never honoured (it would let anyone aim answers at a third
///   party); the answer goes to the source.
/// - A request with an unknown comprehension-required attribute gets 420 with UNKNOWN-ATTRIBUTES;
///   CHANGE-REQUEST without an alternate address gets 420 naming CHANGE-REQUEST (RFC 5780 §6.1);
///   a request of another method gets 400.
public struct STUNResponder: Sendable {
    /// Largest PADDING echoed back (RFC 5780 §7.6). The echo is as long as the request's PADDING,
    /// so the answer is about the request's size (no amplification) and fragments the same way.
    public static let maximumEchoedPadding = 2048

    public let layout: STUNPairLayout
    /// SOFTWARE to put in answers; `nil` (the default) keeps answers small (less amplification).
    public let software: String?

    public init(layout: STUNPairLayout, software: String? = nil) {
        self.layout = layout
        self.software = software
    }

    /// Decides the answer to `datagram` received from `source` on the socket with role `role`,
    /// in a freshly allocated buffer.
    public func respond(to datagram: ByteBuffer, from source: STUNAddress, on role: STUNSocketRole) -> STUNResponderAction {
        var out = ByteBuffer()
        switch respond(to: datagram, from: source, on: role, into: &out) {
        case .reply(let from, let to): return .reply(bytes: out, from: from, to: to)
        case .drop(let reason): return .drop(reason)
        }
    }

    /// Where an answer written by `respond(to:from:on:into:)` goes.
    public enum Decision: Equatable, Sendable {
        case reply(from: STUNSocketRole, to: STUNAddress)
        case drop(STUNDropReason)
    }

    /// Decides the answer and, for a reply, appends its bytes to `out` (the datagram engine reuses
    /// one buffer for every answer).
    public func respond(to datagram: ByteBuffer, from source: STUNAddress, on role: STUNSocketRole, into out: inout ByteBuffer) -> Decision {
        guard datagram.readableBytes <= STUNLimits.maximumDatagramSize else { return .drop(.oversize) }
        let request: STUNMessage
        do {
            request = try STUNMessage(datagram: datagram)
        } catch {
            return .drop(.malformed)
        }
        guard request.type.messageClass == .request else { return .drop(.notARequest) }
        guard request.type.method == .binding else {
            writeError(.badRequest, for: request, unknown: nil, into: &out)
            return .reply(from: role, to: source)
        }

        var change = STUNChangeRequest()
        var responsePort: UInt16?
        var padding = 0
        var hasFingerprint = false
        var unknown: [UInt16] = []
        for attribute in request.attributes {
            switch attribute {
            case .changeRequest(let c): change = c
            case .responsePort(let p): responsePort = p
            case .padding(let n): padding = n
            case .fingerprint: hasFingerprint = true
            case .unknown(let t, _) where STUNAttributeType(rawValue: t).isComprehensionRequired: unknown.append(t)
            default: break
            }
        }
        if !unknown.isEmpty {
            writeError(.unknownAttribute, for: request, unknown: unknown, into: &out)
            return .reply(from: role, to: source)
        }
        if (change.changeIP || change.changePort), !layout.supportsChangeRequest {
            writeError(.changeRequestUnsupported, for: request, unknown: [STUNAttributeType.changeRequest.rawValue], into: &out)
            return .reply(from: role, to: source)
        }

        let sendingRole = role.applying(change)
        let origin = layout.address(of: sendingRole)
        let other = layout.address(of: role.diagonal)
        var destination = source
        if let responsePort, responsePort != 0 { destination = source.with(port: responsePort) }

        var answer = STUNMessage(type: .bindingSuccess, transactionID: request.transactionID)
        answer.attributes.reserveCapacity(5)
        if request.isClassic {
            answer.attributes.append(.mappedAddress(source))
            if let origin { answer.attributes.append(.sourceAddress(origin)) }
            if let other { answer.attributes.append(.changedAddress(other)) }
        } else {
            answer.attributes.append(.xorMappedAddress(source))
            if let origin, layout.supportsChangeRequest { answer.attributes.append(.responseOrigin(origin)) }
            if let other { answer.attributes.append(.otherAddress(other)) }
            if padding > 0 { answer.attributes.append(.padding(min(padding, Self.maximumEchoedPadding))) }
        }
        if let software { answer.attributes.append(.software(software)) }
        out.writeSTUNMessage(answer, options: STUNEncodingOptions(fingerprint: hasFingerprint && !request.isClassic))
        return .reply(from: sendingRole, to: destination)
    }

    private func writeError(_ code: STUNErrorCode, for request: STUNMessage, unknown: [UInt16]?, into out: inout ByteBuffer) {
        var answer = STUNMessage(
            type: STUNMessageType(method: request.type.method, class: .errorResponse),
            transactionID: request.transactionID,
            attributes: [.errorCode(code)])
        if let unknown { answer.attributes.append(.unknownAttributes(unknown)) }
        if let software { answer.attributes.append(.software(software)) }
        out.writeSTUNMessage(answer)
    }
}
