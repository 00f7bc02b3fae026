# Sourced by run-all.sh: an S3-compatible server on loopback for the S3 half of
# server/tests/blobs.rs, GRIDCASE_TEST_S3 exported, and the server stopped when the run ends,
# pass or fail. The server is moto's (PyPI `moto[server]`; MinIO is not installable here),
# installed once into a venv under ~/.cache when `moto_server` is not on the PATH.
# GRIDCASE_TEST_S3 set already: that server is used and nothing is started or installed.

s3_moto() {
    if command -v moto_server > /dev/null; then
        echo moto_server
        return
    fi
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/gridcase/moto-venv"
    if [ ! -x "$venv/bin/moto_server" ]; then
        echo "installing moto[server] (PyPI) into $venv" >&2
        python3 -m venv "$venv" >&2
        timeout 300 "$venv/bin/pip" install -q 'moto[server]>=5,<6' >&2
    fi
    echo "$venv/bin/moto_server"
}

s3_stop() {
    if [ -n "${S3_PID:-}" ]; then
        # Its own process group (setsid): the server and anything it started.
        kill -- "-$S3_PID" 2> /dev/null || kill "$S3_PID" 2> /dev/null || true
        wait "$S3_PID" 2> /dev/null || true
        S3_PID=""
    fi
}

s3_start() {
    local moto port
    moto="$(s3_moto)"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    setsid "$moto" -H 127.0.0.1 -p "$port" > "${TMPDIR:-/tmp}/gridcase-s3.log" 2>&1 &
    S3_PID=$!
    trap s3_stop EXIT
    trap 'exit 130' INT TERM
    for _ in $(seq 1 60); do
        if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
            export GRIDCASE_TEST_S3="http://127.0.0.1:$port"
            return 0
        fi
        sleep 0.5
    done
    echo "the S3 test server did not come up on 127.0.0.1:$port; see ${TMPDIR:-/tmp}/gridcase-s3.log" >&2
    return 1
}

if [ -z "${GRIDCASE_TEST_S3:-}" ]; then
    s3_start
fi
