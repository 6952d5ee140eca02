#!/usr/bin/env bash
# Builds the DocC documentation of every library product, with warnings treated as errors: a
# broken symbol link, an undocumented parameter or a stale article fails the run. Uses the
# toolchain's own `docc` on the compiler's symbol graphs, so the package needs no plugin.
# The archives land in .build-docs/archives/<Module>.doccarchive.
set -euo pipefail
cd "$(dirname "$0")/.."

modules=(SyncBridge SyncBridgeSQL SyncBridgePostgres SyncBridgeMariaDB SyncBridgeTesting SyncBridgeTemporaryServers SyncBridgeNIO)
graphs=.build-docs/symbol-graphs
# Graphs are written when a module compiles; those of unchanged modules are still current.
rm -rf .build-docs/archives
mkdir -p "$graphs" .build-docs/archives
swift build --scratch-path .build-docs \
    -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc "$PWD/$graphs" \
    -Xswiftc -symbol-graph-minimum-access-level -Xswiftc public >/dev/null

failed=0
for module in "${modules[@]}"; do
    own="$(mktemp -d)"
    cp "$graphs/$module.symbols.json" "$own/"
    cp "$graphs/$module@"*.symbols.json "$own/" 2>/dev/null || true
    if docc convert "Sources/$module/$module.docc" \
        --additional-symbol-graph-dir "$own" \
        --output-path ".build-docs/archives/$module.doccarchive" \
        --fallback-display-name "$module" \
        --fallback-bundle-identifier "org.syncbridge.$module" \
        --warnings-as-errors >"$own/log" 2>&1; then
        echo "docs: $module built with no warnings"
    else
        cat "$own/log"
        echo "docs: $module has documentation warnings (above)"
        failed=1
    fi
    rm -rf "$own"
done
exit "$failed"
