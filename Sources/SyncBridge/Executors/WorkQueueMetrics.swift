import Metrics

/// The swift-metrics instruments of one executor.
struct WorkQueueMetrics: Sendable {
    let queueDepth: Meter
    let waitDuration: Timer
    let runDuration: Timer
    let rejected: Counter

    init(name: String, kind: WorkerThreads.Kind, factory: any MetricsFactory) {
        let dimensions = [("executor", name), ("kind", kind.rawValue)]
        queueDepth = Meter(label: "syncbridge.executor.queue_depth", dimensions: dimensions, factory: factory)
        waitDuration = Timer(label: "syncbridge.executor.wait_duration", dimensions: dimensions, factory: factory)
        runDuration = Timer(label: "syncbridge.executor.run_duration", dimensions: dimensions, factory: factory)
        rejected = Counter(label: "syncbridge.executor.rejected", dimensions: dimensions, factory: factory)
    }
}
