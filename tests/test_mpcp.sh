# SPDX-License-Identifier: MIT
# mp-test: timeout=300
# test_mpcp.sh BUILD_DIR SOURCE_DIR - behaviour and output shape of tools/mpcp (never timings).
set -u
BUILD=$(cd "${1:?usage: test_mpcp.sh BUILD_DIR SOURCE_DIR}" && pwd)
MPCP=$BUILD/tools/mpcp/mpcp
[ -x "$MPCP" ] || { echo "FAIL: $MPCP not built"; exit 1; }
SCALE=${MP_TEST_TIMEOUT_SCALE:-1}
umask 022
export TZ=UTC LC_ALL=C

T=$(mktemp -d /tmp/mpcp-test.XXXXXX)
MNT=""
BG=""
XDIR=""
cleanup() {
  [ -n "$XDIR" ] && rm -rf "$XDIR"
  for p in $BG; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ -n "$MNT" ] && umount "$MNT" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fails=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
# check DESC CMD...: one assertion.
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
# run CMD...: runs mpcp-ish commands, leaves status in $rc, stdout in $T/out, stderr in $T/err.
run() { "$@" >"$T/out" 2>"$T/err"; rc=$?; }
has() { grep -q -- "$1" "$T/err"; }
no_temps() { [ -z "$(find "$T" ${MNT:+"$MNT"} -name '.*.mpcp-*' 2>/dev/null)" ]; }
same() { cmp -s "$1" "$2"; }
# wait_gone PID: waits (bounded) for a background process, sets rc to its status.
wait_bg() {
  local pid=$1 i
  for ((i = 0; i < 200 * SCALE; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; echo "  (had to kill $pid)"; }
  wait "$pid"; rc=$?
}
# children PID: the pids of PID's children (the mpcp workers).
children() { cat /proc/"$1"/task/*/children 2>/dev/null; }
wait_children() {
  local i
  for ((i = 0; i < 200 * SCALE; i++)); do
    [ -n "$(children "$1")" ] && return 0
    sleep 0.02
  done
  return 1
}
mkrand() { head -c "$2" /dev/urandom >"$1"; }

cd "$T" || exit 1

# ---- usage --------------------------------------------------------------------------------
run "$MPCP" --help
check "--help exits 0 and documents options and exit codes" \
  bash -c "[ $rc = 0 ] && grep -q -- '--verify' '$T/out' && grep -q 'Exit status' '$T/out' && grep -q '130' '$T/out'"
run "$MPCP" --version
check "--version exits 0" bash -c "[ $rc = 0 ] && grep -q 'mpcp' '$T/out'"
for args in "--bogus a b" "-x a b" "" "onlyone" "-j 0 a b" "-j x a b" "-j" "--chunk 0 a b" \
  "--chunk 12Q a b" "--chunk -5 a b"; do
  # shellcheck disable=SC2086
  run "$MPCP" $args
  check "bad usage '$args' -> exit 2 with a pointer to --help" \
    bash -c "[ $rc = 2 ] && grep -q -- '--help' '$T/err' && [ ! -s '$T/out' ]"
done

# ---- single file, -j 1..4, odd chunk sizes ------------------------------------------------
mkrand src 5242883 # 5 MiB + 3: never a multiple of a chunk
ok=1
for j in 1 2 3 4; do
  for chunk in "" 4097 100000 1M 3K; do
    rm -f dst
    run "$MPCP" -j $j ${chunk:+--chunk $chunk} src dst
    if [ $rc != 0 ] || ! same src dst || [ -s "$T/err" ] || [ -s "$T/out" ]; then
      ok=0; echo "  -j $j --chunk '$chunk': rc=$rc"; cat "$T/err"
    fi
  done
done
check "single file byte for byte with -j 1..4 and odd chunk sizes, silent when not a tty" [ $ok = 1 ]

rm -f dst
run "$MPCP" -v src dst
check "-v prints 'SRC' -> 'DST'" bash -c "[ $rc = 0 ] && grep -qx \"'src' -> 'dst'\" '$T/out'"
rm -f dst
run "$MPCP" -q -v src dst
check "-q prints nothing" bash -c "[ $rc = 0 ] && [ ! -s '$T/out' ] && [ ! -s '$T/err' ]"
rm -f dst
run "$MPCP" --progress -j 2 src dst
check "--progress draws a bar with bytes, rate, ETA on stderr" \
  bash -c "[ $rc = 0 ] && grep -q '100%' '$T/err' && grep -q 'ETA' '$T/err' && grep -q '/s' '$T/err' && [ ! -s '$T/out' ]"
if command -v script >/dev/null; then
  rm -f dst
  script -qec "'$MPCP' src dst" /dev/null >"$T/tty" 2>&1
  check "on a terminal a progress bar is drawn by default" bash -c "grep -q '100%' '$T/tty' && grep -q 'ETA' '$T/tty' && cmp -s src dst"
  rm -f dst
  script -qec "'$MPCP' -q src dst" /dev/null >"$T/tty" 2>&1
  check "on a terminal -q draws no bar" bash -c "! grep -q '%' '$T/tty' && cmp -s src dst"
  rm -f dst
  script -qec "'$MPCP' --no-progress src dst" /dev/null >"$T/tty" 2>&1
  check "on a terminal --no-progress draws no bar" bash -c "! grep -q '%' '$T/tty' && cmp -s src dst"
fi
check "mode of a new file follows the source and the umask" \
  bash -c "chmod 0666 src && rm -f dst && '$MPCP' src dst && [ \$(stat -c %a dst) = 644 ]"

# ---- several files, directory destinations -------------------------------------------------
mkdir d1 d2
: >f0; mkrand f1 1; mkrand f2 4097; mkrand f3 3145728; mkrand f4 10485761
run "$MPCP" -j 3 f0 f1 f2 f3 f4 d1
ok=$([ $rc = 0 ] && echo 1 || echo 0)
for f in f0 f1 f2 f3 f4; do same $f d1/$f || ok=0; done
check "several files into a directory" [ $ok = 1 ]
run "$MPCP" --chunk 64K -j 4 --verify f3 f4 d2/
check "several files, small chunks, --verify, trailing slash" \
  bash -c "[ $rc = 0 ] && cmp -s f3 d2/f3 && cmp -s f4 d2/f4"
run "$MPCP" src d2
check "single file into an existing directory" bash -c "[ $rc = 0 ] && cmp -s src d2/src"
run "$MPCP" f1 f2 nodir
check "several files to a non-directory is refused" bash -c "[ $rc = 1 ] && grep -q 'nodir' '$T/err' && grep -q 'not a directory' '$T/err'"
run "$MPCP" src nodir/x
check "missing destination directory: message names the path and the cause" \
  bash -c "[ $rc = 1 ] && grep -q 'nodir/x' '$T/err' && grep -q 'No such file or directory' '$T/err'"
mkdir -p d3/src
run "$MPCP" src d3
check "a directory in the way of the destination is refused" bash -c "[ $rc = 1 ] && grep -q 'd3/src' '$T/err'"

# ---- -n / -f ----------------------------------------------------------------------------------
echo old >dst
run "$MPCP" -n src dst
check "-n leaves an existing destination alone (exit 0)" bash -c "[ $rc = 0 ] && [ \"\$(cat dst)\" = old ]"
run "$MPCP" -n -v src dst
check "-n -v says skipped" bash -c "grep -q \"skipped 'dst'\" '$T/out'"
run "$MPCP" -f -n src dst
check "-f -n: not replaced" bash -c "[ $rc = 0 ] && [ \"\$(cat dst)\" = old ]"
run "$MPCP" -n -f src dst
check "-n -f: -f does not cancel -n (as in GNU cp)" bash -c "[ $rc = 0 ] && [ \"\$(cat dst)\" = old ]"
run "$MPCP" -f src dst
check "-f replaces" bash -c "[ $rc = 0 ] && cmp -s src dst"
echo old >dst; chmod 0600 dst
run "$MPCP" src dst
check "default replaces an existing destination and keeps its mode" \
  bash -c "[ $rc = 0 ] && cmp -s src dst && [ \$(stat -c %a dst) = 600 ]"
run "$MPCP" -n src d1/nonexistent
check "-n still copies to a new destination" bash -c "[ $rc = 0 ] && cmp -s src d1/nonexistent"

# ---- -p -------------------------------------------------------------------------------------
mkrand psrc 70000
chmod 0751 psrc
touch -d '2001-02-03 04:05:06.123456789' psrc
run "$MPCP" -p psrc pdst
check "-p keeps mode, mtime and atime (to the nanosecond)" \
  bash -c "[ $rc = 0 ] && [ \$(stat -c %a pdst) = 751 ] && [ \"\$(stat -c %y pdst)\" = \"\$(stat -c %y psrc)\" ] && [ \"\$(stat -c %x pdst)\" = '2001-02-03 04:05:06.123456789 +0000' ]"
run "$MPCP" psrc pdst2
check "without -p the mtime is new" bash -c "[ \"\$(stat -c %Y pdst2)\" != \"\$(stat -c %Y psrc)\" ]"

# ---- -r -------------------------------------------------------------------------------------
mkdir -p tree/a/b tree/empty
mkrand tree/top 100000; mkrand tree/a/mid 3000001; mkrand tree/a/b/deep 1; : >tree/a/b/zero
ln -s ../top tree/a/link
chmod 0750 tree/a
run "$MPCP" -r -j 3 tree tcopy
check "-r copies a tree: files, empty directory, symlink as a link" \
  bash -c "[ $rc = 0 ] && diff -r --no-dereference tree tcopy && [ -L tcopy/a/link ] && [ \$(readlink tcopy/a/link) = ../top ] && [ -d tcopy/empty ]"
check "-r: directory modes follow the source" [ "$(stat -c %a tcopy/a)" = 750 ]
mkdir tdir
run "$MPCP" -r --verify tree tdir
check "-r into an existing directory lands in DIR/NAME" bash -c "[ $rc = 0 ] && diff -r tree tdir/tree >/dev/null"
run "$MPCP" -r tree tree/a
check "-r into itself is refused" bash -c "[ $rc = 1 ] && grep -q 'into itself' '$T/err' && [ ! -e tree/a/tree ]"
run "$MPCP" -r tree f1
check "-r onto a file is refused" bash -c "[ $rc = 1 ] && grep -q \"non-directory 'f1'\" '$T/err'"
mkfifo tree/a/pipe
run "$MPCP" -r tree tcopy2
check "-r: a FIFO inside is refused by name, the rest is copied" \
  bash -c "[ $rc = 1 ] && grep -q 'tree/a/pipe' '$T/err' && cmp -s tree/a/mid tcopy2/a/mid && [ ! -e tcopy2/a/pipe ]"
rm tree/a/pipe
touch -d '2002-03-04 05:06:07' tree/a tree/a/b
run "$MPCP" -r -p tree tcopy3
check "-r -p keeps directory times and modes" \
  bash -c "[ $rc = 0 ] && [ \$(stat -c %Y tcopy3/a) = \$(stat -c %Y tree/a) ] && [ \$(stat -c %Y tcopy3/a/b) = \$(stat -c %Y tree/a/b) ] && [ \$(stat -c %a tcopy3/a) = 750 ]"
mkdir dupdir
run "$MPCP" f1 d1/f1 dupdir
check "two sources onto one destination: the second is refused" \
  bash -c "[ $rc = 1 ] && grep -q 'just-created' '$T/err' && cmp -s f1 dupdir/f1"

# ---- --verify -------------------------------------------------------------------------------
rm -f dst
run "$MPCP" --verify -j 3 --chunk 333333 src dst
check "--verify passes on a good copy" bash -c "[ $rc = 0 ] && cmp -s src dst"
echo old >vdst
MPCP_TEST_CORRUPT=1 run "$MPCP" --verify -j 2 src vdst
check "--verify catches a flipped byte: exit 1, message, destination untouched, temp removed" \
  bash -c "[ $rc = 1 ] && grep -q 'verification failed' '$T/err' && grep -q vdst '$T/err' && [ \"\$(cat vdst)\" = old ]"
check "no temporary left after the verify failure" no_temps

# --verify reads the copy back past the page cache: O_DIRECT on the copy where the filesystem
# allows it, else fdatasync + POSIX_FADV_DONTNEED before each read; both paths catch a flipped byte.
rm -f dst
MPCP_TEST_NO_DIRECT=1 run "$MPCP" --verify -j 3 --chunk 333333 src dst
check "--verify without O_DIRECT (flush and drop the cache) passes on a good copy" bash -c "[ $rc = 0 ] && cmp -s src dst"
echo old >vdst
MPCP_TEST_NO_DIRECT=1 MPCP_TEST_CORRUPT=1 run "$MPCP" --verify -j 2 src vdst
check "--verify without O_DIRECT catches a flipped byte at its offset" \
  bash -c "[ $rc = 1 ] && grep -q \"'vdst' differs from 'src' at byte 2621441\" '$T/err' && [ \"\$(cat vdst)\" = old ]"
rm -f dst
truncate -s 8M vsparse
printf 'data' | dd of=vsparse bs=4097 seek=700 conv=notrunc status=none
run "$MPCP" --verify -j 2 --chunk 4097 vsparse dst
check "--verify with O_DIRECT and chunks not aligned to blocks, sparse source" bash -c "[ $rc = 0 ] && cmp -s vsparse dst"
if command -v strace >/dev/null && strace -o /dev/null true 2>/dev/null; then
  rm -f dst
  strace -f -o "$T/trace" -e trace=fcntl,fadvise64,fdatasync,fsync,openat "$MPCP" --verify -j 2 src dst 2>/dev/null
  check "--verify sets O_DIRECT on the copy before reading it back (strace)" grep -q 'F_SETFL, O_RDWR|O_DIRECT' "$T/trace"
  rm -f dst
  MPCP_TEST_NO_DIRECT=1 strace -f -o "$T/trace" -e trace=fadvise64,fdatasync "$MPCP" --verify -j 2 src dst 2>/dev/null
  check "--verify without O_DIRECT: fdatasync, then POSIX_FADV_DONTNEED before reading (strace)" \
    bash -c "grep -q 'fdatasync(' '$T/trace' && grep -q 'POSIX_FADV_DONTNEED' '$T/trace'"
  rm -f dst
  strace -f -o "$T/trace" -e trace=fsync,rename,openat "$MPCP" --fsync -j 2 src dst 2>/dev/null
  check "--fsync: fsync of the copy, rename, fsync of its directory (strace)" \
    bash -c "awk '/fsync\\(/ { f++ } /rename\\(/ && f == 1 { r = 1 } /fsync\\(/ && r { d = 1 } END { exit !(f >= 2 && d) }' '$T/trace'"
  rm -f dst
  strace -f -o "$T/trace" -e trace=fsync "$MPCP" -j 2 src dst 2>/dev/null
  check "without --fsync no fsync" bash -c "! grep -q 'fsync(' '$T/trace'"
else
  echo "     (strace not usable: the system calls of --verify and --fsync are not checked)"
fi
rm -f dst
run "$MPCP" --fsync --verify src dst
check "--fsync --verify copies" bash -c "[ $rc = 0 ] && cmp -s src dst"

# ---- messages name the paths as typed: not a link's target, not the temporary ----------------
mkdir -p real
mkrand m8 8388608
echo old >real/target
ln -s real/target lnk
echo old >fszl
run bash -c "ulimit -f 2048; exec '$MPCP' -j 2 m8 lnk"
check "an error writing through a destination link names the link" \
  bash -c "[ $rc = 1 ] && grep -q \"'lnk'\" '$T/err' && ! grep -q 'target' '$T/err' && ! grep -q 'mpcp-' '$T/err' && [ \"\$(cat real/target)\" = old ]"
MPCP_TEST_CORRUPT=1 run "$MPCP" --verify src lnk
check "a verify failure through a destination link names the link" \
  bash -c "[ $rc = 1 ] && grep -q \"'lnk' differs from 'src'\" '$T/err' && ! grep -q 'target' '$T/err' && ! grep -q 'mpcp-' '$T/err'"
ln -s m8 slink
MPCP_TEST_CORRUPT=1 run "$MPCP" -L --verify -j 2 slink fszl
check "a failure copying through a source link (-L) names the link" \
  bash -c "[ $rc = 1 ] && grep -q \"'fszl' differs from 'slink'\" '$T/err' && ! grep -q \"'m8'\" '$T/err' && ! grep -q 'mpcp-' '$T/err'"
run "$MPCP" -v -L slink fszl
check "-v names a source link as typed" bash -c "[ $rc = 0 ] && grep -qx \"'slink' -> 'fszl'\" '$T/out'"
run "$MPCP" --reflink=always slink lnk
check "--reflink=always failure names both paths as typed" \
  bash -c "[ $rc = 0 ] || { [ $rc = 1 ] && grep -q \"failed to clone 'lnk' from 'slink'\" '$T/err'; }"
run "$MPCP" src lnk
check "a copy through a destination link replaces the file it points to" bash -c "[ $rc = 0 ] && [ -L lnk ] && cmp -s src real/target"
rm -rf real lnk slink fszl m8

# ---- empty, sparse, > 4 GiB ---------------------------------------------------------------
: >empty
run "$MPCP" --verify empty edst
check "empty file" bash -c "[ $rc = 0 ] && [ -f edst ] && [ ! -s edst ]"

truncate -s 64M sparse
for off in 0 7 23 63; do printf 'island-%s' $off | dd of=sparse bs=1M seek=$off conv=notrunc status=none; done
run "$MPCP" -j 3 sparse sdst
sb=$(stat -c %b sparse); db=$(stat -c %b sdst)
check "sparse file: same bytes" bash -c "[ $rc = 0 ] && cmp -s sparse sdst"
check "sparse file keeps its holes (blocks src=$sb dst=$db)" bash -c "[ $db -le \$(($sb + 64)) ] && [ $db -lt 16384 ]"
rm -f sdst
run "$MPCP" --chunk 5M -j 2 --verify sparse sdst
db=$(stat -c %b sdst)
check "sparse file with chunks cutting islands, --verify (blocks dst=$db)" \
  bash -c "[ $rc = 0 ] && cmp -s sparse sdst && [ $db -le \$(($sb + 64)) ]"

truncate -s 5G big
for off in 0 4095 4096 5119; do # MiB: around the 4 GiB line and the last MiB
  printf 'island at %s MiB' $off | dd of=big bs=1M seek=$off conv=notrunc status=none
done
run "$MPCP" -j 4 --verify big bdst
ok=$([ $rc = 0 ] && [ "$(stat -c %s bdst)" = 5368709120 ] && echo 1 || echo 0)
for off in 0 4095 4096 5119; do
  [ "$(dd if=bdst bs=1M skip=$off count=1 status=none | tr -d '\0')" = "island at $off MiB" ] || ok=0
done
check "5 GiB sparse file (--verify): size and data islands" [ $ok = 1 ]
check "5 GiB sparse file stays sparse ($(stat -c %b bdst) blocks)" [ "$(stat -c %b bdst)" -lt 65536 ]
rm -f big bdst

# ---- across filesystems (copy_file_range says EXDEV: the pread/pwrite path) ---------------------
if [ "$(stat -f -c %T "$T")" != "$(stat -f -c %T /dev/shm 2>/dev/null)" ] && X=$(mktemp -d /dev/shm/mpcp-test.XXXXXX); then
  XDIR=$X
  run "$MPCP" -j 3 --chunk 1000000 --verify src sparse "$X"
  xb=$(stat -c %b "$X/sparse")
  check "across filesystems: byte for byte, holes kept ($xb blocks)" \
    bash -c "[ $rc = 0 ] && cmp -s src '$X/src' && cmp -s sparse '$X/sparse' && [ $xb -lt 16384 ]"
  run "$MPCP" -j 2 "$X/src" xback
  check "across filesystems, the other way" bash -c "[ $rc = 0 ] && cmp -s src xback"
  rm -rf "$X"; XDIR=""
fi

# ---- refusals ---------------------------------------------------------------------------------
run "$MPCP" src src
check "self-copy refused" bash -c "[ $rc = 1 ] && grep -q 'same file' '$T/err'"
ln src hardlink
run "$MPCP" src hardlink
check "self-copy through a hard link refused" bash -c "[ $rc = 1 ] && grep -q 'same file' '$T/err'"
ln -s src symlink
run "$MPCP" src symlink
check "self-copy through a symlink refused" bash -c "[ $rc = 1 ] && grep -q 'same file' '$T/err' && [ -L symlink ]"
cp src d1/self
run "$MPCP" d1/self d1
check "self-copy into its own directory refused" bash -c "[ $rc = 1 ] && grep -q 'same file' '$T/err'"
mkfifo fifo
run "$MPCP" fifo fdst
check "FIFO refused with a clear message" bash -c "[ $rc = 1 ] && grep -q \"'fifo' is a FIFO\" '$T/err' && [ ! -e fdst ]"
run "$MPCP" /dev/null ndst
check "device refused with a clear message" bash -c "[ $rc = 1 ] && grep -q \"'/dev/null' is a character device\" '$T/err' && [ ! -e ndst ]"
if python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('$T/sock')" 2>/dev/null; then
  run "$MPCP" sock sdst2
  check "socket refused with a clear message" bash -c "[ $rc = 1 ] && grep -q \"'sock' is a socket\" '$T/err' && [ ! -e sdst2 ]"
fi
run "$MPCP" d1 ddst
check "directory refused (no -r)" bash -c "[ $rc = 1 ] && grep -q \"'d1' is a directory\" '$T/err' && [ ! -e ddst ]"
run "$MPCP" missing mdst
check "missing source: path and cause" bash -c "[ $rc = 1 ] && grep -q \"'missing'\" '$T/err' && grep -q 'No such file' '$T/err'"
run "$MPCP" f1 fifo f2 d3
check "one bad source among good ones: the others are copied, exit 1" \
  bash -c "[ $rc = 1 ] && cmp -s f1 d3/f1 && cmp -s f2 d3/f2 && [ ! -e d3/fifo ]"

# ---- full disk ------------------------------------------------------------------------------
mkrand big8 8388608
mkdir small
if mount -t tmpfs -o size=4m tmpfs small 2>/dev/null; then
  MNT=$T/small
  echo old >small/dst
  run "$MPCP" -j 2 big8 small/dst
  check "full disk (tmpfs 4m): exit 1, names the path and ENOSPC" \
    bash -c "[ $rc = 1 ] && grep -q 'small/dst' '$T/err' && grep -q 'No space left on device' '$T/err'"
  check "full disk: existing destination untouched" bash -c "[ \"\$(cat small/dst)\" = old ]"
  check "full disk: temporary removed" bash -c "[ -z \"\$(ls -A small | grep -v '^dst\$')\" ]"
  run "$MPCP" -j 2 big8 small/new
  check "full disk, new destination: nothing left" bash -c "[ $rc = 1 ] && [ ! -e small/new ] && [ \$(ls -A small | wc -l) = 1 ]"
  umount small && MNT=""
else
  echo "     (tmpfs mount not permitted: full disk tested with RLIMIT_FSIZE only)"
fi
echo old >fsz
run bash -c "ulimit -f 2048; exec '$MPCP' -j 2 big8 fsz"
check "RLIMIT_FSIZE: exit 1, names the path and EFBIG" \
  bash -c "[ $rc = 1 ] && grep -q 'fsz' '$T/err' && grep -q 'File too large' '$T/err'"
check "RLIMIT_FSIZE: existing destination untouched, no temporary" bash -c "[ \"\$(cat fsz)\" = old ]"
check "no temporary left after full-disk failures" no_temps

# ---- a worker killed, SIGINT --------------------------------------------------------------
mkrand k16 16777216
echo old >kdst
MPCP_TEST_SLOW=30 "$MPCP" -j 2 k16 kdst >"$T/out" 2>"$T/err" &
pid=$!; BG="$BG $pid"
if wait_children $pid; then
  kids=$(children $pid)
  victim=${kids%% *}
  kill -9 "$victim"
  wait_bg $pid
  check "worker SIGKILLed: exit 1 with a message" bash -c "[ $rc = 1 ] && grep -q 'killed by signal 9' '$T/err' && grep -q kdst '$T/err'"
  check "worker SIGKILLed: destination untouched" bash -c "[ \"\$(cat kdst)\" = old ]"
  check "worker SIGKILLed: temporary removed" no_temps
  alive=0; for k in $kids; do kill -0 "$k" 2>/dev/null && alive=1; done
  check "worker SIGKILLed: no worker left" [ $alive = 0 ]
else
  wait_bg $pid; fail "worker kill: no worker appeared"
fi

MPCP_TEST_SLOW=30 "$MPCP" -j 2 k16 idst >"$T/out" 2>"$T/err" &
pid=$!; BG="$BG $pid"
if wait_children $pid; then
  kids=$(children $pid)
  kill -INT $pid
  wait_bg $pid
  check "SIGINT: exit 130, says interrupted" bash -c "[ $rc = 130 ] && grep -q 'interrupted' '$T/err'"
  check "SIGINT: no destination, no temporary" bash -c "[ ! -e idst ]" && check "SIGINT: no temporary" no_temps
  alive=0; for k in $kids; do kill -0 "$k" 2>/dev/null && alive=1; done
  check "SIGINT: no worker left" [ $alive = 0 ]
else
  wait_bg $pid; fail "SIGINT: no worker appeared"
fi

echo old >tdst
MPCP_TEST_SLOW=30 "$MPCP" --verify -j 2 k16 tdst >"$T/out" 2>"$T/err" &
pid=$!; BG="$BG $pid"
wait_children $pid
kill -TERM $pid
wait_bg $pid
check "SIGTERM: exit 143, destination untouched, no temporary" \
  bash -c "[ $rc = 143 ] && [ \"\$(cat tdst)\" = old ]" && check "SIGTERM: no temporary" no_temps

# ---- nothing stray --------------------------------------------------------------------------
check "no temporary files anywhere" no_temps
no_procs() { ! pgrep -f -- "$T" >/dev/null; }
check "no mpcp process left" no_procs

echo "$fails failure(s)"
[ $fails = 0 ]
