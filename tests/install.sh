# SPDX-License-Identifier: MIT
# mp-test: timeout=300
# shellcheck shell=bash
# install.sh BUILD_DIR SOURCE_DIR - mproc installs into a prefix, and an outside program builds
# against that prefix both with pkg-config and with find_package(mproc), then runs. The installed
# versions agree with the headers: pkg-config --modversion, the soname (libmproc.so.0.MINOR while
# 0.x), find_package(mproc 0.MINOR) works and find_package(mproc 0.9) fails. The guides and
# licence are in share/doc/mproc, and (when scdoc is installed) `man mp_queue_put` finds its page.
#
# With a BUILD_DIR that holds a built library it installs that (cmake --install --prefix);
# otherwise it configures and builds SOURCE_DIR into a temporary build dir first. A sanitizer
# build (MPROC_SANITIZE in its cache) is installed as it is; the outside program then gets the
# same -fsanitize flags, since the library needs their runtime.
set -eu
build=${1:-}
src=$(cd "${2:-$(dirname "$0")/..}" && pwd)

tmp=$(mktemp -d /tmp/mproc_install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
say() { echo "install.sh: $*" >&2; }
fail() {
  say "FAIL: $*"
  exit 1
}

build_fresh() {
  say "configuring $src into a temporary build dir"
  build=$tmp/build
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMPROC_BUILD_TESTS=OFF \
    -DMPROC_BUILD_EXAMPLES=OFF -DMPROC_BUILD_BENCH=OFF -DMPROC_BUILD_TOOLS=OFF >"$tmp/configure.log" 2>&1 ||
    { cat "$tmp/configure.log" >&2; fail "configure"; }
  cmake --build "$build" -j2 >"$tmp/build.log" 2>&1 ||
    { tail -50 "$tmp/build.log" >&2; fail "build"; }
}

if [ -z "$build" ] || [ ! -f "$build/CMakeCache.txt" ] || ! ls "$build"/libmproc.so* >/dev/null 2>&1; then
  build_fresh
fi

san=$(sed -n 's/^MPROC_SANITIZE:[A-Z]*=//p' "$build/CMakeCache.txt")
sanflags=""
[ -n "$san" ] && sanflags="-fsanitize=$san"

say "installing $build into $prefix"
if ! cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
  # A build dir where not every target was built (cmake --build --target ...) cannot install
  # everything: build a fresh copy of the library instead.
  say "cmake --install $build failed (not everything built?); building a fresh copy"
  cat "$tmp/install.log" >&2
  rm -rf "$prefix"
  build_fresh
  san=""
  sanflags=""
  cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "cmake --install"; }
fi

pc=$(find "$prefix" -name mproc.pc | head -1)
cfg=$(find "$prefix" -name mproc-config.cmake | head -1)
[ -n "$pc" ] || fail "no mproc.pc installed"
[ -n "$cfg" ] || fail "no mproc-config.cmake installed"
[ -f "$prefix/include/mproc.h" ] || fail "no include/mproc.h installed"
libdir=$(dirname "$(dirname "$pc")")

# The outside program: start a process, join it, check its exit code.
mkdir -p "$tmp/app"
cat >"$tmp/app/app.c" <<'EOF'
#include <stdio.h>
#include <mproc.h>

static int work(void *arg) { return *(int *)arg + 1; }

int main(void)
{
    int n = 41, code = -1;
    mp_process *p;
    if (mp_process_new(&p, "outside", work, &n) != 0 || mp_process_start(p) != 0) return 1;
    if (mp_process_join(p, 30.0) != 0 || mp_process_exitcode(p, &code) != 0) return 2;
    mp_process_free(&p);
    printf("outside program: mproc %s, child exit code %d\n", mp_version(), code);
    if (MPROC_VERSION_CHECK() != 0) return 4;
    return code == 42 ? 0 : 3;
}
EOF
cat >"$tmp/app/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(outside C)
find_package(mproc ${WANT} REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE mproc::mproc)
EOF

say "building with pkg-config"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cflags=$(pkg-config --cflags mproc) || fail "pkg-config --cflags"
libs=$(pkg-config --libs mproc) || fail "pkg-config --libs"
# shellcheck disable=SC2086
cc $sanflags $cflags -o "$tmp/app_pc" "$tmp/app/app.c" $libs || fail "cc with pkg-config flags"
LD_LIBRARY_PATH="$libdir" "$tmp/app_pc" || fail "the pkg-config build did not run"

# The version every installed piece reports is the headers' version.
hdr=$(sed -n 's/^#define MPROC_VERSION_\(MAJOR\|MINOR\|PATCH\)[ \t]*\([0-9]*\).*/\2/p' \
  "$prefix/include/mproc/common.h" | paste -sd.)
[ -n "$hdr" ] || fail "no version in the installed common.h"
modv=$(pkg-config --modversion mproc) || fail "pkg-config --modversion"
[ "$modv" = "$hdr" ] || fail "pkg-config --modversion says $modv, the headers $hdr"
major=${hdr%%.*}
minor=${hdr#*.}
minor=${minor%%.*}
if [ "$major" = 0 ]; then want_soname=libmproc.so.0.$minor; else want_soname=libmproc.so.$major; fi
soname=$(readelf -d "$libdir/libmproc.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "$want_soname" ] || fail "soname is '$soname', want $want_soname"
[ -e "$libdir/$want_soname" ] || fail "no $libdir/$want_soname link"
say "version $hdr: pkg-config and soname $soname agree"

say "building with find_package(mproc $major.$minor)"
cmake -S "$tmp/app" -B "$tmp/app_build" -DCMAKE_PREFIX_PATH="$prefix" -DWANT="$major.$minor" \
  -DCMAKE_C_FLAGS="$sanflags" -DCMAKE_EXE_LINKER_FLAGS="$sanflags" >"$tmp/app_cfg.log" 2>&1 ||
  { cat "$tmp/app_cfg.log" >&2; fail "find_package(mproc $major.$minor)"; }
cmake --build "$tmp/app_build" >"$tmp/app_build.log" 2>&1 ||
  { cat "$tmp/app_build.log" >&2; fail "build with find_package"; }
LD_LIBRARY_PATH="$libdir" "$tmp/app_build/app" || fail "the find_package build did not run"

# Another minor of 0.x may break the ABI: asking for one must fail (0.9 here; for a future 0.9
# release, 0.8).
other=9
[ "$major.$minor" = 0.9 ] && other=8
if [ "$major" = 0 ]; then
  say "find_package(mproc 0.$other) must fail"
  if cmake -S "$tmp/app" -B "$tmp/app_build_other" -DCMAKE_PREFIX_PATH="$prefix" -DWANT="0.$other" \
    >"$tmp/app_other.log" 2>&1; then
    cat "$tmp/app_other.log" >&2
    fail "find_package(mproc 0.$other) accepted mproc $hdr"
  fi
  grep -q "mproc-config-version.cmake\|version: $hdr" "$tmp/app_other.log" ||
    { cat "$tmp/app_other.log" >&2; fail "find_package(mproc 0.$other) failed for another reason"; }
fi
# A newer major is refused too.
if cmake -S "$tmp/app" -B "$tmp/app_build_major" -DCMAKE_PREFIX_PATH="$prefix" \
  -DWANT="$((major + 1)).0" >"$tmp/app_major.log" 2>&1; then
  fail "find_package(mproc $((major + 1)).0) accepted mproc $hdr"
fi

# add_subdirectory: mproc built as part of the outside project (no install at all).
say "building with add_subdirectory(mproc)"
mkdir -p "$tmp/sub"
cp "$tmp/app/app.c" "$tmp/sub/app.c"
cat >"$tmp/sub/CMakeLists.txt" <<EOF2
cmake_minimum_required(VERSION 3.18)
project(outside_sub C)
add_subdirectory("$src" mproc)
add_executable(app app.c)
target_link_libraries(app PRIVATE mproc::mproc)
EOF2
cmake -S "$tmp/sub" -B "$tmp/sub_build" -DCMAKE_BUILD_TYPE=Release -DMPROC_SANITIZE="$san" \
  -DCMAKE_C_FLAGS="$sanflags" -DCMAKE_EXE_LINKER_FLAGS="$sanflags" >"$tmp/sub_cfg.log" 2>&1 ||
  { cat "$tmp/sub_cfg.log" >&2; fail "configure with add_subdirectory"; }
grep -q "mpcp\|test_queue" "$tmp/sub_build/Makefile" 2>/dev/null &&
  fail "add_subdirectory builds mproc's tools or tests into the outside project"
cmake --build "$tmp/sub_build" -j2 >"$tmp/sub_build.log" 2>&1 ||
  { tail -50 "$tmp/sub_build.log" >&2; fail "build with add_subdirectory"; }
"$tmp/sub_build/app" || fail "the add_subdirectory build did not run"

say "documentation"
docdir=$prefix/share/doc/mproc
for f in LICENSE CHANGELOG.md README.md queue.md; do
  [ -f "$docdir/$f" ] || fail "no $docdir/$f installed"
done
if grep -q '^SCDOC_EXECUTABLE:FILEPATH=/' "$build/CMakeCache.txt"; then
  [ -f "$prefix/share/man/man3/mproc_queue.3" ] || fail "no man3/mproc_queue.3 installed"
  [ -f "$prefix/share/man/man3/mp_queue_put.3" ] || fail "no man3/mp_queue_put.3 installed"
  if command -v man >/dev/null; then
    MANPATH=$prefix/share/man man 3 mp_queue_put 2>/dev/null | grep -q 'mp_queue_put(' ||
      fail "man mp_queue_put does not find its page in the installed prefix"
  fi
fi

say "ok"
