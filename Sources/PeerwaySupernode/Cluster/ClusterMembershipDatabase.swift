import Logging
import PeerwayIndex
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO

/// The cluster's connection to PostgreSQL: a postgres-nio `PostgresClient` pool (the driver the
/// INDEX uses too), with the two things a heartbeat loop needs on top of it.
///
/// - A bound on every call. While PostgreSQL is down the pool queues requests and retries its
///   connection with a growing backoff (up to a minute) for a minute before failing them; a
///   call here fails with `.unreachable` after `ClusterLimits.callTimeoutMillis` instead.
/// - Prompt recovery. A pool that failed to reach the server may be deep in that backoff when
///   the server comes back; so after an `.unreachable` failure the next call starts a fresh pool
///   (the old one is shut down), whose first connection attempt is immediate.
final class ClusterMembershipDatabase: Sendable {
    /// The connections (renewed after an outage).
    let pool: RenewablePostgresPool
    /// Where the database is, for messages (no password).
    var location: String { pool.location }

    init(configuration: PostgresClient.Configuration, logger: Logger) {
        var configuration = configuration
        configuration.options.maximumConnections = ClusterLimits.maximumConnections
        configuration.options.connectTimeout = .milliseconds(ClusterLimits.callTimeoutMillis)
        pool = RenewablePostgresPool(configuration: configuration, logger: logger)
    }

    /// Runs `body` on the current pool, failing with `.unreachable` once `timeoutMillis` have
    /// passed (waiting for a connection included).
    func run<T: Sendable>(timeoutMillis: Int = ClusterLimits.callTimeoutMillis,
                          _ body: @escaping @Sendable (PostgresClient) async throws -> T) async throws(ClusterMembershipError) -> T {
        guard let generation = pool.current() else { throw .closed }
        do {
            return try await ClusterDeadline<T>.run(milliseconds: timeoutMillis) { try await body(generation.client) }
        } catch {
            let failure = classify(error, timeoutMillis: timeoutMillis)
            if case .unreachable = failure { pool.retire(generation) }
            throw failure
        }
    }

    /// Later calls throw `.closed`; waits for the pool to shut down.
    func close() async {
        await pool.close()
    }

    // MARK: Errors

    /// Sorts a failure: no answer from the server (transport, pool, timeout, login) is
    /// `.unreachable`; an answer that is an error is `.storage`.
    func classify(_ error: any Error, timeoutMillis: Int) -> ClusterMembershipError {
        let check = "check that PostgreSQL runs at \(location) and that this host can reach it"
        switch error {
        case let error as ClusterMembershipError:
            return error
        case is ClusterDeadlinePassed:
            return .unreachable("no answer from \(location) within \(timeoutMillis) ms: \(check)")
        case is CancellationError:
            return .cancelled
        case is PostgresDecodingError:
            return .storage("an answer from \(location) could not be read (is the schema of this peerway version?): \(String(reflecting: error))")
        case let error as PSQLError:
            return classify(error, check: check)
        default:
            // Pool errors (circuit breaker), NIO's connect and channel errors.
            return .unreachable("\(error) (\(check))")
        }
    }

    private func classify(_ error: PSQLError, check: String) -> ClusterMembershipError {
        let underlying = error.underlying.map { ": \($0)" } ?? ""
        switch error.code {
        case .server:
            let state = error.serverInfo?[.sqlState] ?? "?"
            let message = error.serverInfo?[.message] ?? "no message"
            let said = "PostgreSQL at \(location) said: \(message) (SQLSTATE \(state))"
            if state.hasPrefix("08") || state.hasPrefix("57P") || state == "53300" {
                return .unreachable("\(said): it is not accepting this connection now; \(check)")
            }
            if state.hasPrefix("28") || state == "3D000" {
                return .unreachable("\(said): check the user, password and database of the cluster database URL")
            }
            return .storage(said)
        case .queryCancelled:
            return .cancelled
        case .messageDecodingFailure, .unexpectedBackendMessage, .invalidCommandTag, .tooManyParameters:
            return .storage("talking to \(location): \(String(reflecting: error))")
        case .sslUnsupported, .failedToAddSSLHandler, .receivedUnencryptedDataAfterSSLRequest:
            return .unreachable("TLS with \(location) failed\(underlying): check the URL's sslmode")
        case .unsupportedAuthMechanism, .authMechanismRequiresPassword, .saslError:
            return .unreachable("login at \(location) failed\(underlying): check the user and password of the cluster database URL")
        default:
            // connectionError, serverClosedConnection, clientClosedConnection, uncleanShutdown, poolClosed.
            return .unreachable("lost or could not open a connection to \(location)\(underlying): \(check)")
        }
    }
}

/// A call's deadline passed.
struct ClusterDeadlinePassed: Error {}

/// Runs work with a deadline that holds even when the work does not notice cancellation (a query
/// already sent on a connection whose server vanished waits for TCP to give up): the caller is
/// resumed at the deadline with `ClusterDeadlinePassed`, the work is cancelled and left to end by
/// itself. Cancelling the caller cancels the work likewise.
final class ClusterDeadline<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var finished = false
        var tasks: [Task<Void, Never>] = []
    }

    private let state = NIOLockedValueBox(State())

    static func run(milliseconds: Int, _ work: @escaping @Sendable () async throws -> T) async throws -> T {
        let race = ClusterDeadline<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                race.start(continuation, milliseconds: milliseconds, work)
            }
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }

    private func start(_ continuation: CheckedContinuation<T, any Error>, milliseconds: Int,
                       _ work: @escaping @Sendable () async throws -> T) {
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
                self.finish(.success(try await work()))
            } catch {
                self.finish(.failure(error))
            }
        }
        let timer = Task {
            do { try await Task.sleep(for: .milliseconds(milliseconds)) } catch { return }
            self.finish(.failure(ClusterDeadlinePassed()))
        }
        let finishedAlready = state.withLockedValue { state -> Bool in
            if state.finished { return true }
            state.tasks = [worker, timer]
            return false
        }
        if finishedAlready {
            worker.cancel()
            timer.cancel()
        }
    }

    /// The first outcome wins; the tasks still running are cancelled.
    private func finish(_ result: Result<T, any Error>) {
        let (continuation, tasks) = state.withLockedValue { state -> (CheckedContinuation<T, any Error>?, [Task<Void, Never>]) in
            guard !state.finished else { return (nil, []) }
            state.finished = true
            defer {
                state.continuation = nil
                state.tasks = []
            }
            return (state.continuation, state.tasks)
        }
        for task in tasks { task.cancel() }
        continuation?.resume(with: result)
    }
}
