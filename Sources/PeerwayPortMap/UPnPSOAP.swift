import Foundation
import PeerwaySTUN

/*
 UPnP-IGD control (UDA 1.1 §3.2, WANIPConnection:1 §2.4): SOAP 1.1 over HTTP/1.1, one request
 per connection ("Connection: close"; the answer ends when the IGD closes, or at Content-Length).

   POST <control path> HTTP/1.1
   HOST: <ip>:<port>        CONTENT-TYPE: text/xml; charset="utf-8"
   SOAPACTION: "<service type>#<action>"
   <s:Envelope ...><s:Body><u:<action> xmlns:u="<service type>"> arguments </u:<action>></s:Body></s:Envelope>

 Actions used: GetExternalIPAddress (→ NewExternalIPAddress), AddPortMapping (NewRemoteHost
 empty = any, NewExternalPort, NewProtocol, NewInternalPort, NewInternalClient, NewEnabled,
 NewPortMappingDescription, NewLeaseDuration), DeletePortMapping. A refusal is HTTP 500 with a
 SOAP fault whose <UPnPError> holds <errorCode> and <errorDescription> (UDA §3.2.2); the codes
 the machine acts on are in `UPnPErrorCode`.
*/

/// The start line and headers of an HTTP/1.1 message (RFC 9112 §2-§5), as an IGD sends it.
public struct HTTPMessage: Hashable, Sendable {
    public var statusLine: String
    /// The status code (0 for a request line).
    public var status: Int
    /// Header names lowercased, in order.
    public var headers: [(name: String, value: String)] { zip(names, values).map { ($0, $1) } }
    var names: [String]
    var values: [String]
    /// What follows the blank line (dechunked when chunked, cut at Content-Length when given).
    public var body: String

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        names.firstIndex(of: name.lowercased()).map { values[$0] }
    }

    /// Most header lines read from one message.
    static let maximumHeaderLines = 64

    /// Parses a status line and headers; the body is whatever follows the blank line.
    public static func parseHead(_ text: String) throws(PortMapDecodeError) -> HTTPMessage {
        let split = text.range(of: "\r\n\r\n") ?? text.range(of: "\n\n")
        let head = split.map { String(text[..<$0.lowerBound]) } ?? text
        let body = split.map { String(text[$0.upperBound...]) } ?? ""
        var lines = head.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
        guard !lines.isEmpty else { throw PortMapDecodeError("empty HTTP message") }
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw PortMapDecodeError("'\(statusLine.prefix(80))' is not an HTTP/1.x status line")
        }
        var names: [String] = [], values: [String] = []
        for line in lines.prefix(maximumHeaderLines) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            names.append(line[..<colon].trimmingSpace.lowercased())
            values.append(line[line.index(after: colon)...].trimmingSpace)
        }
        return HTTPMessage(statusLine: statusLine, status: status, names: names, values: values, body: body)
    }

    /// Parses a whole HTTP response: head, then the body dechunked or cut at Content-Length.
    public static func parseResponse(_ bytes: some Collection<UInt8>) throws(PortMapDecodeError) -> HTTPMessage {
        guard bytes.count <= PortMapLimits.maximumHTTPResponseBytes else {
            throw PortMapDecodeError("HTTP answer of \(bytes.count) bytes, more than \(PortMapLimits.maximumHTTPResponseBytes)")
        }
        var message = try parseHead(String(decoding: bytes, as: UTF8.self))
        if message.header("transfer-encoding")?.lowercased().contains("chunked") == true {
            message.body = try dechunk(message.body)
        } else if let length = message.header("content-length").flatMap({ Int($0) }), length >= 0 {
            let utf8 = Array(message.body.utf8)
            guard utf8.count >= length else {
                throw PortMapDecodeError("HTTP body of \(utf8.count) bytes, shorter than its Content-Length \(length)")
            }
            message.body = String(decoding: utf8.prefix(length), as: UTF8.self)
        }
        return message
    }

    /// Joins a chunked body (RFC 9112 §7.1).
    static func dechunk(_ body: String) throws(PortMapDecodeError) -> String {
        var bytes = Array(body.utf8)[...]
        var out: [UInt8] = []
        while true {
            guard let lineEnd = bytes.firstIndex(of: UInt8(ascii: "\n")) else { throw PortMapDecodeError("chunked body cut short") }
            let sizeText = String(decoding: bytes[bytes.startIndex..<lineEnd], as: UTF8.self)
                .split(separator: ";").first.map { $0.trimmingSpace } ?? ""
            guard let size = Int(sizeText, radix: 16), size >= 0 else { throw PortMapDecodeError("bad chunk size '\(sizeText)'") }
            bytes = bytes[(lineEnd + 1)...]
            if size == 0 { return String(decoding: out, as: UTF8.self) }
            guard bytes.count >= size else { throw PortMapDecodeError("chunk of \(size) bytes cut short") }
            out += bytes.prefix(size)
            bytes = bytes.dropFirst(size)
            while let first = bytes.first, first == UInt8(ascii: "\r") || first == UInt8(ascii: "\n") { bytes = bytes.dropFirst() }
        }
    }

    /// An HTTP GET (for the device description).
    public static func get(_ url: UPnPURL) -> [UInt8] {
        Array(("GET \(url.path) HTTP/1.1\r\nHost: \(url.host)\r\nConnection: close\r\n"
            + "User-Agent: peerway UPnP/1.1\r\nAccept: text/xml\r\n\r\n").utf8)
    }
}

/// UPnP error codes of WANIPConnection (UDA §3.2.2 and WANIPConnection:1 §2.4.16).
public enum UPnPErrorCode {
    /// The external port is taken by another client's mapping: pick another.
    public static let conflictInMappingEntry = 718
    /// The IGD wants internal and external ports equal.
    public static let samePortValuesRequired = 724
    /// The IGD only supports permanent mappings (lease 0): ask again with 0 (and delete when done).
    public static let onlyPermanentLeasesSupported = 725
    /// The IGD wants the remote host wildcarded (we always do).
    public static let remoteHostOnlySupportsWildcard = 726
    /// No such mapping (a deletion of something already gone: fine).
    public static let noSuchEntryInArray = 714
}

/// A SOAP action on the IGD's WAN connection service.
public enum UPnPAction: Hashable, Sendable {
    case getExternalIPAddress
    case addPortMapping(externalPort: UInt16, transport: PortMapTransport, internalPort: UInt16, internalClient: UInt32,
                        description: String, leaseSeconds: UInt32)
    case deletePortMapping(externalPort: UInt16, transport: PortMapTransport)

    /// The action's name.
    public var name: String {
        switch self {
        case .getExternalIPAddress: "GetExternalIPAddress"
        case .addPortMapping: "AddPortMapping"
        case .deletePortMapping: "DeletePortMapping"
        }
    }

    /// The arguments, in the order the service's SCPD declares them.
    var arguments: [(String, String)] {
        switch self {
        case .getExternalIPAddress:
            return []
        case .addPortMapping(let port, let transport, let internalPort, let client, let description, let lease):
            return [("NewRemoteHost", ""), ("NewExternalPort", String(port)), ("NewProtocol", transport.upnpName),
                    ("NewInternalPort", String(internalPort)), ("NewInternalClient", STUNAddress.IP.v4(client).text),
                    ("NewEnabled", "1"), ("NewPortMappingDescription", description), ("NewLeaseDuration", String(lease))]
        case .deletePortMapping(let port, let transport):
            return [("NewRemoteHost", ""), ("NewExternalPort", String(port)), ("NewProtocol", transport.upnpName)]
        }
    }

    /// The whole HTTP request for `control`.
    public func request(_ control: UPnPControlPoint) -> [UInt8] {
        let args = arguments.map { "<\($0.0)>\(XMLScan.escape($0.1))</\($0.0)>" }.joined()
        let body = "<?xml version=\"1.0\"?>\r\n"
            + "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" "
            + "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>"
            + "<u:\(name) xmlns:u=\"\(control.serviceType)\">\(args)</u:\(name)>"
            + "</s:Body></s:Envelope>\r\n"
        let head = "POST \(control.controlURL.path) HTTP/1.1\r\n"
            + "Host: \(control.controlURL.host)\r\n"
            + "Content-Type: text/xml; charset=\"utf-8\"\r\n"
            + "SOAPAction: \"\(control.serviceType)#\(name)\"\r\n"
            + "Content-Length: \(body.utf8.count)\r\n"
            + "Connection: close\r\n\r\n"
        return Array((head + body).utf8)
    }
}

/// The outcome of a SOAP call.
public enum UPnPResult: Hashable, Sendable {
    /// 200 OK: the response's arguments by name.
    case success([String: String])
    /// A SOAP fault (UDA §3.2.2): the UPnP error code (0 when absent) and its description.
    case fault(code: Int, description: String)

    /// Reads an IGD's answer to `action`.
    public static func parse(_ bytes: some Collection<UInt8>, action: UPnPAction) throws(PortMapDecodeError) -> UPnPResult {
        let message = try HTTPMessage.parseResponse(bytes)
        if message.status == 200 {
            var values: [String: String] = [:]
            for name in ["NewExternalIPAddress"] {
                if let v = XMLScan.firstElement(name, in: message.body) { values[name] = v.trimmingSpace }
            }
            guard XMLScan.firstElement("\(action.name)Response", in: message.body) != nil else {
                throw PortMapDecodeError("SOAP answer to \(action.name) has no \(action.name)Response")
            }
            return .success(values)
        }
        guard XMLScan.firstElement("Fault", in: message.body) != nil else {
            throw PortMapDecodeError("\(action.name) answered '\(message.statusLine)' without a SOAP fault")
        }
        let code = XMLScan.firstElement("errorCode", in: message.body).flatMap { Int($0.trimmingSpace) } ?? 0
        let text = XMLScan.firstElement("errorDescription", in: message.body)?.trimmingSpace ?? message.statusLine
        return .fault(code: code, description: text)
    }
}
