// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Vouch",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vouch", targets: ["vouch"]),
        .executable(name: "vouch-bench", targets: ["vouch-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // Thin C shim over the system OpenSSL 3 libcrypto: exposes the macros Swift cannot import.
        .target(
            name: "CVouchOpenSSL",
            linkerSettings: [.linkedLibrary("crypto")]
        ),
        // Certificate authority cryptography (keys, CSRs, certificates, CRLs) on OpenSSL.
        .target(
            name: "VouchCrypto",
            dependencies: ["CVouchOpenSSL", "VouchIdentityRules"]
        ),
        // Files written so readers see the old or the new content, never a mix.
        .target(name: "VouchFiles"),
        // Syntax of trust domains, SPIFFE IDs, DNS names and IP addresses, shared by the CA and its clients.
        .target(name: "VouchIdentityRules"),
        // Policy, tokens, issue/renew/revoke/CRL. Imports neither gRPC nor SQLite.
        .target(
            name: "VouchAuthority",
            dependencies: ["VouchCrypto", "VouchFiles", "VouchIdentityRules"]
        ),
        // SQLite implementation of the authority's storage protocol.
        .target(
            name: "VouchSQLiteStore",
            dependencies: [
                "VouchAuthority",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        // PostgreSQL implementation of the same protocol, for several CA replicas sharing one database.
        .target(
            name: "VouchPostgresStore",
            dependencies: [
                "VouchAuthority",
                "VouchFiles",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What every listener allows a connection: open-connection cap, handshake and idle timeouts.
        .target(
            name: "VouchConnectionLimits",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        // Reusable hot-reloading mTLS for Swift gRPC servers: TLS 1.3 listener, peer
        // verification with swappable trust and revocation, identity files, file watch.
        .target(
            name: "VouchTLS",
            dependencies: [
                "VouchIdentityRules",
                "VouchConnectionLimits",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // gRPC services, interceptors, the CA listener and generated code for vouch.v1.
        .target(
            name: "VouchAPI",
            dependencies: [
                "VouchIdentityRules",
                "VouchAuthority",
                "VouchFiles",
                "VouchConnectionLimits",
                "VouchCrypto",
                "VouchTLS",
                "VouchHTTP",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            exclude: ["vouch/v1/ca.proto", "vouch/v1/agent.proto", "grpc/health/v1/health.proto"]
        ),
        // A small plain-HTTP endpoint (CRL, OCSP, Prometheus metrics) for software that does not speak gRPC.
        .target(
            name: "VouchHTTP",
            dependencies: [
                "VouchConnectionLimits",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // `vouch ui`: a read-only dashboard on loopback, pages rendered from the Admin API without JavaScript.
        .target(
            name: "VouchDashboard",
            dependencies: [
                "VouchAPI",
                "VouchHTTP",
                "VouchAuthority",
                "VouchIdentityRules",
                "VouchConnectionLimits",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The SPIFFE Workload API (X.509 part): its hand-written .proto and the generated code. A module
        // of its own, since the standard's messages have no package (X509SVID, ...).
        .target(
            name: "VouchWorkloadAPI",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["spiffe/workload/workload.proto"]
        ),
        // The agent: enrollment, rotation on disk, local status server, hooks.
        .target(
            name: "VouchAgent",
            dependencies: [
                "VouchAPI",
                "VouchWorkloadAPI",
                "CVouchOpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                "VouchConnectionLimits",
                "VouchCrypto",
                "VouchFiles",
                "VouchIdentityRules",
                "VouchTLS",
                "VouchHTTP",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        .executableTarget(
            name: "vouch",
            dependencies: [
                "VouchAgent",
                "VouchConnectionLimits",
                "VouchTLS",
                "VouchHTTP",
                "VouchAPI",
                "VouchAuthority",
                "VouchCrypto",
                "VouchFiles",
                "VouchIdentityRules",
                "VouchSQLiteStore",
                "VouchPostgresStore",
                "VouchDashboard",
                .product(name: "Yams", package: "Yams"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ]
        ),
        .executableTarget(
            name: "vouch-bench",
            dependencies: [
                "VouchAPI",
                "VouchAuthority",
                "VouchCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ]
        ),
        .testTarget(
            name: "VouchTests",
            dependencies: [
                "vouch",
                "VouchWorkloadAPI",
                "VouchDashboard",
                "VouchHTTP",
                "VouchAgent",
                "VouchTLS",
                "VouchAPI",
                "VouchAuthority",
                "VouchCrypto",
                "VouchFiles",
                "VouchIdentityRules",
                "VouchSQLiteStore",
                "VouchPostgresStore",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
    ]
)
