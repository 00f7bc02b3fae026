#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, when missing: libssl-dev (OpenSSL's
# headers and libcrypto, linked by SQLCipher, the phone's encrypted store), libjna-java (JNA,
# for the Kotlin binding tests), chromium (the console's browser tests) and fonts-wqy-microhei
# (a Chinese font, so the console's screenshots show text). Run by .ci/run and tests/run-all.sh.
set -euo pipefail
missing=()
[ -f /usr/include/openssl/evp.h ] || missing+=(libssl-dev)
[ -f /usr/share/java/jna.jar ] || missing+=(libjna-java)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get > /dev/null; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}" > /dev/null
fi
