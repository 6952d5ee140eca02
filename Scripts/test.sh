#!/usr/bin/env bash
# The test command: installs what the tests need, then runs the whole suite. The tests start
# their own throwaway PostgreSQL and MariaDB servers; nothing needs to be configured.
# Extra arguments go to `swift test` (for example `--filter ThreadExecutor`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash Scripts/install-dependencies.sh
swift build --build-tests -Xswiftc -warnings-as-errors
swift test --skip-build "$@"
