#!/usr/bin/env bash
# Generates the Kotlin, Swift and Python sources for the phone API from the built library.
#
#   bindings/generate.sh [--release] [OUT_DIR]      (default OUT_DIR: target/bindings)
#
# Output: OUT_DIR/kotlin/cn/gridcase/gridcase_bindings.kt, OUT_DIR/swift/{Gridcase.swift,
# GridcaseFFI.h, GridcaseFFI.modulemap}, OUT_DIR/python/gridcase_bindings.py. The generated
# code loads the native library `gridcase_bindings` (libgridcase_bindings.so / .dylib), which
# is built next to this script's output in target/<profile>/.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
cargo_flags=()
if [[ "${1:-}" == "--release" ]]; then
    profile=release
    cargo_flags+=(--release)
    shift
fi
out="${1:-target/bindings}"
cargo build -p gridcase-bindings --lib "${cargo_flags[@]}"
case "$(uname -s)" in
    Darwin) lib="target/$profile/libgridcase_bindings.dylib" ;;
    *) lib="target/$profile/libgridcase_bindings.so" ;;
esac
rm -rf "$out"
mkdir -p "$out"
for lang in kotlin swift python; do
    cargo run -q -p gridcase-bindings --bin uniffi-bindgen "${cargo_flags[@]}" -- generate \
        --library "$lib" --language "$lang" --out-dir "$out/$lang" --no-format
done
# The build check: every language got the object, the async sync and the error type.
expect() {
    local file="$1" pattern="$2"
    if ! grep -q -- "$pattern" "$file"; then
        echo "generate.sh: $file lacks \`$pattern\`" >&2
        exit 1
    fi
}
kt="$out/kotlin/cn/gridcase/gridcase_bindings.kt"
expect "$kt" "open class GridcasePhone"
expect "$kt" "suspend fun \`sync\`"
expect "$kt" "sealed class GridcaseException"
expect "$kt" "interface CaseChangeListener"
expect "$out/swift/Gridcase.swift" "open class GridcasePhone"
expect "$out/swift/Gridcase.swift" "func sync(listener: SyncListener?) *async throws"
expect "$out/swift/Gridcase.swift" "enum GridcaseError: Swift.Error"
expect "$out/swift/GridcaseFFI.h" "uniffi_gridcase_bindings_fn_constructor_gridcasephone_open"
expect "$out/python/gridcase_bindings.py" "class GridcasePhone"
expect "$out/python/gridcase_bindings.py" "async def sync"
echo "generated from $lib:"
find "$out" -type f | sort
