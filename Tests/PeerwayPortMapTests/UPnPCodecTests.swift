import PeerwaySTUN
import Testing

@testable import PeerwayPortMap

/// SSDP, device descriptions and SOAP as miniupnpd 2.3 sends them (captured in the NAT lab).
@Suite struct UPnPCodecTests {
    static let gateway = STUNAddress(ip: .v4(0x0A00_0101), port: 1900)

    static let ssdpAnswer = "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
        + "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
        + "USN: uuid:fc4ec57e-b051-11db-88f8-0060085db3f6::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
        + "EXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://10.0.1.1:5000/rootDesc.xml\r\n"
        + "OPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\nBOOTID.UPNP.ORG: 1\r\nCONFIGID.UPNP.ORG: 1337\r\n\r\n"

    static let description = """
        <?xml version="1.0"?>
        <root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>1</minor></specVersion>
        <device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType>
        <serviceList><service><serviceType>urn:schemas-microsoft-com:service:OSInfo:1</serviceType>
        <serviceId>urn:microsoft-com:serviceId:OSInfo1</serviceId><SCPDURL>/OSInfo.xml</SCPDURL>
        <controlURL>/ctl/OSInfo</controlURL><eventSubURL>/evt/OSInfo</eventSubURL></service></serviceList>
        <deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType>
        <deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType>
        <serviceList><service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType>
        <controlURL>/ctl/PPPConn</controlURL></service>
        <service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType>
        <serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><SCPDURL>/WANIPCn.xml</SCPDURL>
        <controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL></service></serviceList>
        </device></deviceList></device></deviceList></device></root>
        """

    @Test func searchRequestIsUnicastToTheGateway() {
        let text = String(decoding: SSDP.searchRequest(gateway: Self.gateway), as: UTF8.self)
        #expect(text == "M-SEARCH * HTTP/1.1\r\nHOST: 10.0.1.1:1900\r\nMAN: \"ssdp:discover\"\r\n"
            + "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n")
    }

    @Test func ssdpAnswerGivesTheLocation() throws {
        let answer = try SSDP.parseAnswer(Array(Self.ssdpAnswer.utf8))
        #expect(answer.location == UPnPURL(host: STUNAddress(ip: .v4(0x0A00_0101), port: 5000), path: "/rootDesc.xml"))
        #expect(answer.searchTarget == SSDP.searchTarget)
        #expect(answer.usn.hasPrefix("uuid:fc4ec57e"))
    }

    @Test func ssdpAnswersThatAreNotUsable() {
        #expect(throws: PortMapDecodeError.self) { try SSDP.parseAnswer(Array("HTTP/1.1 404 Not Found\r\n\r\n".utf8)) }
        #expect(throws: PortMapDecodeError.self) { try SSDP.parseAnswer(Array("HTTP/1.1 200 OK\r\nST: x\r\n\r\n".utf8)) }
        #expect(throws: PortMapDecodeError.self) { try SSDP.parseAnswer(Array("NOTIFY * HTTP/1.1\r\n\r\n".utf8)) }
        #expect(throws: PortMapDecodeError.self) { try SSDP.parseAnswer([]) }
        #expect(throws: PortMapDecodeError.self) {
            try SSDP.parseAnswer(Array("HTTP/1.1 200 OK\r\nLOCATION: http://router.lan/desc.xml\r\n\r\n".utf8))
        }
        #expect(throws: PortMapDecodeError.self) { try SSDP.parseAnswer([UInt8](repeating: 65, count: 2000)) }
    }

    @Test func urls() throws {
        let base = try UPnPURL(parsing: "http://10.0.1.1:5000/dev/rootDesc.xml")
        #expect(try base.resolving("/ctl/IPConn").description == "http://10.0.1.1:5000/ctl/IPConn")
        #expect(try base.resolving("ctl/IPConn").description == "http://10.0.1.1:5000/dev/ctl/IPConn")
        #expect(try base.resolving("http://10.0.1.2/x").description == "http://10.0.1.2:80/x")
        #expect(try UPnPURL(parsing: "http://10.0.1.1").path == "/")
        #expect(throws: PortMapDecodeError.self) { try UPnPURL(parsing: "https://10.0.1.1/") }
        #expect(throws: PortMapDecodeError.self) { try UPnPURL(parsing: "http://10.0.1.1:0/") }
        #expect(throws: PortMapDecodeError.self) { try UPnPURL(parsing: "http://10.0.1.1:99999/") }
    }

    @Test func descriptionPrefersWANIPConnection() throws {
        let location = try UPnPURL(parsing: "http://10.0.1.1:5000/rootDesc.xml")
        let control = try UPnPControlPoint.parseDescription(Self.description, location: location)
        #expect(control.serviceType == "urn:schemas-upnp-org:service:WANIPConnection:2")
        #expect(control.controlURL.description == "http://10.0.1.1:5000/ctl/IPConn")
    }

    @Test func descriptionWithURLBaseAndOnlyPPP() throws {
        let xml = "<root><URLBase>http://10.0.1.1:49152/</URLBase><device><serviceList><service>"
            + "<serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType>"
            + "<controlURL>upnp/control/WANPPPConn1</controlURL></service></serviceList></device></root>"
        let control = try UPnPControlPoint.parseDescription(xml, location: try UPnPURL(parsing: "http://10.0.1.1:80/desc.xml"))
        #expect(control.controlURL.description == "http://10.0.1.1:49152/upnp/control/WANPPPConn1")
    }

    @Test func descriptionWithoutWANServiceIsRefused() throws {
        let location = try UPnPURL(parsing: "http://10.0.1.1:5000/rootDesc.xml")
        #expect(throws: PortMapDecodeError.self) { try UPnPControlPoint.parseDescription("<root><device/></root>", location: location) }
        #expect(throws: PortMapDecodeError.self) { try UPnPControlPoint.parseDescription("<root><service><serviceType>", location: location) }
        #expect(throws: PortMapDecodeError.self) { try UPnPControlPoint.parseDescription("", location: location) }
    }

    static let control = UPnPControlPoint(serviceType: "urn:schemas-upnp-org:service:WANIPConnection:1",
                                          controlURL: UPnPURL(host: STUNAddress(ip: .v4(0x0A00_0101), port: 5000), path: "/ctl/IPConn"))

    @Test func addPortMappingRequest() {
        let action = UPnPAction.addPortMapping(externalPort: 4000, transport: .udp, internalPort: 4000, internalClient: 0x0A00_010B,
                                               description: "peerway", leaseSeconds: 7200)
        let text = String(decoding: action.request(Self.control), as: UTF8.self)
        #expect(text.hasPrefix("POST /ctl/IPConn HTTP/1.1\r\nHost: 10.0.1.1:5000\r\n"))
        #expect(text.contains("SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping\"\r\n"))
        #expect(text.contains("<u:AddPortMapping xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\"><NewRemoteHost></NewRemoteHost>"
            + "<NewExternalPort>4000</NewExternalPort><NewProtocol>UDP</NewProtocol><NewInternalPort>4000</NewInternalPort>"
            + "<NewInternalClient>10.0.1.11</NewInternalClient><NewEnabled>1</NewEnabled>"
            + "<NewPortMappingDescription>peerway</NewPortMappingDescription><NewLeaseDuration>7200</NewLeaseDuration></u:AddPortMapping>"))
        let parts = text.components(separatedBy: "\r\n\r\n")
        let length = parts[0].components(separatedBy: "Content-Length: ")[1].prefix { $0.isNumber }
        #expect(Int(length) == parts.dropFirst().joined(separator: "\r\n\r\n").utf8.count)
    }

    @Test func externalIPAnswer() throws {
        let body = "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" "
            + "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:GetExternalIPAddressResponse "
            + "xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\"><NewExternalIPAddress>203.0.113.11</NewExternalIPAddress>"
            + "</u:GetExternalIPAddressResponse></s:Body></s:Envelope>\r\n"
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nConnection: close\r\n"
            + "Content-Length: \(body.utf8.count)\r\nServer: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nExt:\r\n\r\n" + body
        #expect(try UPnPResult.parse(Array(answer.utf8), action: .getExternalIPAddress) == .success(["NewExternalIPAddress": "203.0.113.11"]))
    }

    @Test func faultAnswer() throws {
        let body = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><s:Fault><faultcode>s:Client</faultcode>"
            + "<faultstring>UPnPError</faultstring><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\">"
            + "<errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail>"
            + "</s:Fault></s:Body></s:Envelope>"
        let answer = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        let action = UPnPAction.deletePortMapping(externalPort: 1, transport: .udp)
        #expect(try UPnPResult.parse(Array(answer.utf8), action: action) == .fault(code: 718, description: "ConflictInMappingEntry"))
    }

    @Test func chunkedAnswer() throws {
        let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "10\r\n<u:DeletePortMap\r\n" + "a\r\npingRespon\r\n" + "4\r\nse/>\r\n" + "0\r\n\r\n"
        let action = UPnPAction.deletePortMapping(externalPort: 1, transport: .udp)
        #expect(try UPnPResult.parse(Array(answer.utf8), action: action) == .success([:]))
        #expect(throws: PortMapDecodeError.self) {
            try UPnPResult.parse(Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".utf8), action: action)
        }
    }

    @Test func malformedHTTP() {
        let action = UPnPAction.getExternalIPAddress
        for text in ["", "garbage", "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "HTTP/1.1 500 Oops\r\n\r\nno fault",
                     "HTTP/1.1 200 OK\r\n\r\n<html/>"] {
            #expect(throws: PortMapDecodeError.self) { try UPnPResult.parse(Array(text.utf8), action: action) }
        }
        #expect(throws: PortMapDecodeError.self) {
            try UPnPResult.parse([UInt8](repeating: 32, count: PortMapLimits.maximumHTTPResponseBytes + 1), action: action)
        }
    }
}
