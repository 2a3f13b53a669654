import NIOCore
import PeerwaySTUN

/// Turns the settled transactions into a `NetcheckReport`: the RFC 5780 §4.3/§4.4 decisions,
/// the cross-server comparison, hairpinning, port allocation, and plain-English notes.
extension NetcheckRun {
    /// `nil` only without an answering primary server (the run never finishes in that state).
    func makeReport(now: NIODeadline) -> NetcheckReport? {
        var notes = self.notes
        guard let primary, let answer = primaryAnswer else { return nil }
        let server = servers[primary]
        let m1 = answer.mapped
        let mainLocal = sockets[.main]?.localAddress
        let localIP = configuration.localIPs.contains(m1.ip) ? m1.ip : configuration.localIPs.first
        let localAddress = mainLocal.map { bound in localIP.map { STUNAddress(ip: $0, port: bound.port) } ?? bound }

        if noNAT {
            notes.append("No NAT between this host and \(server): it sees this host's own address \(m1).")
        } else if let localAddress {
            notes.append("Behind a NAT: \(server) sees local \(localAddress) as \(m1).")
        }
        if configuration.localIPs.isEmpty {
            notes.append("This host's own IP addresses were not given, so \"no NAT\" could not be recognised.")
        }
        if let origin = answer.responseOrigin, origin != answer.source {
            notes.append("\(server) says it answered from \(origin) but the answer came from \(answer.source): the server may itself be behind a NAT.")
        }
        let other = rfc5780OtherAddress
        if let other {
            notes.append("\(server) supports RFC 5780 behaviour discovery: its other address is \(other).")
        } else if let given = answer.otherAddress {
            notes.append("\(server) gave OTHER-ADDRESS \(given), which is not another IP and port of the same family: mapping and filtering tests skipped.")
        } else {
            notes.append("\(server) does not support RFC 5780 (no OTHER-ADDRESS): mapping and filtering behaviour cannot be measured with it; only the mapped address is known.")
        }

        var mapping = mappingBehavior(m1: m1, notes: &notes)
        compareServers(primary: primary, m1: m1, mapping: &mapping, notes: &notes)
        let filtering = filteringBehavior(notes: &notes)

        var hairpinning: Bool?
        if noNAT {
            notes.append("Hairpinning: not applicable, there is no NAT.")
        } else if configuration.checksHairpinning {
            switch outcome(.hairpin) {
            case .hairpinned?: hairpinning = true
            case .timedOut?:
                hairpinning = false
                notes.append("A packet to our own mapped address \(m1) never came back: the NAT does not hairpin, so peers behind it must use their local addresses to reach each other.")
            default: hairpinning = nil
            }
        }

        let allocation = NetcheckPortAllocation(classifying: portSamples())
        let pairAddresses = serverAddresses
        let rtt = transactions
            .filter { pairAddresses.contains($0.destination) || pairAddresses.contains($0.expectedSource) }
            .compactMap { $0.outcome.answer?.rtt }
            .min()

        if timeLimitReached {
            notes.append("The \(NetcheckFormatting.duration(configuration.overallTimeout)) time limit ran out before every test finished: unfinished tests are reported as unknown.")
        }
        if ignored.suspicious > 0 {
            notes.append(
                "Ignored \(ignored.suspicious) datagram\(ignored.suspicious == 1 ? "" : "s"): \(ignored.malformed) malformed, "
                    + "\(ignored.unknownTransaction) with an unknown transaction id, \(ignored.unexpectedSource) from an unexpected source.")
        }

        return NetcheckReport(
            server: server, servers: serverResults(), localAddress: localAddress, mappedAddress: m1, noNAT: noNAT,
            mappingBehavior: mapping, filteringBehavior: filtering, hairpinning: hairpinning,
            portPreserved: mainLocal?.port == m1.port, portAllocation: allocation, rtt: rtt,
            otherAddress: answer.otherAddress, supportsRFC5780: other != nil, responseOrigin: answer.responseOrigin,
            ignoredDatagrams: ignored, duration: now - startedAt, notes: notes)
    }

    // MARK: mapping (RFC 5780 §4.3)

    private func mappingBehavior(m1: STUNAddress, notes: inout [String]) -> NetcheckMappingBehavior {
        guard let other = rfc5780OtherAddress, let primary else { return .unknown }
        let testII = other.with(port: servers[primary].port)
        switch outcome(.mappingTestII) {
        case .answered(let a2)?:
            if a2.mapped == m1 { return .endpointIndependent }
            switch outcome(.mappingTestIII) {
            case .answered(let a3)?:
                return a3.mapped == a2.mapped ? .addressDependent : .addressAndPortDependent
            case let result:
                notes.append("The mapping changed toward \(testII) (\(a2.mapped) instead of \(m1)) but \(other) \(describeFailure(result)): mapping behaviour unknown.")
                return .unknown
            }
        case let result:
            notes.append("The server's other address \(testII) \(describeFailure(result)) (mapping test II): mapping behaviour unknown. Is the alternate address reachable?")
            return .unknown
        }
    }

    /// Mapped addresses from other servers: a different one means the mapping is not
    /// endpoint-independent; the same one from a server at another IP shows it is.
    private func compareServers(primary: Int, m1: STUNAddress, mapping: inout NetcheckMappingBehavior, notes: inout [String]) {
        let server = servers[primary]
        let others = servers.indices.filter { $0 != primary }.compactMap { index -> (STUNAddress, STUNAddress)? in
            outcome(.binding(server: index))?.answer.map { (servers[index], $0.mapped) }
        }
        let differing = others.filter { $0.1 != m1 }
        for (otherServer, mapped) in differing {
            notes.append("\(otherServer) sees this host as \(mapped) while \(server) sees \(m1): the mapping depends on the destination.")
        }
        if !differing.isEmpty {
            guard mapping == .endpointIndependent || mapping == .unknown else { return }
            if mapping == .endpointIndependent {
                notes.append("That contradicts mapping test II; reporting the stricter address and port-dependent mapping.")
            } else if differing.allSatisfy({ $0.0.ip != server.ip }) {
                notes.append("The servers differ in IP address, so the mapping may also be only address-dependent; reporting the stricter address and port-dependent mapping.")
            }
            mapping = .addressAndPortDependent
        } else if mapping == .unknown, let witness = others.first(where: { $0.0.ip != server.ip }) {
            notes.append("\(witness.0), at another IP address, sees the same mapped address: the mapping is endpoint-independent.")
            mapping = .endpointIndependent
        }
    }

    // MARK: filtering (RFC 5780 §4.4)

    private func filteringBehavior(notes: inout [String]) -> NetcheckFilteringBehavior {
        guard let other = rfc5780OtherAddress, let primary else { return .unknown }
        guard sockets[.filtering]?.localAddress != nil else { return .unknown }
        let a = servers[primary]
        let testII = outcome(.filteringTestII)
        let testIII = outcome(.filteringTestIII)
        if testII?.answer != nil { return .endpointIndependent }
        for result in [testII, testIII] {
            switch result {
            case .wrongOrigin(let source)?:
                notes.append("\(a) answered a CHANGE-REQUEST from \(source), not from the address asked for: it does not honour CHANGE-REQUEST, so filtering behaviour is unknown.")
                return .unknown
            case .refused(let code)?:
                notes.append("\(a) refused CHANGE-REQUEST (\(code)): filtering behaviour unknown.")
                return .unknown
            default:
                continue
            }
        }
        // A silent test II only means something if B can reach us at all: mapping test II
        // (solicited, from B:p to the main socket) must have been answered.
        guard outcome(.mappingTestII)?.answer != nil else {
            notes.append("The server's other address never reached us, so the silence of filtering test II proves nothing: filtering behaviour unknown.")
            return .unknown
        }
        if testIII?.answer != nil { return .addressDependent }
        guard testII == .timedOut, testIII == .timedOut else { return .unknown }
        guard outcome(.filteringControl)?.answer != nil else {
            notes.append("The filtering socket got no answer from \(a) even without CHANGE-REQUEST: filtering behaviour unknown.")
            return .unknown
        }
        notes.append("No answer came from \(other) or \(a.with(port: other.port)) to a fresh mapping that had only sent to \(a).")
        return .addressAndPortDependent
    }

    private func describeFailure(_ outcome: NetcheckOutcome?) -> String {
        switch outcome {
        case .refused(let code)?: "refused the request (\(code))"
        case .timedOut?: "did not answer"
        case .abandoned?: "had not answered before the time limit"
        default: "was not probed"
        }
    }

    // MARK: samples and per-server results

    /// One sample per (socket, destination): the first answer, in the order requests were sent.
    private func portSamples() -> [NetcheckPortSample] {
        var seen = Set<[String]>()
        var samples: [NetcheckPortSample] = []
        for transaction in transactions where transaction.purpose != .hairpin {
            guard let answer = transaction.outcome.answer, let local = sockets[transaction.socket]?.localAddress,
                seen.insert([transaction.socket.description, transaction.destination.description]).inserted
            else { continue }
            samples.append(
                NetcheckPortSample(socket: transaction.socket, localPort: local.port, mappedAddress: answer.mapped, destination: transaction.destination))
        }
        return samples
    }

    private func serverResults() -> [NetcheckServerResult] {
        servers.indices.map { index in
            var result = NetcheckServerResult(server: servers[index])
            let transaction = self.transaction(.binding(server: index))
            switch transaction?.outcome {
            case .answered(let answer)?:
                result.mappedAddress = answer.mapped
                result.otherAddress = answer.otherAddress
                result.responseOrigin = answer.responseOrigin
                result.rtt = answer.rtt
            case .refused(let code)?:
                result.error = "refused: \(code)"
            case .timedOut?:
                result.error = "no answer after \(transaction?.requestsSent ?? 0) requests"
            case .abandoned?:
                result.error = "no answer before the time limit"
            default:
                result.error = "not probed"
            }
            return result
        }
    }
}
