#!/usr/bin/env bash
# The README's test command: installs what the tests need (once), then runs the Rust tests of
# every crate (unit, property and end-to-end against a real server on 127.0.0.1, the server and
# end-to-end tests on SQLite and on PostgreSQL) and the Kotlin and Python binding tests against a
# real server, then the admin console's browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the build and the tests need from Debian (once): OpenSSL's headers and libcrypto for
# SQLCipher (the phone's encrypted store), JNA for the Kotlin bindings on the JVM.
bash .ci/deps.sh

# PostgreSQL up (started or installed), GRIDCASE_TEST_PG exported.
source tests/postgres.sh
# An S3-compatible server on loopback (moto, installed if missing) for the S3 blob store's
# tests, GRIDCASE_TEST_S3 exported; stopped on exit, pass or fail.
source tests/s3.sh

cargo test --workspace --all-targets
# Doc tests need their own run (--all-targets skips them).
cargo test --workspace --doc

bash bindings/tests/run-kotlin.sh
bash bindings/tests/run-python.sh
# The admin console: its vendored ECharts is the pinned npm package's file, byte for byte; then
# the browser tests in Debian's chromium (playwright-core and axe-core: npm ci in tests/console).
bash server/console/vendor/check.sh
bash tests/console/run.sh
# automerge-repo interop (issue 14): the pinned JavaScript client against a real server.
bash tests/automerge-repo/run.sh
