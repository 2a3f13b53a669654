import ArgumentParser
import Foundation
import NIOCore
import Peerway
import PeerwayNetcheck
import PeerwayPortMap
import PeerwaySTUN

/// `peerway netcheck`: what kind of NAT is this host behind, and what does it mean for direct
/// connections? RFC 5780 behaviour discovery against one or more STUN servers.
struct NetcheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netcheck",
        abstract: "Discover the NAT this host is behind (RFC 5780) and what it means for direct connections.",
        discussion: """
            Probes a STUN pair (a server with two IPs and two ports, e.g. `peerway stun`) for the
            mapped address, NAT mapping and filtering behaviour (RFC 4787), hairpinning, port
            preservation and the port allocation pattern. Servers without RFC 5780 support still
            give the mapped address; several servers are also compared with each other.

            It also asks the default gateway which port mapping protocols it speaks (PCP, NAT-PMP,
            UPnP-IGD), maps a port with the first that works and deletes the mapping again
            (skipped with --no-port-mapping, and when the STUN server is on loopback).

            Examples:
              peerway netcheck
              peerway netcheck --stun 127.0.0.1:3478 --json
              peerway netcheck --stun stun.example.net --stun 192.0.2.10:3478 --timeout 5
            """
    )

    @Option(name: .customLong("stun"), help: ArgumentHelp(
        "STUN server HOST[:PORT] (repeatable; port 3478 by default; default 127.0.0.1:3478).", valueName: "host[:port]"))
    var stun: [String] = []

    @Flag(name: .long, help: "Print the report as one line of JSON (camelCase keys) for scripts.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Stop after this many seconds, reporting what is known.", valueName: "seconds"))
    var timeout: Double = Double(NetcheckLimits.defaultOverallTimeout.nanoseconds) / 1e9

    @Flag(name: .customLong("no-port-mapping"), help: "Do not ask the default gateway for a port mapping.")
    var noPortMapping = false

    @Option(name: .customLong("port-mapping-protocol"), help: ArgumentHelp(
        "Ask the gateway with only this protocol (repeatable): pcp, nat-pmp, upnp. Default: all three.", valueName: "protocol"))
    var portMappingProtocols: [String] = []

    func validate() throws {
        for p in portMappingProtocols where PortMapProtocol(rawValue: p) == nil {
            throw ValidationError("--port-mapping-protocol \(p): one of pcp, nat-pmp, upnp")
        }
        guard timeout.isFinite, timeout > 0, timeout <= 600 else {
            throw ValidationError("--timeout \(timeout): expected a number of seconds between 0 and 600")
        }
    }

    func run() async throws {
        let servers = stun.isEmpty ? ["127.0.0.1:3478"] : stun
        let options = NetcheckOptions(timeout: .nanoseconds(Int64(timeout * 1e9)))
        // A STUN server on loopback means a test on this host: its gateway is not asked.
        let loopback = servers.contains { $0.hasPrefix("localhost") || (STUNAddress(parsing: $0, defaultPort: 3478)?.isLoopback ?? false) }
        let mapsPorts = !noPortMapping && !loopback
        let protocols = portMappingProtocols.isEmpty ? Set(PortMapProtocol.allCases) : Set(portMappingProtocols.compactMap(PortMapProtocol.init))
        async let portMapping: PortMapReport? = mapsPorts ? PortMapSession.check(protocols: protocols) : nil
        let report: NetcheckReport
        do {
            report = try await Netcheck.run(servers: servers, options: options)
        } catch {
            if json {
                print(Self.jsonLine(["error": error.description]))
            }
            FileHandle.standardError.write(Data("peerway netcheck: \(error)\n".utf8))
            throw ExitCode.failure
        }
        let mapping = await portMapping
        if json {
            print(try Self.json(report, portMapping: mapping, asked: mapsPorts))
        } else {
            print(NetcheckText.render(report), terminator: "")
            if mapsPorts { print(NetcheckText.portMapping(mapping)) }
        }
    }

    /// The report's JSON with `portMapping` added: the gateway's protocols and the mapping made
    /// (null when not asked, or when there is no IPv4 default route).
    static func json(_ report: NetcheckReport, portMapping: PortMapReport?, asked: Bool) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        guard var object = try JSONSerialization.jsonObject(with: encoder.encode(report)) as? [String: Any] else {
            return String(decoding: try encoder.encode(report), as: UTF8.self)
        }
        if let portMapping {
            object["portMapping"] = try JSONSerialization.jsonObject(with: encoder.encode(portMapping))
        } else {
            object["portMapping"] = NSNull()
        }
        object["portMappingAsked"] = asked
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    private static func jsonLine(_ object: [String: String]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return (try? encoder.encode(object)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

/// The human report, in the style of `tailscale netcheck`: one finding per line with what it
/// means for direct connections.
enum NetcheckText {
    static func render(_ r: NetcheckReport) -> String {
        var lines: [String] = ["", "Report:"]
        func item(_ text: String) { lines.append("\t* \(text)") }

        var server = "Server: \(r.server)"
        if r.supportsRFC5780, let other = r.otherAddress {
            server += " (RFC 5780 pair with \(other))"
        } else {
            server += " (no RFC 5780 support: mapped address only)"
        }
        if let rtt = r.rtt { server += ", RTT \(NetcheckFormatting.duration(rtt))" }
        item(server)
        item("Mapped address: \(r.mappedAddress)" + (r.localAddress.map { " (local \($0))" } ?? ""))
        item(r.noNAT
            ? "NAT: none — the server sees this host's own address, so peers can use it as it is"
            : "NAT: yes — peers must use the mapped address, not the local one")
        item("Mapping: \(behaviour(r.mappingBehavior.name, r.mappingBehavior.abbreviation)) — \(mappingMeaning(r.mappingBehavior))")
        item("Filtering: \(behaviour(r.filteringBehavior.name, r.filteringBehavior.abbreviation)) — \(filteringMeaning(r.filteringBehavior))")
        item("Hairpinning: \(hairpinning(r))")
        item("Port preserved: " + (r.portPreserved
            ? "yes — the public port is the local port"
            : "no — the NAT picks another public port than the local one"))
        let samples = r.portAllocation.samples
            .map { "\($0.socket) \($0.localPort)→\($0.mappedPort)\($0.isNewMapping ? "" : " (reused)")" }
            .joined(separator: ", ")
        item("Port allocation: \(r.portAllocation.summary)" + (samples.isEmpty ? "" : " [local→mapped: \(samples)]"))
        for other in r.servers where other.server != r.server {
            if let mapped = other.mappedAddress {
                item("Also asked \(other.server): sees \(mapped)" + (mapped == r.mappedAddress ? " (same)" : " (different!)"))
            } else {
                item("Also asked \(other.server): \(other.error ?? "no answer")")
            }
        }
        item("Direct connections: \(r.directConnectivity.rawValue) — \(r.directConnectivity.summary)")
        lines.append("")
        lines.append("Notes:")
        for note in r.notes { lines.append("\t- \(note)") }
        lines.append("\t- Took \(NetcheckFormatting.duration(r.duration)).")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The port mapping lines: the gateway's protocols and the mapping made.
    static func portMapping(_ r: PortMapReport?) -> String {
        guard let r else { return "Port mapping:\n\t* no IPv4 default route: no gateway to ask\n" }
        var lines = ["Port mapping:"]
        let gateway = r.gateway.map { STUNAddress(ip: $0, port: 0).ipString } ?? "?"
        let spoken = r.spoken.map(\.description).joined(separator: ", ")
        lines.append("\t* Gateway \(gateway) speaks: " + (spoken.isEmpty ? "none of PCP, NAT-PMP, UPnP-IGD" : spoken))
        for p in PortMapProtocol.allCases { lines.append("\t* \(p): \(r.probe(p))") }
        if let m = r.mapping {
            lines.append("\t* Mapped address: \(m.external) → local port \(m.internalPort) by \(m.protocolUsed), "
                + (m.lifetimeSeconds == 0 ? "permanent" : "\(m.lifetimeSeconds) s") + " (deleted again)")
            lines.append("\t* Direct connections: peers can reach this host at a mapping even when the NAT is symmetric")
        } else {
            lines.append("\t* Mapped address: none (\(r.failure ?? "no answer in time"))")
        }
        lines.append("\t* Took \(r.millis) ms.")
        return lines.joined(separator: "\n") + "\n"
    }

    private static func behaviour(_ name: String, _ abbreviation: String) -> String {
        name == abbreviation ? name : "\(name) (\(abbreviation))"
    }

    private static func mappingMeaning(_ m: NetcheckMappingBehavior) -> String {
        switch m {
        case .endpointIndependent: "every peer sees the address the server saw, so it can be handed out as a candidate"
        case .addressDependent, .addressAndPortDependent:
            "each peer sees a different public port than the server did: direct connections need port prediction or many-port probing"
        case .unknown: "use a STUN server with an alternate address (RFC 5780) to find out"
        }
    }

    private static func filteringMeaning(_ f: NetcheckFilteringBehavior) -> String {
        switch f {
        case .endpointIndependent: "any peer can send first"
        case .addressDependent: "a peer gets through once this host has sent to its IP address"
        case .addressAndPortDependent: "a peer gets through once this host has sent to its exact address and port: both sides must send (simultaneous open)"
        case .unknown: "hole punching with simultaneous open is the safe assumption"
        }
    }

    private static func hairpinning(_ r: NetcheckReport) -> String {
        switch r.hairpinning {
        case true?: "yes — peers behind this same NAT can reach each other at their public addresses"
        case false?: "no — peers behind this same NAT must use each other's local addresses"
        case nil: r.noNAT ? "not applicable (no NAT)" : "unknown (not tested or unfinished)"
        }
    }
}
