import Logging
import NIOConcurrencyHelpers
import PostgresNIO

/// A postgres-nio `PostgresClient` pool that can be replaced, for prompt recovery after an
/// outage: while PostgreSQL is down a pool retries its connection with a growing backoff (up to a
/// minute), so when the server comes back it may be deep in that backoff. A caller that finds the
/// database unreachable `retire`s the pool it used; the next `current()` starts a fresh one (the
/// old one is shut down), whose first connection attempt is immediate. Used by the INDEX's
/// `PostgresDriver` and the cluster's membership database.
public final class RenewablePostgresPool: Sendable {
    /// One `PostgresClient` and the task running it; compared by identity.
    public final class Generation: Sendable {
        public let client: PostgresClient
        let running: Task<Void, Never>

        init(configuration: PostgresClient.Configuration, logger: Logger) {
            let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
            self.client = client
            running = Task { await client.run() }
        }
    }

    private struct State: Sendable {
        var generation: Generation?
        /// The generation failed to reach the server: the next `current()` replaces it.
        var stale = false
        var closed = false
    }

    public let configuration: PostgresClient.Configuration
    /// host:port/database, for messages (no password).
    public let location: String
    private let logger: Logger
    private let state = NIOLockedValueBox(State())

    public init(configuration: PostgresClient.Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        location = "\(configuration.host ?? "?"):\(configuration.port ?? 5432)/\(configuration.database ?? configuration.username)"
    }

    /// The pool to use: the current one, or a new one when there is none or it was retired (the
    /// retired one is shut down); nil once closed.
    public func current() -> Generation? {
        let configuration = self.configuration
        let logger = self.logger
        let (generation, retired) = state.withLockedValue { state -> (Generation?, Generation?) in
            guard !state.closed else { return (nil, nil) }
            if let generation = state.generation, !state.stale { return (generation, nil) }
            let retired = state.generation
            let fresh = Generation(configuration: configuration, logger: logger)
            state.generation = fresh
            state.stale = false
            return (fresh, retired)
        }
        retired?.running.cancel()
        return generation
    }

    /// `generation` could not reach the server: if it is still the current one, the next
    /// `current()` replaces it.
    public func retire(_ generation: Generation) {
        state.withLockedValue { state in
            if state.generation === generation { state.stale = true }
        }
    }

    /// Later `current()` calls return nil; waits for the pool to shut down.
    public func close() async {
        let generation = state.withLockedValue { state -> Generation? in
            state.closed = true
            defer { state.generation = nil }
            return state.generation
        }
        guard let generation else { return }
        generation.running.cancel()
        await generation.running.value
    }
}
