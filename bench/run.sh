#!/usr/bin/env bash
# Runs every benchmark program of a build: bench/run.sh BUILD_DIR [names...]
# stdout: only "name<TAB>value<TAB>unit" lines; progress on stderr.
set -u
build=${1:-build}; shift || true
status=0
for b in "$build"/bench/bench_*; do
  [ -x "$b" ] || continue
  name=$(basename "$b")
  if [ $# -gt 0 ]; then
    case " $* " in *" $name "*) ;; *) continue ;; esac
  fi
  echo "== $name" >&2
  "$b" || { echo "!! $name failed with status $?" >&2; status=1; }
done
exit $status
