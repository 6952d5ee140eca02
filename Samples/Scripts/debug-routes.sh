#!/usr/bin/env bash
# Shows the HTTP sample's diagnostics: starts InventoryServer (the migrated form, with --trace),
# makes a few requests, prints GET /debug/traces (each request's span with its SQL spans and their
# waits under it) and GET /debug/snapshot (SyncBridge's pools, connection threads and waits, as
# JSON), sends SIGUSR1 (the same snapshot, in the log), and shuts the server down. Fails when a
# trace lacks its SQL or its waits, or the snapshot lacks the server's pool.
#   bash Scripts/debug-routes.sh [postgres|mariadb]
set -euo pipefail
cd "$(dirname "$0")/.."
database="${1:-postgres}"
port=8091
log="$(mktemp)"

swift build -c release --product InventoryServer
.build/release/InventoryServer --port "$port" --database "$database" --form migrated --trace >"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
url="http://127.0.0.1:$port"

# Until it answers (it starts its database and seeds 1000 products first), then until the
# condition holds: polled with a deadline, never a fixed wait.
until_true() {
    for _ in $(seq 1 600); do
        if eval "$1"; then return 0; fi
        if ! kill -0 "$server" 2>/dev/null; then cat "$log"; echo "the server exited"; exit 1; fi
        sleep 0.1
    done
    cat "$log"
    echo "timed out waiting for: $1"
    exit 1
}
until_true 'curl -fsS "$url/health" >/dev/null 2>&1'

curl -fsS "$url/products/SKU-1" >/dev/null
curl -fsS -X POST "$url/products/SKU-2/reservations?quantity=1&order=debug" >/dev/null
until_true 'curl -fsS "$url/debug/traces" | grep -q "^/products/{sku}/reservations "'

echo "== GET /debug/traces: each request's span, its SQL and the waits =="
traces="$(curl -fsS "$url/debug/traces")"
echo "$traces"
for expected in "http.route=/products/{sku} " "http.route=/products/{sku}/reservations " "db.query.text=" \
    "─ transaction " "wait for connection" "wait for thread"; do
    if [[ "$traces" != *"$expected"* ]]; then
        echo "The traces lack \"$expected\"."
        exit 1
    fi
done

echo "== GET /debug/snapshot: SyncBridge's pools, connection threads and waits =="
curl -fsS "$url/debug/snapshot" >"$log.json"
python3 - "$log.json" <<'PY'
import json, sys
snapshot = json.load(open(sys.argv[1]))
pools = snapshot["pools"]
assert pools, "the snapshot has no pool"
for pool in pools:
    print(f"pool {pool['name']}: {pool['lifecycle']}, {len(pool['leases'])} leased, "
          f"{pool['idleConnections']} idle, {len(pool['waiters'])} waiting, max {pool['maximumConnections']}")
for executor in snapshot["executors"]:
    busy = [thread for thread in executor["threads"] if thread.get("job")]
    print(f"executor {executor['name']} ({executor['kind']}): {len(executor['threads'])} threads, "
          f"{len(busy)} busy, {executor['queued']} queued")
for watchdog in snapshot["watchdogs"]:
    print("watchdog bands: " + ", ".join(band["name"] for band in watchdog["bands"]))
PY

echo "== SIGUSR1: the snapshot in the log =="
kill -USR1 "$server"
until_true 'grep -q "SyncBridge snapshot" "$log"'
grep "SyncBridge snapshot" "$log" | head -1 | cut -c1-200

kill -TERM "$server"
trap - EXIT
if ! wait "$server"; then
    cat "$log"
    echo "The server did not shut down cleanly"
    exit 1
fi
echo "The server shut down gracefully."
