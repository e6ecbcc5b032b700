#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages mproc's build, tests and tools need, when they are missing.
#   scripts/deps.sh          build + test needs (used by make run / make test / make bench)
#   scripts/deps.sh --ci     also clang's sanitizer/fuzzer runtime (CI)
# As root it installs with apt-get; otherwise it only says what is missing.
set -eu
pkgs="build-essential cmake pkg-config libcmocka-dev python3 scdoc"
if [ "${1:-}" = "--ci" ]; then
  pkgs="$pkgs clang libclang-rt-14-dev valgrind"
fi
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# python3 may come from elsewhere (pyenv); a working interpreter is enough.
case "$missing" in *python3*) command -v python3 >/dev/null && missing=${missing/ python3/} ;; esac
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
