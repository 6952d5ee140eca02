public import FoundationEssentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What SyncBridge is doing right now, in one `Codable` value: every connection pool (its leases
/// with their call sites and ages, its waiters, the connections being opened, the failure
/// circuit), every executor thread (the job it runs and since when, the queue behind it), each
/// running watchdog's view of the cooperative pool's bands, and the deadlock detector's wait-for
/// edges.
///
/// Take one with ``take()`` — from a debug route, a test, or a signal with ``SnapshotDumper`` —
/// and encode it with `JSONEncoder` (``jsonString(prettyPrinted:)`` does). Durations are seconds;
/// no parameter value, password or connection string is ever part of it.
///
/// Taking a snapshot takes each component's lock briefly, one after the other: the parts are each
/// consistent, not one atomic picture of the whole process.
public struct SyncBridgeSnapshot: Codable, Sendable, Equatable {
    /// When the snapshot was taken, to the millisecond.
    public var takenAt: Date
    /// The process it was taken in.
    public var processID: Int32
    /// Every connection pool alive in the process, by name.
    public var pools: [Pool]
    /// Every `ThreadExecutor` and `BlockingPool` running in the process (a database connection's
    /// thread is a `ThreadExecutor`), by name.
    public var executors: [Executor]
    /// Every running ``Watchdog``.
    public var watchdogs: [WatchdogView]
    /// The deadlock detector's wait-for graph; `nil` when no detector runs.
    public var waitForGraph: WaitForGraph?

    /// Creates a snapshot from its parts (``take()`` collects them from the running process).
    public init(
        takenAt: Date,
        processID: Int32,
        pools: [Pool],
        executors: [Executor],
        watchdogs: [WatchdogView],
        waitForGraph: WaitForGraph?
    ) {
        self.takenAt = takenAt
        self.processID = processID
        self.pools = pools
        self.executors = executors
        self.watchdogs = watchdogs
        self.waitForGraph = waitForGraph
    }

    /// A connection pool.
    public struct Pool: Codable, Sendable, Equatable {
        /// The pool's name (the database's name unless the client was given another).
        public var name: String
        /// `running`, `shuttingDown` or `shutDown`.
        public var lifecycle: String
        /// The configured maximum number of connections.
        public var maximumConnections: Int
        /// The configured minimum number of connections.
        public var minimumConnections: Int
        /// Connections idle in the pool.
        public var idleConnections: Int
        /// Connections being opened.
        public var openingConnections: Int
        /// Idle connections being health-checked for a waiter.
        public var checkingConnections: Int
        /// Connections leased, oldest lease first.
        public var leases: [Lease]
        /// Tasks waiting for a connection, longest wait first.
        public var waiters: [Waiter]
        /// Set while connection attempts fail: what the pool knows of the failure.
        public var circuit: Circuit?

        /// Creates a pool's part of a snapshot.
        public init(
            name: String,
            lifecycle: String,
            maximumConnections: Int,
            minimumConnections: Int,
            idleConnections: Int,
            openingConnections: Int,
            checkingConnections: Int,
            leases: [Lease],
            waiters: [Waiter],
            circuit: Circuit?
        ) {
            self.name = name
            self.lifecycle = lifecycle
            self.maximumConnections = maximumConnections
            self.minimumConnections = minimumConnections
            self.idleConnections = idleConnections
            self.openingConnections = openingConnections
            self.checkingConnections = checkingConnections
            self.leases = leases
            self.waiters = waiters
            self.circuit = circuit
        }
    }

    /// A leased connection.
    public struct Lease: Codable, Sendable, Equatable {
        /// The connection's number in its pool (1 for the first connection the pool opened).
        public var connection: UInt64
        /// `exclusive` (a task's own: `withConnection`, a transaction, `withRawConnection`) or
        /// `statements` (single statements of many tasks, queued on the connection's thread).
        public var kind: String
        /// Where the lease was asked for (`Module/File.swift:42`); for `statements`, where the
        /// first of them was.
        public var callSite: String
        /// How long the connection has been leased, in seconds.
        public var heldForSeconds: Double
        /// For `statements`: how many are queued or running on the connection.
        public var statements: Int?

        /// Creates a lease's part of a snapshot.
        public init(connection: UInt64, kind: String, callSite: String, heldForSeconds: Double, statements: Int?) {
            self.connection = connection
            self.kind = kind
            self.callSite = callSite
            self.heldForSeconds = heldForSeconds
            self.statements = statements
        }
    }

    /// A task waiting for a pooled connection.
    public struct Waiter: Codable, Sendable, Equatable {
        /// `exclusive` or `statement`, as for ``Lease/kind``.
        public var kind: String
        /// Where the connection was asked for.
        public var callSite: String
        /// How long it has waited, in seconds.
        public var waitingForSeconds: Double

        /// Creates a waiter's part of a snapshot.
        public init(kind: String, callSite: String, waitingForSeconds: Double) {
            self.kind = kind
            self.callSite = callSite
            self.waitingForSeconds = waitingForSeconds
        }
    }

    /// A pool's failing connection attempts.
    public struct Circuit: Codable, Sendable, Equatable {
        /// Whether the circuit is open: no connection is left, and leases fail at once with the
        /// last attempt's error until an attempt succeeds.
        public var isOpen: Bool
        /// Connection attempts that failed in a row.
        public var consecutiveFailures: Int
        /// The last attempt's error, as its description (which never holds a password).
        public var lastError: String?

        /// Creates a circuit's part of a snapshot.
        public init(isOpen: Bool, consecutiveFailures: Int, lastError: String?) {
            self.isOpen = isOpen
            self.consecutiveFailures = consecutiveFailures
            self.lastError = lastError
        }
    }

    /// A `ThreadExecutor`, a `BlockingPool` or an I/O thread (`SQLIOThreads`).
    public struct Executor: Codable, Sendable, Equatable {
        /// The executor's name.
        public var name: String
        /// `ThreadExecutor`, `BlockingPool` or `IOThread`.
        public var kind: String
        /// Its threads; none for a connection's thread that retired while idle.
        public var threads: [Thread]
        /// Closures queued, waiting for a thread (slices of tasks and actors not counted).
        public var queued: Int
        /// Submitters waiting for room in a full queue.
        public var awaitingAdmission: Int
        /// How many closures the queue holds before submitters wait; `nil` when unbounded (a
        /// `ThreadExecutor`'s).
        public var queueCapacity: Int?
        /// Whether it stopped accepting work.
        public var isShutDown: Bool
        /// An I/O thread's statements sent and not yet answered, on all of its connections
        /// (`kind` `statement`, the oldest first); `nil` for other executors.
        public var statementsInFlight: [Job]?

        /// Creates an executor's part of a snapshot.
        public init(
            name: String,
            kind: String,
            threads: [Thread],
            queued: Int,
            awaitingAdmission: Int,
            queueCapacity: Int?,
            isShutDown: Bool,
            statementsInFlight: [Job]? = nil
        ) {
            self.statementsInFlight = statementsInFlight
            self.name = name
            self.kind = kind
            self.threads = threads
            self.queued = queued
            self.awaitingAdmission = awaitingAdmission
            self.queueCapacity = queueCapacity
            self.isShutDown = isShutDown
        }
    }

    /// One executor thread.
    public struct Thread: Codable, Sendable, Equatable {
        /// The thread's name, as `ps -L` and debuggers show it.
        public var name: String
        /// What it runs right now; `nil` when idle.
        public var job: Job?

        /// Creates a thread's part of a snapshot.
        public init(name: String, job: Job?) {
            self.name = name
            self.job = job
        }
    }

    /// The work an executor thread runs.
    public struct Job: Codable, Sendable, Equatable {
        /// `closure` (blocking work submitted with `run`, a statement, legacy code with the raw
        /// handle) or `task` (a slice of a task or an actor that runs on the executor).
        public var kind: String
        /// Where the closure was submitted, when known.
        public var callSite: String?
        /// What it is, when known: a statement's parameterised SQL (never its values).
        public var detail: String?
        /// How long it has been running, in seconds.
        public var runningForSeconds: Double
        /// How long it waited in the queue before the thread picked it up, in seconds.
        public var queuedForSeconds: Double?

        /// Creates a job's part of a snapshot.
        public init(
            kind: String,
            callSite: String?,
            detail: String?,
            runningForSeconds: Double,
            queuedForSeconds: Double?
        ) {
            self.kind = kind
            self.callSite = callSite
            self.detail = detail
            self.runningForSeconds = runningForSeconds
            self.queuedForSeconds = queuedForSeconds
        }
    }

    /// A running watchdog's view of the cooperative pool.
    public struct WatchdogView: Codable, Sendable, Equatable {
        /// The stall threshold, in seconds.
        public var thresholdSeconds: Double
        /// The bands it probes.
        public var bands: [Band]

        /// Creates a watchdog's part of a snapshot.
        public init(thresholdSeconds: Double, bands: [Band]) {
            self.thresholdSeconds = thresholdSeconds
            self.bands = bands
        }
    }

    /// One band (priority) of the cooperative pool, as the watchdog's probes see it.
    public struct Band: Codable, Sendable, Equatable {
        /// `userInitiated`, `default`, `utility`, `background`.
        public var name: String
        /// How long the probe sent last and not yet run has waited, in seconds; `nil` when none
        /// is outstanding.
        public var probeWaitingForSeconds: Double?
        /// How long ago a probe last ran, in seconds; `nil` before the first.
        public var lastProbeSecondsAgo: Double?
        /// Set while the band is reported stalled: for how long, in seconds.
        public var stalledForSeconds: Double?

        /// Creates a band's part of a snapshot.
        public init(
            name: String,
            probeWaitingForSeconds: Double?,
            lastProbeSecondsAgo: Double?,
            stalledForSeconds: Double?
        ) {
            self.name = name
            self.probeWaitingForSeconds = probeWaitingForSeconds
            self.lastProbeSecondsAgo = lastProbeSecondsAgo
            self.stalledForSeconds = stalledForSeconds
        }
    }

    /// The deadlock detector's wait-for graph: who waits for what, and who holds it.
    public struct WaitForGraph: Codable, Sendable, Equatable {
        /// Every wait in progress, longest first.
        public var waits: [Wait]

        /// Creates the graph's part of a snapshot.
        public init(waits: [Wait]) {
            self.waits = waits
        }
    }

    /// One edge set of the wait-for graph: a party waiting for a resource, and its holders.
    public struct Wait: Codable, Sendable, Equatable {
        /// Who waits (a task or a thread, as reports name them).
        public var waiter: String
        /// What it waits for (a pool, a lock, a semaphore, a task).
        public var resource: String
        /// Where it started waiting.
        public var callSite: String
        /// How long it has waited, in seconds.
        public var waitingForSeconds: Double
        /// Who holds the resource, and where each took it.
        public var holders: [Holder]

        /// Creates a wait's part of a snapshot.
        public init(waiter: String, resource: String, callSite: String, waitingForSeconds: Double, holders: [Holder]) {
            self.waiter = waiter
            self.resource = resource
            self.callSite = callSite
            self.waitingForSeconds = waitingForSeconds
            self.holders = holders
        }
    }

    /// A holder of a resource in the wait-for graph.
    public struct Holder: Codable, Sendable, Equatable {
        /// Who holds it.
        public var party: String
        /// Where it took it.
        public var callSite: String

        /// Creates a holder's part of a snapshot.
        public init(party: String, callSite: String) {
            self.party = party
            self.callSite = callSite
        }
    }
}

extension SyncBridgeSnapshot {
    /// Takes a snapshot of the running process. Cheap enough for a debug route or a periodic log
    /// (each component's lock is held only while its part is copied); never blocks on I/O.
    public static func take() -> SyncBridgeSnapshot {
        let now = monotonicNanoseconds()
        var pools: [Pool] = []
        var executors: [Executor] = []
        for source in SnapshotRegistry.sources {
            switch source.snapshotPart(now: now) {
            case .pool(let pool): pools.append(pool)
            case .executor(let executor): executors.append(executor)
            }
        }
        return SyncBridgeSnapshot(
            takenAt: Timestamp(Date()).date,
            processID: getpid(),
            pools: pools.sorted { $0.name < $1.name },
            executors: executors.sorted { $0.name < $1.name },
            watchdogs: WatchdogRegistry.all.map { $0.snapshot(now: now) },
            waitForGraph: WaitGraph.isActive ? WaitGraph.snapshot(now: now) : nil
        )
    }

    /// The snapshot as JSON: keys sorted, ``takenAt`` in ISO 8601 with fractional seconds
    /// (`2026-12-01T11:52:03.127Z`), durations in seconds.
    ///
    /// - Parameter prettyPrinted: Whether to indent it (for a file or a terminal) or keep it on one
    ///   line (for a log).
    public func jsonString(prettyPrinted: Bool = true) -> String {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Timestamp(date).text)
        }
        encoder.outputFormatting = prettyPrinted ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        // Encoding strings, numbers and dates cannot fail.
        let data = (try? encoder.encode(self)) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// Decodes a snapshot from the JSON of ``jsonString(prettyPrinted:)`` (a dump file, a debug
    /// route's answer).
    ///
    /// - Parameter json: The JSON text.
    /// - Throws: `DecodingError` when the text is not such a snapshot.
    public init(json: String) throws {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let timestamp = Timestamp(text) else {
                throw DecodingError.dataCorruptedError(
                    in: container,
                    debugDescription: "takenAt is not an ISO 8601 date with milliseconds: \(text)"
                )
            }
            return timestamp.date
        }
        self = try decoder.decode(SyncBridgeSnapshot.self, from: Data(json.utf8))
    }

    /// A date to the millisecond, which its ISO 8601 text (`2026-12-01T11:52:03.127Z`) gives back
    /// exactly: a snapshot decoded from its JSON equals it.
    private struct Timestamp {
        let milliseconds: Int64

        init(_ date: Date) {
            milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded())
        }

        init?(_ text: String) {
            guard text.hasSuffix("Z"), let dot = text.lastIndex(of: "."),
                let fraction = Int64(text[text.index(after: dot)..<text.index(before: text.endIndex)]),
                (0..<1000).contains(fraction),
                let seconds = try? Date.ISO8601FormatStyle().parse(text[..<dot] + "Z")
            else { return nil }
            milliseconds = Int64(seconds.timeIntervalSince1970) * 1000 + fraction
        }

        var date: Date {
            let (seconds, fraction) = milliseconds.quotientAndRemainder(dividingBy: 1000)
            return Date(timeIntervalSince1970: Double(seconds) + Double(fraction) / 1000)
        }

        var text: String {
            let (seconds, fraction) = milliseconds.quotientAndRemainder(dividingBy: 1000)
            let whole = Date(timeIntervalSince1970: Double(seconds)).formatted(Date.ISO8601FormatStyle())
            let digits = String(fraction)
            return whole.dropLast() + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
        }
    }

    /// Seconds from a span of monotonic nanoseconds (0 when `start` is after `now`).
    package static func seconds(from start: UInt64, to now: UInt64) -> Double {
        now > start ? Double(now - start) / 1e9 : 0
    }
}
