#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages mproc's build, tests and tools need, when they are missing.
#   scripts/deps.sh          build + test needs (used by make run / make test / make bench)
#   scripts/deps.sh --plot   also gnuplot-nox, the optional dependency of `mpbench --plot`
#   scripts/deps.sh --ci     also clang's sanitizer/fuzzer runtime, valgrind and gnuplot (CI)
#   scripts/deps.sh --tell   as the first form, then name the optional packages not installed
# As root it installs with apt-get; otherwise it only says what is missing.
set -eu
pkgs="build-essential cmake pkg-config libcmocka-dev python3 scdoc"
optional="gnuplot-nox"
tell=0
case "${1:-}" in
--ci) pkgs="$pkgs clang libclang-rt-14-dev valgrind gnuplot-nox" ;;
--plot) pkgs="$pkgs gnuplot-nox" ;;
--tell) tell=1 ;;
esac
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=""
for p in $pkgs; do
  installed "$p" || missing="$missing $p"
done
# python3 may come from elsewhere (pyenv); a working interpreter is enough.
case "$missing" in *python3*) command -v python3 >/dev/null && missing=${missing/ python3/} ;; esac
if [ $tell = 1 ]; then
  for p in $optional; do
    # Any gnuplot on PATH will do (gnuplot-qt, gnuplot-x11, a local build).
    if ! installed "$p" && ! command -v gnuplot >/dev/null; then
      echo "deps.sh: optional, not installed: $p (draws mpbench --plot charts; make deps-plot installs it)" >&2
    fi
  done
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing Debian packages:$missing (run as root, or install them)" >&2
  exit 0
fi
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >&2
