# SPDX-License-Identifier: MIT
# mp-test: timeout=60
# test_spdx.sh BUILD_DIR SOURCE_DIR - every source file of the checkout starts with the licence
# identifier (scripts/spdx.sh decides what a source file is and adds missing lines).
set -eu
src=${2:-$(cd "$(dirname "$0")/.." && pwd)}
if ! out=$("$src/scripts/spdx.sh" --check 2>&1); then
  echo "$out"
  echo "test_spdx: FAIL: run scripts/spdx.sh to add the lines"
  exit 1
fi
echo "test_spdx: ok"
