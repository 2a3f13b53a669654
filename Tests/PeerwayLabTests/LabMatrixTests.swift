import Foundation
import PeerwayLab
import Testing

@Suite("Lab matrix: sites, pairs, expectations, scheduling, tries and the report (no root)")
struct LabMatrixTests {
    /// Presets in the matrix, and its pairs: every unordered pair (each with itself), then one same-NAT pair each.
    static let presets = LabPreset.allCases.count
    static let pairCount = presets * (presets + 1) / 2 + presets

    @Test("two sites per preset, -a with two hosts; the lab accepts them")
    func sites() throws {
        let sites = LabMatrix.sites
        #expect(sites.count == 2 * Self.presets)
        #expect(Set(sites.map(\.name)).count == 2 * Self.presets)
        for preset in LabPreset.allCases {
            let mine = sites.filter { $0.preset == preset }
            #expect(mine.map(\.name) == LabMatrix.siteNames(preset))
            #expect(mine.map(\.hosts) == [2, 1])
        }
        #expect(sites.allSatisfy { !$0.hairpin && $0.name.count <= LabLimits.maximumSiteNameLength })
        let topology = try LabTopology(LabConfiguration(sites: sites))
        #expect(topology.site(named: "fc-a")?.hostNamespace(2) == LabMatrixEndpoint(site: "fc-a", host: 2).namespace)
        // Only what the pairs need: a same-NAT pair alone builds one site.
        #expect(LabMatrix.sites(for: [LabMatrixPair(.cgnat, .cgnat, sameNAT: true)]).map(\.name) == ["cg-a"])
        #expect(LabMatrix.sites(for: [LabMatrixPair(.symmetric, .open)]).map(\.name) == ["op-a", "op-b", "sy-a", "sy-b"])
    }

    @Test("every unordered preset pair (each with itself) and a same-NAT pair per preset; initiator is the first preset")
    func pairs() {
        let pairs = LabMatrix.pairs
        #expect(pairs.count == Self.pairCount)
        #expect(Set(pairs).count == Self.pairCount)
        #expect(pairs.filter(\.sameNAT).count == Self.presets)
        #expect(pairs.filter(\.isSelf).count == Self.presets)
        #expect(LabMatrixPair(.symmetric, .fullCone) == LabMatrixPair(.fullCone, .symmetric))
        #expect(LabMatrixPair(.symmetric, .fullCone).a == .fullCone)
        #expect(LabMatrixPair(.symmetric, .fullCone).description == "full-cone/symmetric")
        #expect(LabMatrixPair(.cgnat, .cgnat, sameNAT: true).description == "cgnat/same-NAT")
        // sameNAT only makes sense with one preset.
        #expect(LabMatrixPair(.cgnat, .open, sameNAT: true).sameNAT == false)
    }

    @Test("UDP direct is expected except symmetric x symmetric(-sequential) and UDP-blocking presets; same NAT always; TCP never required")
    func directExpectation() {
        let hard: Set<Set<LabPreset>> = [[.symmetric], [.symmetric, .symmetricSequential]]
        for a in LabPreset.allCases {
            for b in LabPreset.allCases {
                let expected = !(hard.contains([a, b]) || a.blocksUDP || b.blocksUDP)
                #expect(LabMatrix.directExpected(a, b, .udp) == expected, "\(a) x \(b)")
                #expect(LabMatrix.directExpected(a, b, .tcp) == false)
            }
            #expect(LabMatrix.directExpected(a, a, .udp, sameNAT: true))
        }
        #expect(LabMatrix.directExpected(.symmetricSequential, .symmetricSequential, .udp))
        #expect(LabMatrix.directExpected(.symmetric, .portRestricted, .udp))
        let expectedRows = LabMatrix.pairs.filter { LabMatrix.directExpected($0, .udp) }
        // Every pair, minus sym x sym, sym x seq, and the pairs across NATs with a UDP-blocking preset
        // (udp-blocked, tcp-443-only, proxy-only: b of them meet n presets, minus the b(b-1)/2 counted twice).
        let b = LabPreset.allCases.filter(\.blocksUDP).count
        #expect(expectedRows.count == Self.pairCount - 2 - (b * Self.presets - b * (b - 1) / 2))
    }

    @Test("many-port is expected exactly for symmetric against port-restricted and cgnat, over UDP")
    func manyPort() {
        let rows = LabMatrix.pairs.filter { LabMatrix.manyPortExpected($0, .udp) }.map(\.description)
        #expect(rows == ["port-restricted/symmetric", "symmetric/cgnat"])
        #expect(!LabMatrix.pairs.contains { LabMatrix.manyPortExpected($0, .tcp) })
    }

    @Test("--pairs filters by preset, pair, same-NAT; unknown names are refused")
    func filter() throws {
        let all = LabMatrix.pairs
        #expect(try LabMatrix.filter(all, "symmetric").count == Self.presets + 1)  // one across per preset + 1 same-NAT
        #expect(try LabMatrix.filter(all, "symmetric/full-cone") == [LabMatrixPair(.fullCone, .symmetric)])
        #expect(try LabMatrix.filter(all, "same-NAT").count == Self.presets)
        #expect(try LabMatrix.filter(all, "cgnat/same-nat") == [LabMatrixPair(.cgnat, .cgnat, sameNAT: true)])
        #expect(try LabMatrix.filter(all, "open/open, udp-blocked/open").count == 2)
        #expect(throws: LabError.self) { try LabMatrix.filter(all, "symetric") }
        #expect(throws: LabError.self) { try LabMatrix.filter(all, "a/b/c") }
        #expect(throws: LabError.self) { try LabMatrix.filter(all, " , ") }
    }

    @Test("the scheduler never runs two pairs sharing a site, runs each pair once, and fills the lab")
    func scheduler() {
        var scheduler = LabMatrixScheduler(pairs: LabMatrix.pairs, sites: LabMatrix.sites)
        var started: [LabMatrixPair] = []
        var rounds = 0
        var waves: [Int] = []
        while !scheduler.isFinished && rounds < 1000 {
            rounds += 1
            let wave = scheduler.start()
            waves.append(wave.count)
            for a in wave { started.append(a.pair) }
            let running = scheduler.running
            // No site twice among the running pairs.
            let sites = running.flatMap { Array($0.sites) }
            #expect(sites.count == Set(sites).count, "\(running)")
            for a in running {
                #expect(a.initiator != a.acceptor)
                #expect(a.initiator.site.hasPrefix(LabMatrix.code(a.pair.a) + "-"))
                #expect(a.acceptor.site.hasPrefix(LabMatrix.code(a.pair.b) + "-"))
            }
            // Finish the oldest one, as if pairs took equal time.
            if let first = running.first { scheduler.finish(first) }
        }
        #expect(scheduler.isFinished)
        #expect(started.count == Self.pairCount && Set(started).count == Self.pairCount)
        // The first wave: every preset against itself, every site busy.
        #expect(waves.first == Self.presets && started.prefix(Self.presets).allSatisfy(\.isSelf))
    }

    @Test("same-NAT pairs use hosts 1 and 2 of the -a site; self pairs use both sites")
    func placement() {
        var scheduler = LabMatrixScheduler(pairs: [LabMatrixPair(.cgnat, .cgnat, sameNAT: true), LabMatrixPair(.cgnat, .cgnat)],
                                           sites: LabMatrix.sites)
        let first = scheduler.start()
        #expect(first.map(\.description) == ["cgnat/cgnat (cg-a/1 -> cg-b/1)"])
        scheduler.finish(first[0])
        #expect(scheduler.start().map(\.description) == ["cgnat/same-NAT (cg-a/1 -> cg-a/2)"])
        #expect(LabMatrixAssignment.nominal(LabMatrixPair(.open, .symmetric)).description == "open/symmetric (op-a/1 -> sy-a/1)")
    }

    @Test("the executor runs pairs on threads at once, never two on one site, and skips what the deadline leaves")
    func executor() {
        let pairs = Array(LabMatrix.pairs.prefix(20))
        let busy = SiteLedger()
        let (results, skipped) = LabMatrixExecutor.run(LabMatrixScheduler(pairs: pairs, sites: LabMatrix.sites(for: pairs)),
                                                       deadline: Date().addingTimeInterval(60)) { assignment in
            busy.enter(assignment.sites)
            Thread.sleep(forTimeInterval: 0.02)
            busy.leave(assignment.sites)
            return assignment.pair
        }
        #expect(skipped.isEmpty)
        #expect(Set(results.map(\.1)) == Set(pairs))
        #expect(busy.conflicts == 0)
        #expect(busy.widest > 1)

        let late = LabMatrixExecutor.run(LabMatrixScheduler(pairs: LabMatrix.pairs, sites: LabMatrix.sites),
                                         deadline: Date().addingTimeInterval(-1)) { $0.pair }
        #expect(late.results.isEmpty && late.skipped.count == Self.pairCount)
    }

    @Test("a try: connect, tunnel, 64 KiB echoed, closed")
    func trialSucceeds() {
        let (a, b) = FakePeer.pair(tunnel: #"{"event":"tunnel","peer":"B","transport":"udp","path":"direct","method":"punch","ms":123,"encrypted":true,"role":"initiator"}"#)
        let outcome = LabMatrixTrial.run(initiator: a, acceptor: b, acceptorID: "B", initiatorID: "A", transport: .udp, timeouts: Self.quick)
        var expected = LabTunnelOutcome(connected: true, path: "direct", method: "punch", ms: 123, encrypted: true, echoed: true, mbps: 40, closed: true)
        expected.firstPath = "direct"
        #expect(outcome == expected)
        #expect(outcome.succeeded && outcome.direct)
    }

    @Test("a relay-first try: the tunnel starts relayed, the echo runs, the move to direct is recorded with its time")
    func trialMoves() {
        let tunnel = #"{"event":"tunnel","peer":"B","transport":"udp","path":"relayed","method":"relay","ms":180,"encrypted":true,"role":"initiator","upgrading":true}"#
        let moved = #"{"event":"path","peer":"B","change":"direct","path":"direct","method":"predict","direct_ms":640}"#
        let (a, b) = FakePeer.pair(tunnel: tunnel, echo: #"{"event":"send-bytes","peer":"B","bytes":65536,"ok":true,"ms":13,"mbps":40}"# + "\n" + moved)
        let outcome = LabMatrixTrial.run(initiator: a, acceptor: b, acceptorID: "B", initiatorID: "A", transport: .udp, timeouts: Self.quick)
        #expect(outcome.firstPath == "relayed" && outcome.path == "direct" && outcome.method == "predict")
        #expect(outcome.ms == 180 && outcome.directMs == 640 && outcome.direct)
        // A relayed start that gives direct up stays relayed; one that cannot move is not waited for.
        let gaveUp = #"{"event":"path","peer":"B","change":"direct-abandoned","path":"relayed","method":"relay"}"#
        let (c, d) = FakePeer.pair(tunnel: tunnel, echo: #"{"event":"send-bytes","peer":"B","bytes":65536,"ok":true}"# + "\n" + gaveUp)
        let stays = LabMatrixTrial.run(initiator: c, acceptor: d, acceptorID: "B", initiatorID: "A", transport: .udp, timeouts: Self.quick)
        #expect(stays.succeeded && stays.path == "relayed" && stays.directMs == nil)
        #expect(a.received == ["connect B udp", "send-bytes B 65536", "close B"])
    }

    @Test("a try that fails: tunnel-failed, no answer, a bad echo")
    func trialFails() {
        let (a, b) = FakePeer.pair(tunnel: #"{"event":"tunnel-failed","peer":"B","transport":"tcp","error":"relay refused"}"#)
        let failed = LabMatrixTrial.run(initiator: a, acceptor: b, acceptorID: "B", initiatorID: "A", transport: .tcp, timeouts: Self.quick)
        #expect(!failed.connected && failed.error == "tunnel failed: relay refused")
        #expect(a.received == ["connect B tcp", "close B"])

        let (c, d) = FakePeer.pair(tunnel: nil)
        let silent = LabMatrixTrial.run(initiator: c, acceptor: d, acceptorID: "B", initiatorID: "A", transport: .udp, timeouts: Self.quick)
        #expect(!silent.connected && silent.error?.hasPrefix("no tunnel within") == true)

        let (e, f) = FakePeer.pair(tunnel: #"{"event":"tunnel","peer":"B","transport":"udp","path":"relayed","method":"relay","ms":900}"#,
                                   echo: #"{"event":"send-bytes","peer":"B","bytes":65536,"ok":false,"error":"mismatch at 4096"}"#)
        let badEcho = LabMatrixTrial.run(initiator: e, acceptor: f, acceptorID: "B", initiatorID: "A", transport: .udp, timeouts: Self.quick)
        #expect(badEcho.connected && badEcho.echoed == false && !badEcho.succeeded)
        #expect(badEcho.error == "echo of 65536 bytes failed: mismatch at 4096")
        // Lines about other peers never answer the try.
        let (g, h) = FakePeer.pair(tunnel: #"{"event":"tunnel","peer":"C","transport":"udp","path":"direct","method":"lan","ms":1}"#)
        #expect(!LabMatrixTrial.run(initiator: g, acceptor: h, acceptorID: "B", initiatorID: "A", transport: .udp, timeouts: Self.quick).connected)
    }

    @Test("an aioice try: candidates cross over, both results count")
    func aioiceExchange() {
        let local = #"{"event":"local","role":"R","username":"u","password":"p","candidates":[]}"#
        let controlling = FakeAgent(local: local.replacingOccurrences(of: "R", with: "controlling"),
                                    result: #"{"event":"result","connected":true,"echoed":true,"local_type":"srflx","remote_type":"prflx","ms":80}"#)
        let controlled = FakeAgent(local: local.replacingOccurrences(of: "R", with: "controlled"),
                                   result: #"{"event":"result","connected":true,"echoed":true,"local_type":"prflx","remote_type":"srflx","ms":79}"#)
        let outcome = LabAioiceExchange.run(controlling: controlling, controlled: controlled, connectTimeout: 1)
        #expect(outcome == LabAioiceOutcome(connected: true, localType: "srflx", remoteType: "prflx", ms: 80))
        #expect(outcome.types == "srflx/prflx")
        #expect(controlling.received.first?.contains("\"controlled\"") == true)
        #expect(controlled.received.first?.contains("\"controlling\"") == true)

        let failing = FakeAgent(local: local, result: #"{"event":"result","connected":false,"echoed":false,"error":"ICE did not connect within 1 s"}"#)
        let other = FakeAgent(local: local, result: #"{"event":"result","connected":false,"echoed":false}"#)
        let notConnected = LabAioiceExchange.run(controlling: failing, controlled: other, connectTimeout: 1)
        #expect(notConnected.ran && !notConnected.connected && notConnected.error == "ICE did not connect within 1 s")

        let missing = FakeAgent(local: #"{"event":"error","error":"aioice is not installed: pip install aioice"}"#, result: nil)
        let broken = LabAioiceExchange.run(controlling: missing, controlled: FakeAgent(local: local, result: nil), connectTimeout: 1)
        #expect(!broken.ran && broken.error == "aioice is not installed: pip install aioice")
    }

    @Test("rows add up: successes, direct count, methods, p50; the summary's rates and verdict")
    func aggregation() throws {
        let pr = LabMatrixAssignment.nominal(LabMatrixPair(.portRestricted, .symmetric))
        let direct = LabTunnelOutcome(connected: true, path: "direct", method: "many-port", ms: 300, echoed: true)
        let relayed = LabTunnelOutcome(connected: true, path: "relayed", method: "relay", ms: 2100, echoed: true)
        let row = LabMatrixRow(assignment: pr, transport: .udp, tunnels: [direct, direct, relayed],
                               aioice: [LabAioiceOutcome(connected: false, error: "ICE did not connect within 10 s"),
                                        LabAioiceOutcome(connected: true, localType: "srflx", remoteType: "prflx", ms: 50)])
        #expect(row.tries == 3 && row.successes == 3 && row.directCount == 2)
        #expect(row.methods == ["many-port", "relay"])
        #expect(row.path == "mixed")
        #expect(row.p50Milliseconds == 300)
        #expect(row.aioiceDirect == 1 && row.aioiceTries == 2 && row.aioiceTypes == ["srflx/prflx"])
        #expect(row.failures() == ["direct expected: 1 of 3 tries relayed"])
        #expect(LabMatrixRow.percentile([5, 1, 3, 2], 50) == 2)
        #expect(LabMatrixRow.percentile([], 50) == nil)

        let tcp = LabMatrixRow(assignment: pr, transport: .tcp, tunnels: [relayed, LabTunnelOutcome(connected: false, error: "no tunnel within 30 s")])
        #expect(tcp.failures() == ["try 2: no tunnel within 30 s"])
        let hard = LabMatrixRow(assignment: .nominal(LabMatrixPair(.symmetric, .symmetric)), transport: .udp, tunnels: [relayed, relayed])
        #expect(hard.failures().isEmpty)

        let summary = LabMatrixSummary(rows: [row, tcp, hard])
        #expect(summary.tries == 7 && summary.successes == 6)
        #expect(summary.connectedRate == 6.0 / 7)
        #expect(summary.directExpectedTries == 3 && summary.directTries == 2)
        #expect(!summary.pass && summary.failedRows == 2)
        let good = LabMatrixSummary(rows: [hard])
        #expect(good.pass && good.connectedRate == 1 && good.directRate == nil)
        #expect(!LabMatrixSummary(rows: [hard], setupFailures: ["the peer at fc-a/1 did not register within 45 s"]).pass)
        #expect(!LabMatrixSummary(rows: []).pass)
        let skipped = LabMatrixRow(assignment: pr, transport: .udp, tunnels: [], skipped: "time limit")
        #expect(!LabMatrixSummary(rows: [hard, skipped]).pass)
        // A dry run needs the setup and aioice only.
        let dry = LabMatrixRow(assignment: pr, transport: .udp, tunnels: [], aioice: [LabAioiceOutcome(connected: false)])
        #expect(LabMatrixSummary(rows: [dry], dryRun: true, registered: 2, peers: 2).pass)
        let broken = LabMatrixRow(assignment: pr, transport: .udp, tunnels: [], aioice: [LabAioiceOutcome(ran: false, connected: false, error: "x")])
        #expect(!LabMatrixSummary(rows: [broken], dryRun: true).pass)
    }

    @Test("the table has the columns, one line per row and the verdict; --json has rows and a summary")
    func report() throws {
        let pair = LabMatrixAssignment.nominal(LabMatrixPair(.fullCone, .symmetric))
        let ok = LabTunnelOutcome(connected: true, path: "direct", method: "punch", ms: 150, echoed: true)
        let rows = [
            LabMatrixRow(assignment: pair, transport: .udp, tunnels: [ok, ok], aioice: [LabAioiceOutcome(connected: false), LabAioiceOutcome(connected: false)]),
            LabMatrixRow(assignment: pair, transport: .tcp, tunnels: [ok, LabTunnelOutcome(connected: false, error: "no tunnel within 30 s")]),
        ]
        let summary = LabMatrixSummary(rows: rows)
        let table = LabMatrixReport.table(rows, summary: summary)
        let lines = table.split(separator: "\n").map(String.init)
        #expect(lines[0].hasPrefix("pair") && lines[0].contains("transport") && lines[0].contains("path") && lines[0].contains("method")
                && lines[0].contains("1st ms") && lines[0].contains("direct ms") && lines[0].contains("success") && lines[0].contains("aioice direct"))
        #expect(lines[1].hasPrefix("full-cone/symmetric") && lines[1].contains("udp") && lines[1].contains("direct")
                && lines[1].contains("punch") && lines[1].contains("150") && lines[1].contains("2/2") && lines[1].contains("0/2")
                && lines[1].hasSuffix("pass"))
        #expect(lines[2].contains("tcp") && lines[2].contains("1/2") && lines[2].hasSuffix("FAIL"))
        #expect(table.contains("full-cone/symmetric tcp: try 2: no tunnel within 30 s"))
        #expect(table.contains("connected 3/4 tries (75.0%)"))
        #expect(lines.last == "FAIL: 1 required check(s) fail")

        let json = LabMatrixReport.json(rows, summary: summary).split(separator: "\n")
        #expect(json.count == 3)
        let first = try #require(try JSONSerialization.jsonObject(with: Data(json[0].utf8)) as? [String: Any])
        #expect(first["pair"] as? String == "full-cone/symmetric" && first["transport"] as? String == "udp")
        #expect(first["methods"] as? [String] == ["punch"] && first["aioice_direct"] as? Int == 0 && first["pass"] as? Bool == true)
        let last = try #require(try JSONSerialization.jsonObject(with: Data(json[2].utf8)) as? [String: Any])
        #expect(last["kind"] as? String == "summary")
        #expect(last["connected_rate"] as? Double == 0.75 && last["direct_rate"] as? Double == 1 && last["pass"] as? Bool == false)
    }

    @Test("rows come out in the pair list's order, UDP before TCP")
    func ordering() {
        let p1 = LabMatrixAssignment.nominal(LabMatrix.pairs[0]), p2 = LabMatrixAssignment.nominal(LabMatrix.pairs[1])
        let rows = [LabMatrixRow(assignment: p2, transport: .tcp, tunnels: []), LabMatrixRow(assignment: p1, transport: .tcp, tunnels: []),
                    LabMatrixRow(assignment: p2, transport: .udp, tunnels: []), LabMatrixRow(assignment: p1, transport: .udp, tunnels: [])]
        let ordered = LabMatrixReport.ordered(rows, pairs: LabMatrix.pairs)
        #expect(ordered.map { "\($0.pair) \($0.transport.rawValue)" } == ["open/open udp", "open/open tcp", "open/full-cone udp", "open/full-cone tcp"])
    }

    @Test("the runner's contract probes: options listed in --help; the supernode and peer arguments")
    func contract() {
        let help = """
            USAGE: peerway supernode [--listen <listen>] [--tcp-listen <tcp-listen>] [--stun-listen <stun-listen>]
              --relay-tcp-listen <relay-tcp-listen>
                                      Relay over TCP.
              -h, --help              Show help information.
            """
        let options = LabMatrix.options(inHelp: help)
        #expect(options.isSuperset(of: ["--listen", "--tcp-listen", "--stun-listen", "--relay-tcp-listen", "--help"]))
        #expect(!options.contains("--relay-listen"))
        let flags = LabMatrix.supernodeArguments(dataDirectory: "/d").map(\.flag)
        #expect(flags == ["--listen", "--tcp-listen", "--relay-listen", "--relay-tcp-listen", "--stun-listen", "--stun-alternate", "--stun-rate-limit", "--data-dir"])
        #expect(LabMatrix.supernodeArguments(dataDirectory: "/d").first?.value == "198.51.100.1:7400")
        #expect(LabMatrix.peerArguments(supernode: "S", identity: "/k") == ["peer", "--supernode", "S", "--json", "--echo", "--stay", "--identity", "/k"])
    }

    @Test("a line process: lines in order, input echoed, stop is prompt")
    func lineProcess() throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("pw-matrix-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let process = try LabLineProcess(name: "cat", executable: "/bin/sh", arguments: ["-c", "echo first; echo second; exec cat"], log: log)
        #expect(process.output.wait(after: 0, timeout: 5) { $0 == "second" ? $0 : nil } == "second")
        let cursor = process.output.count
        process.send("{\"event\":\"id\",\"id\":\"X\"}")
        #expect(process.output.wait(after: cursor, timeout: 5) { LabPeerEvent.parse($0)?.id } == "X")
        let started = Date()
        process.stop()
        #expect(!process.isRunning && Date().timeIntervalSince(started) < 5)
        #expect(process.output.wait(after: 99, timeout: 5) { $0 } == nil)  // ended: no waiting
        #expect((try? String(contentsOfFile: log, encoding: .utf8))?.contains("second") == true)
    }

    static let quick = LabMatrixTrial.Timeouts(tunnel: 0.5, echo: 0.5, close: 0.2, direct: 0.5)
}

/// Records which sites are in use at once (the executor test).
final class SiteLedger: @unchecked Sendable {
    private let lock = NSLock()
    private var inUse: [String: Int] = [:]
    private(set) var conflicts = 0
    private(set) var widest = 0
    private var running = 0

    func enter(_ sites: Set<String>) {
        lock.withLock {
            for s in sites {
                inUse[s, default: 0] += 1
                if inUse[s]! > 1 { conflicts += 1 }
            }
            running += 1
            widest = max(widest, running)
        }
    }

    func leave(_ sites: Set<String>) {
        lock.withLock {
            for s in sites { inUse[s, default: 0] -= 1 }
            running -= 1
        }
    }
}

/// A `peerway peer --json --echo` stand-in: answers every command with canned lines (after a
/// line of noise, which the try must skip).
final class FakePeer: LabLineLink, @unchecked Sendable {
    let output = LabLineBuffer()
    private let lock = NSLock()
    private var log: [String] = []
    let answer: @Sendable (String) -> [String]

    init(answer: @escaping @Sendable (String) -> [String]) { self.answer = answer }
    // An answer may hold several lines, separated by newlines.

    var received: [String] { lock.withLock { log } }

    func send(_ line: String) {
        lock.withLock { log.append(line) }
        output.append(#"{"event":"noise","peer":"B"}"#)
        answer(line).flatMap { $0.split(separator: "\n").map(String.init) }.forEach(output.append)
    }

    /// An initiator answering with `tunnel` (nil: silence) and `echo`, and an acceptor.
    static func pair(tunnel: String?, echo: String = #"{"event":"send-bytes","peer":"B","bytes":65536,"ok":true,"ms":13,"mbps":40}"#)
        -> (FakePeer, FakePeer) {
        let acceptor = FakePeer { _ in [] }
        let initiator = FakePeer { line in
            if line.hasPrefix("connect ") { return tunnel.map { [$0] } ?? [] }
            if line.hasPrefix("send-bytes ") { return [echo] }
            if line.hasPrefix("close ") {
                acceptor.output.append(#"{"event":"closed","peer":"A"}"#)
                return [#"{"event":"closed","peer":"B"}"#]
            }
            return []
        }
        return (initiator, acceptor)
    }
}

/// A lab-aioice.py stand-in: prints `local` at once, `result` once it got the other's line.
final class FakeAgent: LabLineLink, @unchecked Sendable {
    let output = LabLineBuffer()
    private let lock = NSLock()
    private var log: [String] = []
    let result: String?

    init(local: String, result: String?) {
        self.result = result
        output.append(local)
    }

    var received: [String] { lock.withLock { log } }

    func send(_ line: String) {
        lock.withLock { log.append(line) }
        if let result { output.append(result) }
    }
}
