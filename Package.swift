// swift-tools-version: 6.2
import PackageDescription

/// Settings every Swift target of the package shares.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "SyncBridge",
    products: [
        .library(name: "SyncBridge", targets: ["SyncBridge"]),
        .library(name: "SyncBridgeSQL", targets: ["SyncBridgeSQL"]),
        .library(name: "SyncBridgePostgres", targets: ["SyncBridgePostgres"]),
        .library(name: "SyncBridgeMariaDB", targets: ["SyncBridgeMariaDB"]),
        .library(name: "SyncBridgeTesting", targets: ["SyncBridgeTesting"]),
        // SwiftNIO's event loops watched like the cooperative pool, and blocking work offloaded
        // from future-based code. Only users of SwiftNIO build it.
        .library(name: "SyncBridgeNIO", targets: ["SyncBridgeNIO"]),
        // Throwaway PostgreSQL and MariaDB servers, for tests, demos and samples.
        .library(name: "SyncBridgeTemporaryServers", targets: ["SyncBridgeTemporaryServers"]),
        // The C clients' modules, so that legacy libpq and Connector/C code shares the handle types
        // that `withRawConnection` passes.
        .library(name: "CLibPQ", targets: ["CLibPQ"]),
        .library(name: "CMariaDB", targets: ["CMariaDB"]),
        // `swift package check-blocking`: the paths from async contexts to blocking calls, found
        // in the sources before anything runs.
        .plugin(name: "CheckBlocking", targets: ["CheckBlocking"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
        // Only for SyncBridgeNIO.
        .package(url: "https://github.com/apple/swift-nio", from: "2.100.0"),
        // Only for the check-blocking plugin's tool; the libraries do not link it.
        .package(url: "https://github.com/swiftlang/swift-syntax", "600.0.0"..<"604.0.0"),
    ],
    targets: [
        // C glue: gettid, thread names, the dispatch-label check, thread-local worker slot.
        .target(name: "CSyncBridgeShims"),
        // The C client libraries, found through pkg-config.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "CMariaDB",
            pkgConfig: "libmariadb",
            providers: [.apt(["libmariadb-dev"])]
        ),
        .target(
            name: "SyncBridge",
            dependencies: [
                "CSyncBridgeShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        // What both database facades share: bound-parameter queries, values, rows, errors.
        .target(
            name: "SyncBridgeSQL",
            dependencies: [
                "SyncBridge",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SyncBridgePostgres",
            dependencies: [
                "SyncBridge",
                "SyncBridgeSQL",
                "CLibPQ",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SyncBridgeMariaDB",
            dependencies: [
                "SyncBridge",
                "SyncBridgeSQL",
                "CMariaDB",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SyncBridgeTemporaryServers",
            dependencies: [
                "SyncBridge",
                "CSyncBridgeShims",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SyncBridgeNIO",
            dependencies: [
                "SyncBridge",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SyncBridgeTesting",
            dependencies: [
                "SyncBridge",
                "SyncBridgeTemporaryServers",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The static check: reads Swift sources, reports paths from async contexts to blocking calls.
        .target(
            name: "SyncBridgeBlockingCheck",
            dependencies: [
                .product(name: "SwiftSyntax", package: "swift-syntax"),
                .product(name: "SwiftParser", package: "swift-syntax"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "sb-check-blocking",
            dependencies: ["SyncBridgeBlockingCheck"],
            swiftSettings: swiftSettings
        ),
        .plugin(
            name: "CheckBlocking",
            capability: .command(
                intent: .custom(
                    verb: "check-blocking",
                    description: "Find the paths from async contexts to blocking calls in the package's sources"
                )
            ),
            dependencies: ["sb-check-blocking"]
        ),
        // Helpers the database test targets share (deadlines, gates); not a product.
        .target(
            name: "SharedTestSupport",
            dependencies: [
                "SyncBridge", "SyncBridgeSQL", "SyncBridgeTemporaryServers",
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            path: "Tests/SharedTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SyncBridgeTests",
            dependencies: [
                "SyncBridge",
                "CSyncBridgeShims",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SyncBridgeSQLTests",
            dependencies: ["SyncBridgeSQL"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SyncBridgePostgresTests",
            dependencies: [
                "SyncBridge", "SyncBridgeSQL", "SyncBridgePostgres", "SyncBridgeTesting", "CLibPQ", "SharedTestSupport",
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SyncBridgeMariaDBTests",
            dependencies: [
                "SyncBridge", "SyncBridgeSQL", "SyncBridgeMariaDB", "SyncBridgeTesting", "CMariaDB",
                "SharedTestSupport",
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SyncBridgeNIOTests",
            dependencies: [
                "SyncBridge", "SyncBridgeNIO", "SyncBridgeTesting", "SyncBridgePostgres", "SyncBridgeTemporaryServers",
                "SharedTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SyncBridgeBlockingCheckTests",
            dependencies: ["SyncBridgeBlockingCheck", "SyncBridge"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SyncBridgeTestingTests",
            dependencies: ["SyncBridge", "SyncBridgeTesting", "CLibPQ", "CMariaDB"],
            swiftSettings: swiftSettings
        ),
    ]
)
