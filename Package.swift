// swift-tools-version:6.1
import PackageDescription

/// Peerway: a supernode network (CHECKPOINT, HANDSHAKE, STUN pair, RELAY, INDEX) and the client
/// library that finds peers behind NATs and connects them, direct whenever possible.
///
/// Layering, bottom to top:
/// - `PeerwaySTUN`: pure RFC 8489 / 5780 / 3489 wire codec (no I/O).
/// - `PeerwayNetcheck`: pure RFC 5780 NAT behaviour discovery state machine (no sockets, no clock).
/// - `PeerwaySupernode`: the services (SwiftNIO I/O around the pure layers) and their composition.
/// - `Peerway`: the client library (netcheck driver today; peers and tunnels later).
/// - `PeerwayLab`: the NAT lab (network namespaces + nftables NAT presets; Foundation only).
/// - `peerway`: the command-line tool.
let package = Package(
    name: "Peerway",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Peerway", targets: ["Peerway"]),
        .library(name: "PeerwaySupernode", targets: ["PeerwaySupernode"]),
        .library(name: "PeerwaySTUN", targets: ["PeerwaySTUN"]),
        .library(name: "PeerwayNetcheck", targets: ["PeerwayNetcheck"]),
        .library(name: "PeerwayCheckpoint", targets: ["PeerwayCheckpoint"]),
        .library(name: "PeerwayRelay", targets: ["PeerwayRelay"]),
        .library(name: "PeerwayTunnel", targets: ["PeerwayTunnel"]),
        .library(name: "PeerwayLab", targets: ["PeerwayLab"]),
        .library(name: "PeerwayPortMap", targets: ["PeerwayPortMap"]),
        .executable(name: "peerway", targets: ["peerway"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // INDEX storage: SQLite (embedded default) and PostgreSQL.
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // INDEX management API.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        // Operators' metrics: the swift-metrics API, exported in Prometheus' text format (GET /metrics).
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // `peerway supernode --config FILE`: the supernode's settings in TOML.
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
    ],
    targets: [
        .target(
            name: "PeerwaySTUN",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "PeerwayNetcheck",
            dependencies: [
                "PeerwaySTUN",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Port mapping on the home router: PCP, NAT-PMP and UPnP-IGD codecs and the mapping's state
        // machine (pure; the sockets are in Peerway's PortMapper).
        .target(
            name: "PeerwayPortMap",
            dependencies: [
                "PeerwaySTUN",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The control protocol: identities, wire codec, crypto, search and the pure CHECKPOINT
        // state machines of both sides (no sockets, no clock).
        .target(
            name: "PeerwayCheckpoint",
            dependencies: [
                "PeerwaySTUN",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The raw RELAY's tokens, allocation table and forwarding rules (pure; the service is in PeerwaySupernode).
        .target(
            name: "PeerwayRelay",
            dependencies: [
                "PeerwaySTUN",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Tunnel keys, path probes and encrypted records (pure; see docs/traversal-protocol.md).
        .target(
            name: "PeerwayTunnel",
            dependencies: [
                "PeerwayCheckpoint", "PeerwaySTUN",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "PeerwaySupernode",
            dependencies: [
                "PeerwaySTUN",
                "PeerwayCheckpoint",
                "PeerwayIndex",
                "PeerwayIndexAPI",
                "PeerwayRelay",
                "CPeerwayLinux",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // The cluster's membership table in the shared PostgreSQL (the INDEX's driver).
                .product(name: "PostgresNIO", package: "postgres-nio"),
                // GET /metrics: one Prometheus registry per supernode (Observability/).
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                // SupernodeSettings: the configuration file.
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .target(
            name: "Peerway",
            dependencies: [
                "PeerwaySTUN",
                "PeerwayCheckpoint",
                "PeerwayNetcheck",
                "PeerwayPortMap",
                "PeerwayRelay",
                "PeerwayTunnel",
                "CPeerwayLinux",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The INDEX's storage: users, virtual networks, memberships, searchable metadata; one
        // IndexStore interface over SQLite (GRDB) and PostgreSQL (postgres-nio).
        .target(
            name: "PeerwayIndex",
            dependencies: [
                "PeerwayCheckpoint",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The INDEX's management API: HTTP + JSON behind an admin token, with its OpenAPI document.
        .target(
            name: "PeerwayIndexAPI",
            dependencies: [
                "PeerwayIndex",
                "PeerwayCheckpoint",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(name: "CPeerwayLinux"),
        // The NAT lab: topology, nftables rules and the runner of `ip`/`nft` (Foundation only).
        .target(name: "PeerwayLab"),
        .executableTarget(
            name: "peerway",
            dependencies: [
                "CPeerwayLinux",
                "Peerway",
                "PeerwaySupernode",
                "PeerwaySTUN",
                "PeerwayNetcheck",
                "PeerwayCheckpoint",
                "PeerwayLab",
                "PeerwayPortMap",
                "PeerwayRelay",
                "PeerwayTunnel",
                "PeerwayIndex",
                "PeerwayIndexAPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "PeerwaySTUNTests",
            dependencies: ["PeerwaySTUN", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "PeerwayNetcheckTests",
            dependencies: ["PeerwayNetcheck", "PeerwaySTUN", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "PeerwayCheckpointTests",
            dependencies: [
                "PeerwayCheckpoint", "PeerwaySTUN",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "PeerwaySupernodeTests",
            dependencies: ["PeerwaySupernode", "PeerwaySTUN", "PeerwayCheckpoint", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "PeerwayIntegrationTests",
            dependencies: [
                "Peerway", "PeerwaySupernode", "PeerwaySTUN", "PeerwayNetcheck", "PeerwayCheckpoint", "PeerwayRelay", "PeerwayTunnel",
                "PeerwayIndex", "PeerwayIndexAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PeerwayRelayTests",
            dependencies: ["PeerwayRelay", "PeerwaySTUN", .product(name: "NIOCore", package: "swift-nio"), .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(
            name: "PeerwayTunnelTests",
            dependencies: [
                "PeerwayTunnel", "PeerwayCheckpoint", "PeerwaySTUN",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(name: "PeerwayLabTests", dependencies: ["PeerwayLab"]),
        .testTarget(
            name: "PeerwayPortMapTests",
            dependencies: ["PeerwayPortMap", "PeerwaySTUN", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(name: "PeerwayIndexTests", dependencies: ["PeerwayIndex", "PeerwayCheckpoint", "PeerwaySupernode"]),
        .testTarget(
            name: "PeerwayIndexAPITests",
            dependencies: [
                "PeerwayIndexAPI", "PeerwayIndex", "PeerwayCheckpoint",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
    ]
)
