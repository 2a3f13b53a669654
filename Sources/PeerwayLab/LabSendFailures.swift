/*
 Send failures: a host whose own UDP sends fail now and then, as they do behind a local firewall
 that drops packets, while a network goes away (ENETUNREACH, EHOSTUNREACH) or under load
 (ENOBUFS). A rule in an output hook of the host's namespace drops a random share of the UDP
 datagrams the host sends; a datagram dropped there fails its `sendto` with EPERM at once, which is
 exactly what a real firewall does to an application. (The link loss of `--loss` drops packets on
 the wire instead, where the sender never learns of it.) Loopback is left alone.

   lab up --send-failures home=20          host 1 of site home: every UDP send fails with 20 % chance
   lab send-failures home/2 100            host 2 of home, from now on: every UDP send fails
   lab send-failures home/2 0              and back to none
*/

extension LabLimits {
    /// Allowed range of a host's send failure rate (`--send-failures SITE[/N]=PCT`), percent.
    public static let sendFailureRange = 0...100
}

/// One host whose UDP sends fail at a given rate: `SITE[/N]=PERCENT` on the command line (`N`
/// defaults to 1; `public` is the supernode host).
public struct LabSendFailure: Hashable, Codable, Sendable {
    /// `SITE`, `SITE/N` or `public`, as `lab exec` names hosts.
    public var target: String
    /// Percentage of the host's UDP sends that fail (with EPERM), in `LabLimits.sendFailureRange`.
    public var percent: Int

    public init(target: String, percent: Int) {
        self.target = target
        self.percent = percent
    }

    /// Parses `SITE[/N]=PERCENT`, e.g. `home=20` or `home/2=5`.
    public init(parsing text: String) throws(LabError) {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, let percent = Int(parts[1]) else {
            throw .badConfiguration("--send-failures \(text): expected SITE[/N]=PERCENT, e.g. home=20")
        }
        self.init(target: parts[0], percent: percent)
        try validateRate()
    }

    /// Checks the rate alone (the target is checked against a topology by `LabConfiguration`).
    public func validateRate() throws(LabError) {
        guard LabLimits.sendFailureRange.contains(percent) else {
            throw .badConfiguration("--send-failures \(target)=\(percent): a percentage in \(LabLimits.sendFailureRange)")
        }
    }
}

/// The rules that make a host's sends fail, and setting them on a running lab.
public enum LabSendFailures {
    /// The nftables table (inet family) of the send failure rule in a host's namespace, apart
    /// from every other rule of the lab.
    public static let tableName = "pwlab-sendfail"

    /// A ruleset for `nft -f -` in the host's namespace that replaces any earlier send failure
    /// rule with one failing `percent` % of the host's UDP sends (none for 0). Creating the table
    /// before deleting it makes the deletion succeed whether or not one was there.
    public static func ruleset(percent: Int) -> String {
        var out = """
            add table inet \(tableName)
            delete table inet \(tableName)

            """
        guard percent > 0 else { return out }
        // `numgen random mod 100` draws 0...99: below 100 is every packet, which nft refuses to compare.
        let share = percent >= 100 ? "" : "numgen random mod 100 < \(percent) "
        out += """
            table inet \(tableName) {
              chain output {
                type filter hook output priority filter; policy accept;
                oifname != "lo" meta l4proto udp \(share)drop
              }
            }

            """
        return out
    }

    /// The steps of `lab up` that set `topology`'s send failures (after everything else is up).
    public static func steps(for topology: LabTopology) -> [LabStep] {
        topology.configuration.sendFailures.compactMap { failure in
            guard failure.percent > 0, let namespace = try? topology.namespace(for: failure.target) else { return nil }
            return .nft(namespace: namespace, ruleset: ruleset(percent: failure.percent))
        }
    }

    /// Sets the send failure rate of `target` (`SITE[/N]` or `public`) in the running lab; 0
    /// removes the rule. Takes effect for the next datagram.
    public static func set(_ failure: LabSendFailure) throws(LabError) {
        try LabRunner.checkPrerequisites()
        try failure.validateRate()
        let namespace = try LabRunner.namespace(for: failure.target)
        try LabRunner.run("ip", ["netns", "exec", namespace, "nft", "-f", "-"], input: ruleset(percent: failure.percent))
    }
}

extension LabConfiguration {
    /// Checks that every send failure names a host of the configured sites (or `public`) once,
    /// with a rate in range.
    func validateSendFailures() throws(LabError) {
        var seen = Set<String>()
        for failure in sendFailures {
            try failure.validateRate()
            let parts = failure.target.split(separator: "/", maxSplits: 1).map(String.init)
            let n = parts.count == 2 ? Int(parts[1]) : 1
            let host = parts.first.map { $0 == "public" ? "public/1" : "\($0)/\(n.map(String.init) ?? "?")" } ?? ""
            let known = parts.first == "public" ? parts.count == 1
                : sites.contains { $0.name == parts.first && n.map((1...$0.hosts).contains) == true }
            guard known else {
                throw .badConfiguration("--send-failures \(failure.target)=\(failure.percent): no such host; use SITE or SITE/N "
                                        + "of the sites given (\(sites.map(\.name).joined(separator: ", "))), or public")
            }
            guard seen.insert(host).inserted else {
                throw .badConfiguration("--send-failures names \(failure.target) twice; give each host one rate")
            }
        }
    }
}
