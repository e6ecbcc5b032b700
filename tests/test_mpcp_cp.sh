# SPDX-License-Identifier: MIT
# mp-test: timeout=300
# test_mpcp_cp.sh BUILD_DIR SOURCE_DIR - mpcp side by side with GNU cp: for every case both run
# with the same arguments on identical fixtures (in two directories), and the resulting trees
# must match: type, mode, owner, size, bytes, link targets, whether times were kept (to the
# nanosecond), allocated bytes (du --block-size=1, so sparseness); and the exit status too.
set -u
BUILD=$(cd "${1:?usage: test_mpcp_cp.sh BUILD_DIR SOURCE_DIR}" && pwd)
MPCP=$BUILD/tools/mpcp/mpcp
[ -x "$MPCP" ] || { echo "FAIL: $MPCP not built"; exit 1; }
if ! cp --version 2>/dev/null | grep -q 'GNU coreutils'; then
  echo "SKIP: GNU cp not found"; exit 0
fi
umask 022
export TZ=UTC LC_ALL=C
T=$(mktemp -d /tmp/mpcp-cp.XXXXXX)
trap '[ -n "${MPCP_KEEP:-}" ] || rm -rf "$T"' EXIT
trap 'exit 1' INT TERM
fails=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

OLD='2001-02-03 04:05:06.123456789'
# The same files in every sandbox. Times are old (before 2020) so that "kept" and "new" can be
# told apart; one file belongs to another user, to see ownership kept or not.
# Data: the same bytes in every sandbox (no /dev/urandom), none of them zero.
data() { yes "$2 line of data, $2" | head -c "$1"; }
fixture() {
  mkdir -p "$1" && cd "$1" || exit 1
  printf 'some data\n' >f; chmod 0640 f
  data 70000 g >g
  printf 'old content\n' >ex; chmod 0600 ex
  printf 'older\n' >old
  cp g setuid; chmod 4755 setuid
  chown 1234:1234 g 2>/dev/null
  # sparse: holes, a data extent that holds zero blocks, data at the end of a hole
  truncate -s 1M s
  data 8192 s1 | dd of=s bs=4k seek=10 conv=notrunc status=none
  dd if=/dev/zero of=s bs=4k seek=20 count=4 conv=notrunc status=none
  data 4096 s2 | dd of=s bs=4k seek=24 conv=notrunc status=none
  # dense, but with 100000 zero bytes at the start
  head -c 100000 /dev/zero >z; data 5000 z >>z
  mkdir -p tree/sub/deep tree/empty dd
  printf 'in tree\n' >tree/a; data 300000 b >tree/sub/b; : >tree/sub/deep/zero
  chmod 0750 tree/sub
  ln -s ../a tree/sub/rel; ln -s sub tree/dirlink
  ln -s f lnk; ln -s tree dlnk; ln -s nowhere dangling
  touch -h -d "$OLD" f g ex setuid s z tree/a tree/sub/b tree/sub/deep/zero tree/sub/rel lnk \
    tree/dirlink tree/sub/deep tree/sub tree/empty tree dd
  touch -d '1990-01-01' old
  touch -d '2010-01-01' ex
  cd - >/dev/null || exit 1
}

# snap DIR: one line per entry, from lstat only, then the bytes of every file. Times show as
# "new" unless kept from the fixture; the access times of the fixture's own files are left out
# (reading a source may update its atime, and whether a tool reads an empty file is incidental).
fixture "$T/pristine"
(cd "$T/pristine" && find . -mindepth 1 -printf '%p\n') >"$T/orig.list"
snap() {
  (cd "$1" && find . -mindepth 1 -printf '%p %y %m %u:%g %s %l A=%A@ M=%T@\n' | sort |
    awk -v list="$T/orig.list" 'BEGIN { while ((getline l < list) > 0) orig[l] = 1 }
      { for (i = 1; i <= NF; i++) if ($i ~ /^[AM]=/) {
          split($i, kv, "="); if (kv[2] + 0 >= 1600000000) $i = substr($i, 1, 2) "new"
          if ($i ~ /^A=/ && ($1 in orig)) $i = "" }
        print }'
   find . -type f -printf '%p ' -exec du --block-size=1 {} \; | sort
   find . -type f -exec md5sum {} + | sort)
}

# same DESC [STDIN=text] ARGS...: cp ARGS in $T/cp, mpcp ARGS in $T/mp, on fresh fixtures.
n=0
same() {
  local desc=$1 input=""; shift
  case "${1:-}" in STDIN=*) input=${1#STDIN=}; shift ;; esac
  n=$((n + 1))
  local a=$T/$n/cp b=$T/$n/mp
  fixture "$a"; fixture "$b"
  (cd "$a" && printf '%s' "$input" | cp "$@" >"$T/$n/cp.out" 2>"$T/$n/cp.err"); local rc_cp=$?
  (cd "$b" && printf '%s' "$input" | "$MPCP" -q "$@" >"$T/$n/mp.out" 2>"$T/$n/mp.err"); local rc_mp=$?
  snap "$a" >"$T/$n/cp.snap"; snap "$b" >"$T/$n/mp.snap"
  if [ $rc_cp != $rc_mp ]; then
    fail "$desc: cp $* -> $rc_cp, mpcp -> $rc_mp"; cat "$T/$n/cp.err" "$T/$n/mp.err"
  elif ! diff -u "$T/$n/cp.snap" "$T/$n/mp.snap" >"$T/$n/diff"; then
    fail "$desc: cp $* and mpcp differ (exit $rc_cp)"; cat "$T/$n/diff"
  else
    pass "$desc (cp $*: exit $rc_cp)"
  fi
}

same "plain copy, new file: mode from the source and the umask" f new
same "set-user-ID bit dropped without -p" setuid new
same "existing destination keeps its mode and owner" f ex
same "-p keeps mode, owner, times" -p g new
same "--preserve (no list) is -p" --preserve g new
same "--preserve=mode" --preserve=mode f new
same "--preserve=timestamps" --preserve=timestamps f new
same "--preserve=ownership" --preserve=ownership g new
same "--preserve=mode,ownership,timestamps on a set-user-ID file" \
  --preserve=mode,ownership,timestamps setuid new
same "--preserve=all" --preserve=all g new
same "-a copies a tree with links as links, keeping everything" -a tree tcopy
same "-r copies links as links (-P is the default with -r)" -r tree tcopy
same "-r into an existing directory" -r tree dd
same "-rL follows links in the tree" -rL tree tcopy
same "-rH follows a link on the command line only" -rH dlnk tcopy
same "-r on a link to a directory copies the link" -r dlnk tcopy
same "a link operand is followed without -r" lnk new
same "-P copies a link operand as a link" -P lnk new
same "-d is -P" -d lnk new
same "-L follows" -L lnk new
same "-P on a dangling link copies the link" -P dangling new
same "a dangling link operand without -P fails" dangling new
same "a destination symlink is written through" g lnk
same "a destination symlink is written through with -a too" -a g lnk
same "-r with a missing second tree: the first is merged into dd, exit 1" -r tree/. tree2/. dd/
same "-t DIR" -t dd f g
same "-t DIR with -r" -r -t dd tree f
same "-t on a missing directory fails" -t nodir f
same "-t on a file fails" -t f g
same "-T onto a file" -T g ex
same "-T onto a directory fails" -T f dd
same "-rT merges into an existing directory" -rT tree dd
same "-u skips a destination that is newer" -u f ex
same "-u copies over an older destination" -u ex old
same "-u copies to a missing destination" -u f new
same "-n keeps the destination" -n g ex
same "-n then -f: -n still wins" -n -f g ex
same "-f then -n" -f -n g ex
same "-i, answer n" STDIN=n -i g ex
same "-i, answer y" STDIN=y -i g ex
same "-i, no answer (end of input)" -i g ex
same "-n then -i: -i wins" STDIN=y -n -i g ex
same "-i then -n: -n wins" -i -n g ex
same "-i does not ask for a new destination" -i g new
same "-ri on a tree into itself copy" STDIN=yyyyyyyyyy -ri tree dd
same "--sparse=auto keeps holes (and makes zero blocks of a sparse file holes)" --sparse=auto s new
same "--sparse=always" --sparse=always s new
same "--sparse=never fills the holes" --sparse=never s new
same "--sparse=auto on a dense file with zeros" --sparse=auto z new
same "--sparse=always on a dense file with zeros" --sparse=always z new
same "--sparse=never on a dense file" --sparse=never z new
same "default on a sparse file" s new
same "-a on sparse files" -a s z dd
same "--reflink=never" --reflink=never g new
same "--reflink=auto" --reflink=auto s new
same "missing source fails" missing new
same "directory without -r fails" tree new
same "copying a file onto itself fails" f f
same "copying a file onto itself through a link fails" f lnk
same "several sources onto a non-directory fail" f g ex
same "one missing source among good ones" f missing g dd
same "directory onto a file fails" -r tree f
same "file onto a directory fails (-T)" -T g tree

# --reflink=always: on a filesystem that cannot clone both must fail; where it can, both copy.
fixture "$T/rl"
if (cd "$T/rl" && cp --reflink=always f probe 2>/dev/null); then
  same "--reflink=always where the filesystem clones" --reflink=always g new
else
  n=$((n + 1)); fixture "$T/$n/mp"
  (cd "$T/$n/mp" && "$MPCP" --reflink=always g new 2>"$T/$n/err"); rc=$?
  if [ $rc = 1 ] && grep -q "failed to clone 'new' from 'g'" "$T/$n/err" && [ ! -e "$T/$n/mp/new" ]; then
    pass "--reflink=always without clone support: exit 1 like cp, names the paths, leaves no file"
  else
    fail "--reflink=always without clone support: rc=$rc"; cat "$T/$n/err"
  fi
  # cp leaves an empty 'new' behind; mpcp leaves nothing (no partial files, by design).
  fixture "$T/rl2"
  (cd "$T/rl2" && cp --reflink g new 2>/dev/null); rc_cp=$?
  (cd "$T/rl2" && rm -f new && "$MPCP" --reflink g new 2>/dev/null); rc_mp=$?
  check_rl() { [ $rc_cp = 1 ] && [ $rc_mp = 1 ] && [ ! -e "$T/rl2/new" ]; }
  if check_rl; then pass "--reflink (= always): exit 1 like cp"; else fail "--reflink: cp $rc_cp mpcp $rc_mp"; fi
fi
# Usage errors: mpcp says 2 where cp says 1 (documented); both refuse.
fixture "$T/u"
for args in "--reflink=always --sparse=never f new" "--sparse=bogus f new" "--reflink=bogus f new" \
  "-t dd -T f" "-T f g ex" "--preserve=bogus f new"; do
  # shellcheck disable=SC2086
  (cd "$T/u" && cp $args 2>/dev/null); rc_cp=$?
  # shellcheck disable=SC2086
  (cd "$T/u" && "$MPCP" $args 2>"$T/u.err"); rc_mp=$?
  if [ $rc_cp = 1 ] && [ $rc_mp = 2 ] && grep -q -- '--help' "$T/u.err" && [ ! -e "$T/u/new" ]; then
    pass "usage error '$args': cp 1, mpcp 2"
  else
    fail "usage error '$args': cp $rc_cp, mpcp $rc_mp"; cat "$T/u.err"
  fi
done

echo "$fails failure(s)"
[ $fails = 0 ]
