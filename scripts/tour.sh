#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A tour of the examples: runs each one and says what it shows. scripts/tour.sh BUILD_DIR
set -u
build=${1:-build}
status=0
for src in examples/*.c; do
  name=$(basename "$src" .c)
  what=$(sed -n 's|^/\* *[a-z_0-9]*\.c *- *\(.*\)$|\1|p' "$src" | head -1)
  echo "=== $name: ${what:-example}"
  if ! "$build/examples/$name"; then
    echo "!!! $name failed"; status=1
  fi
  echo
done
exit $status
