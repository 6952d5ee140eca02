import InventoryCore
import InventoryLegacy
import InventoryMigrated
import InventoryWrapped
import SampleSupport
import ServiceLifecycle
import SyncBridge
import SyncBridgeMariaDB
import SyncBridgePostgres

extension Demo {
    /// Runs one mode on one database: a fresh schema, the products, then the load.
    func runPhase(_ mode: Mode, on database: Database, databases: SampleDatabases) async throws -> PhaseResult {
        switch (mode, database) {
        case (.legacy, _), (.legacyGuarded, _):
            // The legacy program's connection, opened the legacy way on this task's thread: once per
            // phase, before the load the demo measures.
            func legacyStore(_ gate: LegacyInventoryStore.Gate) throws -> LegacyInventoryStore {
                switch database {
                // check-blocking: allow one connection per phase, opened before the measured load
                case .postgres: try LegacyInventoryStore(postgres: databases.postgresURL, gate: gate)
                // check-blocking: allow one connection per phase, opened before the measured load
                case .mariaDB: try LegacyInventoryStore(mariaDB: databases.mariaDBURL, gate: gate)
                }
            }
            let inventory = LegacyInventory(
                store: try legacyStore(mode == .legacy ? .dispatchSemaphore : .guardedSemaphore)
            )
            // The guarded store refuses every call from a task: a plain one seeds the products.
            let seed = LegacyInventory(store: try legacyStore(.dispatchSemaphore))
            return try await measure(mode, database, databases, inventory, seed: seed)
        case (.wrapped, .postgres), (.migrated, .postgres):
            let client = PostgresClient(connectionString: databases.postgresURL, logger: Self.quietLogger)
            let inventory: any Inventory =
                mode == .wrapped ? WrappedInventory(client) : PostgresInventory(client: client)
            return try await withRunning(client) {
                try await measure(mode, database, databases, inventory, seed: inventory)
            }
        case (.wrapped, .mariaDB), (.migrated, .mariaDB):
            let client = MariaDBClient(
                configuration: try MariaDBConfiguration(url: databases.mariaDBURL),
                logger: Self.quietLogger
            )
            let inventory: any Inventory =
                mode == .wrapped ? WrappedInventory(client) : MariaDBInventory(client: client)
            return try await withRunning(client) {
                try await measure(mode, database, databases, inventory, seed: inventory)
            }
        }
    }

    /// Runs `body` while `client` keeps its pool in shape; shuts the client down afterwards.
    private func withRunning(_ client: some Service, _ body: () async throws -> PhaseResult) async throws -> PhaseResult
    {
        try await withThrowingTaskGroup { group in
            group.addTask { try await client.run() }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    /// Seeds the products through `seed` (for the guarded phase, a store that may be called from
    /// tasks), then runs the load against `inventory`.
    private func measure(
        _ mode: Mode,
        _ database: Database,
        _ databases: SampleDatabases,
        _ inventory: any Inventory,
        seed: any Inventory
    ) async throws -> PhaseResult {
        progress.start("\(mode.label) (\(database.rawValue)): preparing \(productCount) products")
        try await seed.resetSchema()
        for number in 0..<productCount {
            try await seed.addProduct(sku: Self.sku(number), name: "Product \(number)", stock: 1_000_000)
        }
        progress.finish()

        // check-blocking: allow the job connects once, before the measured load; its own thread does the rest
        let warehouse = try WarehouseSync(database: database, databases: databases, products: productCount)
        defer { warehouse.stop() }
        let counter = ProgressCounter()
        let (watchdogBefore, deadlockBefore) = await reports.settledCounts()
        let limit = mode == .legacyGuarded ? 10 : nil
        progress.start(
            "\(mode.label) (\(database.rawValue))",
            duration: limit == nil ? options.phaseDuration : .zero,
            counter: counter
        )
        defer { progress.finish() }
        let started = ContinuousClock.now
        let deadline = started + options.phaseDuration
        var result = PhaseResult(database: database.rawValue, mode: mode.label)
        let productCount = self.productCount
        try await withThrowingTaskGroup(of: ClientResult.self) { group in
            for client in 0..<options.clients {
                group.addTask {
                    await Self.runClient(
                        client,
                        inventory: inventory,
                        products: productCount,
                        until: deadline,
                        limit: limit,
                        counter: counter
                    )
                }
            }
            group.addTask { await Self.measureTicks(from: started, until: limit == nil ? deadline : nil) }
            for try await clientResult in group {
                result.completed += clientResult.completed
                result.failed += clientResult.failed
                result.refused += clientResult.refused
                result.latencies += clientResult.latencies
                result.tickDelays += clientResult.tickDelays
                if limit != nil && result.completed + result.failed >= options.clients * (limit ?? 0) {
                    group.cancelAll()  // only the tick task is left
                }
            }
        }
        try Task.checkCancellation()
        result.elapsed = ContinuousClock.now - started
        let (watchdogAfter, deadlockAfter) = await reports.settledCounts()
        result.watchdogReports = watchdogAfter - watchdogBefore
        result.deadlockReports = deadlockAfter - deadlockBefore
        return result
    }

    static func sku(_ number: Int) -> String { "SKU-\(number)" }

    struct ClientResult: Sendable {
        var completed = 0
        var failed = 0
        var refused = 0
        var latencies: [Duration] = []
        var tickDelays: [Duration] = []
    }

    /// One client: requests back to back until the deadline (or `limit` requests). Each request
    /// runs in a child task, as a server runs each request's handler in a task of its own, so a
    /// request's latency includes the time it waited for a thread.
    static func runClient(
        _ client: Int,
        inventory: any Inventory,
        products: Int,
        until deadline: ContinuousClock.Instant,
        limit: Int?,
        counter: ProgressCounter
    ) async -> ClientResult {
        var result = ClientResult()
        var sent = 0
        while !Task.isCancelled && ContinuousClock.now < deadline && sent < (limit ?? .max) {
            sent += 1
            let order = "client-\(client)-\(sent)"
            let began = ContinuousClock.now
            async let request: Void = handleRequest(inventory: inventory, products: products, order: order)
            do {
                try await request
                result.latencies.append(ContinuousClock.now - began)
                result.completed += 1
                counter.increment()
            } catch is GuardedWaitError {
                result.refused += 1
                result.failed += 1
            } catch {
                if Task.isCancelled { break }
                result.failed += 1
            }
        }
        return result
    }

    /// One request of the mix: 70 % lookups, 25 % reserve then release, 5 % low-stock reports.
    static func handleRequest(inventory: any Inventory, products: Int, order: String) async throws {
        let sku = sku(Int.random(in: 0..<products))
        switch Int.random(in: 0..<100) {
        case ..<70:
            _ = try await inventory.product(sku: sku)
        case ..<95:
            let reservation = try await inventory.reserve(sku: sku, quantity: 1, order: order)
            try await inventory.release(reservation: reservation)
        default:
            _ = try await inventory.lowStock(below: 10)
        }
    }

    /// An unrelated task that wakes every 10 ms and records how late each wake-up is, counting
    /// from the phase's start: what the rest of an application feels while the phase runs.
    static func measureTicks(
        from start: ContinuousClock.Instant,
        until deadline: ContinuousClock.Instant?
    ) async -> ClientResult {
        var result = ClientResult()
        var expected = start
        while !Task.isCancelled {
            expected += .milliseconds(10)
            do { try await Task.sleep(until: expected) } catch { break }
            let now = ContinuousClock.now
            result.tickDelays.append(now - expected)
            if let deadline, now >= deadline { break }
            // After a late wake-up, the next tick is due 10 ms from now, not in the past.
            if now > expected { expected = now }
        }
        return result
    }
}
