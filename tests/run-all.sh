#!/usr/bin/env bash
# The README's test command: installs what the tests need (once), then runs the Rust tests of
# every crate (unit, property and end-to-end against a real server on 127.0.0.1) and the Kotlin
# and Python binding tests against a real server.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the build and the tests need from Debian (once): OpenSSL's headers and libcrypto for
# SQLCipher (the phone's encrypted store), JNA for the Kotlin bindings on the JVM.
bash .ci/deps.sh

cargo test --workspace --all-targets
# Doc tests need their own run (--all-targets skips them).
cargo test --workspace --doc

bash bindings/tests/run-kotlin.sh
bash bindings/tests/run-python.sh
