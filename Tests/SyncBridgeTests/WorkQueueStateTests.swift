import Testing

@testable import SyncBridge

/// Drives the queue's state machine directly: no threads, no clocks.
@Suite("WorkQueueState")
struct WorkQueueStateTests {
    typealias State = WorkQueueState<String>

    func item() -> WorkItem { WorkItem(neededBy: nil, submittedAt: 0) }

    /// The work item `state.next()` hands a thread, if it is one.
    func next(_ state: inout State) -> WorkItem? {
        if case .run(.work(let item)) = state.next() { return item }
        return nil
    }

    @Test("submissions fill the queue up to capacity, then wait for admission in order")
    func capacityAndAdmission() {
        var state = State(threadCount: 1, capacity: 2)
        let initial = state.next()
        #expect(initial.isPark)
        state.parked()
        let items = (0..<4).map { _ in item() }
        guard case .queued(.parkedThread) = state.submit(items[0]) else {
            Issue.record()
            return
        }
        state.unparked()
        guard case .queued(State.Wake.none) = state.submit(items[1]) else {
            Issue.record()
            return
        }
        guard case .awaitingAdmission = state.submit(items[2]) else {
            Issue.record()
            return
        }
        guard case .awaitingAdmission = state.submit(items[3]) else {
            Issue.record()
            return
        }
        #expect(state.queuedWorkCount == 2)
        #expect(state.awaitingAdmissionCount == 2)

        // Taking one admits the first waiter, keeping submission order.
        #expect(next(&state) === items[0])
        #expect(items[2].phase == .queued)
        #expect(items[3].phase == .awaitingAdmission)
        state.finished(items[0])
        #expect(next(&state) === items[1])
        state.finished(items[1])
        #expect(next(&state) === items[2])
        state.finished(items[2])
        #expect(next(&state) === items[3])
        state.finished(items[3])
        let idle = state.next()
        #expect(idle.isPark)
        #expect(state.pendingWorkCount == 0)
    }

    @Test("runtime jobs are never refused by capacity and keep their place among closures")
    func jobsInterleave() {
        var state = State(threadCount: 1, capacity: 1)
        let work = item()
        _ = state.submit(work)
        _ = state.enqueue("job-a")
        _ = state.enqueue("job-b")
        guard case .run(.work(let first)) = state.next() else {
            Issue.record()
            return
        }
        #expect(first === work)
        state.finished(work)
        guard case .run(.job("job-a")) = state.next() else {
            Issue.record()
            return
        }
        guard case .run(.job("job-b")) = state.next() else {
            Issue.record()
            return
        }
    }

    @Test("cancelling queued or waiting items frees their place and resumes them; they never run")
    func cancellationBeforeStart() {
        var state = State(threadCount: 1, capacity: 1)
        let queued = item()
        let waiting = item()
        let later = item()
        _ = state.submit(queued)
        _ = state.submit(waiting)
        _ = state.submit(later)
        guard case .resumeCancelled = state.cancel(queued) else {
            Issue.record()
            return
        }
        // `waiting` was admitted into the freed place.
        #expect(waiting.phase == .queued)
        guard case .resumeCancelled = state.cancel(later) else {
            Issue.record()
            return
        }
        #expect(next(&state) === waiting)
        state.finished(waiting)
        let idle = state.next()
        #expect(idle.isPark)
        #expect(queued.phase == .cancelled)
        #expect(later.phase == .cancelled)
        // A second cancellation is a no-op.
        guard case .none = state.cancel(queued) else {
            Issue.record()
            return
        }
    }

    @Test("a task cancelled before submitting is resumed without queueing")
    func cancelledBeforeSubmit() {
        var state = State(threadCount: 1, capacity: 4)
        let work = item()
        guard case .none = state.cancel(work) else {
            Issue.record()
            return
        }
        guard case .cancelled = state.submit(work) else {
            Issue.record()
            return
        }
        #expect(state.queuedWorkCount == 0)
    }

    @Test("cancelling a running item returns its interrupt handler once")
    func interruptRunning() {
        var state = State(threadCount: 1, capacity: 4)
        let work = item()
        _ = state.submit(work)
        _ = state.next()
        work.interruptHandler = {}
        guard case .interrupt = state.cancel(work) else {
            Issue.record()
            return
        }
        #expect(work.interruptInProgress)
        state.interruptFinished(work)
        guard case .none = state.cancel(work) else {
            Issue.record()
            return
        }
    }

    @Test("shutdown refuses new work, drains queued and waiting work, then every thread exits")
    func shutdownDrains() {
        var state = State(threadCount: 2, capacity: 1)
        let queued = item()
        let waiting = item()
        _ = state.submit(queued)
        _ = state.submit(waiting)
        let first = state.shutdown()
        let second = state.shutdown()
        #expect(first == .wakeThreads)
        #expect(second == .none)
        guard case .rejected = state.submit(item()) else {
            Issue.record()
            return
        }
        #expect(next(&state) === queued)
        state.finished(queued)
        #expect(next(&state) === waiting)
        state.finished(waiting)
        guard case .exit(lastThread: false) = state.next() else {
            Issue.record()
            return
        }
        guard case .exit(lastThread: true) = state.next() else {
            Issue.record()
            return
        }
        #expect(state.lifecycle == .stopped)
        guard case .stopped = state.enqueue("late") else {
            Issue.record()
            return
        }
    }

    @Test("cancelled tombstones in the admission queue do not keep a draining queue alive")
    func tombstonesDoNotBlockExit() {
        var state = State(threadCount: 1, capacity: 1)
        let running = item()
        let waiting = item()
        _ = state.submit(running)
        _ = state.next()
        let filler = item()
        _ = state.submit(filler)
        _ = state.submit(waiting)
        _ = state.cancel(waiting)
        _ = state.shutdown()
        state.finished(running)
        #expect(next(&state) === filler)
        state.finished(filler)
        guard case .exit(lastThread: true) = state.next() else {
            Issue.record()
            return
        }
    }
}

extension WorkQueueStateTests {
    @Test("an idle thread retires only when nothing is queued; the next entry starts one again, once")
    func retireAndRestart() {
        var state = State(threadCount: 1, capacity: 8)
        let initial = state.next()
        #expect(initial.isPark)
        state.parked()
        let early = item()
        // Work queued while the wait timed out keeps the thread: it runs the work instead.
        let wakeParked = state.submit(early)
        #expect(wakeParked == .queued(.parkedThread))
        state.unparked()
        let retiredWithWork = state.retire()
        #expect(!retiredWithWork)
        #expect(next(&state) === early)
        state.finished(early)
        let idle = state.next()
        #expect(idle.isPark)

        // Nothing queued: the thread goes, and the queue keeps running without one.
        state.parked()
        state.unparked()
        let retired = state.retire()
        #expect(retired)
        #expect(state.liveThreads == 0)
        #expect(state.lifecycle == .running)

        // The next entry, a closure or a runtime job, starts one thread; the one after it waits.
        let late = item()
        let start = state.submit(late)
        #expect(start == .queued(.newThread))
        #expect(state.liveThreads == 1)
        let behind = state.enqueue("hop")
        #expect(behind == .queued(.none))
        #expect(next(&state) === late)
        state.finished(late)
        guard case .run(.job("hop")) = state.next() else {
            Issue.record("the runtime job queued behind the closure did not run next")
            return
        }
        let idleAgain = state.next()
        #expect(idleAgain.isPark)
    }

    @Test("shutting down a queue whose thread retired starts one to drain and stop it")
    func shutdownAfterRetirement() {
        var state = State(threadCount: 1, capacity: 8)
        let initial = state.next()
        #expect(initial.isPark)
        let retired = state.retire()
        #expect(retired)
        let shutdown = state.shutdown()
        #expect(shutdown == .startThread)
        #expect(state.liveThreads == 1)
        let again = state.shutdown()
        #expect(again == .none)
        guard case .exit(lastThread: true) = state.next() else {
            Issue.record("the thread started for shutdown did not exit as the last one")
            return
        }
        #expect(state.lifecycle == .stopped)
        // A draining queue's thread exits through next(), never by retiring.
        var draining = State(threadCount: 1, capacity: 8)
        _ = draining.shutdown()
        let retiredWhileDraining = draining.retire()
        #expect(!retiredWhileDraining)
    }
}

extension WorkQueueState.SubmitAction: Equatable {
    static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.queued(let left), .queued(let right)): left == right
        case (.awaitingAdmission, .awaitingAdmission), (.cancelled, .cancelled), (.rejected, .rejected): true
        default: false
        }
    }
}

extension WorkQueueState.EnqueueAction: Equatable {
    static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.queued(let left), .queued(let right)): left == right
        case (.stopped, .stopped): true
        default: false
        }
    }
}

extension WorkQueueState.NextAction {
    var isPark: Bool {
        if case .park = self { return true }
        return false
    }
}
