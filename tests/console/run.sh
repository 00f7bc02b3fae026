#!/usr/bin/env bash
# Browser tests of the admin console (issue 12): builds gridcase-server and the phone API's
# Python bindings (add_photo_case.py uses them), fills a temporary data directory with demo data
# and an admin with a password, starts `gridcase-server serve` on a free 127.0.0.1 port
# (tests/server.sh, which also stops it on exit), and runs console.test.mjs (playwright-core
# driving Debian's chromium, axe-core) against it. Screenshots land in tests/console/screenshots/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

CHROMIUM="${GRIDCASE_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
    echo "chromium not found at $CHROMIUM: apt-get install chromium (or set GRIDCASE_CHROMIUM)" >&2
    exit 1
fi

source "${HERE}/../server.sh" gridcase-console
BIN="$GRIDCASE_SERVER_BIN"
DATA="$WORK/server-data"

# The phone API for Python, beside its native library (as bindings/tests/run-python.sh does).
bindings/generate.sh "$WORK/bindings" > /dev/null
mkdir -p "$WORK/python"
cp "$WORK/bindings/python/gridcase_bindings.py" target/debug/libgridcase_bindings.so "$WORK/python/"

"$BIN" demo --data "$DATA" --cases 400 --seed 7 > "$WORK/demo.txt"
# A grid worker's device from the demo ("  <user> <role> <token>" after the heading).
DEVICE_TOKEN="$(awk '/tokens are shown once/ {on = 1; next} on && $2 == "grid_worker" {print $3; exit}' "$WORK/demo.txt")"
[[ -n "$DEVICE_TOKEN" ]] || { echo "no grid worker token in the demo output" >&2; cat "$WORK/demo.txt" >&2; exit 1; }
ADMIN_PASSWORD="console-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$ADMIN_PASSWORD" |
    "$BIN" admin add --data "$DATA" --name desk --role admin --area 330604 --password-stdin > /dev/null

start_server "$DATA"

cd "$HERE"
# The pinned playwright-core and axe-core of package-lock.json (a few seconds).
npm ci --no-audit --no-fund > /dev/null
GRIDCASE_ADMIN=desk GRIDCASE_PASSWORD="$ADMIN_PASSWORD" \
    GRIDCASE_DEVICE_TOKEN="$DEVICE_TOKEN" GRIDCASE_CHROMIUM="$CHROMIUM" \
    GRIDCASE_DATA="$DATA" PYTHONPATH="$WORK/python${PYTHONPATH:+:$PYTHONPATH}" \
    node --test --test-concurrency=1 console.test.mjs || {
        echo "--- server log ---" >&2
        tail -n 50 "$WORK/server.log" >&2
        exit 1
    }
