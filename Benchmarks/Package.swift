// swift-tools-version: 6.1
import PackageDescription

// Benchmarks live in their own package so that the peers they compare against (swift-nio here,
// postgres-nio later) never enter the library's build.
let package = Package(
    name: "SyncBridgeBenchmarks",
    dependencies: [
        .package(name: "SyncBridge", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
    ],
    targets: [
        // libpq itself, for the raw synchronous floor.
        .systemLibrary(name: "CLibPQBench", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .target(name: "CBenchShims"),
        .executableTarget(
            name: "SyncBridgeBenchmarks",
            dependencies: [
                .product(name: "SyncBridge", package: "SyncBridge"),
                .product(name: "SyncBridgePostgres", package: "SyncBridge"),
                .product(name: "SyncBridgeMariaDB", package: "SyncBridge"),
                .product(name: "SyncBridgeSQL", package: "SyncBridge"),
                .product(name: "SyncBridgeTesting", package: "SyncBridge"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                "CLibPQBench",
                "CBenchShims",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "SyncBridgeNIO", package: "SyncBridge"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
