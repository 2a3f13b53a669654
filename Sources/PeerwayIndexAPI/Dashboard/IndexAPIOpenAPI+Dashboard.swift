import Foundation
import PeerwayCheckpoint

/// The OpenAPI document's part for the live dashboard (Dashboard/): merged into `paths()` and
/// `schemas()` by `build()`.
///
/// The dashboard's routes take the admin token as the bearer token like every route, or a session
/// cookie (`peerway_dashboard_PORT`, opened by the token once, as `?token=` or the login form). The
/// cookie is described in words, not declared as a security scheme: its name depends on the port,
/// and no client of the API needs it.
///
/// `GET /dashboard/events` never ends (a snapshot a second, until the stream's hour is up): it
/// carries `x-peerway-stream: true`, and the contract test's hooks leave such operations out
/// (schemathesis reads whole bodies). Its events are the `DashboardSnapshot` that
/// `GET /dashboard/snapshot` answers, which the contract test does check.
extension IndexAPIOpenAPI {
    /// The extension keyword that marks an endless response (`scripts/schemathesis/peerway_hooks.py`).
    static let streamExtension = "x-peerway-stream"

    static func dashboardPaths() -> Object {
        let html: Object = ["text/html": ["schema": ["type": "string"]]]
        let loginPage: Object = [
            "description": "The login page (HTML): no token or session, a wrong token, or a session that ended.",
            "content": html,
            "headers": ["WWW-Authenticate": ["description": "`Bearer realm=\"peerway-index\"`.", "schema": ["type": "string"]]],
        ]
        let opened: Object = [
            "description": "The token was right: a session is opened and the browser goes to `/dashboard` (the token leaves the URL).",
            "headers": [
                "Location": ["required": true, "description": "`/dashboard`.", "schema": ["type": "string"]],
                "Set-Cookie": ["required": true, "schema": ["type": "string"],
                               "description": "`peerway_dashboard_PORT=ID; Max-Age=\(DashboardLimits.sessionLifetimeSeconds); Path=\(DashboardLimits.cookiePath); HttpOnly; SameSite=Strict`."],
            ] as Object,
        ]
        let token: Object = ["type": "string", "minLength": 1, "maxLength": IndexAPILimits.maximumTokenBytes]
        return [
            "/dashboard": [
                "get": [
                    "operationId": "dashboard",
                    "summary": "The live dashboard (HTML; its style, script and charts embedded): peers online over time, NAT types seen, traversals by method, relay throughput, the supernodes of the network.",
                    "description": "Needs the bearer token or the session cookie. A browser gives the token once as `?token=`: the answer is 303 to `/dashboard` with the session cookie (\(DashboardLimits.sessionLifetimeSeconds / 3_600) hours). Without either, or with a wrong token, the login page (401), which posts to `/dashboard/login`.",
                    "parameters": [parameter("token", "query", "The admin token, once: opens a session (303); a wrong one is 401.", schema: token)],
                    "responses": [
                        "200": ["description": "The dashboard.", "content": html] as Object,
                        "303": opened,
                        "400": ref("responses", errorResponses[400]!.name),
                        "401": loginPage,
                    ] as Object,
                ] as Object,
            ] as Object,
            "/dashboard/login": [
                "post": [
                    "operationId": "dashboardLogin",
                    "summary": "The login form: opens a session when the token is right.",
                    "security": [Object](),
                    "requestBody": [
                        "required": true,
                        "content": ["application/x-www-form-urlencoded": ["schema": [
                            "type": "object", "properties": ["token": token], "required": ["token"], "additionalProperties": false,
                            "maxProperties": 1,
                        ] as Object]],
                    ] as Object,
                    "responses": [
                        "303": opened,
                        "400": ref("responses", errorResponses[400]!.name),
                        "401": loginPage,
                        "413": ref("responses", errorResponses[413]!.name),
                        "415": ["description": "Not a form (`unsupported_media_type`).",
                                "content": ["application/json": ["schema": ref("schemas", "Error")]]] as Object,
                    ] as Object,
                ] as Object,
            ] as Object,
            "/dashboard/logout": [
                "post": [
                    "operationId": "dashboardLogout",
                    "summary": "Ends the session of the cookie and clears the cookie; 303 to `/dashboard` (the login page). With neither a session nor the bearer token, 401.",
                    "responses": [
                        "303": ["description": "Logged out.", "headers": [
                            "Location": ["required": true, "description": "`/dashboard`.", "schema": ["type": "string"]],
                            "Set-Cookie": ["required": true, "description": "The cookie, cleared (`Max-Age=0`).", "schema": ["type": "string"]],
                        ] as Object] as Object,
                        "401": loginPage,
                    ] as Object,
                ] as Object,
            ] as Object,
            "/dashboard/events": [
                "get": [
                    "operationId": "dashboardEvents",
                    "summary": "The dashboard's live feed: server-sent events, one `DashboardSnapshot` (JSON, schema below) as the `data` of an event every \(DashboardLimits.eventIntervalMillis) ms. The first event and each one after a new history sample carry `history`.",
                    "description": "Needs the bearer token or the session cookie; a stream of a session ends when the session does, and every stream after \(DashboardLimits.maximumStreamSeconds) s (browsers reconnect after `retry: \(DashboardLimits.reconnectMillis)`). At most \(DashboardLimits.maximumStreams) streams at once (503 beyond).",
                    streamExtension: true,
                    "responses": [
                        "200": ["description": "An endless `text/event-stream`; each event's data is a `DashboardSnapshot`.",
                                "content": ["text/event-stream": ["schema": ["type": "string"],
                                                                  "x-eventSchema": ref("schemas", "DashboardSnapshot")] as Object]] as Object,
                        "401": ref("responses", errorResponses[401]!.name),
                        "503": ref("responses", errorResponses[503]!.name),
                    ] as Object,
                ] as Object,
            ] as Object,
            "/dashboard/snapshot": [
                "get": operation("dashboardSnapshot", "What the dashboard shows now, with its history: the data of one event of `/dashboard/events`. Needs the bearer token or the session cookie.",
                                 answer: (200, "DashboardSnapshot"), errors: []),
            ] as Object,
        ]
    }

    static func dashboardSchemas() -> Object {
        func object(_ properties: Object, optional: Set<String> = []) -> Object {
            ["type": "object", "properties": properties, "required": properties.keys.filter { !optional.contains($0) }.sorted(),
             "additionalProperties": false]
        }
        let count: Object = ["type": "integer", "minimum": 0]
        let rate: Object = ["type": "number", "minimum": 0]
        let text: Object = ["type": "string"]
        let date: Object = ["type": "string", "format": "date-time"]
        let kinds = NATKind.allCases.map(\.rawValue)
        return [
            "DashboardSnapshot": object([
                "time": date,
                "supernode": object(["address": text, "key": text, "startedAt": date, "uptimeSeconds": count]),
                "peers": object(["online": count, "sessions": count, "network": count]),
                "natTypes": ["type": "object", "propertyNames": ["enum": kinds], "additionalProperties": count,
                             "description": "Traversal offers since start by the NAT kind of the offering peer."] as Object,
                "traversals": object([
                    "direct": count, "relayed": count, "failed": count,
                    "methods": ["type": "object", "additionalProperties": count, "description": "Successful traversals by method."] as Object,
                ]),
                "relay": object(["allocations": count, "bytesPerSecond": rate, "forwardedBytes": count]),
                "supernodes": ["type": "array", "minItems": 1, "items": object([
                    "address": text, "key": text, "isSelf": ["type": "boolean"], "linkUp": ["type": "boolean"], "peers": count,
                    "relayAllocations": count, "heartbeatAgeMillis": count,
                ])] as Object,
                "history": ["type": "array", "maxItems": DashboardLimits.historySamples, "items": object([
                    "time": date, "peers": count, "networkPeers": count, "relayBytesPerSecond": rate,
                ])] as Object,
            ], optional: ["relay", "history"]),
        ]
    }
}
