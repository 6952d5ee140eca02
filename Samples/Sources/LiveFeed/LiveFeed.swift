import Foundation
import InventoryCore
import InventoryLegacy
import InventoryMigrated
import Logging
import SampleSupport
import SyncBridgeMariaDB
import SyncBridgePostgres
import Synchronization

/// The live feed: while the legacy program makes reservations from a thread of its own, a
/// consumer prints each one as it arrives, from PostgreSQL's LISTEN/NOTIFY and from polling
/// MariaDB, with how long after the commit it arrived.
///
/// `swift run live-feed [--seconds N]` (per database, default 5); uses `POSTGRES_URL` and
/// `MARIADB_URL` when set, otherwise throwaway servers.
@main
struct LiveFeed {
    static func main() async {
        SampleLogging.bootstrap()
        var seconds = 5
        let arguments = Array(CommandLine.arguments.dropFirst())
        if !arguments.isEmpty {
            guard arguments.count == 2, arguments[0] == "--seconds", let value = Int(arguments[1]), value > 0 else {
                print("usage: live-feed [--seconds N]")
                exit(2)
            }
            seconds = value
        }
        await SampleMain.run("live-feed", interruptMessage: "Interrupted: stopping the feeds and the servers") {
            [seconds] in
            try await Self.run(seconds: seconds)
        }
    }

    static func run(seconds: Int) async throws {
        let progress = ProgressLine()
        progress.start("starting PostgreSQL and MariaDB")
        let databases = try await SampleDatabases.start()
        progress.finish()
        print("Databases: \(databases.origin)\n")
        var summaries: [String] = []
        do {
            let postgres = PostgresClient(connectionString: databases.postgresURL)
            let migrated = PostgresInventory(client: postgres)
            try await migrated.resetSchema()
            try await migrated.addProduct(sku: "MUG", name: "Mug", stock: 1_000_000)
            try await ReservationFeed.installTrigger(postgres)
            print("PostgreSQL, LISTEN/NOTIFY (a trigger announces each reservation):")
            // check-blocking: allow the legacy writer's one connection, opened before the feed starts
            let store = try LegacyInventoryStore(postgres: databases.postgresURL)
            summaries.append(
                "PostgreSQL LISTEN/NOTIFY: "
                    + (try await consume(await ReservationFeed.postgres(postgres), from: store, for: seconds))
            )
            await postgres.shutdown()

            let mariaDB = MariaDBClient(configuration: try MariaDBConfiguration(url: databases.mariaDBURL))
            let migratedMariaDB = MariaDBInventory(client: mariaDB)
            try await migratedMariaDB.resetSchema()
            try await migratedMariaDB.addProduct(sku: "MUG", name: "Mug", stock: 1_000_000)
            print("\nMariaDB, polling every 100 ms:")
            // check-blocking: allow the legacy writer's one connection, opened before the feed starts
            let mariaDBStore = try LegacyInventoryStore(mariaDB: databases.mariaDBURL)
            summaries.append(
                "MariaDB polling:          "
                    + (try await consume(
                        try await ReservationFeed.mariaDB(mariaDB, every: .milliseconds(100)),
                        from: mariaDBStore,
                        for: seconds
                    ))
            )
            await mariaDB.shutdown()
        } catch {
            await databases.stop()
            throw error
        }
        await databases.stop()
        print("\n" + summaries.joined(separator: "\n"))
    }

    /// Prints the feed's events while `store` makes a reservation every 50–300 ms from a thread
    /// of its own, until half a second after the last one; returns a summary: the events seen of
    /// the reservations made, and the median delay between commit and arrival.
    static func consume(
        _ feed: AsyncThrowingStream<ReservationEvent, any Error>,
        from store: LegacyInventoryStore,
        for seconds: Int
    ) async throws -> String {
        let log = ReservationLog()
        let (writerFinished, finish) = AsyncStream<Never>.makeStream()
        LegacyWriter.start(store: store, log: log, until: .now + .seconds(seconds), then: finish)
        let (seen, delays) = try await withThrowingTaskGroup(of: (Int, [Duration])?.self) { group in
            group.addTask {
                var seen = 0
                var delays: [Duration] = []
                for try await event in feed {
                    seen += 1
                    // The writer logs the time when its call returns, just after the commit; a
                    // notification can be faster than that.
                    if let delay = log.made(event.id).map({ ContinuousClock.now - $0 }) {
                        delays.append(delay)
                        print("  \(event), arrived \(milliseconds(delay)) after the commit")
                    } else {
                        print("  \(event), arrived before the writer's call returned")
                    }
                }
                return (seen, delays)
            }
            group.addTask {
                // Late events get half a second after the writer's last reservation.
                for await _ in writerFinished {}
                try await Task.sleep(for: .milliseconds(500))
                return nil
            }
            _ = try await group.next()
            group.cancelAll()
            return try await group.compactMap { $0 }.first { _ in true } ?? (0, [])
        }
        let median = delays.sorted().dropFirst(delays.count / 2).first
        return "\(seen) of \(log.count) reservations seen, median delay \(median.map(milliseconds) ?? "-")"
    }

    static func milliseconds(_ duration: Duration) -> String {
        String(format: "%.1f ms", duration.inMilliseconds)
    }
}

/// The commit time of each reservation the writer made.
final class ReservationLog: Sendable {
    private let made = Mutex<[Int: ContinuousClock.Instant]>([:])

    func record(_ id: Int) { made.withLock { $0[id] = ContinuousClock.now } }
    func made(_ id: Int) -> ContinuousClock.Instant? { made.withLock { $0[id] } }
    var count: Int { made.withLock { $0.count } }
}

/// The legacy program's side: reservations made with the blocking store from a thread of its
/// own, each commit's time logged so that the consumer can tell how late it saw it.
enum LegacyWriter {
    static func start(
        store: LegacyInventoryStore,
        log: ReservationLog,
        until deadline: ContinuousClock.Instant,
        then finish: AsyncStream<Never>.Continuation
    ) {
        let thread = Thread {
            var order = 0
            while ContinuousClock.now < deadline {
                order += 1
                if let id = try? store.reserve(sku: "MUG", quantity: Int.random(in: 1...3), order: "order-\(order)") {
                    log.record(id)
                }
                Thread.sleep(forTimeInterval: Double.random(in: 0.05...0.3))
            }
            finish.finish()
        }
        thread.name = "legacy-writer"
        thread.start()
    }
}
