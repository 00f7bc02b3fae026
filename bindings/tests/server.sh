# Sourced by run-kotlin.sh and run-python.sh: builds the server and the bindings, generates the
# foreign sources, starts `gridcase-server serve` on a free 127.0.0.1 port with a temporary data
# directory (tests/server.sh), and enrols the test users and devices. Exports:
#   GRIDCASE_URL, GRIDCASE_TOKEN_A, GRIDCASE_TOKEN_B (grid workers wang and li, 330604101),
#   GRIDCASE_TOKEN_C (grid worker zhao, 330604102: outside the others' township),
#   GRIDCASE_TOKEN_REVOKED (a device of wang's that is revoked after enrolment),
#   GRIDCASE_TOKEN_STALL (another device of li's, for the stalled-sync test),
#   GRIDCASE_SERVER_BIN, GRIDCASE_PHONE_BIN (the terminal phone), GRIDCASE_LIB_DIR,
#   GRIDCASE_BINDINGS (generated sources).
# The server is killed on exit (trap).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../tests/server.sh" gridcase-bindings

cargo build -q -p gridcase-bindings --bin gridcase-phone
bindings/generate.sh target/bindings > /dev/null

export GRIDCASE_PHONE_BIN="$ROOT/target/debug/gridcase-phone"
export GRIDCASE_LIB_DIR="$ROOT/target/debug"
export GRIDCASE_BINDINGS="$ROOT/target/bindings"

DATA="$WORK/server-data"
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

start_server "$DATA"
echo "gridcase-server on $GRIDCASE_URL (pid $SERVER_PID)"
