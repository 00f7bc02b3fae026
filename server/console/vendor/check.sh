#!/usr/bin/env bash
# Checks that the vendored Apache ECharts (echarts.min.js, Apache-2.0: echarts-LICENSE,
# echarts-NOTICE) is byte for byte the file of the pinned npm package: fetches the tarball with
# `npm pack`, compares the file, and compares both with the SHA-256 recorded here. Run by
# tests/run-all.sh. To move to another version: change VERSION and SHA256, copy the new file.
set -euo pipefail
VERSION=6.1.0
SHA256=b66b25aeb4df84e33199dc21694014d336d222cbd9deb0e5a7c14bd6aa0d0fd0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d -t gridcase-echarts-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "echarts@$VERSION" > /dev/null && tar xzf "echarts-$VERSION.tgz" package/dist/echarts.min.js)
echo "$SHA256  $HERE/echarts.min.js" | sha256sum --check --quiet
echo "$SHA256  $WORK/package/dist/echarts.min.js" | sha256sum --check --quiet
cmp "$HERE/echarts.min.js" "$WORK/package/dist/echarts.min.js"
echo "echarts.min.js is echarts@$VERSION from npm (sha256 $SHA256)"
