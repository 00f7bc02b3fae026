#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, when missing: libssl-dev (OpenSSL's
# headers and libcrypto, linked by SQLCipher, the phone's encrypted store) and libjna-java (JNA,
# for the Kotlin binding tests). Run by .ci/run and tests/run-all.sh.
set -euo pipefail
missing=()
[ -f /usr/include/openssl/evp.h ] || missing+=(libssl-dev)
[ -f /usr/share/java/jna.jar ] || missing+=(libjna-java)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get > /dev/null; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}" > /dev/null
fi
