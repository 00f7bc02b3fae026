# Sourced by the scripts that test against a real gridcase-server (tests/console/run.sh,
# tests/automerge-repo/run.sh,
# bindings/tests/server.sh): builds the server and gives them, in one place,
#   ROOT                 the repository (the current directory afterwards);
#   GRIDCASE_SERVER_BIN  the built server (exported);
#   WORK                 a temporary directory, removed on exit after the server is stopped;
#   free_port            prints a free 127.0.0.1 port;
#   start_server DATA    serves DATA on a free port, waits until /health answers, exports
#                        GRIDCASE_URL and sets SERVER_PID (its log: $WORK/server.log).
# The first argument names the temporary directory (default: gridcase).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

cargo build -q -p gridcase-server --bin gridcase-server
export GRIDCASE_SERVER_BIN="$ROOT/target/debug/gridcase-server"

WORK="$(mktemp -d -t "${1:-gridcase}-XXXXXX")"
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

start_server() {
    local data="$1" port
    port="$(free_port)"
    export GRIDCASE_URL="http://127.0.0.1:$port"
    # The binary itself in the background, not a function or subshell: `f … &` would background
    # a subshell, $! would be its pid, and the trap would kill it and orphan the server.
    "$GRIDCASE_SERVER_BIN" serve --listen "127.0.0.1:$port" --data "$data" > "$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        curl -fsS "$GRIDCASE_URL/health" > /dev/null 2>&1 && return 0
        if ! kill -0 "$SERVER_PID" 2> /dev/null; then
            echo "gridcase-server exited:" >&2
            cat "$WORK/server.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    curl -fsS "$GRIDCASE_URL/health" > /dev/null
}
