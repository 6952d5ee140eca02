#!/usr/bin/env bash
# The test command: installs what the tests need, then runs the whole suite, the tests that must
# run alone (the watchdog's per-job mode, stall reports and detection latency) in a pass of their
# own, the tests with tight time bounds (faults, cancel latency) in another, the scale tests (a
# thousand connections) in a third, the database suites on a thread per connection, and the
# suite again with the watchdog and the deadlock detector on (no report allowed); then the samples
# (Samples/): built, tested and run end to end (Scripts/test-samples.sh). The tests start their own
# throwaway PostgreSQL and MariaDB servers; nothing needs to be configured. Extra arguments go to
# the library's `swift test` alone (for example `--filter ThreadExecutor`), and skip the other
# passes.
set -euo pipefail
cd "$(dirname "$0")/.."

bash Scripts/install-dependencies.sh
swift build --build-tests -Xswiftc -warnings-as-errors
swift test --skip-build "$@"

if [ $# -eq 0 ]; then
    echo "== The tests that run alone: the watchdog's per-job mode, stall reports and detection latency =="
    # Per-job mode takes over every job of the process, and a latency bound needs a machine that
    # other tests do not load.
    SYNCBRIDGE_SOLO_TESTS=1 swift test --skip-build --filter Solo

    echo "== The tests with tight time bounds: faults (frozen, half-open, reset, killed servers) and cancel latency =="
    # On a 2-core machine the rest of the suite beside them stretches any latency; alone, their
    # bounds hold with room to spare.
    SYNCBRIDGE_TIMED_TESTS=1 swift test --skip-build --filter Timed

    echo "== The scale tests: a thousand connections at once =="
    # They would load the machine under every other test's time bounds.
    SYNCBRIDGE_SCALE_TESTS=1 swift test --skip-build --filter Scale

    echo "== The database suites and the timed tests again on a thread per connection (SYNCBRIDGE_IO_THREADS=0) =="
    # Connections use the I/O threads by default; a thread per connection, which every client can
    # choose (`ioThreads: .off`), is tested as thoroughly.
    SYNCBRIDGE_IO_THREADS=0 swift test --skip-build --filter "SyncBridgePostgresTests|SyncBridgeMariaDBTests"
    SYNCBRIDGE_IO_THREADS=0 SYNCBRIDGE_TIMED_TESTS=1 swift test --skip-build --filter Timed

    echo "== The whole suite with the watchdog and the deadlock detector on: they must report nothing =="
    # SYNCBRIDGE_WATCHDOG starts a process-wide watchdog (threshold in ms), SYNCBRIDGE_DEADLOCK a
    # process-wide deadlock detector in report mode; their reports go to the JSON-lines files. The
    # suites that block the cooperative pool on purpose, to test the watchdog itself, are left out
    # of this pass; tests that make SyncBridge refuse a wait or detect a deadlock on purpose keep
    # those reports in a scope of their own. Blocking calls are reported whatever their length;
    # the stall threshold is 2 s, because on a 2-core machine the suite's own heaviest work (two
    # 1,000,000-row streams, the randomised pool state machine, Swift Testing's checks and console
    # output, 200 tests at once) keeps both cooperative threads of a band busy for up to 0.8 s at
    # times — measured: 1 pass in 3 to 5 reported such a stall at 100 ms.
    reports="$(mktemp)"
    deadlocks="$(mktemp)"
    SYNCBRIDGE_WATCHDOG=2000 SYNCBRIDGE_WATCHDOG_JSONL="$reports" \
        SYNCBRIDGE_DEADLOCK=report SYNCBRIDGE_DEADLOCK_JSONL="$deadlocks" \
        swift test --skip-build --skip "WatchdogTests|WatchdogTraitTests|WatchdogXCTests|EventLoopWatchdogTests"
    if [ -s "$reports" ]; then
        echo "The watchdog reported $(wc -l < "$reports") problem(s) in the test suite:"
        cat "$reports"
        exit 1
    fi
    if [ -s "$deadlocks" ]; then
        echo "The deadlock detector reported $(wc -l < "$deadlocks") problem(s) in the test suite:"
        cat "$deadlocks"
        exit 1
    fi
    echo "The watchdog reported nothing; the deadlock detector reported nothing."

    bash Scripts/test-samples.sh
fi
