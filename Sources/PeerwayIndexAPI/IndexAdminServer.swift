import Foundation
import Hummingbird
import Logging
import PeerwayIndex
import ServiceLifecycle

/// What the management API serves, where, and to whom.
public struct IndexAdminConfiguration: Sendable {
    /// Address to bind (an IP or a host name); loopback by default.
    public var host: String
    /// Port to bind; 0 picks a free one (reported through `onListening`).
    public var port: Int
    /// The one credential: requests carry it as `Authorization: Bearer TOKEN`.
    public var token: AdminToken
    /// The INDEX the API reads and changes (as `IndexActor.administrator`). The server does not close it.
    public var store: any IndexStore
    /// Which peers are online now, for users' sessions.
    public var presence: any IndexPresence
    public var logger: Logger
    /// Called once the server listens, with its URL (`http://HOST:PORT`, the bound port).
    public var onListening: (@Sendable (_ url: String) async -> Void)?
    /// The supernode `GET /metrics` and `GET /status` report on (`nil`: they answer 503).
    public var reporter: (any SupernodeReporter)? = nil
    /// Whether `GET /metrics` needs the admin token (the default); false serves it to anyone
    /// who reaches the listener (`--metrics-without-token`). `GET /status` always needs it.
    public var metricsNeedToken = true

    public init(host: String = "127.0.0.1", port: Int = IndexAPILimits.defaultPort, token: AdminToken, store: any IndexStore,
                presence: any IndexPresence = NoIndexPresence(), logger: Logger = Logger(label: "peerway.index.admin"),
                onListening: (@Sendable (_ url: String) async -> Void)? = nil) {
        self.host = host
        self.port = port
        self.token = token
        self.store = store
        self.presence = presence
        self.logger = logger
        self.onListening = onListening
    }

    /// Parses `HOST:PORT` (`[IPv6]:PORT` for IPv6), as `--admin-listen` takes it.
    public static func parseListen(_ text: String) -> (host: String, port: Int)? {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let number = Int(port), (0...65_535).contains(number) else { return nil }
        return (String(host), number)
    }
}

/// The INDEX's management API: HTTP + JSON for management and support systems, behind the admin
/// token, on its own port. A swift-service-lifecycle `Service`: it runs until its service group
/// shuts down gracefully (in-flight requests finish) or is cancelled.
///
/// Routes are under `/v1/` (users, networks, memberships, invitations; see `IndexAPIRoutes` and
/// the OpenAPI document at `GET /openapi.json`), and the supernode's `GET /metrics` (Prometheus)
/// and `GET /status` (SupernodeReporting.swift). Every route needs the token, except
/// `/openapi.json`, which describes the API and holds no data (and `/metrics` when
/// `metricsNeedToken` is false), and the live dashboard at `/dashboard` (Dashboard/), which also
/// takes a session cookie. Every call acts as `IndexActor.administrator`.
public struct IndexAdminServer: Service {
    public let configuration: IndexAdminConfiguration
    /// The live dashboard at `/dashboard` (Dashboard/): its sessions and history.
    let dashboard: Dashboard

    public init(configuration: IndexAdminConfiguration) {
        self.configuration = configuration
        self.dashboard = Dashboard(token: configuration.token, reporter: configuration.reporter)
    }

    /// The router: error mapping first (so every refusal is JSON), then 405 for methods the
    /// document does not declare, then `/openapi.json`, then the dashboard's routes (which check the
    /// token or a session cookie themselves), then the token check, then the `/v1/` routes.
    public func router() -> Router<IndexAPIRequestContext> {
        let router = Router(context: IndexAPIRequestContext.self)
        if let reporter = configuration.reporter { router.add(middleware: SupernodeRequestMetrics(reporter: reporter)) }
        router.add(middleware: IndexAPIErrorMiddleware())
        router.add(middleware: IndexAPIMethodMiddleware())
        let document = IndexAPIOpenAPI.document
        router.get("openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: document)))
        }
        let report = SupernodeReportRoutes(reporter: configuration.reporter)
        if !configuration.metricsNeedToken { report.registerMetrics(on: router) }
        dashboard.register(on: router)  // the bearer token or a session cookie (Dashboard/)
        router.add(middleware: AdminTokenMiddleware(token: configuration.token))
        if configuration.metricsNeedToken { report.registerMetrics(on: router) }
        report.registerStatus(on: router)
        IndexAPIRoutes(store: configuration.store, presence: configuration.presence).register(on: router.group("v1"))
        return router
    }

    /// The Hummingbird application (not running): for `run()`, and for tests.
    public func application() -> Application<RouterResponder<IndexAPIRequestContext>> {
        let configuration = self.configuration
        return Application(
            router: router(),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                let host = configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
                await configuration.onListening?("http://\(host):\(port)")
            },
            logger: configuration.logger)
    }

    /// Serves until graceful shutdown or cancellation (and samples the dashboard's history meanwhile).
    public func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await dashboard.sample() }
            try await application().run()
            group.cancelAll()
        }
    }
}

/// The request context of the management API: Hummingbird's core, with the body limit.
public struct IndexAPIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    /// `IndexAPILimits.maximumBodyBytes`.
    public var maxUploadSize: Int { IndexAPILimits.maximumBodyBytes }
}

/// Refuses (401) every request whose `Authorization` is not `Bearer <the admin token>`; the
/// comparison takes the same time wherever the first difference is.
struct AdminTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: AdminToken

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.utf8.count <= IndexAPILimits.maximumAuthorizationBytes,
              header.count > 7, header.prefix(7).lowercased() == "bearer ",
              token.matches(header.dropFirst(7).trimmingCharacters(in: .whitespaces)) else {
            throw IndexAPIError.unauthorized
        }
        return try await next(request, context)
    }
}
