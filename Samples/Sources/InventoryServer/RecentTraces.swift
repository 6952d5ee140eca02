import Foundation
import InMemoryTracing
import ServiceLifecycle
import Synchronization
import Tracing

/// The traces of the last requests (a server span each, with everything under it), kept in memory for `GET /debug/traces` (`--trace`): what an
/// OpenTelemetry collector would show, without one. In production, bootstrap swift-otel instead
/// (README, "Tracing and metrics"); the spans are the same.
///
/// Its service moves the tracer's finished spans into whole traces ten times a second and keeps
/// the last `capacity` of them, so that memory stays bounded under load.
final class RecentTraces: Service, Sendable {
    /// The tracer to bootstrap.
    let tracer = InMemoryTracer()
    private let capacity: Int
    private let traces = Mutex<[[FinishedInMemorySpan]]>([])

    init(capacity: Int = 20) {
        self.capacity = capacity
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var pending: [String: [FinishedInMemorySpan]] = [:]
            while !Task.isCancelled {
                self.collect(into: &pending)
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Moves finished spans into traces; a trace is whole once its root (the request's span) ended.
    private func collect(into pending: inout [String: [FinishedInMemorySpan]]) {
        var finished: [[FinishedInMemorySpan]] = []
        for span in tracer.popFinishedSpans() {
            pending[span.traceID, default: []].append(span)
            // Requests only: the seeding's statements, before the server starts, are traces too.
            if span.parentSpanID == nil, let trace = pending.removeValue(forKey: span.traceID), span.kind == .server {
                finished.append(trace)
            }
        }
        // Spans whose root never ends (a request still running when many others finished) are
        // dropped rather than kept forever.
        if pending.count > 10 * capacity { pending.removeAll() }
        guard !finished.isEmpty else { return }
        traces.withLock { traces in
            traces.append(contentsOf: finished)
            traces.removeFirst(max(0, traces.count - capacity))
        }
    }

    /// The kept traces as text, newest first: one tree per request, each span with its duration
    /// and attributes.
    var text: String {
        traces.withLock { $0 }.reversed().map(Self.render).joined(separator: "\n")
    }

    private static func render(_ trace: [FinishedInMemorySpan]) -> String {
        let children = Dictionary(grouping: trace.filter { $0.parentSpanID != nil }, by: { $0.parentSpanID! })
        var lines: [String] = []
        func add(_ span: FinishedInMemorySpan, prefix: String, continuation: String) {
            let milliseconds =
                Double(span.endInstant.nanosecondsSinceEpoch - span.startInstant.nanosecondsSinceEpoch) / 1e6
            var attributes: [String] = []
            // swift-format-ignore: ReplaceForEachWithForLoop
            // (SpanAttributes is not a Sequence: forEach is its only way through.)
            span.attributes.forEach { key, value in attributes.append("\(key)=\(text(value))") }
            let kind = span.kind == .internal ? "" : "  \(span.kind)"
            let status = span.status?.code == .error ? "  ERROR" : ""
            lines.append(
                "\(prefix)\(span.operationName)  \(String(format: "%.2f", milliseconds)) ms\(kind)\(status)"
                    + (attributes.isEmpty ? "" : "  " + attributes.sorted().joined(separator: "  "))
            )
            let kids = (children[span.spanID] ?? []).sorted {
                $0.startInstant.nanosecondsSinceEpoch < $1.startInstant.nanosecondsSinceEpoch
            }
            for (index, child) in kids.enumerated() {
                let last = index == kids.count - 1
                add(
                    child,
                    prefix: continuation + (last ? "└─ " : "├─ "),
                    continuation: continuation + (last ? "   " : "│  ")
                )
            }
        }
        for root in trace where root.parentSpanID == nil {
            add(root, prefix: "", continuation: "")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func text(_ attribute: SpanAttribute) -> String {
        switch attribute {
        case .string(let value): value.contains(" ") ? "\"\(value)\"" : value
        case .int64(let value): String(value)
        case .int32(let value): String(value)
        case .bool(let value): String(value)
        case .double(let value): String(value)
        default: "\(attribute)"
        }
    }
}
