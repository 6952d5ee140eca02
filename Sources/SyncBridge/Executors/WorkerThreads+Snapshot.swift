extension WorkerThreads: SnapshotSource {
    /// What a thread runs, kept for snapshots.
    struct RunningJob {
        /// The closure's item; `nil` for a runtime job (a slice of a task or an actor).
        let item: WorkItem?
        /// When the thread picked it up (monotonic nanoseconds).
        let since: UInt64

        init(_ entry: WorkQueueState<UnownedJob>.Entry, since: UInt64) {
            switch entry {
            case .job: item = nil
            case .work(let item): self.item = item
            }
            self.since = since
        }

        func snapshot(now: UInt64) -> SyncBridgeSnapshot.Job {
            guard let item else {
                return .init(
                    kind: "task",
                    callSite: nil,
                    detail: nil,
                    runningForSeconds: SyncBridgeSnapshot.seconds(from: since, to: now),
                    queuedForSeconds: nil
                )
            }
            return .init(
                kind: "closure",
                callSite: item.site?.description,
                detail: item.detail?.description,
                runningForSeconds: SyncBridgeSnapshot.seconds(from: since, to: now),
                queuedForSeconds: SyncBridgeSnapshot.seconds(from: item.submittedAt, to: since)
            )
        }
    }

    func snapshotPart(now: UInt64) -> SnapshotPart {
        lock.withLock {
            .executor(
                SyncBridgeSnapshot.Executor(
                    name: name,
                    kind: kind.rawValue,
                    // A thread that retired while idle is not listed until work starts it again.
                    threads: state.liveThreads == 0
                        ? []
                        : zip(threadNames, runningJobs).map { name, job in
                            SyncBridgeSnapshot.Thread(name: name, job: job?.snapshot(now: now))
                        },
                    queued: state.queuedWorkCount,
                    awaitingAdmission: state.awaitingAdmissionCount,
                    queueCapacity: state.capacity == .max ? nil : state.capacity,
                    isShutDown: state.lifecycle != .running
                )
            )
        }
    }
}
