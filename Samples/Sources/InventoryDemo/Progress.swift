import Foundation
import Synchronization

/// Counts finished requests while a phase runs.
final class RequestCounter: Sendable {
    private let count = Atomic<Int>(0)

    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// A progress line, redrawn four times a second by a thread of its own: it keeps moving even
/// while the legacy phase blocks every cooperative thread.
final class ProgressLine: Sendable {
    private struct State {
        var label = ""
        var total: Duration = .zero
        var started = ContinuousClock.now
        var counter: RequestCounter?
        /// Which ``start(_:total:counter:)`` the line belongs to; 0 when none is shown.
        var generation = 0
    }

    private let state = Mutex(State())
    private let generations = Atomic<Int>(0)
    private let isTerminal = isatty(STDOUT_FILENO) != 0

    /// Shows `label` with the elapsed time out of `total` and the counter's value until ``finish()``.
    func start(_ label: String, total: Duration = .zero, counter: RequestCounter? = nil) {
        let generation = generations.add(1, ordering: .relaxed).newValue
        state.withLock { $0 = State(label: label, total: total, started: .now, counter: counter, generation: generation) }
        guard isTerminal else {
            print("  \(label)…")
            return
        }
        let thread = Thread { [self] in
            while redraw(generation) {
                Thread.sleep(forTimeInterval: 0.25)
            }
        }
        thread.name = "demo-progress"
        thread.start()
    }

    /// Stops redrawing and clears the line.
    func finish() {
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
            let elapsed = ContinuousClock.now - state.started
            var line = "  \(state.label): \(String(format: "%.1f", elapsed.seconds)) s"
            if state.total > .zero { line += " of \(String(format: "%.0f", state.total.seconds)) s" }
            if let counter = state.counter { line += ", \(counter.value) requests" }
            FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
            return true
        }
    }
}
