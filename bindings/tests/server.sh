# Sourced by run-kotlin.sh and run-python.sh: builds the server and the bindings, generates the
# foreign sources, starts `gridcase-server serve` on a free 127.0.0.1 port with a temporary data
# directory, and enrols the test users and devices. Exports:
#   GRIDCASE_URL, GRIDCASE_TOKEN_A, GRIDCASE_TOKEN_B (grid workers wang and li, 330604101),
#   GRIDCASE_TOKEN_C (grid worker zhao, 330604102: outside the others' township),
#   GRIDCASE_TOKEN_REVOKED (a device of wang's that is revoked after enrolment),
#   GRIDCASE_TOKEN_STALL (another device of li's, for the stalled-sync test),
#   GRIDCASE_SERVER_BIN, GRIDCASE_PHONE_BIN (the terminal phone), GRIDCASE_LIB_DIR,
#   GRIDCASE_BINDINGS (generated sources).
# The server is killed on exit (trap).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

cargo build -q -p gridcase-server --bin gridcase-server
cargo build -q -p gridcase-bindings --bin gridcase-phone
bindings/generate.sh target/bindings > /dev/null

export GRIDCASE_SERVER_BIN="$ROOT/target/debug/gridcase-server"
export GRIDCASE_PHONE_BIN="$ROOT/target/debug/gridcase-phone"
export GRIDCASE_LIB_DIR="$ROOT/target/debug"
export GRIDCASE_BINDINGS="$ROOT/target/bindings"

WORK="$(mktemp -d -t gridcase-bindings-XXXXXX)"
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

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

srv() { "$GRIDCASE_SERVER_BIN" "$@"; }

srv enrol-user --data "$DATA" --user wang --role grid_worker --area 330604101 > /dev/null
srv enrol-user --data "$DATA" --user li --role grid_worker --area 330604101 > /dev/null
srv enrol-user --data "$DATA" --user zhao --role grid_worker --area 330604102 > /dev/null
GRIDCASE_TOKEN_A="$(srv enrol-device --data "$DATA" --user wang | tail -n 1)"
GRIDCASE_TOKEN_B="$(srv enrol-device --data "$DATA" --user li | tail -n 1)"
GRIDCASE_TOKEN_C="$(srv enrol-device --data "$DATA" --user zhao | tail -n 1)"
GRIDCASE_TOKEN_REVOKED="$(srv enrol-device --data "$DATA" --user wang | tail -n 1)"
GRIDCASE_TOKEN_STALL="$(srv enrol-device --data "$DATA" --user li | tail -n 1)"
srv revoke-device --data "$DATA" --device "${GRIDCASE_TOKEN_REVOKED%%.*}" > /dev/null
export GRIDCASE_TOKEN_A GRIDCASE_TOKEN_B GRIDCASE_TOKEN_C GRIDCASE_TOKEN_REVOKED GRIDCASE_TOKEN_STALL

PORT="$(free_port)"
export GRIDCASE_URL="http://127.0.0.1:$PORT"
# The binary itself in the background, not the `srv` function: `srv … &` would background a
# subshell, $! would be the subshell's pid, and the trap would kill it and orphan the server.
"$GRIDCASE_SERVER_BIN" serve --listen "127.0.0.1:$PORT" --data "$DATA" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    if curl -fsS "$GRIDCASE_URL/health" > /dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$SERVER_PID" 2> /dev/null; then
        echo "gridcase-server exited:" >&2
        cat "$WORK/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
curl -fsS "$GRIDCASE_URL/health" > /dev/null
echo "gridcase-server on $GRIDCASE_URL (pid $SERVER_PID)"
