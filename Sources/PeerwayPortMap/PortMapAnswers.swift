import PeerwaySTUN

/// The answers of each protocol (see the flow in PortMapMachine.swift). A datagram that does not
/// decode, or does not answer the request outstanding on its socket, is ignored: the request's
/// retransmissions and timeouts carry on as if it never came.
extension PortMapMachine {
    /// Lowest external port picked when an IGD reports a conflict (below are well-known services).
    static let lowestAlternativePort: UInt16 = 1_024

    mutating func receivedPCP(_ bytes: [UInt8], _ now: UInt64) -> [Action] {
        guard let r = udp[.pcp], let decoded = try? PCPDecoded(bytes: bytes) else { return [] }
        switch decoded {
        case .natPMPOnly:
            udp[.pcp] = nil
            asked.remove(.pcp)
            if r.purpose == .delete { return deletionDone(now) }
            setProbe(.pcp, .absent("the gateway answered as a NAT-PMP server: unsupported version"))
            return []
        case .map(let response):
            guard response.nonce.isEmpty || response.nonce == configuration.nonce else { return [] }
            udp[.pcp] = nil
            if r.purpose == .delete { return deletionDone(now) }
            guard response.result == .success else {
                if r.purpose == .discover {
                    asked.remove(.pcp)
                    setProbe(.pcp, .refused("\(response.result)"))
                    return []
                }
                return mappingFailed(.pcp, "\(response.result)", now)
            }
            guard let ip = response.externalIP, ip != 0, response.externalPort != 0 else {
                setProbe(.pcp, .refused("MAP answer without an IPv4 external address and port"))
                return []
            }
            setProbe(.pcp, .available)
            if report.externalAddress == nil { report.externalAddress = .v4(ip) }
            let m = PortMapping(protocolUsed: .pcp, transport: configuration.transport, external: STUNAddress(ip: .v4(ip), port: response.externalPort),
                                internalPort: configuration.internalPort, lifetimeSeconds: response.lifetimeSeconds)
            return established(m, now)
        }
    }

    mutating func receivedNATPMP(_ bytes: [UInt8], _ now: UInt64) -> [Action] {
        guard let r = udp[.natPMP], let response = try? NATPMPResponse(bytes: bytes) else { return [] }
        switch r.purpose {
        case .discover:
            guard response.opcode == NATPMPRequest.externalAddressOpcode else { return [] }
            udp[.natPMP] = nil
            guard response.result == .success, case .externalAddress(let ip) = response.body else {
                setProbe(.natPMP, .refused("external address request: \(response.result)"))
                return []
            }
            natPMPExternalIP = ip
            setProbe(.natPMP, ip == 0 ? .refused("no external address yet") : .available)
            if report.externalAddress == nil && ip != 0 { report.externalAddress = .v4(ip) }
            return []
        case .map, .renew, .delete:
            guard response.opcode == configuration.transport.natPMPOpcode else { return [] }
            udp[.natPMP] = nil
            if r.purpose == .delete { return deletionDone(now) }
            guard response.result == .success, case .mapping(_, let internalPort, let externalPort, let lifetime) = response.body,
                  internalPort == configuration.internalPort
            else { return mappingFailed(.natPMP, "mapping request: \(response.result)", now) }
            guard let ip = natPMPExternalIP, ip != 0 else { return mappingFailed(.natPMP, "no external address known", now) }
            let m = PortMapping(protocolUsed: .natPMP, transport: configuration.transport, external: STUNAddress(ip: .v4(ip), port: externalPort),
                                internalPort: internalPort, lifetimeSeconds: lifetime)
            return established(m, now)
        }
    }

    mutating func receivedSSDP(_ bytes: [UInt8], _ now: UInt64) -> [Action] {
        guard let r = udp[.ssdp], r.purpose == .discover, let answer = try? SSDP.parseAnswer(bytes) else { return [] }
        udp[.ssdp] = nil
        return startHTTP(.description(answer.location), answer.location.host, HTTPMessage.get(answer.location))
    }

    func addRequest(_ control: UPnPControlPoint, port: UInt16) -> [UInt8] {
        let c = configuration
        return UPnPAction.addPortMapping(externalPort: port, transport: c.transport, internalPort: c.internalPort, internalClient: c.localIP,
                                         description: PortMapLimits.mappingDescription, leaseSeconds: upnpLease).request(control)
    }

    /// The `attempt`-th alternative external port (after a conflict), from the nonce's bytes.
    func alternativePort(_ attempt: Int) -> UInt16 {
        let n = configuration.nonce
        let i = (2 * attempt) % max(1, n.count - 1)
        let raw = n.count >= 2 ? UInt16(n[i]) << 8 | UInt16(n[i + 1]) : UInt16(attempt)
        let span = UInt16.max - Self.lowestAlternativePort
        return Self.lowestAlternativePort + raw % span
    }

    mutating func upnpAnswered(_ step: HTTPStep, _ bytes: [UInt8], _ now: UInt64) -> [Action] {
        switch step {
        case .description(let url):
            do {
                let message = try HTTPMessage.parseResponse(bytes)
                guard message.status == 200 else { throw PortMapDecodeError("'\(message.statusLine)'") }
                control = try UPnPControlPoint.parseDescription(message.body, location: url)
                setProbe(.upnp, .available)
            } catch {
                setProbe(.upnp, .absent("device description at \(url): \(error)"))
            }
            return []
        case .externalIP:
            guard let control else { return mappingFailed(.upnp, "no control URL", now) }
            switch try? UPnPResult.parse(bytes, action: .getExternalIPAddress) {
            case .success(let values):
                guard let text = values["NewExternalIPAddress"], let ip = STUNAddress.parseIP(Substring(text)), let v4 = ip.ipv4, v4 != 0 else {
                    return mappingFailed(.upnp, "GetExternalIPAddress gave no IPv4 address", now)
                }
                upnpExternalIP = v4
                if report.externalAddress == nil { report.externalAddress = ip }
                return startHTTP(.add(port: upnpExternalPort), control.controlURL.host, addRequest(control, port: upnpExternalPort))
            case .fault(let code, let text):
                return mappingFailed(.upnp, "GetExternalIPAddress: \(code) \(text)", now)
            case nil:
                return mappingFailed(.upnp, "GetExternalIPAddress: malformed answer", now)
            }
        case .add(let port):
            guard let control else { return mappingFailed(.upnp, "no control URL", now) }
            let action = UPnPAction.addPortMapping(externalPort: port, transport: configuration.transport, internalPort: configuration.internalPort,
                                                   internalClient: configuration.localIP, description: PortMapLimits.mappingDescription,
                                                   leaseSeconds: upnpLease)
            switch try? UPnPResult.parse(bytes, action: action) {
            case .success:
                guard let ip = upnpExternalIP else { return mappingFailed(.upnp, "no external address known", now) }
                let m = PortMapping(protocolUsed: .upnp, transport: configuration.transport, external: STUNAddress(ip: .v4(ip), port: port),
                                    internalPort: configuration.internalPort, lifetimeSeconds: upnpLease)
                return established(m, now)
            case .fault(let code, let text):
                upnpPortAttempt += 1
                let again = upnpPortAttempt < Self.maximumUPnPPortAttempts && !renewing
                if again && code == UPnPErrorCode.onlyPermanentLeasesSupported && upnpLease != 0 {
                    upnpLease = 0
                } else if again && code == UPnPErrorCode.samePortValuesRequired && port != configuration.internalPort {
                    upnpExternalPort = configuration.internalPort
                } else if again && code == UPnPErrorCode.conflictInMappingEntry {
                    upnpExternalPort = alternativePort(upnpPortAttempt)
                } else {
                    return mappingFailed(.upnp, "AddPortMapping: \(code) \(text)", now)
                }
                return startHTTP(.add(port: upnpExternalPort), control.controlURL.host, addRequest(control, port: upnpExternalPort))
            case nil:
                return mappingFailed(.upnp, "AddPortMapping: malformed answer", now)
            }
        case .delete:
            return deletionDone(now)
        }
    }

    mutating func upnpFailed(_ step: HTTPStep, _ reason: String, _ now: UInt64) -> [Action] {
        switch step {
        case .description(let url):
            setProbe(.upnp, .absent("device description at \(url): \(reason)"))
            return []
        case .externalIP, .add:
            return mappingFailed(.upnp, reason, now)
        case .delete:
            return deletionDone(now)
        }
    }

    // MARK: helpers

    mutating func setProbe(_ p: PortMapProtocol, _ value: PortMapProbe) {
        switch p {
        case .pcp: report.pcp = value
        case .natPMP: report.natPMP = value
        case .upnp: report.upnp = value
        }
    }

    func protocolOf(_ socket: PortMapSocket) -> PortMapProtocol? {
        switch socket {
        case .pcp: .pcp
        case .natPMP: .natPMP
        case .ssdp: .upnp
        }
    }

    func discoverySocket(_ p: PortMapProtocol) -> PortMapSocket? {
        switch p {
        case .pcp: .pcp
        case .natPMP: .natPMP
        case .upnp: .ssdp
        }
    }

    func pcpRequest(lifetime: UInt32, suggestedPort: UInt16) -> [UInt8] {
        let c = configuration
        return PCPMapRequest(nonce: c.nonce, transport: c.transport, internalPort: c.internalPort, suggestedExternalPort: suggestedPort,
                             lifetimeSeconds: lifetime, clientIP: c.localIP).bytes
    }

    mutating func startHTTP(_ step: HTTPStep, _ to: STUNAddress, _ request: [UInt8]) -> [Action] {
        let id = nextHTTP
        nextHTTP += 1
        http[id] = step
        return [.http(id: id, to: to, request: request)]
    }
}
