#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for SECONDS (default 20).
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
secs=${1:-20}
build=${FUZZ_BUILD:-build-fuzz}
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROC_FUZZ=ON \
  -DMPROC_SANITIZE=address,undefined,fuzzer-no-link -DMPROC_BUILD_BENCH=OFF \
  -DMPROC_BUILD_EXAMPLES=OFF -DMPROC_BUILD_TOOLS=OFF >/dev/null
targets=$(cd tests/fuzz && ls fuzz_*.c 2>/dev/null | sed 's/\.c$//' || true)
[ -n "$targets" ] || { echo "fuzz.sh: no fuzz targets"; exit 0; }
# shellcheck disable=SC2086
cmake --build "$build" -j "$(nproc)" --target $targets >/dev/null
for t in $targets; do
  corpus="$build/corpus/$t"; mkdir -p "$corpus"
  seeds=tests/fuzz/corpus/$t
  echo "fuzz: $t for ${secs}s"
  "$build/tests/fuzz/$t" -max_total_time="$secs" -print_final_stats=0 "$corpus" \
    $( [ -d "$seeds" ] && echo "$seeds" ) 2>&1 | tail -2
done
