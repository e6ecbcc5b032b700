#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# man.sh - the section-3 man pages (docs/man/*.3.scd) against the library's exported functions.
#
#   man.sh symbols LIB                  the exported mp_* functions of LIB (libmproc.so)
#   man.sh links LIB MANDIR OUTDIR      one OUTDIR/<function>.3 per exported function, holding
#                                       ".so man3/<page>.3" for the page that documents it, so
#                                       `man mp_queue_put` opens mproc_queue(3); warns about
#                                       functions without a page
#   man.sh check LIB MANDIR INCLUDEDIR  fails unless every exported function has a page that
#                                       documents it, and every prototype in a page's SYNOPSIS
#                                       is exported and matches its declaration in the headers
#
# A page documents a function when its SYNOPSIS block holds the prototype (one declaration
# ending in ';', which may span lines) and its text names it as *name*() outside the SYNOPSIS.
set -eu
export LC_ALL=C

# Normalised prototypes: blanks collapsed, none beside * ( ) , ; [ ], so layout does not matter.
NORM='function norm(s,   i, c, cs) { gsub(/[ \t]+/, " ", s); cs = "*(),;[]"
  for (i = 1; i <= length(cs); i++) { c = substr(cs, i, 1)
    while (index(s, " " c)) sub("[ ][" (c == "]" ? "\\]" : c) "]", c, s)
    while (index(s, c " ")) sub("[" (c == "]" ? "\\]" : c) "][ ]", c, s) }
  sub(/^ /, "", s); sub(/ $/, "", s); return s }'

symbols() {
  nm -D --defined-only "$1" | awk '$2 ~ /^[TW]$/ && $3 ~ /^mp_/ {print $3}' | sort -u
}

# <page> <normalised prototype> for every prototype in the SYNOPSIS sections of MANDIR's pages.
synopsis() {
  local f page
  for f in "$1"/*.3.scd; do
    page=$(basename "$f" .3.scd)
    awk -v page="$page" "$NORM"'
      /^# / { in_syn = ($0 == "# SYNOPSIS"); next }
      !in_syn { next }
      /^```/ { in_code = !in_code; next }
      !in_code { next }
      { line = $0; sub(/\/\/.*/, "", line); sub(/\/\*.*\*\//, "", line)
        if (line ~ /^#/) next
        acc = acc " " line
        if (line ~ /;[ \t]*$/) { acc = norm(acc)
          if (acc ~ /^[a-z].*[^_a-zA-Z0-9]mp_[a-z0-9_]+\(/ && acc !~ /^typedef/) print page, acc
          acc = "" } }' "$f"
  done
}

# <normalised prototype> for every MP_API declaration in INCLUDEDIR/mproc/*.h.
declarations() {
  cat "$1"/mproc/*.h | awk "$NORM"'
    /^MP_API / { on = 1; acc = "" }
    on { acc = acc " " $0
         if ($0 ~ /;[ \t]*$/) { on = 0; sub(/^ *MP_API /, "", acc)
           sub(/__attribute__\(\(.*\)\)/, "", acc); print norm(acc) } }'
}

name_of() { sed -E 's/^.*[^_a-zA-Z0-9](mp_[a-z0-9_]+)\(.*$/\1/'; }

# The page that documents function $2 in MANDIR $1 (empty when none).
page_of() {
  local dir=$1 fn=$2 page
  synopsis "$dir" | while read -r page proto; do
    [ "$(printf '%s\n' "$proto" | name_of)" = "$fn" ] || continue
    # ...and the text names it: *fn*() somewhere after the SYNOPSIS.
    if awk -v pat="\\*$fn\\*\\(" '/^# /{syn = ($0 == "# SYNOPSIS")} !syn && $0 ~ pat {found=1} END{exit !found}' \
      "$dir/$page.3.scd"; then
      echo "$page"
      break
    fi
  done
}

cmd=${1:-}
case "$cmd" in
symbols)
  symbols "$2"
  ;;
links)
  lib=$2 dir=$3 out=$4
  rm -rf "$out"
  mkdir -p "$out"
  syn=$(synopsis "$dir")
  missing=""
  for fn in $(symbols "$lib"); do
    page=$(printf '%s\n' "$syn" | awk -v fn="$fn" '{p=substr($0, length($1) + 2); if (match(p, "[^_a-zA-Z0-9]" fn "\\(")) {print $1; exit}}')
    if [ -z "$page" ]; then
      missing="$missing $fn"
      continue
    fi
    printf '.so man3/%s.3\n' "$page" >"$out/$fn.3"
  done
  # A warning, not an error: a new function must not break the build; tests/test_man.sh fails.
  [ -z "$missing" ] || echo "man.sh: warning: no man page in docs/man/ for:$missing" >&2
  ;;
check)
  lib=$2 dir=$3 inc=$4
  fail=0
  syms=$(symbols "$lib")
  syn=$(synopsis "$dir")
  decl=$(declarations "$inc")
  for fn in $syms; do
    page=$(page_of "$dir" "$fn")
    if [ -z "$page" ]; then
      echo "NO PAGE: $fn (exported, but no docs/man/*.3.scd has its prototype in SYNOPSIS and *$fn*() in its text)"
      fail=1
    fi
  done
  while read -r page proto; do
    [ -n "$page" ] || continue
    fn=$(printf '%s\n' "$proto" | name_of)
    if ! printf '%s\n' "$syms" | grep -qx "$fn"; then
      echo "STALE: $page(3) shows $fn, which libmproc does not export"
      fail=1
    elif ! printf '%s\n' "$decl" | grep -qxF "$proto"; then
      echo "DIFFERS: $page(3) shows '$proto'; the header declares '$(printf '%s\n' "$decl" | grep -F "$fn(" | head -1)'"
      fail=1
    fi
  done <<<"$syn"
  exit $fail
  ;;
*)
  sed -n '3,14p' "$0" >&2
  exit 2
  ;;
esac
