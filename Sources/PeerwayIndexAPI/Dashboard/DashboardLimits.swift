/// Every bound of the live dashboard (`/dashboard` on the management listener), named.
public enum DashboardLimits {
    /// Seconds a browser session lasts from its login (the cookie's `Max-Age` and the server's own
    /// expiry; there is no sliding renewal: after this, the admin token is asked for again).
    public static let sessionLifetimeSeconds = 12 * 3_600
    /// Most sessions held at once; a login beyond them ends the oldest. Sessions live in memory
    /// only: a restarted supernode has none.
    public static let maximumSessions = 64
    /// Random bytes of a session id (base64url in the cookie: 43 characters).
    public static let sessionIDBytes = 32
    /// The session cookie's name: this, then `_` and the port of the `Host` the browser used, so
    /// that supernodes on one host's ports do not overwrite each other's cookie.
    public static let cookiePrefix = "peerway_dashboard"
    /// The cookie's `Path`: it is sent to the dashboard's routes only (never to `/v1/`, `/metrics`).
    public static let cookiePath = "/dashboard"
    /// Longest login form body (`POST /dashboard/login`) read; larger ones are refused with 413.
    public static let maximumFormBytes = 4_096
    /// Milliseconds between two events of `GET /dashboard/events`.
    public static let eventIntervalMillis = 1_000
    /// Milliseconds a browser waits before it reconnects a stream that ended (the SSE `retry:` field).
    public static let reconnectMillis = 2_000
    /// Most event streams open at once (over all browsers); beyond them, 503.
    public static let maximumStreams = 16
    /// Seconds one event stream lasts; then it ends and the browser reconnects (and its session
    /// is checked again, as it is before every event).
    public static let maximumStreamSeconds = 3_600
    /// Seconds between two samples of the history ("peers online over time", relay throughput).
    public static let historyIntervalSeconds = 5
    /// Samples the history keeps: an hour at `historyIntervalSeconds`.
    public static let historySamples = 720
    /// Random bytes of the per-page Content-Security-Policy nonce of the inline style and script.
    public static let nonceBytes = 16
}
