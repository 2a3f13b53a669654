import ArgumentParser
import Foundation
import NIOCore
import Peerway
import PeerwayNetcheck
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

    func validate() throws {
        guard timeout.isFinite, timeout > 0, timeout <= 600 else {
            throw ValidationError("--timeout \(timeout): expected a number of seconds between 0 and 600")
        }
    }

    func run() async throws {
        let servers = stun.isEmpty ? ["127.0.0.1:3478"] : stun
        let options = NetcheckOptions(timeout: .nanoseconds(Int64(timeout * 1e9)))
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
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(NetcheckText.render(report), terminator: "")
        }
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
