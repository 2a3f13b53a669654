import Foundation
import PeerwaySTUN

/*
 UPnP-IGD discovery, the text formats (UPnP Device Architecture 1.1, "UDA"):

   §1.3.2 M-SEARCH, here unicast to the gateway (§1.3.3; see PortMapTypes.swift for why):
       M-SEARCH * HTTP/1.1            HOST: <gateway>:1900        MAN: "ssdp:discover"
       ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1    (MX only in multicast)
   §1.3.3 the answer: "HTTP/1.1 200 OK" with ST, USN and LOCATION, the device description's URL.
   §2.3   the device description: XML whose <service> elements (nested in <device>/<deviceList>)
          name a <serviceType> and its <controlURL>; the control URL may be absolute, absolute-path
          or relative to <URLBase> (UPnP 1.0) or to the description's own URL.

 WANIPConnection (v2, then v1) is preferred to WANPPPConnection: on a router with both, the IP
 one is the NAT actually in use far more often. The XML is scanned, not parsed into a tree: only
 two elements matter, and a gateway's description is a few KiB from the LAN's own router.
*/

/// A plain `http://IP[:port]/path` URL, all an IGD uses (UDA §2.1: descriptions over HTTP).
public struct UPnPURL: Hashable, Sendable, CustomStringConvertible {
    public var host: STUNAddress
    /// The path and query, starting with "/".
    public var path: String

    public init(host: STUNAddress, path: String) {
        self.host = host
        self.path = path
    }

    /// The default HTTP port.
    public static let defaultPort: UInt16 = 80

    /// Parses an absolute `http://` URL whose host is an IPv4 literal (an IGD's LOCATION is).
    public init(parsing text: String) throws(PortMapDecodeError) {
        let trimmed = text.trimmingSpace
        guard trimmed.lowercased().hasPrefix("http://") else { throw PortMapDecodeError("URL '\(trimmed)' is not http://") }
        let rest = trimmed.dropFirst("http://".count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        let path = slash == rest.endIndex ? "/" : String(rest[slash...])
        let parts = authority.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard let ip = STUNAddress.parseIP(parts[0]), case .v4 = ip else {
            throw PortMapDecodeError("URL host '\(authority)' is not an IPv4 address")
        }
        var port = Self.defaultPort
        if parts.count == 2 {
            guard let p = UInt16(parts[1]), p != 0 else { throw PortMapDecodeError("URL port '\(parts[1])' is not a port") }
            port = p
        }
        self.init(host: STUNAddress(ip: ip, port: port), path: path)
    }

    /// `reference` (absolute URL, absolute path or relative path) resolved against this URL.
    public func resolving(_ reference: String) throws(PortMapDecodeError) -> UPnPURL {
        let r = reference.trimmingSpace
        if r.lowercased().hasPrefix("http://") { return try UPnPURL(parsing: r) }
        if r.hasPrefix("/") { return UPnPURL(host: host, path: r) }
        let directory = path.lastIndex(of: "/").map { String(path[...$0]) } ?? "/"
        return UPnPURL(host: host, path: directory + r)
    }

    public var description: String { "http://\(host)\(path)" }
}

/// The SSDP side of discovery (UDA §1.3).
public enum SSDP {
    /// The search target: any Internet Gateway Device (version 2 devices answer version 1 searches).
    public static let searchTarget = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"

    /// A unicast M-SEARCH to `gateway` (UDA §1.3.3).
    public static func searchRequest(gateway: STUNAddress) -> [UInt8] {
        let text = "M-SEARCH * HTTP/1.1\r\n"
            + "HOST: \(gateway.ipString):\(PortMapLimits.ssdpPort)\r\n"
            + "MAN: \"ssdp:discover\"\r\n"
            + "ST: \(searchTarget)\r\n"
            + "\r\n"
        return Array(text.utf8)
    }

    /// An M-SEARCH answer (UDA §1.3.3).
    public struct Answer: Hashable, Sendable {
        /// The device description's URL.
        public var location: UPnPURL
        /// The search target it answered for.
        public var searchTarget: String
        /// The unique service name.
        public var usn: String

        public init(location: UPnPURL, searchTarget: String, usn: String) {
            self.location = location
            self.searchTarget = searchTarget
            self.usn = usn
        }
    }

    /// Parses an answer to an M-SEARCH: a "200 OK" with a LOCATION header.
    public static func parseAnswer(_ bytes: some Collection<UInt8>) throws(PortMapDecodeError) -> Answer {
        guard bytes.count <= PortMapLimits.maximumDatagramBytes else {
            throw PortMapDecodeError("SSDP answer of \(bytes.count) bytes, more than \(PortMapLimits.maximumDatagramBytes)")
        }
        let head = try HTTPMessage.parseHead(String(decoding: bytes, as: UTF8.self))
        guard head.status == 200 else { throw PortMapDecodeError("SSDP answer '\(head.statusLine)' is not 200 OK") }
        guard let location = head.header("location") else { throw PortMapDecodeError("SSDP answer without LOCATION") }
        return Answer(location: try UPnPURL(parsing: location), searchTarget: head.header("st") ?? "", usn: head.header("usn") ?? "")
    }
}

/// The WAN connection service of an IGD: where to send SOAP requests and in which namespace.
public struct UPnPControlPoint: Hashable, Sendable {
    /// The service type, e.g. `urn:schemas-upnp-org:service:WANIPConnection:1` (the SOAP namespace).
    public var serviceType: String
    /// Where SOAP requests go.
    public var controlURL: UPnPURL

    public init(serviceType: String, controlURL: UPnPURL) {
        self.serviceType = serviceType
        self.controlURL = controlURL
    }

    /// Usable WAN connection service types, preferred first.
    public static let serviceTypes = [
        "urn:schemas-upnp-org:service:WANIPConnection:2",
        "urn:schemas-upnp-org:service:WANIPConnection:1",
        "urn:schemas-upnp-org:service:WANPPPConnection:1",
    ]

    /// Finds the WAN connection service in a device description fetched from `location` (UDA §2.3).
    public static func parseDescription(_ xml: String, location: UPnPURL) throws(PortMapDecodeError) -> UPnPControlPoint {
        let base: UPnPURL
        if let urlBase = XMLScan.firstElement("URLBase", in: xml), !urlBase.trimmingSpace.isEmpty {
            base = try UPnPURL(parsing: urlBase)
        } else {
            base = location
        }
        var found: [(rank: Int, type: String, control: String)] = []
        for service in XMLScan.elements("service", in: xml) {
            guard let type = XMLScan.firstElement("serviceType", in: service)?.trimmingSpace,
                  let rank = serviceTypes.firstIndex(of: type),
                  let control = XMLScan.firstElement("controlURL", in: service), !control.trimmingSpace.isEmpty
            else { continue }
            found.append((rank, type, control))
        }
        guard let best = found.min(by: { $0.rank < $1.rank }) else {
            throw PortMapDecodeError("the device description at \(location) has no WANIPConnection or WANPPPConnection service")
        }
        return UPnPControlPoint(serviceType: best.type, controlURL: try base.resolving(best.control))
    }
}

/// Just enough XML for UPnP's flat answers: element text by (namespace-free) name.
enum XMLScan {
    /// Largest number of elements of one name collected (a description lists a handful of services).
    static let maximumElements = 64

    /// The inner text of every `<name ...>...</name>` (or `<prefix:name>`), in order.
    static func elements(_ name: String, in xml: String) -> [String] {
        var out: [String] = []
        var rest = xml[...]
        while out.count < maximumElements, let (inner, after) = nextElement(name, in: rest) {
            out.append(inner)
            rest = after
        }
        return out
    }

    /// The inner text of the first `name` element, entities decoded, or nil.
    static func firstElement(_ name: String, in xml: String) -> String? {
        nextElement(name, in: xml[...]).map { decodeEntities($0.0) }
    }

    private static func nextElement(_ name: String, in text: Substring) -> (String, Substring)? {
        var search = text
        while let open = search.firstIndex(of: "<") {
            let afterOpen = search.index(after: open)
            guard let close = search[afterOpen...].firstIndex(of: ">") else { return nil }
            let tag = search[afterOpen..<close]
            let tagName = tag.prefix { $0 != " " && $0 != "/" && $0 != "\t" && $0 != "\r" && $0 != "\n" }
            let local = tagName.split(separator: ":").last.map(String.init) ?? ""
            if local == name && !tag.hasPrefix("/") {
                let contentStart = search.index(after: close)
                if tag.hasSuffix("/") { return ("", search[contentStart...]) }
                let closing = "</\(tagName)>"
                guard let end = search[contentStart...].range(of: closing) else { return nil }
                return (String(search[contentStart..<end.lowerBound]), search[end.upperBound...])
            }
            search = search[search.index(after: close)...]
        }
        return nil
    }

    /// Decodes the five predefined entities.
    static func decodeEntities(_ s: String) -> String {
        guard s.contains("&") else { return s }
        return s.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }

    /// Escapes text for an element's content.
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and line ends.
    var trimmingSpace: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
