import CSyncBridgeShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What a socket is ready for, as an ``IOThread`` reports it.
package struct IOReadiness: OptionSet, Sendable {
    package let rawValue: Int32

    package init(rawValue: Int32) {
        self.rawValue = rawValue
    }

    /// Data (or the end of the stream) can be read.
    package static let readable = IOReadiness(rawValue: SB_IO_READABLE)
    /// Data can be written.
    package static let writable = IOReadiness(rawValue: SB_IO_WRITABLE)
    /// The peer hung up or the socket failed; reading says how.
    package static let failed = IOReadiness(rawValue: SB_IO_FAILED)
    /// Nothing happened before the deadline the socket was armed with.
    package static let timedOut = IOReadiness(rawValue: 1 << 8)
}

/// One thread that waits on many sockets at once (epoll) and runs the short, non-blocking jobs
/// handed to it: the I/O thread of connections whose C clients have a non-blocking API.
///
/// Jobs run in the order they were handed over. Handing one over wakes the thread only when it
/// is asleep in `epoll_wait` (one `write` to an eventfd); while it is busy, jobs and ready
/// sockets are picked up in the same turn, so that under load many statements share a wake-up.
/// A socket is armed for one report at a time: its handler runs once per ``arm(_:for:deadline:)``,
/// so that a socket a blocking thread borrows in between is never reported to it. The kernel's
/// registration outlives the report (level-triggered): re-arming a socket for what it was armed
/// for last costs no system call, which is every statement's case. A report that nobody armed for
/// silences the socket instead (one `epoll_ctl`) until it is armed again. A socket armed with a
/// deadline is reported ``IOReadiness/timedOut`` when nothing happened by then.
///
/// Everything but ``execute(_:)`` must be called on the thread itself.
package final class IOThread: @unchecked Sendable {
    // Safe to share: `inbox` is reached only under its lock; `epollDescriptor` and
    // `eventDescriptor` are immutable; `sockets`, `nextToken`, `deadlines` and `nextDeadline` are
    // touched only on the loop thread (the methods that use them check `isCurrent`).
    package let name: String
    private let epollDescriptor: Int32
    private let eventDescriptor: Int32
    private let inbox = Locked(Inbox())
    private var sockets: [UInt64: Watched] = [:]
    private var nextToken: UInt64 = 1
    /// The deadlines of armed sockets (monotonic nanoseconds), by token.
    private var deadlines: [UInt64: UInt64] = [:]
    /// No deadline passes before this (it may be earlier than the earliest one).
    private var nextDeadline = UInt64.max
    /// The statements in flight on the thread's connections, for snapshots.
    private let ledger = Locked<[ObjectIdentifier: InFlight]>([:])

    /// A socket the thread watches.
    private struct Watched {
        let socket: Int32
        let handler: (IOReadiness) -> Void
        /// Runs for a report nobody armed for, once the socket is silenced.
        let unarmed: ((IOReadiness) -> Void)?
        /// What the kernel reports the socket for (level-triggered), or `nil` when it is silenced.
        var registered: Int32?
        /// The handler wants the next report.
        var armed = false

        /// Arms the socket for `interest`; `true` when the kernel must be told (it reports the
        /// socket for something else, or not at all).
        mutating func arm(for interest: Int32) -> Bool {
            armed = true
            return registered != interest
        }
    }

    /// A statement in flight, as snapshots show it.
    private struct InFlight {
        let detail: any CustomStringConvertible & Sendable
        let callSite: CallSite?
        let submittedAt: UInt64
        let sentAt: UInt64
    }

    private struct Inbox {
        var jobs: [@Sendable () -> Void] = []
        /// Jobs of tasks that prefer this thread as their executor (see ``IOThread/enqueue(_:)``).
        var tasks: [UnownedJob] = []
        /// The thread is (about to be) asleep in `epoll_wait`: the next job must wake it.
        var sleeping = false
        var stopping = false
    }

    /// Starts the thread.
    package init(name: String) {
        self.name = name
        var event: Int32 = -1
        let epoll = sb_io_create(&event)
        precondition(epoll >= 0, "\(name): epoll_create1 or eventfd failed with errno \(errno)")
        epollDescriptor = epoll
        eventDescriptor = event
        SnapshotRegistry.add(self)
        startDedicatedThread(named: name) { [self] in
            // The thread runs the jobs of the tasks that prefer it: blocking there, or waiting
            // synchronously, would hold up every connection it serves, so it is guarded like an
            // event loop (`Blocking.call` reports calls there, guarded waits refuse to wait there).
            EventLoopThreads.markCurrentThread(named: name)
            sb_set_current_io_thread(Unmanaged.passUnretained(self).toOpaque())
            loop()
            sb_set_current_io_thread(nil)
            EventLoopThreads.unmarkCurrentThread()
        }
    }

    /// Whether the caller runs on this thread.
    package var isCurrent: Bool {
        sb_current_io_thread() == Unmanaged.passUnretained(self).toOpaque()
    }

    /// The I/O thread the caller runs on, as a number that tells the threads apart (its address),
    /// or 0 on any other thread: the pool's hint to lease a task on an I/O thread a connection
    /// of the same thread. One thread-local load.
    package static var currentAffinity: UInt {
        UInt(bitPattern: sb_current_io_thread())
    }

    /// The number ``currentAffinity`` gives on this thread.
    package var affinity: UInt {
        UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque())
    }

    /// Runs `job` on the thread, after the jobs handed over before it. It must not block.
    package func execute(_ job: @escaping @Sendable () -> Void) {
        handOver { $0.jobs.append(job) }
    }

    /// Runs a task's job on the thread, after the jobs handed over before it: the thread is the
    /// executor of the tasks that prefer it (`withTaskExecutorPreference`), so that a task that
    /// awaits a statement served here resumes here, with no other thread to wake.
    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        handOver { $0.tasks.append(job) }
    }

    /// Adds work to the inbox with `add`, and wakes the thread when it sleeps in `epoll_wait`.
    private func handOver(_ add: (inout Inbox) -> Void) {
        let wake = inbox.withLock { inbox -> Bool in
            add(&inbox)
            guard inbox.sleeping else { return false }
            inbox.sleeping = false
            return true
        }
        if wake { sb_io_wake(eventDescriptor) }
    }

    /// Starts watching `socket`, not armed yet: `handler` runs on the thread with what the socket
    /// is ready for, once per ``arm(_:for:deadline:)``.
    ///
    /// Between arms, the kernel may still report the socket for what it was armed for last
    /// (level-triggered): the socket is then silenced until it is armed again, and `unarmed`, if
    /// given, runs with the report (the server sent something unasked, or closed the connection).
    ///
    /// - Returns: The socket's token for ``arm(_:for:deadline:)`` and ``remove(_:)``.
    package func add(
        _ socket: Int32,
        handler: @escaping (IOReadiness) -> Void,
        unarmed: ((IOReadiness) -> Void)? = nil
    ) -> UInt64 {
        precondition(isCurrent, "IOThread.add(_:handler:unarmed:) off its thread")
        let token = nextToken
        nextToken += 1
        sockets[token] = Watched(socket: socket, handler: handler, unarmed: unarmed)
        let result = sb_io_watch(epollDescriptor, socket, token, 0, 1)
        precondition(result == 0, "\(name): epoll_ctl(ADD) failed with errno \(result)")
        return token
    }

    /// Asks for one report when the socket of `token` is ready for `interest` (or fails), or, with
    /// a `deadline` (monotonic nanoseconds), when it passes first (``IOReadiness/timedOut``).
    package func arm(_ token: UInt64, for interest: IOReadiness, deadline: UInt64? = nil) {
        precondition(isCurrent, "IOThread.arm(_:for:deadline:) off its thread")
        if let deadline {
            deadlines[token] = deadline
            nextDeadline = min(nextDeadline, deadline)
        } else if !deadlines.isEmpty {
            deadlines[token] = nil
        }
        guard let mustRegister = sockets[token]?.arm(for: interest.rawValue) else {
            preconditionFailure("IOThread.arm(_:for:deadline:) with a token it does not watch")
        }
        if mustRegister { register(token, for: interest) }
    }

    /// Registers the socket of `token` with the kernel for `interest`; reports it failed when it
    /// is gone.
    private func register(_ token: UInt64, for interest: IOReadiness) {
        guard let socket = sockets[token]?.socket else { return }
        let result = sb_io_watch(epollDescriptor, socket, token, interest.rawValue, 0)
        guard result == 0 else {
            // The socket is gone (closed under us): report it failed, so that its owner reads the
            // error.
            sockets[token]?.registered = nil
            sockets[token]?.armed = false
            execute { [self] in sockets[token]?.handler(.failed) }
            return
        }
        sockets[token]?.registered = interest.rawValue
    }

    /// Runs the handler of `token`, armed, with `readiness`; silences the socket when it is not
    /// armed (its owner has not asked for this report), then tells its `unarmed` handler.
    private func report(_ readiness: IOReadiness, to token: UInt64) {
        guard let watched = sockets[token] else { return }
        guard watched.armed else {
            // Silenced already (reported twice in one turn): told once.
            guard watched.registered != nil else { return }
            sockets[token]?.registered = nil
            _ = sb_io_watch(epollDescriptor, watched.socket, token, 0, 0)
            watched.unarmed?(readiness)
            return
        }
        sockets[token]?.armed = false
        watched.handler(readiness)
    }

    /// Stops watching the socket of `token`; call before it is closed.
    package func remove(_ token: UInt64) {
        precondition(isCurrent, "IOThread.remove(_:) off its thread")
        deadlines[token] = nil
        guard let watched = sockets.removeValue(forKey: token) else { return }
        _ = sb_io_remove(epollDescriptor, watched.socket)
    }

    /// Notes for snapshots that the statement `id` (described by `detail`, submitted at
    /// `submittedAt`, in monotonic nanoseconds, from `callSite`) was sent.
    package func noteSent(
        _ id: ObjectIdentifier,
        detail: any CustomStringConvertible & Sendable,
        callSite: CallSite?,
        submittedAt: UInt64
    ) {
        let entry = InFlight(
            detail: detail,
            callSite: callSite,
            submittedAt: submittedAt,
            sentAt: monotonicNanoseconds()
        )
        ledger.withLock { $0[id] = entry }
    }

    /// Notes that the statement `id` was answered (or its connection failed).
    package func noteAnswered(_ id: ObjectIdentifier) {
        _ = ledger.withLock { $0.removeValue(forKey: id) }
    }

    /// Ends the thread once the jobs handed over before have run. Sockets still watched are no
    /// longer served: stop every connection on the thread first.
    package func shutdown() {
        let wake = inbox.withLock { inbox -> Bool in
            inbox.stopping = true
            return inbox.sleeping
        }
        if wake { sb_io_wake(eventDescriptor) }
        SnapshotRegistry.remove(self)
    }

    private func loop() {
        var batch: [@Sendable () -> Void] = []
        var tasks: [UnownedJob] = []
        let executor = asUnownedTaskExecutor()
        var tokens = [UInt64](repeating: 0, count: 64)
        var flags = [Int32](repeating: 0, count: 64)
        while true {
            let stopping = inbox.withLock { inbox -> Bool in
                swap(&batch, &inbox.jobs)
                swap(&tasks, &inbox.tasks)
                if batch.isEmpty && tasks.isEmpty && !inbox.stopping { inbox.sleeping = true }
                return inbox.stopping
            }
            for job in batch { job() }
            for task in tasks { task.runSynchronously(on: executor) }
            if stopping && batch.isEmpty && tasks.isEmpty { break }
            let sleeping = batch.isEmpty && tasks.isEmpty
            batch.removeAll(keepingCapacity: true)
            tasks.removeAll(keepingCapacity: true)
            let timeout = sleeping ? millisecondsToNextDeadline() : 0
            let count = sb_io_wait(epollDescriptor, &tokens, &flags, Int32(tokens.count), timeout)
            if sleeping { inbox.withLock { $0.sleeping = false } }
            for index in 0..<Int(max(0, count)) {
                if tokens[index] == 0 {
                    sb_io_drain_wakeups(eventDescriptor)
                } else {
                    if !deadlines.isEmpty { deadlines[tokens[index]] = nil }
                    report(IOReadiness(rawValue: flags[index]), to: tokens[index])
                }
            }
            if !deadlines.isEmpty { reportPassedDeadlines() }
        }
        close(eventDescriptor)
        close(epollDescriptor)
    }
}

extension IOThread {
    /// How long `epoll_wait` may sleep: until the earliest deadline (rounded up to a whole
    /// millisecond), or for ever (-1) when no socket has one.
    private func millisecondsToNextDeadline() -> Int32 {
        guard !deadlines.isEmpty else { return -1 }
        let now = monotonicNanoseconds()
        guard nextDeadline > now else { return 0 }
        return Int32(clamping: (nextDeadline - now + 999_999) / 1_000_000)
    }

    /// Reports the sockets whose deadline passed, and notes the next deadline.
    private func reportPassedDeadlines() {
        let now = monotonicNanoseconds()
        guard now >= nextDeadline else { return }
        var passed: [UInt64] = []
        var next = UInt64.max
        for (token, deadline) in deadlines {
            if deadline <= now {
                passed.append(token)
            } else {
                next = min(next, deadline)
            }
        }
        nextDeadline = next
        for token in passed {
            deadlines[token] = nil
            report(.timedOut, to: token)
        }
    }
}

extension IOThread: TaskExecutor {}

extension IOThread: SnapshotSource {
    package func snapshotPart(now: UInt64) -> SnapshotPart {
        let (queued, stopping) = inbox.withLock { ($0.jobs.count, $0.stopping) }
        let statements = ledger.withLock { Array($0.values) }.sorted { $0.sentAt < $1.sentAt }.map { entry in
            SyncBridgeSnapshot.Job(
                kind: "statement",
                callSite: entry.callSite?.description,
                detail: entry.detail.description,
                runningForSeconds: SyncBridgeSnapshot.seconds(from: entry.sentAt, to: now),
                queuedForSeconds: SyncBridgeSnapshot.seconds(from: entry.submittedAt, to: entry.sentAt)
            )
        }
        return .executor(
            SyncBridgeSnapshot.Executor(
                name: name,
                kind: "IOThread",
                threads: [SyncBridgeSnapshot.Thread(name: name, job: nil)],
                queued: queued,
                awaitingAdmission: 0,
                queueCapacity: nil,
                isShutDown: stopping,
                statementsInFlight: statements
            )
        )
    }
}
