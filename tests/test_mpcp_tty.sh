# SPDX-License-Identifier: MIT
# mp-test: timeout=180
# test_mpcp_tty.sh BUILD_DIR SOURCE_DIR - mpcp's progress bar on a terminal (a pty made by
# script(1)): it fits the terminal's width, follows a resize (SIGWINCH) and becomes a bare
# percentage on a narrow terminal. Without script(1) the test is skipped.
set -u
BUILD=$(cd "${1:?usage: test_mpcp_tty.sh BUILD_DIR SOURCE_DIR}" && pwd)
MPCP=$BUILD/tools/mpcp/mpcp
[ -x "$MPCP" ] || { echo "FAIL: $MPCP not built"; exit 1; }
if ! command -v script >/dev/null || ! script -qec true /dev/null >/dev/null 2>&1; then
  echo "SKIP: script(1) cannot make a pty here"; exit 0
fi
export TZ=UTC LC_ALL=C
T=$(mktemp -d /tmp/mpcp-tty.XXXXXX)
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM
cd "$T" || exit 1
fails=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
head -c 4194304 /dev/urandom >src

# lines FILE: every redrawn line of the bar (split at \r and \n, erase codes dropped), one a line.
lines() { tr '\r' '\n' <"$1" | sed 's/\x1b\[K//g' | grep -E '[0-9]%'; }
widest() { lines "$1" | awk '{ if (length > w) w = length } END { print w + 0 }'; }
export -f lines

# on_tty COLS OUT CMD: runs CMD in a pty COLS wide (slow workers, so the bar is redrawn often).
on_tty() {
  local cols=$1 out=$2; shift 2
  rm -f dst
  script -qec "stty cols $cols rows 24; $*" /dev/null >"$out" 2>&1 </dev/null
}

for cols in 200 100 80; do
  on_tty $cols "$T/w$cols" "MPCP_TEST_SLOW=5 '$MPCP' -j 2 src dst"
  w=$(widest "$T/w$cols")
  check "$cols columns: a bar with rate and ETA, never past column $((cols - 1)) (widest $w)" \
    bash -c "[ $w -gt 0 ] && [ $w -lt $cols ] && lines '$T/w$cols' | grep -q '\[#*\.*\].*/s  ETA' && cmp -s src dst"
done
on_tty 56 "$T/w56" "MPCP_TEST_SLOW=5 '$MPCP' -j 2 src dst"
w=$(widest "$T/w56")
check "56 columns: still a bar (the rate may go), within the width (widest $w)" \
  bash -c "[ $w -gt 0 ] && [ $w -lt 56 ] && lines '$T/w56' | grep -q '\[#*\.*\].*ETA' && cmp -s src dst"
on_tty 200 "$T/wide" "MPCP_TEST_SLOW=5 '$MPCP' -j 2 src dst"
w=$(widest "$T/wide"); w80=$(widest "$T/w80")
check "a wider terminal gets a wider bar ($w > $w80)" [ "$w" -gt "$w80" ]

for cols in 40 30; do
  on_tty $cols "$T/n$cols" "MPCP_TEST_SLOW=5 '$MPCP' -j 2 src dst"
  w=$(widest "$T/n$cols")
  check "$cols columns: no bar, still a percentage, within the width (widest $w)" \
    bash -c "[ $w -gt 0 ] && [ $w -lt $cols ] && ! lines '$T/n$cols' | grep -q '\[' && lines '$T/n$cols' | grep -q '100%'"
done
on_tty 12 "$T/n12" "MPCP_TEST_SLOW=5 '$MPCP' -j 2 src dst"
w=$(widest "$T/n12")
check "12 columns: a one-line percentage (widest $w)" \
  bash -c "[ $w -gt 0 ] && [ $w -lt 12 ] && lines '$T/n12' | tail -1 | grep -Eq '^(copy )?100%$'"

# A resize while copying: the terminal shrinks from 120 to 40 columns; stty sends SIGWINCH to
# the foreground process group, mpcp with it.
rm -f dst
script -qec "stty cols 120 rows 24; MPCP_TEST_SLOW=100 '$MPCP' -j 2 src dst & sleep 1; stty cols 40; wait" \
  /dev/null >"$T/resize" 2>&1 </dev/null
first=$(lines "$T/resize" | head -3 | awk '{ if (length > w) w = length } END { print w + 0 }')
last=$(lines "$T/resize" | tail -3 | awk '{ if (length > w) w = length } END { print w + 0 }')
check "after SIGWINCH the bar is laid out for the new width (before $first, after $last columns)" \
  bash -c "[ $first -ge 60 ] && [ $first -lt 120 ] && [ $last -lt 40 ] && [ $last -gt 0 ] && cmp -s src dst"

# --progress into a file: no terminal to ask, so $COLUMNS decides.
rm -f dst
COLUMNS=50 "$MPCP" --progress -j 2 src dst 2>"$T/file" </dev/null
w=$(widest "$T/file")
check "--progress to a file fits \$COLUMNS (50: widest $w)" bash -c "[ $w -gt 0 ] && [ $w -lt 50 ]"

echo "$fails failure(s)"
[ $fails = 0 ]
