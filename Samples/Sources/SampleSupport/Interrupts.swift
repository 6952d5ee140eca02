public import Foundation
import Synchronization

/// Ctrl-C for the sample programs: the first one cancels the work, which then cleans up (stops
/// its servers); a second one exits at once. Throwaway servers are deleted at exit either way.
public enum Interrupts {
    /// Cancels `task` on the first Ctrl-C, after printing `message`; exits with status 130 on the
    /// second. Keep the returned source for as long as Ctrl-C should be handled.
    public static func cancel<Success: Sendable, Failure: Error>(
        _ task: Task<Success, Failure>,
        saying message: String
    ) -> any DispatchSourceSignal {
        signal(SIGINT, SIG_IGN)
        let interrupts = Atomic<Int>(0)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: DispatchQueue(label: "sample-signals"))
        source.setEventHandler {
            if interrupts.add(1, ordering: .relaxed).newValue == 1 {
                print("\n\(message) (Ctrl-C again to quit at once)")
                task.cancel()
            } else {
                exit(130)
            }
        }
        source.resume()
        return source
    }
}

/// How the sample programs run their work: in a task that the first Ctrl-C cancels (the work then
/// cleans up after itself), with exit status 0 when it finishes, 130 when it was interrupted, and
/// 1, after printing the error, when it failed.
public enum SampleMain {
    /// Runs `work` and exits the process.
    ///
    /// - Parameters:
    ///   - name: The program's name, for its error message.
    ///   - interruptMessage: What the first Ctrl-C prints.
    ///   - work: The program.
    public static func run(
        _ name: String,
        interruptMessage: String,
        _ work: @escaping @Sendable () async throws -> Void
    ) async -> Never {
        let task = Task { try await work() }
        let interrupts = Interrupts.cancel(task, saying: interruptMessage)
        do {
            try await task.value
            interrupts.cancel()
            exit(0)
        } catch is CancellationError {
            exit(130)
        } catch {
            print("\(name) failed: \(error)")
            exit(1)
        }
    }
}
