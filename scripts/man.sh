#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# man.sh - the section-3 man pages (docs/man/*.3.scd) against the library's exported functions.
#
#   man.sh symbols LIB                  the exported mp_* functions of LIB (libmproc.so; not mp__*)
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

# mp__ names are the library's own plumbing (exported only for its macros, e.g.
# MP_FUNC_REGISTER), not API: they get no page.
symbols() {
  nm -D --defined-only "$1" | awk '$2 ~ /^[TW]$/ && $3 ~ /^mp_/ && $3 !~ /^mp__/ {print $3}' | sort -u
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

# <page> <function> <normalised prototype> for every SYNOPSIS prototype: the function is the
# first mp_name( in the prototype that follows a non-identifier character.
named() {
  synopsis "$1" | awk '{ p = substr($0, length($1) + 2)
    if (match(p, /[^_a-zA-Z0-9]mp_[a-z0-9_]+\(/)) print $1, substr(p, RSTART + 1, RLENGTH - 2), p }'
}

# <page> <function> for every *function*( in a page's text outside its SYNOPSIS.
described() {
  local f
  for f in "$1"/*.3.scd; do
    awk -v page="$(basename "$f" .3.scd)" '
      /^# / { syn = ($0 == "# SYNOPSIS") }
      !syn { line = $0
        while (match(line, /\*mp_[a-z0-9_]+\*\(/)) {
          print page, substr(line, RSTART + 1, RLENGTH - 3); line = substr(line, RSTART + RLENGTH) } }' "$f"
  done | sort -u
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
  names=$(named "$dir")
  missing=""
  for fn in $(symbols "$lib"); do
    page=$(printf '%s\n' "$names" | awk -v fn="$fn" '$2 == fn {print $1; exit}')
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
  symbols "$lib" >"${TMPDIR:-/tmp}/man.sh.$$.syms"
  trap 'rm -f "${TMPDIR:-/tmp}/man.sh.$$".*' EXIT
  t=${TMPDIR:-/tmp}/man.sh.$$
  named "$dir" >"$t.named"
  described "$dir" >"$t.described"
  declarations "$inc" >"$t.decl"
  # One awk over the four lists: every exported function documented (prototype in a page's
  # SYNOPSIS and *name*() in the same page's text), every prototype exported and as declared.
  awk -v SYMS="$t.syms" -v NAMED="$t.named" -v DESC="$t.described" -v DECL="$t.decl" '
    BEGIN {
      while ((getline l < SYMS) > 0) sym[l] = 1
      while ((getline l < DESC) > 0) desc[l] = 1
      while ((getline l < DECL) > 0) {
        decl[l] = 1
        if (match(l, /[^_a-zA-Z0-9]mp_[a-z0-9_]+\(/)) byname[substr(l, RSTART + 1, RLENGTH - 2)] = l
      }
      while ((getline l < NAMED) > 0) {
        split(l, f, " "); page = f[1]; fn = f[2]; proto = substr(l, length(page) + length(fn) + 3)
        if (!(fn in sym)) { print "STALE: " page "(3) shows " fn ", which libmproc does not export"; bad = 1 }
        else if (!(proto in decl)) { print "DIFFERS: " page "(3) shows \x27" proto "\x27; the header: \x27" byname[fn] "\x27"; bad = 1 }
        if ((page " " fn) in desc) documented[fn] = 1
      }
      for (fn in sym) if (!(fn in documented)) {
        print "NO PAGE: " fn " (exported, but no docs/man/*.3.scd has its prototype in SYNOPSIS and *" fn "*() in its text)"; bad = 1 }
      exit bad
    }'
  ;;
*)
  sed -n '3,14p' "$0" >&2
  exit 2
  ;;
esac
