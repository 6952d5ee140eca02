#!/usr/bin/env bash
# The samples' part of the test command (Scripts/test.sh runs it): builds every sample with no
# warning in their own code, runs their tests against throwaway servers, runs the static check
# (swift package check-blocking, strict, with the legacy form's findings as its baseline), checks
# that the watchdog trait fails the sample test that blocks the cooperative pool, puts the HTTP sample under load
# (no watchdog or deadlock report allowed, graceful shutdown), checks its traces and snapshot
# routes and its SIGUSR1 dump, and runs the demo and the other
# programs end to end, briefly. First, the code quoted in README.md and MIGRATION.md must still be
# the samples' code (Scripts/check-snippets.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/install-dependencies.sh
python3 Scripts/check-snippets.py
cd Samples
log="$(mktemp)"

echo "== Samples: build =="
swift build --build-tests 2>&1 | tee "$log"
if grep -E "^$PWD/(Sources|Tests)/[^:]+:[0-9]+:[0-9]+: warning:" "$log"; then
    echo "The samples' own code has warnings (above)."
    exit 1
fi

echo "== Samples: tests (one behavioural suite over the legacy, wrapped and migrated service) =="
swift test --skip-build

echo "== Samples: the static check (swift package check-blocking) finds exactly the legacy form's blocking paths =="
# Strict: a finding the baseline does not list, or a listed one the check no longer makes, fails.
swift package check-blocking --strict --baseline check-blocking-baseline.json

echo "== Samples: the watchdog trait fails the test that blocks the cooperative pool =="
if SAMPLES_SHOW_WATCHDOG_FAILURE=1 swift test --skip-build --filter StockValuationTests >"$log" 2>&1; then
    cat "$log"
    echo "The blocking test passed; the watchdog trait should have failed it."
    exit 1
fi
if ! grep -q 'the legacy handler fails: it blocks the cooperative pool" recorded an issue' "$log" \
    || ! grep -q "StockValuation.compute" "$log"; then
    cat "$log"
    echo "The blocking test failed, but not with a watchdog report naming StockValuation.compute."
    exit 1
fi
echo "It failed as it should, with the blocked thread's stack in StockValuation.compute."

echo "== Samples: the watchdog trait fails the Vapor test whose route blocks its event loop =="
if SAMPLES_SHOW_WATCHDOG_FAILURE=1 swift test --skip-build --filter VaporValuationTests >"$log" 2>&1; then
    cat "$log"
    echo "The blocking route's test passed; the watchdog trait should have failed it."
    exit 1
fi
if ! grep -q 'the legacy route fails: it blocks its event loop" recorded an issue' "$log" \
    || ! grep -q "event loop NIO-SGLTN-[0-9]*-#[0-9]* ran no task" "$log" \
    || ! grep -q "LegacyValuationDatabase.stockValuation" "$log" \
    || grep -q 'the offloaded route passes.*recorded an issue\|the migrated route passes.*recorded an issue' "$log"; then
    cat "$log"
    echo "The Vapor test failed, but not only the legacy route's, with a loop stall naming LegacyValuationDatabase.stockValuation."
    exit 1
fi
echo "It failed as it should: the event loop's stall, with the route's frames down to the legacy call."

echo "== Samples: the HTTP service under load =="
bash Scripts/load.sh postgres 5
bash Scripts/load.sh mariadb 5

echo "== Samples: the HTTP service's traces (down to the SQL) and its live snapshot (debug routes, SIGUSR1) =="
bash Scripts/debug-routes.sh postgres
bash Scripts/debug-routes.sh mariadb

echo "== Samples: the programs, end to end =="
swift run --skip-build FanOut --items 300
swift run --skip-build LiveFeed --seconds 1
cd ..
bash Scripts/demo.sh --seconds 1 --clients 16 | tee "$log"
grep -q "^database  *mode  *requests/s" "$log"
