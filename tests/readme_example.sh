# SPDX-License-Identifier: MIT
# mp-test: timeout=120
# shellcheck shell=bash
# The README's example compiles against the built library and prints what it promises.
set -eu
build=$1; src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
awk '/^```c$/{on=1; next} /^```$/{if(on){exit}} on{print}' "$src/README.md" > "$tmp/demo.c"
[ -s "$tmp/demo.c" ] || { echo "no C block in README.md"; exit 1; }
# A sanitizer build's library needs the same runtime in the program that links it.
san=$(sed -n 's/^MPROC_SANITIZE:STRING=//p' "$build/CMakeCache.txt")
sanflags=${san:+-fsanitize=$san}
# shellcheck disable=SC2086
cc -std=gnu11 -Wall -Wextra -Werror $sanflags -I"$src/include" "$tmp/demo.c" -o "$tmp/demo" \
   "$build/libmproc.a" -lpthread -lrt
"$tmp/demo" > "$tmp/out"
cat "$tmp/out"
[ "$(grep -c '^hello [0-2] from [0-9]*$' "$tmp/out")" -eq 3 ] || { echo "unexpected output"; exit 1; }
