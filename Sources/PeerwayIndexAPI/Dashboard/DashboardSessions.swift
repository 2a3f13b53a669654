import Foundation
import Hummingbird

/*
 How a browser gets in (the dashboard's routes only; /v1/, /metrics, /status keep needing the bearer token):

   GET /dashboard?token=TOKEN --> 303 Location: /dashboard, Set-Cookie: peerway_dashboard_PORT=ID; HttpOnly; SameSite=Strict
   POST /dashboard/login  (form: token=TOKEN)  --> the same 303 and cookie; a wrong token: 401 and the login page again
   GET /dashboard  (cookie, or Authorization: Bearer TOKEN) --> the page; without either: 401 and the login page
   POST /dashboard/logout --> the session ends, the cookie is cleared, 303 to /dashboard (the login page)

 The token leaves the URL at once (the redirect), so it stays out of history and of later Referer
 headers. A session is a random id held in memory with its expiry; the cookie carries only the id.
*/

/// Why a browser is not let in, said on the login page (401).
public enum DashboardAuthFailure: Error, Hashable, Sendable, CustomStringConvertible {
    /// Neither a session nor the token came with the request.
    case noCredential
    /// A token came, and it is not the admin token.
    case wrongToken
    /// The login form came without a token.
    case missingToken
    /// The session cookie names a session that ended (expired, logged out, or the supernode restarted).
    case sessionEnded

    public var description: String {
        switch self {
        case .noCredential: "Give the supernode's admin token (DATA_DIR/admin-token) to see its dashboard."
        case .wrongToken: "That is not the admin token. Try again."
        case .missingToken: "Give the admin token."
        case .sessionEnded: "Your session ended. Give the admin token again."
        }
    }
}

/// The sessions of logged-in browsers: ids with their expiry, at most
/// `DashboardLimits.maximumSessions` (a login beyond them ends the oldest). Pure: the time is given.
struct DashboardSessionTable: Sendable {
    private(set) var expiries: [String: Date] = [:]

    /// Opens a session `id` lasting `DashboardLimits.sessionLifetimeSeconds` from `now`.
    mutating func open(_ id: String, now: Date) {
        prune(now: now)
        while expiries.count >= DashboardLimits.maximumSessions, let oldest = expiries.min(by: { $0.value < $1.value }) {
            expiries[oldest.key] = nil
        }
        expiries[id] = now.addingTimeInterval(TimeInterval(DashboardLimits.sessionLifetimeSeconds))
    }

    /// Whether `id` is a session that has not expired at `now`.
    func isValid(_ id: String, now: Date) -> Bool {
        guard let expiry = expiries[id] else { return false }
        return now < expiry
    }

    /// Ends session `id`; whether it was open.
    @discardableResult
    mutating func close(_ id: String, now: Date) -> Bool {
        defer { expiries[id] = nil }
        return isValid(id, now: now)
    }

    /// Forgets expired sessions.
    mutating func prune(now: Date) {
        expiries = expiries.filter { now < $0.value }
    }

    var count: Int { expiries.count }
}

/// The sessions and the open event streams of one management API (in memory).
actor DashboardSessions {
    private var table = DashboardSessionTable()
    private var streams = 0
    /// The clock sessions expire by (a test moves it).
    private var now: @Sendable () -> Date = { Date() }

    /// Replaces the clock (tests).
    func setClock(_ clock: @escaping @Sendable () -> Date) { now = clock }

    /// A new session: its id (`DashboardLimits.sessionIDBytes` random bytes, base64url).
    func open() -> String {
        let id = DashboardRandom.base64URL(bytes: DashboardLimits.sessionIDBytes)
        table.open(id, now: now())
        return id
    }

    func isValid(_ id: String) -> Bool { table.isValid(id, now: now()) }

    @discardableResult
    func close(_ id: String) -> Bool { table.close(id, now: now()) }

    /// Takes a stream slot, unless `DashboardLimits.maximumStreams` are open.
    func openStream() -> Bool {
        guard streams < DashboardLimits.maximumStreams else { return false }
        streams += 1
        return true
    }

    func closeStream() { streams = max(0, streams - 1) }

    var openStreams: Int { streams }
}

/// One open event stream: gives its slot back when the response body that holds it goes away
/// (however the stream ended, or if it never started).
final class DashboardStreamSlot: Sendable {
    let sessions: DashboardSessions

    init(_ sessions: DashboardSessions) { self.sessions = sessions }

    deinit {
        let sessions = self.sessions
        Task { await sessions.closeStream() }
    }
}

/// The session cookie.
enum DashboardCookie {
    /// `peerway_dashboard_PORT` for a `Host` header with a port, else `peerway_dashboard`.
    static func name(host: String?) -> String {
        guard let host, let colon = host.lastIndex(of: ":"), !host[host.index(after: colon)...].contains("]") else {
            return DashboardLimits.cookiePrefix
        }
        let port = host[host.index(after: colon)...]
        guard (1...5).contains(port.count), port.allSatisfy(\.isASCII), port.allSatisfy(\.isNumber) else {
            return DashboardLimits.cookiePrefix
        }
        return "\(DashboardLimits.cookiePrefix)_\(port)"
    }

    static func name(_ request: Request) -> String { name(host: request.head.authority) }

    /// The session id the request's cookie carries, if any.
    static func sessionID(_ request: Request) -> String? {
        request.cookies[name(request)]?.value
    }

    /// The cookie that opens session `id`: HttpOnly (no script reads it), SameSite=Strict (no other
    /// site's page makes the browser send it), Path=/dashboard, for the session's lifetime. Not
    /// `Secure`: the management listener speaks plain HTTP (loopback by default).
    static func opening(_ id: String, _ request: Request) -> Cookie {
        Cookie(name: name(request), value: id, maxAge: DashboardLimits.sessionLifetimeSeconds,
               path: DashboardLimits.cookiePath, httpOnly: true, sameSite: .strict)
    }

    /// The cookie that makes the browser forget the session.
    static func clearing(_ request: Request) -> Cookie {
        Cookie(name: name(request), value: "", maxAge: 0, path: DashboardLimits.cookiePath, httpOnly: true, sameSite: .strict)
    }
}

/// Random values from the system's secure generator.
enum DashboardRandom {
    /// `bytes` random bytes as base64url without padding (cookie- and header-safe).
    static func base64URL(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        let data = Data((0..<bytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        return data.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
