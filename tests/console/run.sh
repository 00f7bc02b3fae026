#!/usr/bin/env bash
# Browser tests of the admin console (issue 12): builds gridcase-server, fills a temporary data
# directory with demo data and an admin with a password, starts `gridcase-server serve` on a
# free 127.0.0.1 port, and runs console.test.mjs (playwright-core driving Debian's chromium,
# axe-core) against it. Screenshots land in tests/console/screenshots/. The server is killed on
# exit (trap), by the pid of the binary itself.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

CHROMIUM="${GRIDCASE_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
    echo "chromium not found at $CHROMIUM: apt-get install chromium (or set GRIDCASE_CHROMIUM)" >&2
    exit 1
fi

cargo build -q -p gridcase-server --bin gridcase-server
BIN="$ROOT/target/debug/gridcase-server"

WORK="$(mktemp -d -t gridcase-console-XXXXXX)"
DATA="$WORK/server-data"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2> /dev/null || true
        wait "$SERVER_PID" 2> /dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" demo --data "$DATA" --cases 400 --seed 7 > "$WORK/demo.txt"
# A grid worker's device from the demo ("  <user> <role> <token>" after the heading).
DEVICE_TOKEN="$(awk '/tokens are shown once/ {on = 1; next} on && $2 == "grid_worker" {print $3; exit}' "$WORK/demo.txt")"
[[ -n "$DEVICE_TOKEN" ]] || { echo "no grid worker token in the demo output" >&2; cat "$WORK/demo.txt" >&2; exit 1; }
ADMIN_PASSWORD="console-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$ADMIN_PASSWORD" |
    "$BIN" admin add --data "$DATA" --name desk --role admin --area 330604 --password-stdin > /dev/null

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
URL="http://127.0.0.1:$PORT"
# The binary itself in the background (not a function or subshell), so $! is the server.
"$BIN" serve --listen "127.0.0.1:$PORT" --data "$DATA" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -fsS "$URL/health" > /dev/null 2>&1 && break
    if ! kill -0 "$SERVER_PID" 2> /dev/null; then
        echo "gridcase-server exited:" >&2
        cat "$WORK/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
curl -fsS "$URL/health" > /dev/null

cd "$HERE"
# The pinned playwright-core and axe-core of package-lock.json (a few seconds).
npm ci --no-audit --no-fund > /dev/null
GRIDCASE_URL="$URL" GRIDCASE_ADMIN=desk GRIDCASE_PASSWORD="$ADMIN_PASSWORD" \
    GRIDCASE_DEVICE_TOKEN="$DEVICE_TOKEN" GRIDCASE_CHROMIUM="$CHROMIUM" \
    GRIDCASE_SERVER_BIN="$BIN" GRIDCASE_DATA="$DATA" \
    node --test --test-concurrency=1 console.test.mjs || {
        echo "--- server log ---" >&2
        tail -n 50 "$WORK/server.log" >&2
        exit 1
    }
