# Sourced by run-all.sh: makes sure the PostgreSQL the tests' PostgreSQL variants use is up, and
# exports GRIDCASE_TEST_PG (default postgres://postgres@127.0.0.1:5432/test). Each test creates
# and drops its own schema in that database (gridcase_server::testing). Starts the local cluster
# if it is down; installs one (Debian's postgresql, trust on loopback) where there is none.
# GRIDCASE_TEST_PG=off skips all of it, and the tests skip their PostgreSQL variants.

export GRIDCASE_TEST_PG="${GRIDCASE_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2> /dev/null; }

pg_wait() {
    for _ in $(seq 1 60); do
        pg_up && return 0
        sleep 0.5
    done
    echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
    return 1
}

pg_ensure() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    if ! command -v pg_ctlcluster > /dev/null || [ -z "$(ls /etc/postgresql 2> /dev/null)" ]; then
        echo "installing PostgreSQL (Debian's postgresql)"
        $sudo apt-get update -qq
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql > /dev/null
        local version
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
        # Trust on loopback, as the project's machines have it: a throwaway test cluster.
        $sudo sed -i -E 's/^(local|host)(.*)(peer|scram-sha-256|md5)$/\1\2trust/' \
            "/etc/postgresql/$version/main/pg_hba.conf"
    fi
    if ! pg_up; then
        local version
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
        echo "starting PostgreSQL $version"
        $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        pg_wait
    fi
    # The database named in the URL (default `test`).
    local db="${GRIDCASE_TEST_PG##*/}"
    db="${db%%\?*}"
    local admin="${GRIDCASE_TEST_PG%/*}/postgres"
    if ! psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
        psql "$admin" -qc "CREATE DATABASE \"$db\""
    fi
    psql "$GRIDCASE_TEST_PG" -qc "SELECT 1" > /dev/null
    echo "PostgreSQL for the tests: $GRIDCASE_TEST_PG"
}

if [ "$GRIDCASE_TEST_PG" != off ]; then
    pg_ensure
fi
