import CoreMetrics
import Foundation
import NIOConcurrencyHelpers
import PeerwayCheckpoint
import Prometheus

/*
 One supernode's metrics, through swift-metrics with swift-prometheus as its backend.

     services' own counters (CheckpointStatistics, RelayStatistics, STUN counters, ClusterStatus)
        read at scrape time (SupernodeReport) --> `scrape(_:)`: gauges set, counters advanced
                                                  by the difference since the last scrape
     events nobody counted before, recorded as they happen (rare, off the per-packet paths):
        HANDSHAKE: an initiator's traversal report --> recordTraversal   (checkpoint thread)
        INDEX:     an operation a peer ran         --> recordIndexOperation (pool)
        management API: a request answered         --> recordRequest
                                                  --> PrometheusCollectorRegistry --> emit (text 0.0.4)

 Each supernode has its own registry: MetricsSystem.bootstrap can happen once per process, and
 tests run several supernodes in one. Handles are swift-metrics types (Counter, Meter, Timer)
 made with `handler:` from the registry, so every family keeps its HELP line. The packet paths
 (CHECKPOINT ~40k messages/s, RELAY, STUN) gain no lock and no atomic: they keep counting in
 their own threads' plain integers, published as they were before.
*/

/// One supernode's Prometheus metrics (families: `SupernodeMetrics.catalog`, the README).
public final class SupernodeMetrics: Sendable {
    /// The registry every family of this supernode is in.
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    private let scrapeState = NIOLockedValueBox(ScrapeState())
    private let events = NIOLockedValueBox(EventState())

    /// Seconds buckets of `peerway_handshake_tunnel_setup_seconds`: a LAN path in tens of
    /// milliseconds, punching in hundreds, port prediction and many-port probing in seconds, a
    /// relay after the direct window (up to `RelayDialSchedule`'s 20 s).
    public static let tunnelSetupBuckets: [Duration] = [
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2),
        .seconds(5), .seconds(10), .seconds(20), .seconds(30), .seconds(60),
    ]
    /// Seconds buckets of `peerway_index_operation_duration_seconds` and
    /// `peerway_admin_request_duration_seconds`: SQLite in a millisecond, PostgreSQL in a few,
    /// a password hash (scrypt) in tens to hundreds.
    public static let operationBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    /// What the event recorders counted, for `GET /status`.
    struct Tally: Sendable, Equatable {
        var traversalsByPath: [String: Int] = [:]
        var traversalsByMethod: [String: Int] = [:]
        var indexOperations = 0
        var indexFailures = 0
    }

    private struct EventState {
        var tally = Tally()
        var handles: [String: EventHandles] = [:]
    }

    /// Handles of one label set of an event-recorded family: its counter and, if any, its timer.
    private struct EventHandles {
        let counter: CoreMetrics.Counter
        let timer: CoreMetrics.Timer?
    }

    /// A registry of its own; nothing is registered with `MetricsSystem`.
    public init() {
        registry = PrometheusCollectorRegistry()
        factory = PrometheusMetricsFactory(registry: registry)
    }

    /// Prometheus' text exposition format (0.0.4) of every family, as they stand.
    public func exposition() -> [UInt8] { registry.emitToBuffer() }

    // MARK: Events

    /// HANDSHAKE: an initiator reported how its traversal came out (`CheckpointConfiguration.traversalReported`).
    public func recordTraversal(_ result: TraversalResult) {
        let path = result.path.description, method = result.method.description
        let handles = eventHandles(key: "t \(path) \(method)") {
            EventHandles(counter: counter("peerway_handshake_traversals_total", [("path", path), ("method", method)]),
                         timer: timer("peerway_handshake_tunnel_setup_seconds", [("path", path)], buckets: Self.tunnelSetupBuckets))
        } update: { tally in
            tally.traversalsByPath[path, default: 0] += 1
            if result.path != .failed { tally.traversalsByMethod[method, default: 0] += 1 }
        }
        handles.counter.increment()
        handles.timer?.recordNanoseconds(Int64(result.millis) * 1_000_000)
    }

    /// INDEX: a peer's operation ran (`IndexControlService.observer`).
    public func recordIndexOperation(_ operation: IndexCall.Operation, took: Duration, succeeded: Bool) {
        let name = Self.snakeCase("\(operation)"), outcome = succeeded ? "ok" : "error"
        let handles = eventHandles(key: "i \(name) \(outcome)") {
            EventHandles(counter: counter("peerway_index_operations_total", [("operation", name), ("outcome", outcome)]),
                         timer: timer("peerway_index_operation_duration_seconds", [("operation", name)], buckets: Self.operationBuckets))
        } update: { tally in
            tally.indexOperations += 1
            if !succeeded { tally.indexFailures += 1 }
        }
        handles.counter.increment()
        handles.timer?.recordNanoseconds(Self.nanoseconds(took))
    }

    /// The management API answered a request. Labels are bounded: the method, the route's
    /// pattern (or `unmatched`) and the status code.
    public func recordRequest(method: String, route: String, status: Int, took: Duration) {
        let code = String(status)
        let handles = eventHandles(key: "r \(method) \(route) \(code)") {
            EventHandles(counter: counter("peerway_admin_requests_total", [("method", method), ("route", route), ("code", code)]),
                         timer: timer("peerway_admin_request_duration_seconds", [("route", route)], buckets: Self.operationBuckets))
        } update: { _ in }
        handles.counter.increment()
        handles.timer?.recordNanoseconds(Self.nanoseconds(took))
    }

    /// What the event recorders counted so far.
    var tally: Tally { events.withLockedValue { $0.tally } }

    private func eventHandles(key: String, make: () -> EventHandles, update: (inout Tally) -> Void) -> EventHandles {
        events.withLockedValue { state in
            update(&state.tally)
            if let handles = state.handles[key] { return handles }
            let handles = make()
            state.handles[key] = handles
            return handles
        }
    }

    // MARK: Scrape-time families

    fileprivate struct ScrapeState {
        var counters: [String: (handle: CoreMetrics.Counter, last: Int64)] = [:]
        var meters: [String: (handle: CoreMetrics.Meter, transient: Bool)] = [:]
        var touched: Set<String> = []
    }

    /// Runs `apply` on the scrape-time families (one scrape at a time: a lock), then emits every family.
    func scrape(_ apply: (inout Scrape) -> Void) -> [UInt8] {
        scrapeState.withLockedValue { state in
            var scrape = Scrape(metrics: self, state: state)
            apply(&scrape)
            state = scrape.finish()
        }
        return exposition()
    }

    /// One scrape in progress: `counter` advances a counter to a service's running total,
    /// `gauge` sets a value; `transient` series (one per other supernode) not set in a scrape
    /// are removed from the registry.
    struct Scrape {
        fileprivate let metrics: SupernodeMetrics
        fileprivate var state: ScrapeState

        fileprivate init(metrics: SupernodeMetrics, state: ScrapeState) {
            self.metrics = metrics
            self.state = state
            self.state.touched.removeAll(keepingCapacity: true)
        }

        /// `name` (no labels) is now at `total`.
        mutating func counter(_ name: String, _ total: some BinaryInteger) { counter(name, [], total) }

        /// `name` (no labels) is `value` now.
        mutating func gauge(_ name: String, _ value: Double) { gauge(name, [], value) }

        /// `name{labels}` is now at `total` since the service started (never goes back: a total
        /// that does is taken as a restart of the count).
        mutating func counter(_ name: String, _ labels: [(String, String)], _ total: some BinaryInteger) {
            let key = SupernodeMetrics.seriesKey(name, labels)
            let value = Int64(clamping: total)
            if let entry = state.counters[key] {
                if value > entry.last {
                    entry.handle.increment(by: value - entry.last)
                } else if value < entry.last {
                    entry.handle.increment(by: value)
                }
                state.counters[key] = (entry.handle, value)
            } else {
                let handle = metrics.counter(name, labels)
                if value > 0 { handle.increment(by: value) }
                state.counters[key] = (handle, value)
            }
        }

        /// `name{labels}` is `value` now.
        mutating func gauge(_ name: String, _ labels: [(String, String)], _ value: Double, transient: Bool = false) {
            let key = SupernodeMetrics.seriesKey(name, labels)
            let meter = state.meters[key]?.handle ?? metrics.meter(name, labels)
            state.meters[key] = (meter, transient)
            state.touched.insert(key)
            meter.set(value)
        }

        fileprivate mutating func finish() -> ScrapeState {
            for (key, entry) in state.meters where entry.transient && !state.touched.contains(key) {
                entry.handle.destroy()
                state.meters[key] = nil
            }
            return state
        }
    }

    // MARK: Handles

    private func counter(_ name: String, _ labels: [(String, String)]) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: name, dimensions: labels,
                            handler: registry.makeCounter(descriptor: Self.descriptor(name), labels: labels), factory: factory)
    }

    private func meter(_ name: String, _ labels: [(String, String)]) -> CoreMetrics.Meter {
        CoreMetrics.Meter(label: name, dimensions: labels,
                          handler: registry.makeGauge(descriptor: Self.descriptor(name), labels: labels), factory: factory)
    }

    private func timer(_ name: String, _ labels: [(String, String)], buckets: [Duration]) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: name, dimensions: labels,
                          handler: registry.makeDurationHistogram(descriptor: Self.descriptor(name), labels: labels, buckets: buckets),
                          factory: factory)
    }

    /// The family's full name with its HELP text from `catalog` (a name missing from it is a
    /// programming error).
    static func descriptor(_ name: String) -> MetricNameDescriptor {
        guard let entry = catalogByName[name] else { preconditionFailure("metric \(name) is not in SupernodeMetrics.catalog") }
        return MetricNameDescriptor(metricName: name, unitName: "", helpText: entry.help)
    }

    static func seriesKey(_ name: String, _ labels: [(String, String)]) -> String {
        labels.isEmpty ? name : name + "{" + labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    /// `changePassword` -> `change_password`; `many-port` stays.
    static func snakeCase(_ text: String) -> String {
        var out = ""
        for c in text {
            if c.isUppercase { out += "_" + c.lowercased() } else { out.append(c) }
        }
        return out
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let (seconds, attoseconds) = d.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
