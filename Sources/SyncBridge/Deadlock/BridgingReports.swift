/// The reports of the traps the guarded wait refuses by itself: waiting on a cooperative thread,
/// waiting on the thread the awaited work needs, and a blocking pool whose every thread waits for
/// work queued behind it.
enum BridgingReports {
    static func cooperativeThreadWait(
        _ operation: String,
        at callSite: CallSite,
        on thread: GuardedThread = .cooperative
    ) -> DeadlockReport {
        DeadlockReport(
            pattern: .cooperativeThreadWait,
            headline: "\(operation) would block \(thread.phrase); refused",
            chain: [
                .init(party: Party.current.label, action: "calls", object: operation, callSite: "\(callSite)"),
                .init(
                    party: "  on thread \(ThreadIdentity.current)",
                    action: thread == .cooperative
                        ? "of the cooperative pool, which the awaited work may need"
                        : "which runs \(thread.phrase), which the awaited work may need",
                    object: "",
                    callSite: nil
                ),
            ],
            advice:
                "make the caller async and await the work, or call the synchronous code from a BlockingPool or ThreadExecutor thread",
            scopeID: WatchdogScope.current
        )
    }

    static func selfWait(
        _ operation: String,
        executor: String,
        kind: WorkerThreads.Kind,
        at callSite: CallSite,
        thread: ThreadIdentity,
        scope: UInt64? = WatchdogScope.current
    ) -> DeadlockReport {
        DeadlockReport(
            pattern: .selfWait,
            headline:
                "\(operation) on \(kind.rawValue) '\(executor)' waits for work that needs that same thread; refused",
            chain: [
                .init(party: "thread \(thread)", action: "waits in", object: operation, callSite: "\(callSite)"),
                .init(
                    party: "  for work queued on",
                    action: "\(kind.rawValue) '\(executor)',",
                    object: "which only that thread runs",
                    callSite: nil
                ),
            ],
            advice:
                "await the work instead of waiting for it, or run the waiting code on another executor (withRawConnection closures must not wait for the same connection)",
            scopeID: scope
        )
    }

    static func poolStarvation(
        pool: String,
        waits: [(thread: ThreadIdentity, callSite: CallSite)],
        scope: UInt64?
    ) -> DeadlockReport {
        var chain: [DeadlockReport.Step] = waits.map {
            .init(party: "thread \($0.thread)", action: "waits in", object: "waitForAsync", callSite: "\($0.callSite)")
        }
        chain.append(
            .init(
                party: "  for work queued on",
                action: "BlockingPool '\(pool)',",
                object: "all of whose \(waits.count) threads are waiting above",
                callSite: nil
            )
        )
        return DeadlockReport(
            pattern: .blockingPoolStarvation,
            headline:
                "every thread of BlockingPool '\(pool)' waits for work queued behind it on the same pool; refused",
            chain: chain,
            advice:
                "do not wait on a pool's thread for work that needs the same pool: await it from a task, or give the nested work its own pool",
            scopeID: scope
        )
    }
}
