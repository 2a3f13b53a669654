/// Every metric family a supernode exports at `GET /metrics`: its name, type, labels and HELP
/// text. Names follow Prometheus' conventions (`peerway_<service>_...`, `_total` for counters,
/// base units in names: `_seconds`, `_bytes`); labels take a bounded set of values (no peer, no
/// address but the other supernodes' short keys, whose number is the network's size).
extension SupernodeMetrics {
    /// A family's Prometheus type.
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    /// One family.
    public struct Family: Sendable, Equatable {
        public let name: String
        public let kind: Kind
        public let labels: [String]
        public let help: String
    }

    /// The families, by service.
    public static let catalog: [Family] = [
        // The supernode.
        .init(name: "peerway_supernode_start_time_seconds", kind: .gauge, labels: [],
              help: "When the supernode started, in seconds since the Unix epoch."),
        // CHECKPOINT.
        .init(name: "peerway_checkpoint_peers_registered", kind: .gauge, labels: [], help: "Peers registered with this supernode now."),
        .init(name: "peerway_checkpoint_sessions", kind: .gauge, labels: [], help: "Control channel sessions held now, registered or not."),
        .init(name: "peerway_checkpoint_remote_peers", kind: .gauge, labels: [],
              help: "Peers registered on the other supernodes of the network, in this one's directory."),
        .init(name: "peerway_checkpoint_watchers", kind: .gauge, labels: [], help: "Peers that watch at least one peer."),
        .init(name: "peerway_checkpoint_watched_peers", kind: .gauge, labels: [], help: "Peers that at least one peer watches."),
        .init(name: "peerway_checkpoint_pending_pushes", kind: .gauge, labels: [], help: "Pushes (messages, notifications) awaiting their ack."),
        .init(name: "peerway_checkpoint_registrations_total", kind: .counter, labels: [], help: "Registrations accepted."),
        .init(name: "peerway_checkpoint_registrations_ended_total", kind: .counter, labels: ["reason"],
              help: "Registrations ended: unregistered (left, superseded, supernode stopping) or expired (keepalives stopped)."),
        .init(name: "peerway_checkpoint_keepalives_total", kind: .counter, labels: [], help: "Keepalives answered."),
        .init(name: "peerway_checkpoint_requests_total", kind: .counter, labels: [], help: "Authenticated requests handled (keepalives included)."),
        .init(name: "peerway_checkpoint_messages_total", kind: .counter, labels: ["outcome"],
              help: "Instant messages by final outcome: delivered, offline (recipient not registered), timed_out (no ack)."),
        .init(name: "peerway_checkpoint_pushes_given_up_total", kind: .counter, labels: [], help: "Pushes never acknowledged within their lifetime."),
        .init(name: "peerway_checkpoint_handshakes_total", kind: .counter, labels: [], help: "Control channel key exchanges completed."),
        .init(name: "peerway_checkpoint_datagrams_total", kind: .counter, labels: ["direction"], help: "Control datagrams received and sent."),
        .init(name: "peerway_checkpoint_unauthenticated_bytes_total", kind: .counter, labels: ["direction"],
              help: "Bytes of unauthenticated datagrams (hellos, garbage) received and of their answers sent: out/in is the amplification factor."),
        .init(name: "peerway_checkpoint_dropped_total", kind: .counter, labels: ["reason"],
              help: "Control datagrams dropped: malformed, authentication, replay, unknown_session, rate_limited, oversize."),
        .init(name: "peerway_checkpoint_send_failures_total", kind: .counter, labels: [], help: "Datagrams the kernel refused to send."),
        .init(name: "peerway_checkpoint_tcp_connections", kind: .gauge, labels: [], help: "Control channel connections over TCP open now."),
        .init(name: "peerway_checkpoint_tcp_connections_accepted_total", kind: .counter, labels: [],
              help: "TCP connections accepted on the shared port (relay hand-offs included)."),
        // HANDSHAKE.
        .init(name: "peerway_handshake_offers_total", kind: .counter, labels: [], help: "Traversal offers received."),
        .init(name: "peerway_handshake_plans_total", kind: .counter, labels: [], help: "Traversals planned (both offers in, plans pushed)."),
        .init(name: "peerway_handshake_offer_timeouts_total", kind: .counter, labels: [], help: "Traversals failed because the second offer never came."),
        .init(name: "peerway_handshake_no_relay_total", kind: .counter, labels: [], help: "Plans made without a relay (none could take an allocation)."),
        .init(name: "peerway_handshake_traversals_total", kind: .counter, labels: ["path", "method"],
              help: "Traversals as their initiators reported them: path direct, relayed or failed; method lan, hairpin, punch, predict, many-port, tcp-simultaneous-open or relay."),
        .init(name: "peerway_handshake_tunnel_setup_seconds", kind: .histogram, labels: ["path"],
              help: "Time from connect to a working tunnel (or to giving up), as the initiator measured it."),
        // RELAY.
        .init(name: "peerway_relay_allocations", kind: .gauge, labels: ["transport"], help: "Relay allocations now."),
        .init(name: "peerway_relay_allocations_created_total", kind: .counter, labels: ["transport"], help: "Relay allocations created (first valid bind)."),
        .init(name: "peerway_relay_allocations_ended_total", kind: .counter, labels: ["transport", "reason"],
              help: "Relay allocations ended: idle, bytes (limit reached), lifetime, unbound (the other side never bound), closed."),
        .init(name: "peerway_relay_binds_refused_total", kind: .counter, labels: ["transport", "reason"],
              help: "Relay binds refused: malformed, forged, expired, wrong_transport, taken, full, ended."),
        .init(name: "peerway_relay_forwarded_bytes_total", kind: .counter, labels: ["transport"], help: "Payload bytes the relay forwarded."),
        .init(name: "peerway_relay_forwarded_datagrams_total", kind: .counter, labels: ["transport"],
              help: "Datagrams (UDP) or reads (TCP) the relay forwarded."),
        .init(name: "peerway_relay_dropped_total", kind: .counter, labels: ["transport", "reason"],
              help: "Relay datagrams dropped: waiting_for_partner, unauthenticated, oversize, send_failure."),
        .init(name: "peerway_relay_tcp_connections", kind: .gauge, labels: [], help: "Relay TCP connections open now."),
        .init(name: "peerway_relay_tcp_connections_refused_total", kind: .counter, labels: ["reason"],
              help: "Relay TCP connections closed: full (maximum open), no_bind (no valid bind in time)."),
        // STUN.
        .init(name: "peerway_stun_datagrams_received_total", kind: .counter, labels: [], help: "Datagrams the STUN pair received."),
        .init(name: "peerway_stun_answers_total", kind: .counter, labels: ["kind"], help: "STUN answers sent: success or error (400, 420)."),
        .init(name: "peerway_stun_dropped_total", kind: .counter, labels: ["reason"],
              help: "STUN datagrams dropped: malformed, oversize, not_a_request, rate_limited, send_failure."),
        .init(name: "peerway_stun_rate_limited_sources_total", kind: .counter, labels: [],
              help: "Times a source address went over the per-source rate limit (its first refused request after admitted ones)."),
        .init(name: "peerway_stun_rate_limit_sources", kind: .gauge, labels: [], help: "Source addresses the rate limiter tracks now."),
        .init(name: "peerway_stun_rate_limit_untracked_total", kind: .counter, labels: [],
              help: "Requests admitted without a bucket because the rate limiter's table was full."),
        // INDEX and the management API.
        .init(name: "peerway_index_operations_total", kind: .counter, labels: ["operation", "outcome"],
              help: "INDEX operations peers ran through their control channel: outcome ok or error (refused or failed)."),
        .init(name: "peerway_index_operation_duration_seconds", kind: .histogram, labels: ["operation"],
              help: "Time an INDEX operation took, store and password hashing included."),
        .init(name: "peerway_admin_requests_total", kind: .counter, labels: ["method", "route", "code"],
              help: "Requests the management API answered, by route pattern and status code."),
        .init(name: "peerway_admin_request_duration_seconds", kind: .histogram, labels: ["route"],
              help: "Time the management API took to answer."),
        // The network of supernodes.
        .init(name: "peerway_cluster_members", kind: .gauge, labels: [], help: "Live supernodes of the network (this one included)."),
        .init(name: "peerway_cluster_links_up", kind: .gauge, labels: [], help: "Other supernodes whose mesh link to this one is up."),
        .init(name: "peerway_cluster_database_up", kind: .gauge, labels: [], help: "1 when the membership database answered the last heartbeat, else 0."),
        .init(name: "peerway_cluster_member_link_up", kind: .gauge, labels: ["member"],
              help: "1 when this supernode's mesh link to the member (its key's first 8 base32 characters) is up, else 0."),
        .init(name: "peerway_cluster_member_peers", kind: .gauge, labels: ["member"], help: "Peers registered on the member, at its last heartbeat."),
        .init(name: "peerway_cluster_member_relay_allocations", kind: .gauge, labels: ["member"],
              help: "Relay allocations on the member, at its last heartbeat."),
        .init(name: "peerway_cluster_member_heartbeat_age_seconds", kind: .gauge, labels: ["member"],
              help: "Age of the member's last heartbeat, by the database's clock."),
    ]

    static let catalogByName: [String: Family] = Dictionary(uniqueKeysWithValues: catalog.map { ($0.name, $0) })
}
