# SPDX-License-Identifier: MIT
# mp-test: timeout=300
# shellcheck shell=bash
# test_man.sh BUILD_DIR SOURCE_DIR - the section-3 man pages stay true to the library:
#   - every exported mp_* function of libmproc.so has a page that documents it (its prototype in
#     SYNOPSIS, *name*() in the text), and every SYNOPSIS prototype matches its header
#     declaration (scripts/man.sh check);
#   - every page renders with scdoc, and `man NAME` finds every function through its link page;
#   - every page's EXAMPLE program compiles against the headers and runs successfully.
set -eu
build=$1
src=$2
dir=$src/docs/man
tmp=$(mktemp -d /tmp/mproc_man.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
lib=$(ls "$build"/libmproc.so 2>/dev/null || true)
[ -n "$lib" ] || { echo "test_man: no $build/libmproc.so"; exit 1; }

echo "== coverage and prototypes"
if ! bash "$src/scripts/man.sh" check "$lib" "$dir" "$src/include"; then
  echo "test_man: FAIL: pages and library disagree (see above; pages live in docs/man/)"
  fail=1
fi

if command -v scdoc >/dev/null; then
  echo "== rendering, and man NAME for every function"
  mkdir -p "$tmp/man/man3"
  for scd in "$dir"/*.3.scd; do
    page=$(basename "$scd" .scd)
    if ! scdoc <"$scd" >"$tmp/man/man3/$page"; then
      echo "test_man: FAIL: scdoc rejects $scd"
      fail=1
    fi
  done
  bash "$src/scripts/man.sh" links "$lib" "$dir" "$tmp/links" 2>/dev/null
  cp "$tmp"/links/*.3 "$tmp/man/man3/" 2>/dev/null || true
  if command -v man >/dev/null; then
    for fn in $(bash "$src/scripts/man.sh" symbols "$lib"); do
      # The page man opens for the name must show the function's prototype.
      if ! MANPATH=$tmp/man MANWIDTH=200 man 3 "$fn" 2>/dev/null | grep -q "$fn("; then
        echo "test_man: FAIL: man 3 $fn does not show $fn()"
        fail=1
      fi
    done
  fi
else
  echo "test_man: scdoc not installed: rendering not checked"
fi

echo "== examples"
san=$(sed -n 's/^MPROC_SANITIZE:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
sanflags=${san:+-fsanitize=$san}
for scd in "$dir"/*.3.scd; do
  page=$(basename "$scd" .3.scd)
  # The first code block of the EXAMPLE section, with scdoc's backslash escapes undone.
  awk '/^# /{ex = ($0 == "# EXAMPLE")} ex && /^```/{if (on) exit; on = 1; next} on' "$scd" |
    sed -E 's/\\(.)/\1/g' >"$tmp/$page.c"
  if [ ! -s "$tmp/$page.c" ]; then
    echo "test_man: FAIL: $page(3) has no EXAMPLE program"
    fail=1
    continue
  fi
  # shellcheck disable=SC2086
  if ! cc -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter $sanflags -I"$src/include" \
    -o "$tmp/$page" "$tmp/$page.c" "$build/libmproc.a" -lpthread -lrt -lm 2>"$tmp/$page.err"; then
    echo "test_man: FAIL: the example of $page(3) does not compile:"
    cat "$tmp/$page.err"
    fail=1
    continue
  fi
  if ! (cd "$tmp" && timeout 60 "./$page" >"$tmp/$page.out" 2>&1); then
    echo "test_man: FAIL: the example of $page(3) failed:"
    cat "$tmp/$page.out"
    fail=1
  fi
done

[ $fail = 0 ] && echo "test_man: ok"
exit $fail
