import Foundation
import Logging
import SampleSupport
import SyncBridgePostgres
import SyncBridgeSQL

/// Fan-out over blocking calls: many lookups, each a blocking libpq call, run with bounded
/// concurrency on a pool's connection threads, with progress, Ctrl-C cancellation (the lookups in
/// flight are cancelled on the server) and the speed-up over the sequential loop.
///
/// `swift run fan-out [--items N] [--concurrency N]`; uses `POSTGRES_URL` when set, otherwise a
/// throwaway server.
@main
struct FanOut {
    static func main() async {
        SampleLogging.bootstrap()
        var items = 2000
        var concurrency = 16
        var arguments = CommandLine.arguments.dropFirst()
        while let option = arguments.popFirst() {
            guard let value = arguments.popFirst().flatMap({ Int($0) }), value > 0 else {
                print("usage: fan-out [--items N] [--concurrency N] (positive integers)")
                exit(2)
            }
            switch option {
            case "--items": items = value
            case "--concurrency": concurrency = value
            default:
                print("fan-out: unknown option \(option)")
                exit(2)
            }
        }
        await SampleMain.run("fan-out", interruptMessage: "Interrupted: cancelling the lookups in flight") {
            [items, concurrency] in
            try await Self.run(items: items, concurrency: concurrency)
        }
    }

    static func run(items: Int, concurrency: Int) async throws {
        let progress = ProgressLine()
        progress.start("starting PostgreSQL")
        let databases = try await SampleDatabases.start(mariaDB: false)
        progress.finish()
        print("Database: \(databases.origin)")
        var logger = Logger(label: "fan-out")
        logger.logLevel = .error
        var poolConfiguration = ConnectionPoolConfiguration()
        poolConfiguration.maximumConnections = concurrency
        let client = PostgresClient(
            connectionString: databases.postgresURL,
            configuration: poolConfiguration,
            logger: logger
        )

        let counter = ProgressCounter()
        do {
            try await client.withRawConnection { try SupplierCatalogue.create($0, items: items) }

            // The legacy loop: one lookup after the other on one connection (here on that
            // connection's thread), timed on a sample of the items.
            let sample = min(items, 200)
            print("Sequential: \(sample) lookups, one after the other…")
            let sequentialStart = ContinuousClock.now
            try await client.withRawConnection { connection in
                for number in 0..<sample {
                    _ = try SupplierCatalogue.lookUp(connection, sku: "SKU-\(number)")
                }
            }
            let sequentialRate = Double(sample) / (ContinuousClock.now - sequentialStart).inSeconds

            // The fan-out: at most `concurrency` lookups in flight, each on a pooled connection's
            // thread; the task group starts the next one as soon as one finishes.
            print("Fan-out: \(items) lookups, at most \(concurrency) at a time…")
            progress.start("fan-out", counter: counter, unit: "items", expected: items)
            let fanOutStart = ContinuousClock.now
            let prices = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                var prices = [Int](repeating: 0, count: items)
                var next = 0
                func startNext() {
                    let number = next
                    next += 1
                    group.addTask {
                        let price = try await client.withRawConnection {
                            try SupplierCatalogue.lookUp($0, sku: "SKU-\(number)")
                        }
                        return (number, price)
                    }
                }
                while next < min(concurrency, items) { startNext() }
                while let (number, price) = try await group.next() {
                    prices[number] = price
                    counter.increment()
                    if next < items { startNext() }
                }
                return prices
            }
            let fanOutRate = Double(items) / (ContinuousClock.now - fanOutStart).inSeconds
            progress.finish()

            let wrong = prices.indices.filter { prices[$0] != SupplierCatalogue.price(of: $0) }
            guard wrong.isEmpty else {
                throw SampleError("\(wrong.count) lookups returned a wrong price, the first for SKU-\(wrong[0])")
            }
            print(
                """

                Sequential: \(Int(sequentialRate)) lookups/s
                Fan-out:    \(Int(fanOutRate)) lookups/s with \(concurrency) connections
                Speed-up:   \(String(format: "%.1f", fanOutRate / sequentialRate))×, all \(items) prices checked
                """
            )
        } catch {
            progress.finish()
            await cleanUp(client, databases)
            if Task.isCancelled {
                print(
                    "Cancelled after \(counter.value) of \(items) lookups; those in flight were cancelled on the server."
                )
                throw CancellationError()
            }
            throw error
        }
        await cleanUp(client, databases)
    }

    /// Closes the pool and stops the throwaway server, even after Ctrl-C.
    static func cleanUp(_ client: PostgresClient, _ databases: SampleDatabases) async {
        await Task.detached {
            await client.shutdown()
            await databases.stop()
        }.value
    }
}

/// A sample's own failure, with what went wrong.
struct SampleError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
