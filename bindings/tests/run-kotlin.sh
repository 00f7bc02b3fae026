#!/usr/bin/env bash
# Compiles the generated Kotlin with kotlinc (npm package kotlin-compiler, installed into
# target/kotlin when missing), JNA (Debian libjna-java) and the coroutines jar kotlinc ships, and
# runs bindings/tests/kotlin/*.kt against a real gridcase-server on 127.0.0.1. The samples
# (bindings/samples/kotlin) are compiled with them and used by the tests, so they cannot rot.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/server.sh"

KOTLIN_PREFIX="$ROOT/target/kotlin"
KOTLINC="$KOTLIN_PREFIX/node_modules/kotlin-compiler/bin/kotlinc"
if [[ ! -x "$KOTLINC" ]]; then
    npm install --no-audit --no-fund --prefix "$KOTLIN_PREFIX" kotlin-compiler > /dev/null
fi
KOTLIN_LIB="$KOTLIN_PREFIX/node_modules/kotlin-compiler/lib"
JNA="${JNA_JAR:-/usr/share/java/jna.jar}"
if [[ ! -f "$JNA" ]]; then
    echo "JNA not found at $JNA: apt-get install libjna-java (or set JNA_JAR)" >&2
    exit 1
fi
CP="$JNA:$KOTLIN_LIB/kotlinx-coroutines-core-jvm.jar"
JAR="$WORK/bindings-test.jar"

"$KOTLINC" -nowarn -include-runtime -cp "$CP" -d "$JAR" \
    "$GRIDCASE_BINDINGS/kotlin/cn/gridcase/gridcase_bindings.kt" bindings/samples/kotlin/*.kt \
    bindings/tests/kotlin/*.kt
java -Djna.library.path="$GRIDCASE_LIB_DIR" -cp "$JAR:$CP" BindingsTestKt
