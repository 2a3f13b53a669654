import ArgumentParser
import PeerwayLab

/// `peerway lab send-failures`: makes a host's own UDP sends fail at a rate in the running lab
/// (`LabSendFailures`), e.g. to see a peer ride out a network that refuses packets now and then.
struct LabSendFailuresCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-failures",
        abstract: "Make a share of a lab host's own UDP sends fail (sendto returns EPERM), from now on; 0 stops it.",
        discussion: """
            A rule in the host's output hook drops that share of the UDP datagrams it sends, as a local
            firewall does: the sender's sendto fails with EPERM. `lab up --send-failures SITE[/N]=PCT`
            sets the same at start.

            Example: every fifth send of home's host 1 fails on average, then none again:
              sudo peerway lab send-failures home 20
              sudo peerway lab send-failures home 0
            """)

    @Argument(help: ArgumentHelp("SITE or SITE/N, or 'public'.", valueName: "site[/n]"))
    var target: String

    @Argument(help: ArgumentHelp("Percentage of the host's UDP sends that fail (0 to 100).", valueName: "pct"))
    var percent: Int

    func run() async throws {
        try LabCommand.prerequisites("send-failures")
        do {
            try LabSendFailures.set(LabSendFailure(target: target, percent: percent))
        } catch {
            LabCommand.fail("send-failures", error)
        }
        print(percent == 0 ? "\(target): sends no longer fail" : "\(target): \(percent)% of UDP sends fail with EPERM")
    }
}
