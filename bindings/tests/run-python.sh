#!/usr/bin/env bash
# Runs bindings/tests/python/test_bindings.py (unittest; pytest when installed) with the
# generated module and the native library, against a real gridcase-server on 127.0.0.1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/server.sh"

PYDIR="$WORK/python"
mkdir -p "$PYDIR"
cp "$GRIDCASE_BINDINGS/python/gridcase_bindings.py" "$PYDIR/"
cp "$GRIDCASE_LIB_DIR/libgridcase_bindings.so" "$PYDIR/"
export PYTHONPATH="$PYDIR${PYTHONPATH:+:$PYTHONPATH}"
if python3 -c 'import pytest' 2> /dev/null; then
    python3 -m pytest -q -p no:cacheprovider bindings/tests/python/test_bindings.py "$@"
else
    python3 bindings/tests/python/test_bindings.py "$@"
fi
