# SPDX-License-Identifier: MIT
# mp-test: timeout=600
# shellcheck shell=bash
# test_tools_installed.sh BUILD_DIR SOURCE_DIR - the tools (mpcp, mpbench) build against an
# installed mproc, with its public headers only, and the installed binaries run without
# LD_LIBRARY_PATH. mproc is installed into a temporary prefix; tools/ is configured as its own
# project against that prefix (find_package(mproc)), built, installed into a second prefix, and
# run from there: mpcp copies a small tree, mpbench lists its figures and measures a few (with
# MPBENCH_TINY, so the figures mean nothing). Built against libmproc.so (the default standalone)
# a private mp__ call would not link; the static variant (MPROC_TOOLS_STATIC=ON) builds too.
# Every installed header also compiles on its own as C11 and as C++ (-Wall -Wextra -pedantic).
#
# With a BUILD_DIR that holds a built library it installs that; otherwise (or when that install
# fails) it builds the library alone into a temporary build dir first. A sanitizer build
# (MPROC_SANITIZE in its cache) is installed as it is and the tools get the same -fsanitize.
# Everything is made under one temporary directory, removed on exit.
set -eu
build=${1:-}
src=$(cd "${2:-$(dirname "$0")/..}" && pwd -P)

tmp=$(mktemp -d /tmp/mproc_tools.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
prefix=$tmp/prefix
say() { echo "test_tools_installed.sh: $*" >&2; }
fail() {
  say "FAIL: $*"
  exit 1
}
# The tools must not find the library anywhere but through their own rpath.
unset LD_LIBRARY_PATH

build_fresh() {
  say "configuring $src (library only) into a temporary build dir"
  build=$tmp/build
  nice -n 10 cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMPROC_BUILD_TESTS=OFF \
    -DMPROC_BUILD_EXAMPLES=OFF -DMPROC_BUILD_BENCH=OFF -DMPROC_BUILD_TOOLS=OFF \
    -DMPROC_BUILD_MAN=OFF >"$tmp/configure.log" 2>&1 ||
    { cat "$tmp/configure.log" >&2; fail "configure"; }
  nice -n 10 cmake --build "$build" -j2 >"$tmp/build.log" 2>&1 ||
    { tail -50 "$tmp/build.log" >&2; fail "build"; }
}

if [ -z "$build" ] || [ ! -f "$build/CMakeCache.txt" ] || ! ls "$build"/libmproc.so* >/dev/null 2>&1; then
  build_fresh
fi
san=$(sed -n 's/^MPROC_SANITIZE:[A-Z]*=//p' "$build/CMakeCache.txt")
say "installing $build into $prefix"
if ! cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
  say "cmake --install $build failed (not everything built?); building a fresh copy"
  rm -rf "$prefix"
  build_fresh
  san=""
  cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "cmake --install"; }
fi
sanflags=""
[ -n "$san" ] && sanflags="-fsanitize=$san"
so=$(find "$prefix" -name 'libmproc.so.*' -type f | head -1)
[ -n "$so" ] || fail "no libmproc.so installed"
libdir=$(dirname "$so")

# ---- the installed headers on their own --------------------------------------------------------
say "installed headers compile on their own (C11, C++)"
hdrs=$(cd "$prefix/include" && find . -name '*.h' | sed 's|^\./||' | sort)
[ -n "$hdrs" ] || fail "no headers installed"
for h in $hdrs; do
  # Twice, to see the include guard too.
  printf '#include <%s>\n#include <%s>\nint main(void) { return 0; }\n' "$h" "$h" >"$tmp/hdr.c"
  cp "$tmp/hdr.c" "$tmp/hdr.cc"
  cc -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$prefix/include" "$tmp/hdr.c" ||
    fail "$h does not compile on its own as C11"
  if command -v c++ >/dev/null; then
    c++ -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$prefix/include" "$tmp/hdr.cc" ||
      fail "$h does not compile on its own as C++"
  fi
done

# ---- the tools, built against the prefix -------------------------------------------------------
# build_tools NAME [CMAKE ARGS...]: configures tools/ alone into $tmp/NAME, builds, installs into
# $tmp/NAME.inst.
build_tools() {
  local name=$1
  shift
  say "building tools/ against $prefix ($name)"
  nice -n 10 cmake -S "$src/tools" -B "$tmp/$name" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_INSTALL_PREFIX="$tmp/$name.inst" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DCMAKE_C_FLAGS="$sanflags" \
    -DCMAKE_EXE_LINKER_FLAGS="$sanflags" "$@" >"$tmp/$name.cfg.log" 2>&1 ||
    { cat "$tmp/$name.cfg.log" >&2; fail "configure tools/ against the prefix ($name)"; }
  nice -n 10 cmake --build "$tmp/$name" -j2 >"$tmp/$name.build.log" 2>&1 ||
    { tail -80 "$tmp/$name.build.log" >&2; fail "build tools/ against the prefix ($name)"; }
  # Only the installed headers: nothing from the source tree but the tools' own directories.
  grep -o -- '-I *[^ "]*\|-isystem *[^ "]*' "$tmp/$name/compile_commands.json" |
    sed 's/^-I *//; s/^-isystem *//' | sort -u >"$tmp/inc.txt"
  while read -r dir; do
    dir=$(realpath -m "$dir")
    case $dir in
    "$src"/tools/*) ;;
    "$src" | "$src"/*) fail "the tools ($name) see headers of the source tree: $dir" ;;
    esac
  done <"$tmp/inc.txt"
  grep -q -- "$prefix/include" "$tmp/$name/compile_commands.json" ||
    fail "the tools ($name) are not compiled with $prefix/include"
  cmake --install "$tmp/$name" >"$tmp/$name.inst.log" 2>&1 ||
    { cat "$tmp/$name.inst.log" >&2; fail "install the tools ($name)"; }
  for t in mpcp mpbench; do
    [ -x "$tmp/$name.inst/bin/$t" ] || fail "no $t installed ($name)"
  done
}

# run_tools BIN_DIR: the installed tools work, from their install dir, with no LD_LIBRARY_PATH.
run_tools() {
  local bin=$1
  say "running $bin/mpcp and $bin/mpbench"
  "$bin/mpcp" --version >"$tmp/out" 2>&1 || { cat "$tmp/out" >&2; fail "mpcp --version"; }
  mkdir -p "$tmp/data/sub"
  yes 'a line of data' | head -c 300000 >"$tmp/data/big"
  printf 'small\n' >"$tmp/data/sub/small"
  rm -rf "$tmp/copy"
  "$bin/mpcp" -r "$tmp/data" "$tmp/copy" || fail "mpcp -r"
  diff -r "$tmp/data" "$tmp/copy" || fail "mpcp's copy differs from its source"
  "$bin/mpbench" --list >"$tmp/out" 2>&1 || { cat "$tmp/out" >&2; fail "mpbench --list"; }
  for f in raw.pipe.rtt64.same queue.rtt64.same process.start pool; do
    grep -q "$f" "$tmp/out" || { cat "$tmp/out" >&2; fail "mpbench --list has no $f"; }
  done
  if grep -q "not available" "$tmp/out"; then
    cat "$tmp/out" >&2
    fail "mpbench built against the prefix misses a module"
  fi
  MPBENCH_TINY=1 "$bin/mpbench" --quick --only raw,queue,process >"$tmp/out" 2>&1 ||
    { cat "$tmp/out" >&2; fail "mpbench --quick --only raw,queue,process"; }
  for f in raw.pipe.rtt64.same queue.rtt64.same process.start; do
    grep -q "^ *$f  *[0-9]" "$tmp/out" || { cat "$tmp/out" >&2; fail "mpbench printed no $f"; }
  done
}

# The default: linked to the installed libmproc.so, found through the rpath.
build_tools shared
for t in mpcp mpbench; do
  exe=$tmp/shared.inst/bin/$t
  readelf -d "$exe" | grep -q "NEEDED.*libmproc\.so" || fail "$t is not linked to libmproc.so"
  readelf -d "$exe" | grep -q "R\(UN\)\?PATH.*$libdir" ||
    { readelf -d "$exe" >&2; fail "$t has no rpath to $libdir"; }
done
run_tools "$tmp/shared.inst/bin"

# The static variant: libmproc.a from the prefix (mproc::mproc_static), no libmproc.so needed.
build_tools static -DMPROC_TOOLS_STATIC=ON
for t in mpcp mpbench; do
  if readelf -d "$tmp/static.inst/bin/$t" | grep -q "NEEDED.*libmproc"; then
    fail "$t is linked to libmproc.so with MPROC_TOOLS_STATIC=ON"
  fi
done
run_tools "$tmp/static.inst/bin"

say "ok"
