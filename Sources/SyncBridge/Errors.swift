/// An executor refused work: it is shut down, or the resource it guards is closed.
///
/// ```swift
/// do {
///     try await pool.run { work() }
/// } catch let error as ExecutorError where error.code == .shutDown {
///     // the service is stopping
/// }
/// ```
public struct ExecutorError: Error, Hashable, CustomStringConvertible {
    /// What went wrong. New codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case shutDown
            case resourceClosed
        }

        private let base: Base

        private init(_ base: Base) { self.base = base }

        /// The executor is shutting down or shut down: it accepts no new work.
        public static let shutDown = Code(.shutDown)
        /// The ``ThreadBound`` resource has been closed.
        public static let resourceClosed = Code(.resourceClosed)

        /// The code's name.
        public var description: String {
            switch base {
            case .shutDown: "shutDown"
            case .resourceClosed: "resourceClosed"
            }
        }
    }

    /// What went wrong.
    public let code: Code
    /// The name of the executor that refused the work.
    public let executorName: String
    /// The executor's type: `ThreadExecutor` or `BlockingPool`.
    public let executorKind: String

    init(code: Code, executorName: String, kind: WorkerThreads.Kind) {
        self.code = code
        self.executorName = executorName
        self.executorKind = kind.rawValue
    }

    /// The error of work submitted for a `ThreadBound` resource that is closed.
    package static func resourceClosed(onThreadExecutor executorName: String) -> ExecutorError {
        ExecutorError(code: .resourceClosed, executorName: executorName, kind: .threadExecutor)
    }

    /// What was refused and why, naming the executor.
    public var description: String {
        switch code {
        case .shutDown:
            "\(executorKind) '\(executorName)' is shut down: it accepts no new work"
        case .resourceClosed:
            "the resource bound to \(executorKind) '\(executorName)' is closed"
        default:
            "\(executorKind) '\(executorName)': \(code)"
        }
    }
}

/// A point in the source: `#fileID:#line`, captured by default arguments of SyncBridge's
/// blocking and waiting APIs so that reports name the caller.
public struct CallSite: Hashable, Sendable, CustomStringConvertible {
    // The `#fileID` literal itself: making a `String` of it costs an allocation, which the hot
    // paths that carry call sites (every pooled query) only pay when a report needs the text.
    private let file: StaticString
    /// The line of the call.
    public let line: UInt

    /// Creates a call site; pass `#fileID` and `#line`.
    public init(fileID: StaticString = #fileID, line: UInt = #line) {
        self.file = fileID
        self.line = line
    }

    /// The `#fileID` of the call, such as `MyModule/Legacy.swift`.
    public var fileID: String { "\(file)" }

    /// `Module/File.swift:42`.
    public var description: String { "\(file):\(line)" }

    /// Whether both name the same file and line.
    public static func == (lhs: CallSite, rhs: CallSite) -> Bool {
        lhs.line == rhs.line && lhs.fileID == rhs.fileID
    }

    /// Hashes the file and line.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(fileID)
        hasher.combine(line)
    }
}

/// A snapshot of an executor's queue.
public struct ExecutorStatistics: Hashable, Sendable {
    /// Threads the executor runs now: a ``ThreadExecutor`` whose thread retired while idle (a
    /// pooled connection's, on I/O threads) counts none until its next job starts one.
    public var threadCount: Int
    /// How many submitted closures the queue holds before submitters wait for room.
    public var queueCapacity: Int
    /// Submitted closures waiting for a thread.
    public var queuedWork: Int
    /// Submitters waiting for room in a full queue.
    public var awaitingAdmission: Int
    /// Submitted closures running now.
    public var runningWork: Int
    /// Threads parked for lack of work.
    public var idleThreads: Int
    /// Whether shutdown has begun.
    public var isShutDown: Bool
}
