import Foundation
import Hummingbird

/*
 GET /metrics and GET /status on the management listener.

     Prometheus / peerway status                management API (Hummingbird)            the supernode
       GET /metrics  ------------------------->  SupernodeReportRoutes  --------------->  reporter.metrics()
                                                                                          (reads its services' counters,
       GET /status   ------------------------->  (admin token)  ----------------------->   reporter.status()   one snapshot)
       every request ------------------------>  SupernodeRequestMetrics -> reporter.requestAnswered(...)

 Both need the admin token, like every route but /openapi.json; `metricsNeedToken = false`
 (`peerway supernode --metrics-without-token`) serves /metrics to anyone who reaches the listener
 (a Prometheus without credentials on a trusted network). /status always needs the token.
*/

/// What the management API reports about the supernode it belongs to. The supernode implements it
/// (`PeerwaySupernode`'s `SupernodeReport`); without one, /metrics and /status answer 503.
public protocol SupernodeReporter: Sendable {
    /// The body of `GET /metrics`: Prometheus' text exposition format (version 0.0.4).
    func metrics() async -> [UInt8]
    /// The body of `GET /status`.
    func status() async -> SupernodeStatus
    /// One request the management API answered: its method, route pattern (`/v1/users/{name}`;
    /// `unmatched` when no route took it), status code and time taken. Must return at once.
    func requestAnswered(method: String, route: String, status: Int, took: Duration)
    /// Traversal offers taken since start by the NAT kind of the offering side (`NATKind`'s raw
    /// values; one entry per kind): the dashboard's histogram (Dashboard/). Defaults to none.
    func natTypes() async -> [String: Int]
}

/// The media type of `GET /metrics`.
public enum PrometheusExposition {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// `GET /metrics` and `GET /status`, registered by `IndexAdminServer.router()`.
struct SupernodeReportRoutes: Sendable {
    let reporter: (any SupernodeReporter)?

    func registerMetrics(on router: Router<IndexAPIRequestContext>) {
        let reporter = self.reporter
        router.get("metrics") { _, _ in
            guard let reporter else { throw IndexAPIError.noReporter }
            return Response(status: .ok, headers: [.contentType: PrometheusExposition.contentType],
                            body: .init(byteBuffer: ByteBuffer(bytes: await reporter.metrics())))
        }
    }

    func registerStatus(on router: Router<IndexAPIRequestContext>) {
        let reporter = self.reporter
        router.get("status") { _, _ in
            guard let reporter else { throw IndexAPIError.noReporter }
            return try json(await reporter.status())
        }
    }
}

extension IndexAPIError {
    /// 503: the management API runs without a supernode to report on.
    static let noReporter = IndexAPIError(
        status: 503, code: "unavailable", message: "this management API serves no supernode: nothing to report")
}

/// Tells the reporter of every request answered (outermost middleware: it sees the status the
/// error middleware chose).
struct SupernodeRequestMetrics<Context: RequestContext>: RouterMiddleware {
    let reporter: any SupernodeReporter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        do {
            let response = try await next(request, context)
            reporter.requestAnswered(method: Self.method(request), route: Self.route(context), status: response.status.code,
                                     took: ContinuousClock.now - started)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            reporter.requestAnswered(method: Self.method(request), route: Self.route(context), status: status,
                                     took: ContinuousClock.now - started)
            throw error
        }
    }

    /// The method's name when it is one of HTTP's usual ones; any other (a client may send any
    /// token) is `OTHER`, so labels stay bounded.
    static func method(_ request: Request) -> String {
        switch request.method {
        case .get, .head, .post, .put, .patch, .delete, .options: return request.method.rawValue
        default: return "OTHER"
        }
    }

    /// The route's pattern with `{name}` placeholders, so labels stay bounded by the routes.
    static func route(_ context: Context) -> String {
        guard let path = context.endpointPath else { return "unmatched" }
        return path.split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
    }
}

// MARK: The client side: `peerway status`

/// Why `peerway status` could not get a supernode's status.
public enum SupernodeStatusError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No token was given and none could be read.
    case noToken(path: String)
    /// The token file could not be read.
    case token(AdminTokenError)
    /// The management API refused or did not answer.
    case request(IndexAdminClientError)
    /// The answer is not a status.
    case unexpectedAnswer(String)

    public var description: String {
        switch self {
        case .noToken(let path):
            return "no admin token: give --admin-token, set \(AdminToken.environmentVariable), or point --data-dir at the supernode's (no \(path))"
        case .token(let error): return error.description
        case .request(let error): return error.description
        case .unexpectedAnswer(let why): return "the management API's answer is not a status: \(why)"
        }
    }
}

/// Which supernode `peerway status` asks, and with what token: the given URL, else the data
/// directory's `admin-url` (written by `peerway supernode`), else `IndexAPILimits.defaultListen`;
/// the given token, else `$PEERWAY_ADMIN_TOKEN`, else the data directory's `admin-token`.
public struct SupernodeStatusQuery: Sendable {
    /// `--admin URL`.
    public var adminURL: String?
    /// `--admin-token TOKEN`.
    public var adminToken: String?
    /// `--data-dir DIR`.
    public var dataDirectory: String
    /// Seconds the request may take.
    public var timeout: TimeInterval = SupernodeStatusQuery.defaultTimeoutSeconds

    /// The default data directory, as `peerway supernode` uses it: `~/.peerway/supernode`.
    public static var defaultDataDirectory: String {
        FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".peerway/supernode").path
    }
    /// Default `timeout`: a status is read from memory, so a supernode that takes longer is stuck.
    public static let defaultTimeoutSeconds: TimeInterval = 10

    public init(adminURL: String? = nil, adminToken: String? = nil, dataDirectory: String = Self.defaultDataDirectory) {
        self.adminURL = adminURL
        self.adminToken = adminToken
        self.dataDirectory = dataDirectory
    }

    /// The client of the management API this query talks to.
    public func client(environment: [String: String] = ProcessInfo.processInfo.environment) throws(SupernodeStatusError) -> IndexAdminClient {
        let directory = dataDirectory as NSString
        let written = try? String(contentsOfFile: directory.appendingPathComponent("admin-url"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let url = adminURL ?? written.flatMap { $0.isEmpty ? nil : $0 } ?? "http://\(IndexAPILimits.defaultListen)"
        var secret = adminToken ?? environment[AdminToken.environmentVariable]
        if secret == nil {
            let path = directory.appendingPathComponent(AdminToken.fileName)
            let token: AdminToken?
            do { token = try AdminToken.load(path: path) } catch { throw .token(error) }
            guard let token else { throw .noToken(path: path) }
            secret = token.value
        }
        do {
            var client = try IndexAdminClient(url: url, token: secret!)
            client.timeout = timeout
            return client
        } catch {
            throw .request(error)
        }
    }

    /// Asks `GET /status`: the status decoded, and the API's JSON as it came (one object).
    public func fetch(environment: [String: String] = ProcessInfo.processInfo.environment) async throws(SupernodeStatusError) -> (status: SupernodeStatus, json: Data) {
        let client = try client(environment: environment)
        let data: Data
        do { data = try await client.send("GET", ["status"]) } catch { throw .request(error) }
        do { return (try IndexAPIJSON.decoder.decode(SupernodeStatus.self, from: data), data) } catch {
            throw .unexpectedAnswer("\(error)")
        }
    }
}
