#!/usr/bin/env bash
# Puts the HTTP sample (InventoryServer) under load: starts it (with its throwaway database),
# runs wrk for 10 s with a mix of lookups, reservations and reports, prints requests/s and the
# watchdog's and deadlock detector's report counts from /health, then shuts the server down
# gracefully with SIGTERM. Fails if the server reported anything or did not stop cleanly.
#   bash Scripts/load.sh [postgres|mariadb] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
database="${1:-postgres}"
seconds="${2:-10}"
port=8089

if ! command -v wrk >/dev/null 2>&1; then
    echo "Installing wrk…"
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq wrk >/dev/null || {
        "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq wrk >/dev/null
    }
fi

swift build -c release --product InventoryServer
.build/release/InventoryServer --port "$port" --database "$database" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT

# Wait until the server answers (it starts its database and seeds 1000 products first).
for _ in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server" 2>/dev/null; then echo "the server exited before it answered"; exit 1; fi
    sleep 0.1
done

echo "== wrk: 2 threads, 32 connections, ${seconds} s, against the $database-backed server =="
wrk -t2 -c32 -d"${seconds}s" -s Scripts/load.lua "http://127.0.0.1:$port" | tee /tmp/inventory-load.txt
health="$(curl -fsS "http://127.0.0.1:$port/health")"
echo "Server health after the load: $health"

kill -TERM "$server"
trap - EXIT
if ! wait "$server"; then
    echo "The server did not shut down cleanly"
    exit 1
fi
echo "The server shut down gracefully."
if [[ "$health" != *'"watchdogReports":0'* || "$health" != *'"deadlockReports":0'* ]]; then
    echo "The watchdog or the deadlock detector reported a problem under load"
    exit 1
fi
if grep -q "Non-2xx" /tmp/inventory-load.txt; then
    echo "Some requests failed"
    exit 1
fi
