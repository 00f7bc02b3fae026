#!/usr/bin/env bash
# The automerge-repo interop test (issue 14): builds gridcase-server and gridcase-phone, fills a
# temporary data directory with demo data, starts `gridcase-server serve` on a free 127.0.0.1
# port, registers a case (with personal data) from a grid worker's phone, and runs
# amrepo.test.mjs: the pinned @automerge/automerge-repo 2.5.6 client (package-lock.json, npm
# ci) against the server. Bounded: the whole test within `timeout`. The server is killed on exit
# (trap in tests/server.sh), by the pid of the binary itself.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The server build, $WORK, the cleanup trap and start_server, shared with the other scripts.
source "$HERE/../server.sh" gridcase-amrepo
BIN="$GRIDCASE_SERVER_BIN"
cargo build -q -p gridcase-bindings --bin gridcase-phone
PHONE_BIN="$ROOT/target/debug/gridcase-phone"
DATA="$WORK/server-data"

"$BIN" demo --data "$DATA" --cases 40 --seed 7 > "$WORK/demo.txt"
# Each demo user's device token ("  <user> <role> <token>" after the heading), as JSON.
TOKENS="$(awk '/tokens are shown once/ {on = 1; next} on && NF == 3 {printf "%s\"%s\":\"%s\"", (n++ ? "," : "{"), $1, $3} END {print "}"}' "$WORK/demo.txt")"
for user in grid-101 town-101 town-102 unit-water; do
    grep -q "\"$user\"" <<< "$TOKENS" || { echo "no token for $user in the demo output" >&2; cat "$WORK/demo.txt" >&2; exit 1; }
done
token_of() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$TOKENS" "$1"; }

start_server "$DATA"
URL="$GRIDCASE_URL"

# grid-101's phone registers a case in its village, with a complainant, and syncs it.
export GRIDCASE_STORE_KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
PHONE=("$PHONE_BIN" --store "$WORK/phone.db" --server "$URL" --token "$(token_of grid-101)")
"${PHONE[@]}" sync > /dev/null  # learns who it is
TITLE="村口路灯不亮 $(date +%s)"
REGISTERED="$("${PHONE[@]}" register --title "$TITLE" --area 330604101201 \
    --complainant-name 王建国 --complainant-phone 13800001234)"
CASE_ID="$(awk '/^registered / {print $2}' <<< "$REGISTERED")"
[[ -n "$CASE_ID" ]] || { echo "no case id in: $REGISTERED" >&2; exit 1; }
"${PHONE[@]}" sync > /dev/null

cd "$HERE"
# The pinned automerge-repo, its WebSocket adapter and automerge (exact in package.json, the
# rest from package-lock.json). `npm install`, not `npm ci`: npm 11 leaves cbor-x's optional
# native platform packages out of the lock it writes and then `npm ci` calls it out of sync.
timeout 300 npm install --no-audit --no-fund > /dev/null
PHONE_JSON="$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${PHONE[@]}")"
GRIDCASE_URL="$URL" GRIDCASE_CASE="$CASE_ID" GRIDCASE_TITLE="$TITLE" GRIDCASE_TOKENS="$TOKENS" \
    GRIDCASE_PHONE="$PHONE_JSON" \
    timeout 180 node --test --test-concurrency=1 amrepo.test.mjs || {
        echo "--- server log ---" >&2
        tail -n 50 "$WORK/server.log" >&2
        exit 1
    }
