#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages SyncBridge builds and tests against, when missing:
# the C client libraries (libpq, Connector/C; SQLite for the sample adapter), the servers the
# tests start (PostgreSQL, PgBouncer, MariaDB) and openssl (the certificates of the TLS tests).
set -euo pipefail

packages=(pkg-config libpq-dev postgresql pgbouncer libmariadb-dev mariadb-server mariadb-client libsqlite3-dev openssl)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "SyncBridge: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo)
else
    echo "SyncBridge: these packages are missing and this user cannot install them (not root, no sudo):" >&2
    echo "    apt-get install ${missing[*]}" >&2
    echo "Run that command as root, then run this script again." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# Package scripts must not start system-wide database services: the tests start their own.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "SyncBridge: installed ${missing[*]}"
