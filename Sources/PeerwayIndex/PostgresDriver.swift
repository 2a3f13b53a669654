import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PostgresNIO

/// How the INDEX waits for PostgreSQL when it does not answer.
public enum PostgresIndexLimits {
    /// Longest a call waits for a connection when none is working (PostgreSQL stopped or out of
    /// reach: the pool would otherwise retry for a minute while the peer's request times out);
    /// past it the call fails with `IndexError.unreachable`. Also the TCP connect timeout. A call
    /// that waits because every connection is busy with other calls keeps waiting, up to
    /// `maximumBusyWaits` such periods.
    public static let connectionWaitMillis = 3_000
    /// Periods of `connectionWaitMillis` a call keeps waiting for a connection while other calls
    /// hold them all (a busy pool); past them it fails as unreachable all the same, so no call
    /// waits for ever (30 s with the default wait).
    public static let maximumBusyWaits = 10
    /// The same wait when the store opens (connecting, then migrating under the advisory lock).
    public static let openWaitMillis = 10_000
    /// After a call found the database unreachable, calls for this long fail at once with the
    /// same reason instead of each waiting `connectionWaitMillis` (the first call after it tries again).
    public static let unreachableRetryMillis = 1_000
}

/// Runs the engine's synchronous transactions on pooled PostgreSQL connections: each runs on a
/// thread of its own pool (never on an event loop or the concurrency pool), waiting for each
/// statement's answer.
///
/// While PostgreSQL is down a call fails with `IndexError.unreachable` after
/// `PostgresIndexLimits.connectionWaitMillis` (at once for `unreachableRetryMillis` after such a
/// failure), and the next call after it starts a fresh pool: the old one may be deep in its
/// reconnection backoff when the server comes back, the fresh one connects at once.
final class PostgresDriver: SQLDriver, Sendable {
    private struct State: Sendable {
        /// Calls holding a connection now (a wait with some is a busy pool, not an outage).
        var working = 0
        /// Why the database is unreachable, and until when calls fail at once with it.
        var unreachable: (why: String, until: NIODeadline)?
    }

    /// The connections (renewed after an outage).
    let pool: RenewablePostgresPool
    let threads: NIOThreadPool
    let logger: Logger
    /// host:port/database, for the operator's log (never in peers' messages).
    var location: String { pool.location }
    private let state = NIOLockedValueBox(State())

    init(configuration: PostgresClient.Configuration, threads count: Int, logger: Logger) {
        var configuration = configuration
        configuration.options.connectTimeout = .milliseconds(Int64(PostgresIndexLimits.connectionWaitMillis))
        pool = RenewablePostgresPool(configuration: configuration, logger: logger)
        self.logger = logger
        threads = NIOThreadPool(numberOfThreads: count)
        threads.start()
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T {
        try await transaction(readOnly: false, body)
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T {
        try await transaction(readOnly: true, body)
    }

    /// A read-write transaction that may wait `waitMillis` for its connection (the migration).
    func write<T: Sendable>(waitMillis: Int, _ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T {
        try await transaction(readOnly: false, waitMillis: waitMillis, body)
    }

    private func transaction<T: Sendable>(readOnly: Bool, waitMillis: Int = PostgresIndexLimits.connectionWaitMillis,
                                          _ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T {
        let logger = self.logger
        let threads = self.threads
        return try await withConnection(waitMillis: waitMillis) { connection in
            try await threads.runIfActive {
                let db = PostgresSQLConnection(connection: connection, logger: logger)
                try db.execute(readOnly ? "BEGIN READ ONLY" : "BEGIN", [])
                do {
                    let result = try body(db)
                    try db.execute("COMMIT", [])
                    return result
                } catch {
                    _ = try? db.execute("ROLLBACK", [])
                    throw error
                }
            }
        }
    }

    /// Runs `body` outside any transaction (for statements PostgreSQL refuses inside one, such as
    /// CREATE DATABASE).
    func withoutTransaction<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T {
        let logger = self.logger
        let threads = self.threads
        return try await withConnection(waitMillis: PostgresIndexLimits.connectionWaitMillis) { connection in
            try await threads.runIfActive { try body(PostgresSQLConnection(connection: connection, logger: logger)) }
        }
    }

    func close() async {
        await pool.close()
        try? await threads.shutdownGracefully()
    }

    // MARK: Waiting for a connection

    /// Runs `body` on a pooled connection. Fails with `IndexError.unreachable` when none comes
    /// within `waitMillis` while no other call holds one (or at once, shortly after such a failure).
    private func withConnection<T: Sendable>(waitMillis: Int,
                                             _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let generation = try currentPool()
        do {
            let result = try await ConnectionWait<T>.run(waitMillis: waitMillis, busy: { [state] in state.withLockedValue { $0.working > 0 } }) { leased in
                try await generation.client.withConnection { connection in
                    guard leased() else { throw CancellationError() }
                    self.state.withLockedValue { $0.working += 1 }
                    defer { self.state.withLockedValue { $0.working -= 1 } }
                    return try await body(connection)
                }
            }
            answered()
            return result
        } catch {
            guard let why = unreachableReason(error, waitMillis: waitMillis) else {
                if !(error is CancellationError) { answered() }
                throw error
            }
            failed(generation, why: why)
            throw IndexError.unreachable(why)
        }
    }

    /// The pool to use, or the reason calls fail at once (closed, or unreachable a moment ago).
    private func currentPool() throws -> RenewablePostgresPool.Generation {
        let now = NIODeadline.now()
        if let down = state.withLockedValue({ $0.unreachable }), now < down.until { throw IndexError.unreachable(down.why) }
        guard let generation = pool.current() else { throw IndexError.closed }
        return generation
    }

    /// A call went through (the server answered, whatever it said).
    private func answered() {
        let was = state.withLockedValue { state -> String? in
            defer { state.unreachable = nil }
            return state.unreachable?.why
        }
        if let was { logger.notice("INDEX database answers again", metadata: ["database": "\(location)", "was": "\(was)"]) }
    }

    private func failed(_ generation: RenewablePostgresPool.Generation, why: String) {
        let until = NIODeadline.now() + .milliseconds(Int64(PostgresIndexLimits.unreachableRetryMillis))
        pool.retire(generation)
        let first = state.withLockedValue { state -> Bool in
            defer { state.unreachable = (why, until) }
            return state.unreachable == nil
        }
        if first {
            logger.error("INDEX database unreachable; INDEX calls fail until it answers (everything else keeps working)",
                         metadata: ["database": "\(location)", "error": "\(why)"])
        }
    }

    /// Why `error` means the database does not answer (said for the peer who asked, so without
    /// its address), or nil when it is something else (the server's own refusal, the engine's).
    private func unreachableReason(_ error: any Error, waitMillis: Int) -> String? {
        switch error {
        case is ConnectionWaitPassed:
            return "no connection within \(waitMillis) ms"
        case let error as PSQLError:
            switch error.code {
            case .server:
                let state = error.serverInfo?[.sqlState] ?? ""
                // Connection exceptions, shutting down, too many connections; login, no such database.
                guard state.hasPrefix("08") || state.hasPrefix("57P") || state == "53300" || state.hasPrefix("28") || state == "3D000" else { return nil }
                return "it refused the connection: \(error.serverInfo?[.message] ?? "SQLSTATE \(state)")"
            case .queryCancelled, .messageDecodingFailure, .unexpectedBackendMessage, .invalidCommandTag, .tooManyParameters:
                return nil
            default:
                // connectionError, serverClosedConnection, clientClosedConnection, uncleanShutdown,
                // poolClosed, TLS and authentication failures.
                return "the connection failed or was lost"
            }
        case is IndexError, is SQLFailure, is CancellationError:
            return nil
        case is NIOThreadPoolError.ThreadPoolInactive:
            return nil
        default:
            // The pool's and NIO's connection errors.
            return "the connection failed (\(type(of: error)))"
        }
    }
}

/// No connection came in time.
struct ConnectionWaitPassed: Error {}

/// Runs work that first waits for a connection, with a deadline on that wait only: at the
/// deadline, if the work has not got its connection (`leased` not yet called) and `busy` says
/// no other call holds one, the caller is resumed with `ConnectionWaitPassed` and the work is
/// cancelled (its late lease is refused); if other calls hold connections the wait goes on (a
/// busy pool is not an outage), for at most `maximumBusyWaits` deadlines. Once leased, the work
/// runs to its end.
final class ConnectionWait<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var leased = false
        var finished = false
        var worker: Task<Void, Never>?
        var timer: Task<Void, Never>?
    }

    private let state = NIOLockedValueBox(State())

    static func run(waitMillis: Int, busy: @escaping @Sendable () -> Bool,
                    _ work: @escaping @Sendable (_ leased: @escaping @Sendable () -> Bool) async throws -> T) async throws -> T {
        let wait = ConnectionWait<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                wait.start(continuation, waitMillis: waitMillis, busy: busy, work)
            }
        } onCancel: {
            wait.finish(.failure(CancellationError()))
        }
    }

    private func start(_ continuation: CheckedContinuation<T, any Error>, waitMillis: Int, busy: @escaping @Sendable () -> Bool,
                       _ work: @escaping @Sendable (_ leased: @escaping @Sendable () -> Bool) async throws -> T) {
        let cancelledAlready = state.withLockedValue { state -> Bool in
            if state.finished { return true }
            state.continuation = continuation
            return false
        }
        if cancelledAlready {
            continuation.resume(throwing: CancellationError())
            return
        }
        let worker = Task {
            do {
                self.finish(.success(try await work { self.lease() }))
            } catch {
                self.finish(.failure(error))
            }
        }
        let timer = Task {
            for _ in 0..<PostgresIndexLimits.maximumBusyWaits {
                do { try await Task.sleep(for: .milliseconds(waitMillis)) } catch { return }
                if self.state.withLockedValue({ $0.leased || $0.finished }) { return }
                if !busy() { break }
            }
            self.finish(.failure(ConnectionWaitPassed()), onlyUnleased: true)
        }
        let finishedAlready = state.withLockedValue { state -> Bool in
            if state.finished { return true }
            state.worker = worker
            state.timer = timer
            return false
        }
        if finishedAlready {
            worker.cancel()
            timer.cancel()
        }
    }

    /// The work got its connection; false when the wait already ended (it must give it back).
    private func lease() -> Bool {
        state.withLockedValue { state in
            guard !state.finished else { return false }
            state.leased = true
            return true
        }
    }

    /// The first outcome wins; the tasks still running are cancelled (not the work once leased:
    /// it ends by itself).
    private func finish(_ result: Result<T, any Error>, onlyUnleased: Bool = false) {
        let (continuation, tasks) = state.withLockedValue { state -> (CheckedContinuation<T, any Error>?, [Task<Void, Never>]) in
            guard !state.finished, !(onlyUnleased && state.leased) else { return (nil, []) }
            state.finished = true
            defer {
                state.continuation = nil
                state.worker = nil
                state.timer = nil
            }
            return (state.continuation, ([state.timer] + (state.leased ? [] : [state.worker])).compactMap { $0 })
        }
        for task in tasks { task.cancel() }
        continuation?.resume(with: result)
    }
}
