import Foundation
import SharedTestSupport
import SyncBridgePostgres
import SyncBridgeSQL
import SyncBridgeTesting
import Testing

@Suite("PostgreSQL LISTEN/NOTIFY")
struct PostgresNotificationTests {
    /// Waits until the listener's connection listens to `channel`.
    func waitUntilListening(_ client: PostgresClient, _ channel: String) async throws {
        let deadline = ContinuousClock.now + .seconds(10 * slowdown)
        while ContinuousClock.now < deadline {
            let listening = try await client.query(
                "SELECT count(*) FROM pg_stat_activity WHERE query = \("LISTEN \"\(channel)\"")"
            ).first?.decode(Int.self, at: 0)
            if listening == 1 { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("the listener never listened to \(channel)")
    }

    @Test("notifications arrive in order, with their payloads, only on their channel")
    func deliver() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = PostgresClient(connectionString: server.connectionString)
        let channel = "orders \"special\" ✓"
        let other = client.notifications(on: "other")
        try await waitUntilListening(client, "other")
        let notifications = client.notifications(on: channel)
        try await waitUntilListening(client, "orders \"\"special\"\" ✓")
        let payloads = ["1", "two 'quoted' ✓", ""]
        for payload in payloads {
            try await client.notify(channel: channel, payload: payload)
        }
        var received: [String] = []
        for await notification in notifications {
            #expect(notification.channel == channel)
            received.append(notification.payload)
            if received.count == payloads.count { break }
        }
        #expect(received == payloads)
        await client.shutdown()
        // Shutting down ends every sequence; nothing arrived on the other channel.
        var otherCount = 0
        for await _ in other { otherCount += 1 }
        #expect(otherCount == 0)
    }

    @Test("listen(on:) returns once listening: a notification sent right after it arrives")
    func listenWaitsUntilListening() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = PostgresClient(connectionString: server.connectionString)
        for round in 0..<5 {
            let channel = "listen_\(round)_\(UInt32.random(in: 0...UInt32.max))"
            let notifications = await client.listen(on: channel)
            try await client.notify(channel: channel, payload: "first \(round)")
            let first = try await withDeadline(10) {
                var iterator = notifications.makeAsyncIterator()
                return await iterator.next()?.payload
            }
            #expect(first == "first \(round)")
        }
        await client.shutdown()
        // After shutdown it returns at once, with an empty sequence.
        let afterShutdown = try await withDeadline(10) {
            var count = 0
            for await _ in await client.listen(on: "late") { count += 1 }
            return count
        }
        #expect(afterShutdown == 0)
    }

    @Test("after its connection is terminated the listener reconnects and listens again")
    func relisten() async throws {
        let server = try await TemporaryPostgres.shared()
        let client = PostgresClient(connectionString: server.connectionString)
        let channel = "relisten_\(UInt32.random(in: 0...UInt32.max))"
        let notifications = client.notifications(on: channel)
        try await waitUntilListening(client, channel)
        try await client.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = \("LISTEN \"\(channel)\"")"
        )
        // The new connection listens again.
        let deadline = ContinuousClock.now + .seconds(10 * slowdown)
        var iterator = notifications.makeAsyncIterator()
        let sender = Task {
            while !Task.isCancelled && ContinuousClock.now < deadline {
                try await client.notify(channel: channel, payload: "after")
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let first = await iterator.next()
        sender.cancel()
        #expect(first?.payload == "after")
        await client.shutdown()
    }
}
