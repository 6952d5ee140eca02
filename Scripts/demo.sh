#!/usr/bin/env bash
# The demo: installs what is missing, builds the samples, then runs the inventory demo, which
# starts throwaway PostgreSQL and MariaDB servers itself (or uses POSTGRES_URL / MARIADB_URL) and
# deletes them when it ends, also on Ctrl-C. Arguments go to the demo:
#   --seconds N (per phase, default 5), --clients N (default 32), --database postgres|mariadb|both.
set -euo pipefail
cd "$(dirname "$0")/.."

bash Scripts/install-dependencies.sh
echo "Building the demo (the first build takes a few minutes)…"
swift build -c release --package-path Samples --product InventoryDemo
exec Samples/.build/release/InventoryDemo "$@"
