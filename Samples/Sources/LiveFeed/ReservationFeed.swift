import SyncBridgeMariaDB
import SyncBridgePostgres
import SyncBridgeSQL

/// A reservation as the feed reports it.
struct ReservationEvent: Sendable, Hashable, CustomStringConvertible {
    var id: Int
    var sku: String
    var quantity: Int

    var description: String { "reservation \(id): \(quantity) × \(sku)" }
}

/// Reservations as they are made, as an `AsyncSequence`, whoever makes them (the legacy program
/// included: nothing in the writers changes).
enum ReservationFeed {
    /// The PostgreSQL channel the trigger notifies.
    static let channel = "reservations"

    /// Installs the trigger that announces each new reservation on ``channel`` with
    /// `pg_notify` (`id,quantity,sku`), delivered when the writer's transaction commits.
    static func installTrigger(_ client: PostgresClient) async throws {
        try await client.execute(
            """
            CREATE OR REPLACE FUNCTION announce_reservation() RETURNS trigger AS $$
            BEGIN
                PERFORM pg_notify('reservations', NEW.id || ',' || NEW.quantity || ',' || NEW.sku);
                RETURN NEW;
            END
            $$ LANGUAGE plpgsql
            """
        )
        try await client.execute(
            """
            CREATE TRIGGER announce_reservation AFTER INSERT ON reservations
            FOR EACH ROW EXECUTE FUNCTION announce_reservation()
            """
        )
    }

    /// PostgreSQL: LISTEN/NOTIFY. Returns once the client listens, so that no reservation made
    /// afterwards is missed; events arrive as the server pushes them, within a millisecond or two
    /// of the commit. The sequence ends when the client shuts down.
    static func postgres(_ client: PostgresClient) async -> AsyncThrowingStream<ReservationEvent, any Error> {
        let notifications = await client.listen(on: channel)
        return AsyncThrowingStream { continuation in
            let listener = Task {
                for await notification in notifications {
                    let fields = notification.payload.split(separator: ",", maxSplits: 2)
                    guard fields.count == 3, let id = Int(fields[0]), let quantity = Int(fields[1]) else { continue }
                    continuation.yield(ReservationEvent(id: id, sku: String(fields[2]), quantity: quantity))
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in listener.cancel() }
        }
    }

    /// MariaDB has no LISTEN/NOTIFY: the feed polls for rows newer than the last one it saw,
    /// every `interval`, starting with those made after this call returns. Events arrive up to one
    /// interval late; stopping the iteration stops the polling.
    ///
    /// With several concurrent writers, `AUTO_INCREMENT` ids can commit out of order and a row
    /// committed late behind a higher id would be skipped; such feeds poll an outbox table that
    /// one writer numbers, or a change timestamp with a safety margin. The sample has one writer.
    static func mariaDB(
        _ client: MariaDBClient,
        every interval: Duration
    ) async throws -> AsyncThrowingStream<ReservationEvent, any Error> {
        // Where the feed starts: every reservation made after this returns is reported.
        let start = try await client.query("SELECT COALESCE(MAX(id), 0) FROM reservations")[0].decode(Int.self, at: 0)
        return AsyncThrowingStream { continuation in
            let poller = Task {
                do {
                    var last = start
                    while !Task.isCancelled {
                        let rows = try await client.query(
                            "SELECT id, sku, quantity FROM reservations WHERE id > \(last) ORDER BY id LIMIT 1000"
                        )
                        for row in rows {
                            let (id, sku, quantity) = try row.decode((Int, String, Int).self)
                            continuation.yield(ReservationEvent(id: id, sku: sku, quantity: quantity))
                            last = id
                        }
                        if rows.count < 1000 { try await Task.sleep(for: interval) }
                    }
                    continuation.finish()
                } catch is CancellationError {
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in poller.cancel() }
        }
    }
}
