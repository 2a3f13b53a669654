import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PeerwayCheckpoint
import PeerwayNetcheck
import PeerwaySTUN

/// Plans pushed by the HANDSHAKE, handed to the traversal waiting for each (a plan may arrive
/// before its traversal starts waiting: it is kept until then).
final class TraversalRegistry: Sendable {
    struct Key: Hashable, Sendable {
        var initiator: PeerID
        var acceptor: PeerID
        var requestID: UInt64
    }

    private struct State {
        var waiting: [Key: CheckedContinuation<TraversalPlan?, Never>] = [:]
        var early: [Key: TraversalPlan] = [:]
    }

    /// Most plans kept for traversals that do not wait (yet).
    static let maximumEarlyPlans = 256

    private let state = NIOLockedValueBox(State())

    /// A plan arrived from the checkpoint.
    func deliver(_ plan: TraversalPlan) {
        let key = Key(initiator: plan.initiator, acceptor: plan.acceptor, requestID: plan.requestID)
        let waiter: CheckedContinuation<TraversalPlan?, Never>? = state.withLockedValue { s in
            if let w = s.waiting.removeValue(forKey: key) { return w }
            if s.early.count >= Self.maximumEarlyPlans { s.early.removeAll() }
            s.early[key] = plan
            return nil
        }
        waiter?.resume(returning: plan)
    }

    /// Waits for the plan of `key`, at most `timeout`; nil when none came.
    func wait(for key: Key, timeout: TimeAmount) async -> TraversalPlan? {
        let box = self.state
        Task {
            try? await Task.sleep(nanoseconds: UInt64(max(0, timeout.nanoseconds)))
            box.withLockedValue { $0.waiting.removeValue(forKey: key) }?.resume(returning: nil)
        }
        return await withCheckedContinuation { continuation in
            let early: TraversalPlan? = box.withLockedValue { s in
                if let plan = s.early.removeValue(forKey: key) { return plan }
                s.waiting[key] = continuation
                return nil
            }
            if let early { continuation.resume(returning: early) }
        }
    }
}

/// This host's NAT profile, measured once in the background (RFC 5780 netcheck against the
/// supernode's STUN pair); traversals use it when it is ready and `.unknown` otherwise.
final class NATProfileCache: Sendable {
    private struct State {
        var profile: NATProfile?
        var measuring = false
        var waiters: [CheckedContinuation<NATProfile, Never>] = []
    }

    /// The netcheck's overall time limit.
    static let measureTimeout: TimeAmount = .seconds(8)

    private let state = NIOLockedValueBox(State())

    /// Starts the measurement (once).
    func measure(server: STUNAddress, group: any EventLoopGroup) {
        let start = state.withLockedValue { s -> Bool in
            guard !s.measuring && s.profile == nil else { return false }
            s.measuring = true
            return true
        }
        guard start else { return }
        Task {
            var profile: NATProfile
            do {
                let report = try await Netcheck.run(servers: [server],
                                                    options: NetcheckOptions(timeout: Self.measureTimeout, checksHairpinning: true),
                                                    on: group)
                profile = Self.profile(report)
            } catch {
                // No STUN answer at all: UDP does not get out (the tunnels' own STUN query is
                // then kept short; it still runs, the network may have changed).
                profile = .unknown
                profile.udpBlocked = true
            }
            let waiters = state.withLockedValue { s -> [CheckedContinuation<NATProfile, Never>] in
                s.profile = profile
                s.measuring = false
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in waiters { w.resume(returning: profile) }
        }
    }

    /// The measurement at the peer's start found no STUN answer at all.
    var measuredUDPBlocked: Bool { state.withLockedValue { $0.profile?.udpBlocked ?? false } }

    /// The profile, waiting at most `timeout` for a measurement under way.
    func profile(waitingAtMost timeout: TimeAmount) async -> NATProfile {
        if let p = state.withLockedValue({ $0.profile }) { return p }
        guard state.withLockedValue({ $0.measuring }) else { return .unknown }
        let box = state
        return await withTaskGroup(of: NATProfile.self) { group in
            group.addTask {
                await withCheckedContinuation { c in
                    let now: NATProfile? = box.withLockedValue { s in
                        if let p = s.profile { return p }
                        s.waiters.append(c)
                        return nil
                    }
                    if let now { c.resume(returning: now) }
                }
            }
            group.addTask {
                try? await Task.sleep(nanoseconds: UInt64(max(0, timeout.nanoseconds)))
                return .unknown
            }
            let first = await group.next() ?? .unknown
            group.cancelAll()
            return first
        }
    }

    /// The traversal profile of a netcheck report.
    static func profile(_ report: NetcheckReport) -> NATProfile {
        var p = NATProfile()
        if report.noNAT {
            p.mapping = .none
        } else {
            switch report.mappingBehavior {
            case .endpointIndependent: p.mapping = .endpointIndependent
            case .addressDependent: p.mapping = .addressDependent
            case .addressAndPortDependent: p.mapping = .addressAndPortDependent
            case .unknown: p.mapping = .unknown
            }
        }
        switch report.filteringBehavior {
        case .endpointIndependent: p.filtering = .endpointIndependent
        case .addressDependent: p.filtering = .addressDependent
        case .addressAndPortDependent: p.filtering = .addressAndPortDependent
        case .unknown: p.filtering = .unknown
        }
        if report.portAllocation.kind == .sequential, let delta = report.portAllocation.delta,
           let d = Int16(exactly: delta), d != 0 {
            p.portDelta = d
        }
        p.preservesPort = report.portPreserved
        p.hairpins = report.hairpinning ?? false
        return p
    }
}

/// With `PEERWAY_DEBUG_TRAVERSAL` set, prints each step of a traversal's setup and when it
/// happened (milliseconds since the connect or accept) to standard error.
struct TraversalDebug: Sendable {
    let role: TraversalRole
    let started: ContinuousClock.Instant
    let enabled = ProcessInfo.processInfo.environment["PEERWAY_DEBUG_TRAVERSAL"] != nil

    func note(_ step: @autoclosure () -> String) {
        guard enabled else { return }
        let elapsed = ContinuousClock.now - started
        let ms = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        FileHandle.standardError.write(Data("traversal \(role) +\(ms) ms: \(step())\n".utf8))
    }
}
