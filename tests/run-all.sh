#!/usr/bin/env bash
# The README's test command: installs what the tests need (once), then runs the Rust tests of
# every crate (unit, property and end-to-end against a real server on 127.0.0.1, the server and
# end-to-end tests on SQLite and on PostgreSQL) and the Kotlin and Python binding tests against a
# real server.
set -euo pipefail
cd "$(dirname "$0")/.."

# JNA for the Kotlin bindings on the JVM (Debian's libjna-java).
if [ ! -f /usr/share/java/jna.jar ]; then
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libjna-java >/dev/null
  fi
fi

# PostgreSQL up (started or installed), GRIDCASE_TEST_PG exported.
source tests/postgres.sh

cargo test --workspace --all-targets
# Doc tests need their own run (--all-targets skips them).
cargo test --workspace --doc

bash bindings/tests/run-kotlin.sh
bash bindings/tests/run-python.sh
