import Foundation
import Hummingbird
import ServiceLifecycle

/*
 The live dashboard, on the management listener (routes in DashboardRoutes.swift, page in DashboardPage*.swift):

   browser                           management API (Hummingbird)                     the supernode
     GET /dashboard  -------------->  page (HTML + inline CSS/JS, first snapshot) <--  reporter.status(), natTypes()
     GET /dashboard/events  ------->  text/event-stream: one JSON snapshot a second
                                        (history with the first event and whenever a sample was added)
                                      sampler (IndexAdminServer.run): a history sample every 5 s

 Nothing comes from elsewhere: the page, its style and script are Swift strings in this module;
 charts are SVG drawn by the script. Access: the admin token once, then a session cookie
 (DashboardSessions.swift).
*/

/// The live dashboard of one management API: its sessions, history and routes.
final class Dashboard: Sendable {
    let token: AdminToken
    let reporter: (any SupernodeReporter)?
    let sessions = DashboardSessions()
    let history = DashboardHistory()

    init(token: AdminToken, reporter: (any SupernodeReporter)?) {
        self.token = token
        self.reporter = reporter
    }

    // MARK: Access

    /// How a request is let in.
    enum Access: Equatable {
        /// `Authorization: Bearer <the admin token>`.
        case bearer
        /// The session cookie, with the session's id.
        case session(String)
    }

    /// How `request` is let in: the bearer token, else an open session; else why not.
    func access(_ request: Request) async -> Result<Access, DashboardAuthFailure> {
        if let header = request.headers[.authorization], header.utf8.count <= IndexAPILimits.maximumAuthorizationBytes,
           header.count > 7, header.prefix(7).lowercased() == "bearer ",
           token.matches(header.dropFirst(7).trimmingCharacters(in: .whitespaces)) {
            return .success(.bearer)
        }
        guard let id = DashboardCookie.sessionID(request), !id.isEmpty else { return .failure(.noCredential) }
        return await sessions.isValid(id) ? .success(.session(id)) : .failure(.sessionEnded)
    }

    // MARK: Snapshots

    /// The supernode now, with the history when `historySince` is older than the history's version
    /// (pass -1 for always); the history's version it carries.
    func snapshot(historySince: Int) async throws(IndexAPIError) -> (snapshot: DashboardSnapshot, historyVersion: Int) {
        guard let reporter else { throw IndexAPIError.noReporter }
        let status = await reporter.status()
        var snapshot = DashboardSnapshot(status: status, natTypes: await reporter.natTypes(), time: Date())
        let (version, samples) = await history.record(snapshot.sample)
        if version > historySince { snapshot.history = samples }
        return (snapshot, version)
    }

    /// Takes a history sample every `DashboardLimits.historyIntervalSeconds` until cancelled or
    /// the service shuts down (IndexAdminServer.run).
    func sample() async {
        guard reporter != nil else { return }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            _ = try? await snapshot(historySince: .max)
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(DashboardLimits.historyIntervalSeconds)) }
            } catch {
                return
            }
        }
    }

    /// One snapshot as JSON for a page or an event: `<` escaped (`\u003c`), so that it can sit
    /// in a `<script type="application/json">` block whatever its strings hold.
    static func json(_ snapshot: DashboardSnapshot) throws -> String {
        let data = try IndexAPIJSON.encoder.encode(snapshot)
        return String(decoding: data, as: UTF8.self).replacingOccurrences(of: "<", with: "\\u003c")
    }
}

extension SupernodeReporter {
    /// No NAT tally (a reporter that keeps none).
    public func natTypes() async -> [String: Int] { [:] }
}

extension IndexAPIError {
    /// 503: `DashboardLimits.maximumStreams` event streams are open.
    static let tooManyStreams = IndexAPIError(
        status: 503, code: "unavailable",
        message: "\(DashboardLimits.maximumStreams) dashboard event streams are open: close a dashboard, or try again later")
    /// 415: the login form must be `application/x-www-form-urlencoded`.
    static let notAForm = IndexAPIError(
        status: 415, code: "unsupported_media_type", message: "send the login form as application/x-www-form-urlencoded")
    /// 413: the login form is larger than `DashboardLimits.maximumFormBytes`.
    static let formTooLarge = IndexAPIError(
        status: 413, code: "body_too_large", message: "the login form is larger than \(DashboardLimits.maximumFormBytes) bytes")
}
