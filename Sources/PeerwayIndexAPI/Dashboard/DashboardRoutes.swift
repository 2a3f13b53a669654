import Foundation
import Hummingbird
import ServiceLifecycle

/// The dashboard's routes, registered by `IndexAdminServer.router()` before the bearer token
/// middleware: they take the token, or a session cookie, themselves (DashboardSessions.swift).
/// Declared in `/openapi.json` (IndexAPIOpenAPI+Dashboard.swift).
extension Dashboard {
    func register(on router: Router<IndexAPIRequestContext>) {
        router.get("dashboard") { request, _ in try await self.page(request) }
        router.post("dashboard/login") { request, _ in try await self.login(request) }
        router.post("dashboard/logout") { request, _ in await self.logout(request) }
        router.get("dashboard/events") { request, _ in try await self.events(request) }
        router.get("dashboard/snapshot") { request, _ in try await self.snapshotAnswer(request) }
    }

    /// `GET /dashboard[?token=TOKEN]`: with the right token, a session and a redirect that drops
    /// it from the URL; with a bearer token or a session, the page; else the login page (401).
    func page(_ request: Request) async throws -> Response {
        let query = try IndexAPIContract.queryParameters(request.uri.query)
        if let given = query["token"] {
            return token.matches(given) ? await loggedIn(request) : Self.loginPage(.wrongToken, request)
        }
        switch await access(request) {
        case .failure(let why):
            return Self.loginPage(why, request)
        case .success:
            let initial = try? await snapshot(historySince: -1).snapshot
            let nonce = DashboardRandom.base64URL(bytes: DashboardLimits.nonceBytes)
            return Self.html(.ok, DashboardPage.dashboard(nonce: nonce, initialJSON: initial.flatMap { try? Self.json($0) }), nonce: nonce)
        }
    }

    /// `POST /dashboard/login` with the form `token=TOKEN`.
    func login(_ request: Request) async throws -> Response {
        guard let type = request.headers[.contentType]?.lowercased(),
              type.split(separator: ";").first?.trimmingCharacters(in: .whitespaces) == "application/x-www-form-urlencoded" else {
            throw IndexAPIError.notAForm
        }
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > DashboardLimits.maximumFormBytes {
            throw IndexAPIError.formTooLarge
        }
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: DashboardLimits.maximumFormBytes) } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw IndexAPIError.formTooLarge
        }
        let form = try IndexAPIContract.queryParameters(String(buffer: buffer))
        if let unknown = form.keys.filter({ $0 != "token" }).sorted().first {
            throw IndexAPIError.invalidParameter("unknown form field '\(unknown)': the login form has one field, token")
        }
        guard let given = form["token"], !given.isEmpty else { return Self.loginPage(.missingToken, request) }
        return token.matches(given) ? await loggedIn(request) : Self.loginPage(.wrongToken, request)
    }

    /// `POST /dashboard/logout`: ends the cookie's session, clears the cookie, back to the login
    /// page (303); with neither a session nor the bearer token, 401.
    func logout(_ request: Request) async -> Response {
        var ended = false
        if let id = DashboardCookie.sessionID(request), !id.isEmpty { ended = await sessions.close(id) }
        if !ended, await access(request) != .success(.bearer) {
            var response = Self.loginPage(.noCredential, request)
            response.setCookie(DashboardCookie.clearing(request))
            return response
        }
        var response = Self.redirect()
        response.setCookie(DashboardCookie.clearing(request))
        return response
    }

    /// `GET /dashboard/events`: server-sent events, one snapshot a second (the page's live feed).
    func events(_ request: Request) async throws -> Response {
        guard case .success(let access) = await access(request) else { throw IndexAPIError.unauthorized }
        guard reporter != nil else { throw IndexAPIError.noReporter }
        guard await sessions.openStream() else { throw IndexAPIError.tooManyStreams }
        let slot = DashboardStreamSlot(sessions)
        let session: String? = if case .session(let id) = access { id } else { nil }
        let headers: HTTPFields = [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-store",
                                   .xContentTypeOptions: "nosniff"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            try await self.stream(into: &writer, session: session, holding: slot)
        })
    }

    /// Writes the events until the stream's time is up, its session ends, the client goes away or
    /// the server shuts down.
    func stream(into writer: inout any ResponseBodyWriter, session: String?, holding slot: DashboardStreamSlot) async throws {
        try await writer.write(ByteBuffer(string: "retry: \(DashboardLimits.reconnectMillis)\n\n"))
        let ends = ContinuousClock.now + .seconds(DashboardLimits.maximumStreamSeconds)
        var historyVersion = -1
        while ContinuousClock.now < ends, !Task.isCancelled, !Task.isShuttingDownGracefully {
            if let session, !(await sessions.isValid(session)) { break }
            let (snapshot, version) = try await self.snapshot(historySince: historyVersion)
            historyVersion = version
            try await writer.write(ByteBuffer(string: "data: \(try Self.json(snapshot))\n\n"))
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(DashboardLimits.eventIntervalMillis)) }
            } catch {
                break
            }
        }
        withExtendedLifetime(slot) {}
        try await writer.finish(nil)
    }

    /// `GET /dashboard/snapshot`: one snapshot with its history, as JSON.
    func snapshotAnswer(_ request: Request) async throws -> Response {
        guard case .success = await access(request) else { throw IndexAPIError.unauthorized }
        return try PeerwayIndexAPI.json(try await snapshot(historySince: -1).snapshot)
    }

    // MARK: Answers

    /// A new session: its cookie, and a redirect to the page without the token.
    func loggedIn(_ request: Request) async -> Response {
        let id = await sessions.open()
        var response = Self.redirect()
        response.setCookie(DashboardCookie.opening(id, request))
        return response
    }

    /// 303 See Other to `/dashboard`.
    static func redirect() -> Response {
        Response(status: .seeOther, headers: [.location: DashboardLimits.cookiePath, .cacheControl: "no-store",
                                              Self.referrerPolicy: "no-referrer"])
    }

    /// The login page (401), saying why; a session that ended has its cookie cleared.
    static func loginPage(_ why: DashboardAuthFailure, _ request: Request) -> Response {
        let nonce = DashboardRandom.base64URL(bytes: DashboardLimits.nonceBytes)
        var response = html(.unauthorized, DashboardPage.login(message: why.description, nonce: nonce), nonce: nonce)
        response.headers[.wwwAuthenticate] = "Bearer realm=\"peerway-index\""
        if why == .sessionEnded { response.setCookie(DashboardCookie.clearing(request)) }
        return response
    }

    /// An HTML answer whose inline style and script carry `nonce`: the Content-Security-Policy
    /// lets in nothing else (no other origin, no inline code without it, no framing).
    static func html(_ status: HTTPResponse.Status, _ page: String, nonce: String) -> Response {
        let policy = "default-src 'none'; style-src 'nonce-\(nonce)'; script-src 'nonce-\(nonce)'; connect-src 'self'; "
            + "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        let headers: HTTPFields = [
            .contentType: "text/html; charset=utf-8", .cacheControl: "no-store", .contentSecurityPolicy: policy,
            .xContentTypeOptions: "nosniff", Self.referrerPolicy: "no-referrer",
        ]
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: page)))
    }
}

extension Dashboard {
    /// `Referrer-Policy` (W3C Referrer Policy): the dashboard's answers say `no-referrer`.
    static let referrerPolicy = HTTPFields.Element.Name("Referrer-Policy")!
}
