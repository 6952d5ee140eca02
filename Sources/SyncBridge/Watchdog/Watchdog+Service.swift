public import ServiceLifecycle

extension Watchdog: Service {
    /// Watches until the task is cancelled or the service group shuts down gracefully, then stops
    /// the watchdog.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await shutdown()
    }
}
