import Foundation

/// The OpenAPI document's part for `GET /metrics` and `GET /status` (SupernodeReporting.swift):
/// merged into `paths()` and `schemas()` by `build()`.
extension IndexAPIOpenAPI {
    static func reportPaths() -> Object {
        [
            "/metrics": [
                "get": [
                    "operationId": "metrics",
                    "summary": "The supernode's metrics in Prometheus' text format 0.0.4 (`peerway_*`; see the README). Needs the token unless the supernode runs with `--metrics-without-token`.",
                    "responses": [
                        "200": ["description": "The metrics.",
                                "content": ["text/plain": ["schema": ["type": "string"]]]] as Object,
                        "401": ref("responses", errorResponses[401]!.name),
                        "503": ref("responses", errorResponses[503]!.name),
                    ] as Object,
                ] as Object,
            ] as Object,
            "/status": [
                "get": operation("status", "How the supernode stands: its services, peers, traversals, relay, STUN pair, INDEX and network (what `peerway status` prints).",
                                 answer: (200, "Status"), errors: []),
            ] as Object,
        ]
    }

    static func reportSchemas() -> Object {
        func object(_ properties: Object, optional: Set<String> = []) -> Object {
            ["type": "object", "properties": properties, "required": properties.keys.filter { !optional.contains($0) }.sorted(),
             "additionalProperties": false]
        }
        let count: Object = ["type": "integer", "minimum": 0]
        let text: Object = ["type": "string"]
        let counts: Object = ["type": "object", "additionalProperties": count]
        return [
            "Status": object([
                "address": ["type": "string", "description": "The address peers dial (peerway://KEY@HOST:PORT)."],
                "startedAt": ["type": "string", "format": "date-time"], "uptimeSeconds": count,
                "checkpoint": ref("schemas", "StatusCheckpoint"), "handshake": ref("schemas", "StatusHandshake"),
                "relay": ref("schemas", "StatusRelay"), "stun": ref("schemas", "StatusSTUN"),
                "index": ref("schemas", "StatusIndex"), "cluster": ref("schemas", "StatusCluster"),
            ], optional: ["relay", "stun", "index", "cluster"]),
            "StatusCheckpoint": object([
                "udp": text, "tcp": text, "peersRegistered": count, "sessions": count, "remotePeers": count, "watchers": count,
                "watchedPeers": count, "registrations": count, "keepalives": count, "messagesDelivered": count,
                "messagesOffline": count, "messagesTimedOut": count, "dropped": count,
            ], optional: ["tcp"]),
            "StatusHandshake": object([
                "offers": count, "plans": count, "offerTimeouts": count,
                "traversals": counts.merging(["description": "Initiators' reports by path: direct, relayed, failed."]) { a, _ in a },
                "methods": counts.merging(["description": "Successful traversals by method."]) { a, _ in a },
            ]),
            "StatusRelay": object([
                "udp": text, "tcp": text, "allocations": count, "allocationsTotal": count, "forwardedBytes": count,
                "bytesPerSecond": ["type": "number", "minimum": 0], "dropped": count,
            ], optional: ["udp", "tcp"]),
            "StatusSTUN": object([
                "primary": text, "alternate": text, "answered": count, "errors": count, "rateLimited": count, "limitedSources": count,
            ], optional: ["alternate"]),
            "StatusIndex": object(["location": text, "operations": count, "failedOperations": count]),
            "StatusCluster": object([
                "members": ["type": "array", "items": ref("schemas", "StatusMember")], "linked": count,
                "databaseUnavailable": text,
            ], optional: ["databaseUnavailable"]),
            "StatusMember": object([
                "address": text, "isSelf": ["type": "boolean"], "linkUp": ["type": "boolean"], "peers": count,
                "relayAllocations": count, "heartbeatAgeMillis": count,
            ]),
        ]
    }
}
