import Foundation
import Synchronization

/// Counts what a long phase has done (requests, items), for its ``ProgressLine``.
public final class ProgressCounter: Sendable {
    private let count = Atomic<Int>(0)

    /// A counter at zero.
    public init() {}

    /// Counts one more.
    public func increment() { count.add(1, ordering: .relaxed) }

    /// The count so far.
    public var value: Int { count.load(ordering: .relaxed) }
}

/// A progress line for long phases, redrawn four times a second by a thread of its own, so that
/// it keeps moving even while a phase blocks every cooperative thread. When the output is not a
/// terminal, it prints the label once instead.
public final class ProgressLine: Sendable {
    private struct State {
        var label = ""
        var duration: Duration = .zero
        var started = ContinuousClock.now
        var counter: ProgressCounter?
        var unit = ""
        var expected: Int?
        /// Which ``start(_:duration:counter:unit:expected:)`` the line belongs to; 0 when none.
        var generation = 0
    }

    private let state = Mutex(State())
    private let generations = Atomic<Int>(0)
    private let isTerminal = isatty(STDOUT_FILENO) != 0

    /// A progress line; nothing is shown until ``start(_:duration:counter:unit:expected:)``.
    public init() {}

    /// Shows `label`, the time elapsed (out of `duration` when given) and the counter's value
    /// (out of `expected` when given) until ``finish()``.
    public func start(
        _ label: String,
        duration: Duration = .zero,
        counter: ProgressCounter? = nil,
        unit: String = "requests",
        expected: Int? = nil
    ) {
        let generation = generations.add(1, ordering: .relaxed).newValue
        state.withLock {
            $0 = State(
                label: label,
                duration: duration,
                started: .now,
                counter: counter,
                unit: unit,
                expected: expected,
                generation: generation
            )
        }
        guard isTerminal else {
            print("  \(label)…")
            return
        }
        let thread = Thread { [self] in
            while redraw(generation) {
                Thread.sleep(forTimeInterval: 0.25)
            }
        }
        thread.name = "sample-progress"
        thread.start()
    }

    /// Stops redrawing and clears the line.
    public func finish() {
        state.withLock { state in
            guard state.generation != 0 else { return }
            state.generation = 0
            if isTerminal { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)) }
        }
    }

    /// Draws the line (under the lock, so that ``finish()`` cannot clear it half-way); `false`
    /// once that line is finished.
    private func redraw(_ generation: Int) -> Bool {
        state.withLock { state in
            guard state.generation == generation else { return false }
            let elapsed = (ContinuousClock.now - state.started).inSeconds
            var line = "  \(state.label): \(String(format: "%.1f", elapsed)) s"
            if state.duration > .zero { line += " of \(state.duration.components.seconds) s" }
            if let counter = state.counter {
                line += ", \(counter.value)"
                if let expected = state.expected { line += " of \(expected)" }
                line += " \(state.unit)"
            }
            FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
            return true
        }
    }
}
