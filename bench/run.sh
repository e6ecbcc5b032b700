#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every benchmark program of a build: bench/run.sh BUILD_DIR [names...]
# stdout: only "name<TAB>value<TAB>unit" lines; progress on stderr.
# After the bench_* programs, "peers" (mpbench --compare peers --only peers): the same figures
# for POSIX mq and ZeroMQ (when mpbench was built with libzmq), to set beside mproc's.
set -u
build=${1:-build}; shift || true
status=0
wanted() { [ $# -eq 0 ] || case " $* " in *" $name "*) return 0 ;; *) return 1 ;; esac; }
for b in "$build"/bench/bench_*; do
  [ -x "$b" ] || continue
  name=$(basename "$b")
  wanted "$@" || continue
  echo "== $name" >&2
  "$b" || { echo "!! $name failed with status $?" >&2; status=1; }
done
name=peers
mpbench=$build/tools/mpbench/mpbench
if wanted "$@" && [ -x "$mpbench" ]; then
  echo "== peers (mpbench --compare peers --only peers)" >&2
  # Peers that are not installed are reported as not available on stderr, and skipped.
  quick=()
  case "${BENCH_QUICK:-0}" in "" | 0) ;; *) quick=(--quick) ;; esac
  out=$("$mpbench" "${quick[@]}" --compare peers --only peers --tsv) ||
    { echo "!! peers failed" >&2; status=1; }
  printf '%s\n' "$out" | grep -v '\.p99	' || true
fi
exit $status
