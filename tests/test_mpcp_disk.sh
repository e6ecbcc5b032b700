# SPDX-License-Identifier: MIT
# mp-test: timeout=180
# test_mpcp_disk.sh BUILD_DIR SOURCE_DIR - mpcp --verify compares what is on the disk, not what
# is in the page cache. On an ext4 filesystem in a loop-mounted image file, mpcp stops itself
# between copy and verify (a test hook); the test then changes one byte of the copy on the "disk"
# (in the image file, where the filesystem's page cache does not see it), checks that a normal
# read through the page cache still sees the good bytes, and lets mpcp go on: --verify must
# report the difference, both with O_DIRECT and with the fdatasync + FADV_DONTNEED fallback.
# Needs root (mount) and loop devices; skipped otherwise.
set -u
BUILD=$(cd "${1:?usage: test_mpcp_disk.sh BUILD_DIR SOURCE_DIR}" && pwd)
MPCP=$BUILD/tools/mpcp/mpcp
[ -x "$MPCP" ] || { echo "FAIL: $MPCP not built"; exit 1; }
SCALE=${MP_TEST_TIMEOUT_SCALE:-1}
export TZ=UTC LC_ALL=C
for tool in mkfs.ext4 filefrag mount umount; do
  command -v $tool >/dev/null || { echo "SKIP: $tool not found"; exit 0; }
done
T=$(mktemp -d /tmp/mpcp-disk.XXXXXX)
MNT=""
PID=""
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  [ -n "$MNT" ] && umount "$MNT" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fails=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

truncate -s 64M "$T/img"
mkfs.ext4 -q -F -b 4096 "$T/img" || { echo "SKIP: mkfs.ext4 failed"; exit 0; }
mkdir "$T/mnt"
if ! mount -o loop "$T/img" "$T/mnt" 2>/dev/null; then
  echo "SKIP: cannot loop-mount (needs root and loop devices)"; exit 0
fi
MNT=$T/mnt
head -c 3000000 /dev/urandom >"$T/src"
AT=1234567 # the byte changed on the disk

# stopped PID: true once the process is stopped (state T in /proc/PID/stat).
stopped() { [ "$(awk '{ print $3 }' /proc/"$1"/stat 2>/dev/null)" = T ]; }

# one_run DESC ENV...: runs mpcp --verify into the image, corrupts the copy on the disk while
# it is stopped before verification, and checks the outcome.
one_run() {
  local desc=$1; shift
  rm -f "$MNT/dst"
  env "$@" MPCP_TEST_STOP_BEFORE_VERIFY=1 "$MPCP" --verify -j 2 "$T/src" "$MNT/dst" 2>"$T/err" &
  PID=$!
  local i
  for ((i = 0; i < 400 * SCALE; i++)); do stopped $PID && break; sleep 0.05; done
  if ! stopped $PID; then fail "$desc: mpcp did not stop before verification"; kill -9 $PID; wait $PID; PID=""; return; fi
  local tmp
  tmp=$(find "$MNT" -name '.dst.mpcp-*' | head -1)
  sync -d "$tmp" # the copy's bytes go to the "disk" (the image file) ...
  # ... where one byte is flipped behind the filesystem's back.
  local blk=$((AT / 4096)) phys
  # filefrag -v lines: "ext: logical_start.. logical_end: physical_start.. physical_end: ..."
  phys=$(filefrag -v -b4096 "$tmp" | awk -v b=$blk '$1 ~ /^[0-9]+:$/ {
      l1 = $2; l2 = $3; p1 = $4; gsub(/[.:]/, "", l1); gsub(/[.:]/, "", l2); gsub(/[.:]/, "", p1)
      if (b >= l1 + 0 && b <= l2 + 0) { print p1 + (b - l1); exit } }')
  if [ -z "$phys" ]; then fail "$desc: no extent found for the copy"; kill -9 $PID; wait $PID; PID=""; return; fi
  local off=$((phys * 4096 + AT % 4096)) c
  c=$(dd if="$T/img" bs=1 skip=$off count=1 status=none | od -An -tu1 | tr -d ' ')
  printf "$(printf '\\%03o' $(((c + 1) % 256)))" | dd of="$T/img" bs=1 seek=$off conv=notrunc status=none
  if cmp -s "$T/src" "$tmp"; then
    pass "$desc: a read through the page cache still sees the good copy"
  else
    fail "$desc: the page cache already sees the change (the test proves nothing)"
  fi
  kill -CONT $PID
  wait $PID; local rc=$?; PID=""
  if [ $rc = 1 ] && grep -q "'$MNT/dst' differs from '$T/src' at byte $AT" "$T/err" && [ ! -e "$MNT/dst" ] &&
     [ -z "$(find "$MNT" -name '.dst.mpcp-*')" ]; then
    pass "$desc: --verify reads the disk, reports the byte, leaves nothing"
  else
    fail "$desc: rc=$rc"; cat "$T/err"
  fi
}
one_run "O_DIRECT"
one_run "fdatasync + FADV_DONTNEED" MPCP_TEST_NO_DIRECT=1

rm -f "$MNT/dst"
"$MPCP" --verify -j 2 "$T/src" "$MNT/dst" 2>"$T/err"; rc=$?
if [ $rc = 0 ] && cmp -s "$T/src" "$MNT/dst"; then pass "a good copy passes"; else fail "good copy: rc=$rc"; cat "$T/err"; fi

echo "$fails failure(s)"
[ $fails = 0 ]
