public import InMemoryTracing
import Tracing

/// The spans an `InMemoryTracer` recorded, with what the tracing tests ask of them.
public struct RecordedTrace: Sendable {
    /// Every finished span.
    public let spans: [FinishedInMemorySpan]

    /// The spans `tracer` finished.
    public init(_ tracer: InMemoryTracer) {
        spans = tracer.finishedSpans
    }

    /// The span with this id.
    public func span(id: String) -> FinishedInMemorySpan? {
        spans.first { $0.spanID == id }
    }

    /// The direct children of the span with id `parent`, by start time.
    public func children(of parent: String) -> [FinishedInMemorySpan] {
        spans.filter { $0.parentSpanID == parent }.sorted {
            $0.startInstant.nanosecondsSinceEpoch < $1.startInstant.nanosecondsSinceEpoch
        }
    }

    /// An attribute as text (strings as they are, numbers in decimal), or `nil`.
    public static func text(_ span: FinishedInMemorySpan, _ key: String) -> String? {
        span.attributes.get(key).map(Self.text)
    }

    private static func text(_ attribute: SpanAttribute) -> String {
        switch attribute {
        case .string(let value): value
        case .int64(let value): String(value)
        case .int32(let value): String(value)
        case .bool(let value): String(value)
        case .double(let value): String(value)
        default: "\(attribute)"
        }
    }

    /// Where `text` appears in any span: its name, an attribute, an event, a recorded error.
    public func mentions(of text: String) -> [String] {
        var found: [String] = []
        for span in spans {
            if span.operationName.contains(text) { found.append("the name of \(span.operationName)") }
            // swift-format-ignore: ReplaceForEachWithForLoop
            // (SpanAttributes is not a Sequence: forEach is its only way through.)
            span.attributes.forEach { key, value in
                if Self.text(value).contains(text) { found.append("\(key) of \(span.operationName)") }
            }
            for event in span.events where "\(event)".contains(text) {
                found.append("an event of \(span.operationName)")
            }
            for error in span.errors where "\(error.error)".contains(text) || "\(error.attributes)".contains(text) {
                found.append("an error of \(span.operationName)")
            }
        }
        return found
    }
}
