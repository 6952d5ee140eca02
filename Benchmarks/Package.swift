// swift-tools-version: 6.1
import PackageDescription

// Benchmarks live in their own package so that the peers they compare against (swift-nio here,
// postgres-nio later) never enter the library's build.
let package = Package(
    name: "SyncBridgeBenchmarks",
    dependencies: [
        .package(name: "SyncBridge", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    ],
    targets: [
        .executableTarget(
            name: "SyncBridgeBenchmarks",
            dependencies: [
                .product(name: "SyncBridge", package: "SyncBridge"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    ]
)
