public import Logging
import SyncBridge

/// How ``withRetry(_:logger:fileID:line:_:)`` retries: how many attempts, how long it backs off
/// between them, and which errors are worth another attempt.
public struct RetryPolicy: Sendable {
    /// Attempts in all, the first included (at least 1). Default 4.
    public var maximumAttempts: Int
    /// The backoff before the second attempt; it doubles for each further one. Default 20 ms.
    public var initialBackoff: Duration
    /// The longest backoff. Default 1 s.
    public var maximumBackoff: Duration
    /// Decides whether an error is worth another attempt. Default ``isTransientServerError(_:)``:
    /// deadlock victims, serialization failures and lock wait timeouts, as the server reports
    /// them — nothing else (a lost connection mid-`COMMIT` may have committed).
    public var isRetryable: @Sendable (any Error) -> Bool

    /// A policy; every parameter has the default described on its property.
    public init(
        maximumAttempts: Int = 4,
        initialBackoff: Duration = .milliseconds(20),
        maximumBackoff: Duration = .seconds(1),
        isRetryable: @escaping @Sendable (any Error) -> Bool = RetryPolicy.isTransientServerError
    ) {
        precondition(maximumAttempts >= 1, "RetryPolicy needs at least one attempt, not \(maximumAttempts)")
        self.maximumAttempts = maximumAttempts
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
        self.isRetryable = isRetryable
    }

    /// Four attempts, 20 ms doubling to at most 1 s, transient server errors only.
    public static let `default` = RetryPolicy()

    /// Whether `error` is a server error after which the whole transaction may succeed if run
    /// again: PostgreSQL 40P01 (deadlock) and 40001 (serialization failure), MariaDB 1213
    /// (deadlock) and 1205 (lock wait timeout).
    @Sendable public static func isTransientServerError(_ error: any Error) -> Bool {
        guard let error = error as? any SQLServerError else { return false }
        return error.isDeadlock || error.isTransient
    }

    /// The backoff before attempt `attempt` (2, 3…): half of it fixed, half random, so that
    /// transactions that collided do not collide again in step.
    func backoff(beforeAttempt attempt: Int) -> Duration {
        let exponent = min(attempt - 2, 30)
        let nominal = min(maximumBackoff, initialBackoff * (1 << exponent))
        let nanoseconds = Self.nanoseconds(nominal)
        guard nanoseconds > 1 else { return nominal }
        return .nanoseconds(nanoseconds / 2 + Int64.random(in: 0...(nanoseconds / 2)))
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.nanosecondCount
    }
}

/// Runs `operation` — typically a whole transaction — again when it fails with an error that
/// `policy` deems retryable (by default: the server chose it as a deadlock victim, or a
/// serialization failure, or a lock wait timeout), with jittered exponential backoff, at most
/// `policy.maximumAttempts` times in all. Any other error is thrown at once, never retried; after
/// the last attempt, the last error is thrown as it came.
///
/// ```swift
/// try await withRetry {
///     try await client.withTransaction { connection in
///         try await connection.execute("UPDATE accounts SET balance = balance - 10 WHERE id = \(from)")
///         try await connection.execute("UPDATE accounts SET balance = balance + 10 WHERE id = \(to)")
///     }
/// }
/// ```
///
/// Retry whole transactions only: a statement inside a transaction that failed cannot be retried
/// alone, since the server rolled the transaction back.
///
/// - Parameters:
///   - policy: Attempts, backoff and what is retryable.
///   - logger: Receives a notice for each retry, with the error and the attempt.
///   - fileID: The call site, for the log; leave the default.
///   - line: The call site, for the log; leave the default.
///   - operation: The work; it receives the attempt number, from 1.
/// - Returns: What `operation` returns.
/// - Throws: The first non-retryable error, or the last error when every attempt failed;
///   `CancellationError` when the task is cancelled during a backoff.
public func withRetry<Result>(
    _ policy: RetryPolicy = .default,
    logger: Logger = Logger(label: "SyncBridge.Retry"),
    fileID: StaticString = #fileID,
    line: UInt = #line,
    _ operation: (_ attempt: Int) async throws -> Result
) async throws -> Result {
    var attempt = 1
    while true {
        do {
            return try await operation(attempt)
        } catch {
            guard attempt < policy.maximumAttempts, policy.isRetryable(error), !Task.isCancelled else { throw error }
            attempt += 1
            let backoff = policy.backoff(beforeAttempt: attempt)
            logger.notice(
                "retrying after a transient error",
                metadata: [
                    "retry.attempt": "\(attempt)", "retry.backoff": "\(backoff)",
                    "retry.call_site": "\(fileID):\(line)", "error": "\(error)",
                ]
            )
            try await Task.sleep(for: backoff)
        }
    }
}
