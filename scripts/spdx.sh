#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# spdx.sh - puts the licence identifier on the first line of every source file that lacks it
# (after a "#!" line). Idempotent: files that have it already are left alone.
#   scripts/spdx.sh [FILE...]      add it (no FILE: every source file of the checkout)
#   scripts/spdx.sh --check [FILE...]   only list the files that lack it; exit 1 if any
# Source files: C (*.c, *.h: "/* SPDX-License-Identifier: MIT */"), and shell, Python, CMake,
# Makefiles, *.in templates and extension-less scripts with a "#!" line ("# SPDX-...").
# The file list comes from git ls-files (tracked and new, unignored files); outside a git
# checkout from find.
set -eu
export LC_ALL=C
cd "$(dirname "$0")/.."
tag="SPDX-License-Identifier: MIT"

check=0
if [ "${1:-}" = "--check" ]; then
  check=1
  shift
fi

list_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard # new files too, before their commit
  else
    find . -path ./.git -prune -o -path './build*' -prune -o -type f -print | sed 's|^\./||'
  fi
}

# The comment style of a source file: c, hash, or nothing (not a source file).
style() {
  case "$1" in
  tests/fuzz/corpus/*) ;; # fuzzer inputs: data
  *.c | *.h) echo c ;;
  *.sh | *.py | *.cmake | *.in | */CMakeLists.txt | CMakeLists.txt | Makefile | */Makefile) echo hash ;;
  *)
    case "${1##*/}" in
    *.*) ;; # documentation, data, dotfiles
    *) [ "$(head -c 2 "$1" 2>/dev/null)" = "#!" ] && echo hash ;;
    esac
    ;;
  esac
  return 0
}

has_tag() { head -n 3 "$1" | grep -q "$tag"; }

if [ $# -gt 0 ]; then files=$(printf '%s\n' "$@"); else files=$(list_files); fi
missing=0
while IFS= read -r f; do
  if [ -z "$f" ] || [ ! -f "$f" ]; then continue; fi
  s=$(style "$f")
  [ -n "$s" ] || continue
  has_tag "$f" && continue
  if [ $check = 1 ]; then
    echo "$f"
    missing=1
    continue
  fi
  if [ "$s" = c ]; then line="/* $tag */"; else line="# $tag"; fi
  tmp=$(mktemp "$f.spdx.XXXXXX")
  if [ "$(head -c 2 "$f")" = "#!" ]; then
    { head -n 1 "$f"; echo "$line"; tail -n +2 "$f"; } >"$tmp"
  else
    { echo "$line"; cat "$f"; } >"$tmp"
  fi
  chmod --reference="$f" "$tmp"
  mv "$tmp" "$f"
  echo "spdx.sh: $f" >&2
done <<<"$files"
if [ $check = 1 ] && [ $missing = 1 ]; then
  echo "spdx.sh: the files above lack '$tag' in their first lines (run scripts/spdx.sh)" >&2
  exit 1
fi
exit 0
