# SPDX-License-Identifier: MIT
# mp-test: timeout=60
# shellcheck shell=bash
# test_spdx.sh BUILD_DIR SOURCE_DIR - every source file of the checkout starts with the licence
# identifier (scripts/spdx.sh decides what a source file is and adds missing lines), and
# scripts/spdx.sh itself puts it in the right place, keeps shebangs first and is idempotent.
set -eu
src=${2:-$(cd "$(dirname "$0")/.." && pwd)}
tmp=$(mktemp -d /tmp/mproc_spdx.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "test_spdx: FAIL: $*"
  exit 1
}

# The script on files of every kind, twice.
printf 'int x;\n' >"$tmp/a.c"
printf '#!/bin/sh\necho hi\n' >"$tmp/b.sh"
printf '"""doc"""\n' >"$tmp/c.py"
printf 'project(x)\n' >"$tmp/CMakeLists.txt"
printf '# Title\n' >"$tmp/d.md"
chmod +x "$tmp/b.sh"
for _ in 1 2; do "$src/scripts/spdx.sh" "$tmp"/* 2>/dev/null; done
[ "$(head -1 "$tmp/a.c")" = "/* SPDX-License-Identifier: MIT */" ] || fail "C file: $(head -1 "$tmp/a.c")"
[ "$(sed -n 2p "$tmp/a.c")" = "int x;" ] || fail "C file body moved"
[ "$(head -1 "$tmp/b.sh")" = "#!/bin/sh" ] || fail "shebang not kept first"
[ "$(sed -n 2p "$tmp/b.sh")" = "# SPDX-License-Identifier: MIT" ] || fail "script: no line after the shebang"
[ -x "$tmp/b.sh" ] || fail "script lost its mode"
[ "$(head -1 "$tmp/c.py")" = "# SPDX-License-Identifier: MIT" ] || fail "python file"
[ "$(head -1 "$tmp/CMakeLists.txt")" = "# SPDX-License-Identifier: MIT" ] || fail "CMakeLists.txt"
[ "$(head -1 "$tmp/d.md")" = "# Title" ] || fail "a document was changed"
[ "$(grep -c SPDX "$tmp/a.c" "$tmp/b.sh" | awk -F: '{s += $2} END {print s}')" = 2 ] ||
  fail "not idempotent"

# The checkout.
if ! out=$("$src/scripts/spdx.sh" --check 2>&1); then
  echo "$out"
  fail "source files without the licence line (run scripts/spdx.sh to add them)"
fi
echo "test_spdx: ok"
