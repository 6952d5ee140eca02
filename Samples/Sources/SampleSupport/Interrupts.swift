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
