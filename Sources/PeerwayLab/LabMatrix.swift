/*
 `peerway lab matrix`: every NAT preset against every other, tunnels through each pair.

 The sites: two per preset (`fc-a`, `fc-b`, ...), so that a preset meets itself across two
 different NATs; the `-a` site has two hosts, for the pair of hosts behind the same NAT. The pairs:
 every unordered pair of presets, each with itself included (8 × 9 / 2 = 36), plus one same-NAT
 pair per preset (8). A pair's initiator is the host of its first preset (in `LabPreset.allCases`
 order); the other one accepts.

 This file holds the plan and the rules, as pure values; `LabMatrixScheduler` decides which pairs
 run at once, `LabMatrixResults` aggregates what they did, `LabMatrixReport` prints it.
*/

import Foundation

/// The transport of a tunnel the matrix asks for.
public enum LabMatrixTransport: String, CaseIterable, Codable, Hashable, Sendable, Comparable {
    case udp, tcp

    public static func < (a: Self, b: Self) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
}

/// One host of the lab, as `SITE/N`.
public struct LabMatrixEndpoint: Hashable, Codable, Sendable, CustomStringConvertible {
    public var site: String
    public var host: Int

    public init(site: String, host: Int) {
        self.site = site
        self.host = host
    }

    /// The host's network namespace (as `LabSitePlan.hostNamespace`).
    public var namespace: String { "\(LabLimits.prefix)\(site)-h\(host)" }
    /// `SITE/N`, as `peerway lab exec` takes it.
    public var description: String { "\(site)/\(host)" }
}

/// Two presets that meet: across two NATs, or two hosts behind the same one.
public struct LabMatrixPair: Hashable, Codable, Sendable, CustomStringConvertible {
    /// The initiator's preset (never after `b` in `LabPreset.allCases`).
    public var a: LabPreset
    /// The acceptor's preset.
    public var b: LabPreset
    /// Both hosts behind one NAT (then `a == b`).
    public var sameNAT: Bool

    public init(_ a: LabPreset, _ b: LabPreset, sameNAT: Bool = false) {
        let ia = LabPreset.allCases.firstIndex(of: a)!, ib = LabPreset.allCases.firstIndex(of: b)!
        (self.a, self.b) = ia <= ib ? (a, b) : (b, a)
        self.sameNAT = sameNAT && a == b
    }

    /// `full-cone/symmetric`, or `port-restricted/same-NAT`.
    public var description: String { sameNAT ? "\(a.rawValue)/same-NAT" : "\(a.rawValue)/\(b.rawValue)" }

    /// The same preset on both sides, behind two different NATs.
    public var isSelf: Bool { a == b && !sameNAT }
}

/// The matrix's sites, pairs and expectations.
public enum LabMatrix {
    /// Bytes each try sends through the tunnel and expects echoed back.
    public static let echoBytes = 65_536
    /// The two sites of each preset: `-a` (two hosts) and `-b`.
    public static let siteSuffixes = ["a", "b"]
    /// Hosts of an `-a` site (host 1 meets the other sites, hosts 1 and 2 meet each other).
    public static let hostsOfFirstSite = 2

    /// The short name of a preset in site names (site names are at most 16 characters).
    public static func code(_ preset: LabPreset) -> String {
        switch preset {
        case .open: "op"
        case .fullCone: "fc"
        case .restrictedCone: "rc"
        case .portRestricted: "pr"
        case .symmetric: "sy"
        case .symmetricSequential: "ss"
        case .cgnat: "cg"
        case .udpBlocked: "ub"
        case .tcp443Only: "t4"
        case .proxyOnly: "px"
        case .symmetricUPnP: "su"
        }
    }

    /// The site names of `preset`, `-a` first.
    public static func siteNames(_ preset: LabPreset) -> [String] { siteSuffixes.map { "\(code(preset))-\($0)" } }

    /// Every site of the full matrix: 16, two per preset, in preset order.
    public static var sites: [LabSiteSpec] { sites(for: pairs) }

    /// The sites `pairs` need: both sites of every preset in a pair across NATs, the `-a` site
    /// (with two hosts) of every preset in a same-NAT pair.
    public static func sites(for pairs: [LabMatrixPair]) -> [LabSiteSpec] {
        var across = Set<LabPreset>(), same = Set<LabPreset>()
        for pair in pairs {
            if pair.sameNAT { same.insert(pair.a) } else { across.formUnion([pair.a, pair.b]) }
        }
        return LabPreset.allCases.flatMap { preset -> [LabSiteSpec] in
            let names = siteNames(preset)
            if across.contains(preset) {
                return [LabSiteSpec(name: names[0], preset: preset, hosts: hostsOfFirstSite), LabSiteSpec(name: names[1], preset: preset)]
            }
            return same.contains(preset) ? [LabSiteSpec(name: names[0], preset: preset, hosts: hostsOfFirstSite)] : []
        }
    }

    /// Every pair: the 36 unordered pairs of presets (each with itself included), then the 8
    /// same-NAT pairs.
    public static var pairs: [LabMatrixPair] {
        let presets = LabPreset.allCases
        var out: [LabMatrixPair] = []
        for (i, a) in presets.enumerated() {
            for b in presets[i...] { out.append(LabMatrixPair(a, b)) }
        }
        return out + presets.map { LabMatrixPair($0, $0, sameNAT: true) }
    }

    /// Whether a tunnel between `a` and `b` over `transport` must come out direct (a required
    /// check); when false the row only has to connect, through the relay if need be.
    ///
    /// UDP: direct everywhere except
    /// - `symmetric` × `symmetric` and `symmetric` × `symmetric-sequential`: both NATs map every
    ///   destination to a new public port, and one of them draws that port at random. Neither side
    ///   can learn the port the other's NAT will use toward it (a STUN server sees a different
    ///   mapping), so there is nothing to punch toward; prediction needs a sequential allocator on
    ///   the far side, and many-port (birthday) probing needs one side whose mapping stays put
    ///   while the other sprays: with both sides re-mapping per destination, every probe opens a
    ///   hole for a port pair that no probe from the other side uses. Only the relay works.
    /// - any pair with `udp-blocked`: no UDP leaves that site at all.
    /// `symmetric-upnp` is symmetric too, but its peers map a port on the router (miniupnpd) and
    /// offer it: the other side punches the mapping, so every pair with it goes direct.
    ///
    /// Two hosts behind the same NAT are always direct: their host candidates meet on the shared
    /// LAN, which no NAT rule touches (`udp-blocked` filters only what it forwards to its WAN).
    ///
    /// TCP: never required (false). The matrix reports direct or relayed, and requires only that
    /// the tunnel connects.
    public static func directExpected(_ a: LabPreset, _ b: LabPreset, _ transport: LabMatrixTransport, sameNAT: Bool = false) -> Bool {
        guard transport == .udp else { return false }
        if sameNAT { return true }
        if a.blocksUDP || b.blocksUDP { return false }
        let randomPerDestination: Set<LabPreset> = [.symmetric]
        let perDestination: Set<LabPreset> = [.symmetric, .symmetricSequential]
        let both = perDestination.contains(a) && perDestination.contains(b)
        let oneRandom = randomPerDestination.contains(a) || randomPerDestination.contains(b)
        return !(both && oneRandom)
    }

    /// `directExpected` for a pair.
    public static func directExpected(_ pair: LabMatrixPair, _ transport: LabMatrixTransport) -> Bool {
        directExpected(pair.a, pair.b, transport, sameNAT: pair.sameNAT)
    }

    /// Whether the direct UDP path of a pair can only be found by many-port (birthday) probing:
    /// one side behind `symmetric` (a random new port per destination), the other behind an
    /// endpoint-independent mapping whose filter lets in only the exact address and port it sent
    /// to (`port-restricted`, `cgnat`). Against looser filters (`full-cone`, `restricted-cone`,
    /// `open`) a plain punch gets in, so those rows may say `punch`. These are the "easy ×
    /// symmetric" rows the lab test checks.
    public static func manyPortExpected(_ pair: LabMatrixPair, _ transport: LabMatrixTransport) -> Bool {
        guard transport == .udp, !pair.sameNAT else { return false }
        let strictEasy: Set<LabPreset> = [.portRestricted, .cgnat]
        return (pair.a == .symmetric && strictEasy.contains(pair.b)) || (pair.b == .symmetric && strictEasy.contains(pair.a))
    }

    /// The pairs a `--pairs` filter selects: comma-separated terms, a pair is kept when any term
    /// matches it. A term is `PRESET` (either side), `A/B` (that pair, either order), `same-NAT`
    /// (every same-NAT pair) or `PRESET/same-NAT`. Throws on a term that names no preset.
    public static func filter(_ pairs: [LabMatrixPair], _ text: String) throws(LabError) -> [LabMatrixPair] {
        let terms = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
        guard !terms.isEmpty else { throw .badConfiguration("--pairs '\(text)': give PRESET, A/B or same-NAT terms, comma-separated") }
        let same = "same-nat"
        func preset(_ name: String) throws(LabError) -> LabPreset {
            guard let p = LabPreset(rawValue: name) else {
                throw .badConfiguration("--pairs: '\(name)' is not a preset; one of: \(LabPreset.allCases.map(\.rawValue).joined(separator: ", ")), or same-NAT")
            }
            return p
        }
        var matchers: [(LabMatrixPair) -> Bool] = []
        for term in terms {
            let sides = term.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            switch sides.count {
            case 1 where sides[0] == same:
                matchers.append { $0.sameNAT }
            case 1:
                let p = try preset(sides[0])
                matchers.append { $0.a == p || $0.b == p }
            case 2 where sides[1] == same || sides[0] == same:
                let p = try preset(sides[0] == same ? sides[1] : sides[0])
                matchers.append { $0.sameNAT && $0.a == p }
            case 2:
                let target = LabMatrixPair(try preset(sides[0]), try preset(sides[1]))
                matchers.append { $0 == target }
            default:
                throw .badConfiguration("--pairs: '\(term)': expected PRESET, A/B or same-NAT")
            }
        }
        let kept = pairs.filter { pair in matchers.contains { $0(pair) } }
        guard !kept.isEmpty else { throw .badConfiguration("--pairs '\(text)' selects no pair") }
        return kept
    }
}

/// How the matrix starts the supernode and the peers (the tunnel CLI's contract).
extension LabMatrix {
    /// The supernode's addresses on the public host: CHECKPOINT over UDP and TCP (443, which a
    /// udp-blocked site lets out), the raw relay over UDP and TCP (80, likewise), the STUN pair.
    public static let supernodeHost = LabTopology.publicAddresses[0]

    /// `peerway supernode` flags and values, in order. The STUN pair is the supernode's own
    /// (unlimited rate: a whole site's hosts share one public address); `lab up`'s separate STUN
    /// pair is not started.
    public static func supernodeArguments(dataDirectory: String) -> [(flag: String, value: String)] {
        [
            ("--listen", "\(supernodeHost):7400"),
            ("--tcp-listen", "\(supernodeHost):443"),
            ("--relay-listen", "\(supernodeHost):7401"),
            ("--relay-tcp-listen", "\(supernodeHost):80"),
            ("--stun-listen", LabLimits.stunPrimary),
            ("--stun-alternate", LabLimits.stunAlternate),
            ("--stun-rate-limit", "0"),
            ("--data-dir", dataDirectory),
        ]
    }

    /// `peerway peer` arguments for one host: JSON events, echo every tunnel, stay after stdin.
    public static func peerArguments(supernode: String, identity: String, echo: Bool = true) -> [String] {
        ["peer", "--supernode", supernode, "--json"] + (echo ? ["--echo"] : []) + ["--stay", "--identity", identity]
    }

    /// The long options a command's `--help` text lists (`--tcp-listen`, ...), so the runner can
    /// tell which parts of the contract the built `peerway` has.
    public static func options(inHelp text: String) -> Set<String> {
        let separators = CharacterSet.whitespacesAndNewlines.union(CharacterSet(charactersIn: "[](),|="))
        return Set(text.components(separatedBy: separators).filter { $0.hasPrefix("--") && $0.count > 2 })
    }
}
