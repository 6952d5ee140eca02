// swift-tools-version: 6.1
import PackageDescription

/// Settings every Swift target of the samples shares (the library's own).
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// The samples: a legacy inventory service three times (legacy, wrapped, migrated), the demo that
/// runs them under load, and small programs for the other capabilities. A package of its own, so
/// that the library's test build stays light; CI builds it and runs its tests.
/// Executables export their symbols, so that the watchdog's stacks name the functions of the
/// program itself, not only those of shared libraries.
let exportedSymbols: [LinkerSetting] = [.unsafeFlags(["-Xlinker", "--export-dynamic"])]

let package = Package(
    name: "SyncBridgeSamples",
    dependencies: [
        .package(name: "SyncBridge", path: ".."),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/vapor/vapor", from: "4.122.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.100.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
    ],
    targets: [
        // What the sample programs share: their databases (throwaway or from the environment),
        // progress lines, Ctrl-C.
        .target(
            name: "SampleSupport",
            dependencies: [
                .product(name: "SyncBridgeTemporaryServers", package: "SyncBridge"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // What every form of the inventory service shares: products, errors, the operations.
        .target(name: "InventoryCore", swiftSettings: swiftSettings),
        // SQLite's C library, found through pkg-config, and the adapter that makes it a
        // SyncBridge database ("Wrap your own blocking C client").
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .target(
            name: "SQLiteAdapter",
            dependencies: ["CSQLite", .product(name: "SyncBridgeSQL", package: "SyncBridge")],
            swiftSettings: swiftSettings
        ),
        // The legacy data layer: direct libpq and Connector/C calls, one global connection, a
        // semaphore for callers to take turns.
        .target(
            name: "InventoryLegacy",
            dependencies: [
                "InventoryCore",
                .product(name: "CLibPQ", package: "SyncBridge"),
                .product(name: "CMariaDB", package: "SyncBridge"),
                .product(name: "SyncBridge", package: "SyncBridge"),
            ],
            swiftSettings: swiftSettings
        ),
        // Step 1 of MIGRATION.md: the legacy functions, unchanged, on the pool's connection threads.
        .target(
            name: "InventoryWrapped",
            dependencies: [
                "InventoryCore", "InventoryLegacy",
                .product(name: "SyncBridgePostgres", package: "SyncBridge"),
                .product(name: "SyncBridgeMariaDB", package: "SyncBridge"),
            ],
            swiftSettings: swiftSettings
        ),
        // Step 3 of MIGRATION.md: typed async queries, transactions, cancellation.
        .target(
            name: "InventoryMigrated",
            dependencies: [
                "InventoryCore", "SQLiteAdapter",
                .product(name: "SyncBridgePostgres", package: "SyncBridge"),
                .product(name: "SyncBridgeMariaDB", package: "SyncBridge"),
            ],
            swiftSettings: swiftSettings
        ),
        // The README's first command: the inventory service under load, four ways.
        .executableTarget(
            name: "InventoryDemo",
            dependencies: [
                "InventoryCore", "InventoryLegacy", "InventoryWrapped", "InventoryMigrated", "SampleSupport",
                .product(name: "SyncBridge", package: "SyncBridge"),
                .product(name: "CLibPQ", package: "SyncBridge"),
                .product(name: "CMariaDB", package: "SyncBridge"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: exportedSymbols
        ),
        // Fan-out over blocking calls: bounded concurrency, progress, Ctrl-C, the speed-up.
        .executableTarget(
            name: "FanOut",
            dependencies: [
                "InventoryCore", "SampleSupport",
                .product(name: "CLibPQ", package: "SyncBridge"),
                .product(name: "SyncBridgePostgres", package: "SyncBridge"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: exportedSymbols
        ),
        // The live feed: LISTEN/NOTIFY and MariaDB polling as AsyncSequences.
        .executableTarget(
            name: "LiveFeed",
            dependencies: [
                "InventoryCore", "InventoryLegacy", "InventoryMigrated", "SampleSupport",
                .product(name: "SyncBridgePostgres", package: "SyncBridge"),
                .product(name: "SyncBridgeMariaDB", package: "SyncBridge"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: exportedSymbols
        ),
        // The HTTP service: Hummingbird handlers over the wrapped legacy data layer (or the migrated
        // one), with the pool, the watchdog, the deadlock detector and the snapshot dumper as
        // services, its requests traced down to the SQL; Scripts/load.sh puts it under load.
        .executableTarget(
            name: "InventoryServer",
            dependencies: [
                "InventoryCore", "InventoryWrapped", "InventoryMigrated", "SampleSupport",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "SyncBridge", package: "SyncBridge"),
                .product(name: "SyncBridgePostgres", package: "SyncBridge"),
                .product(name: "SyncBridgeMariaDB", package: "SyncBridge"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: exportedSymbols
        ),
        // The watchdog in tests: a heavy report query called the legacy way and the offloaded way.
        .target(
            name: "StockValuation",
            dependencies: [
                "InventoryCore",
                .product(name: "CLibPQ", package: "SyncBridge"),
                .product(name: "SyncBridgePostgres", package: "SyncBridge"),
            ],
            swiftSettings: swiftSettings
        ),
        // The same report as a Vapor 4 route, three ways: the legacy future chain that blocks its
        // event loop, the same chain offloaded with BlockingPool.runIfActive(eventLoop:), and an
        // async route over the facade (MIGRATION.md, "Future-based code").
        .target(
            name: "VaporValuation",
            dependencies: [
                "StockValuation",
                .product(name: "CLibPQ", package: "SyncBridge"),
                .product(name: "SyncBridge", package: "SyncBridge"),
                .product(name: "SyncBridgeNIO", package: "SyncBridge"),
                .product(name: "SyncBridgePostgres", package: "SyncBridge"),
                .product(name: "Vapor", package: "vapor"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VaporValuationTests",
            dependencies: [
                "VaporValuation", "StockValuation", "SampleSupport",
                .product(name: "SyncBridge", package: "SyncBridge"),
                .product(name: "SyncBridgeNIO", package: "SyncBridge"),
                .product(name: "SyncBridgePostgres", package: "SyncBridge"),
                .product(name: "SyncBridgeTesting", package: "SyncBridge"),
                .product(name: "VaporTesting", package: "vapor"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: exportedSymbols
        ),
        .testTarget(
            name: "StockValuationTests",
            dependencies: [
                "StockValuation", "InventoryLegacy", "SampleSupport",
                .product(name: "CLibPQ", package: "SyncBridge"),
                .product(name: "SyncBridgePostgres", package: "SyncBridge"),
                .product(name: "SyncBridgeTesting", package: "SyncBridge"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: exportedSymbols
        ),
        .testTarget(
            name: "InventoryTests",
            dependencies: [
                "InventoryCore", "InventoryLegacy", "InventoryWrapped", "InventoryMigrated", "SQLiteAdapter",
                "SampleSupport",
                .product(name: "SyncBridge", package: "SyncBridge"),
                .product(name: "SyncBridgeTesting", package: "SyncBridge"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
