# SPDX-License-Identifier: MIT
# mp-test: timeout=240
# shellcheck shell=bash
# test_mpbench.sh BUILD_DIR SOURCE_DIR - mpbench's behaviour and output shape (never its timings).
# MPBENCH_TINY=1 cuts every measurement down to a few iterations, so the figures mean nothing
# here; the test only checks that they are there, numeric, and shaped as documented.
set -u
BUILD=${1:?build dir}
SRC=${2:?source dir}
BIN=$BUILD/tools/mpbench/mpbench
export MPBENCH_TINY=1
export MPBENCH_PEER=$SRC/tools/mpbench/mpbench_peer.py
TMP=$(mktemp -d /tmp/test_mpbench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
ok() { echo "ok   - $*"; }
bad() {
  echo "FAIL - $*"
  fails=$((fails + 1))
}
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

[ -x "$BIN" ] || {
  echo "FAIL - $BIN not built"
  exit 1
}

# Runs mpbench in its own session, so that every process it forks (the Python peer made its own
# group, which is inside the same session) can be found afterwards. Sets rc, out, err.
run() {
  setsid "$BIN" "$@" >"$TMP/out" 2>"$TMP/err" &
  local pid=$!
  wait $pid
  rc=$?
  out=$(cat "$TMP/out")
  err=$(cat "$TMP/err")
  sleep 0.1
  local left
  left=$(ps -eo sid=,pid=,stat=,args= | awk -v s=$pid '$1 == s')
  if [ -n "$left" ]; then
    bad "processes left behind by mpbench $*: $left"
    ps -eo sid=,pid= | awk -v s=$pid '$1 == s {print $2}' | xargs -r kill -9
  fi
}

# ---- usage --------------------------------------------------------------------------------------
run --help
check "--help exits 0 and prints usage" test $rc -eq 0
check "--help mentions --quick" grep -q -- "--quick" "$TMP/out"
check "--help names the spin switch" grep -q "MPROC_SPIN=0" "$TMP/out"
check "--help names --compare peers" grep -q "peers" "$TMP/out"
run --version
check "--version exits 0" test $rc -eq 0
check "--version prints the version" grep -qE "^mpbench [0-9]+\.[0-9]+" "$TMP/out"
for args in "--bogus" "--reps" "--reps 2" "--reps x" "--only nosuch" "--compare ruby" \
  "--compare python,ruby" "stray" "-Z"; do
  # shellcheck disable=SC2086
  run $args
  check "'$args' exits 2" test $rc -eq 2
  check "'$args' prints usage on stderr" grep -q "^Usage: mpbench" "$TMP/err"
  check "'$args' prints nothing on stdout" test -z "$out"
done

run --quick --only pipe.nosuchfigure
check "--only that selects nothing exits 2" test $rc -eq 2
check "--only that selects nothing says so" grep -q "selects no figure" "$TMP/err"

# ---- --list -------------------------------------------------------------------------------------
run --list
check "--list exits 0" test $rc -eq 0
for n in pipe.rtt64.same pipe.tput1m.cross queue.rtt64.cross lock.uncontended signal.rtt.same \
  process.start raw.memcpy1m; do
  check "--list names $n" grep -qx "$n" "$TMP/out"
done
check "--list names every benchmark" test "$(grep -c '^# ' "$TMP/out")" -ge 10
check "--list names the peers" grep -qx "peers.mq.rtt64.cross" "$TMP/out"

# ---- --quick: the comparison table ---------------------------------------------------------------
run --quick --reps 5
check "--quick exits 0" test $rc -eq 0
[ $rc -eq 0 ] || echo "$err"
head -1 "$TMP/out" | grep -q "pipe" || true
check "table has the three columns" \
  grep -qE "^ +pipe +message queue +shared memory$" "$TMP/out"
for row in "space" "read/write mode" "efficiency (textbook)" "efficiency (measured)" "use" \
  "needs mutual exclusion"; do
  check "table has row '$row'" grep -q "^$row " "$TMP/out"
done
eff=$(grep "^efficiency (measured)" "$TMP/out")
check "efficiency row holds measured figures" \
  bash -c "echo '$eff' | grep -qE '[0-9]+(\.[0-9]+)? (µs|ns|ms)'"
check "efficiency row has a figure in each column" \
  bash -c "[ \$(echo '$eff' | grep -oE '[0-9.]+ (µs|ns|ms)' | wc -l) -ge 3 ]"
check "one line under the table says why cross-CPU is fast and what it costs" \
  grep -qE "^Cross-CPU is fast as waiters spin .*; cost: [0-9.]+ CPUs busy in queue ping-pong \(raw pipe [0-9.]+\)$" "$TMP/out"
check "the figure list has the CPU cost of the cross-CPU round trips" \
  grep -qE "^  queue\.rtt64\.cross +[0-9.]+ [nµm]?s +[0-9.]+ [nµm]?s +[0-9.]+$" "$TMP/out"
check "key figures follow the table" grep -q "^Key figures" "$TMP/out"
check "key figures have numeric medians" grep -qE "^  pipe\.rtt64\.same +[0-9.]+ " "$TMP/out"
check "no line wider than 101 columns" python3 -c "
import sys; sys.exit(any(len(l.rstrip('\\n')) > 101 for l in open('$TMP/out', encoding='utf-8')))"
check "no trailing blanks" bash -c "! grep -q ' $' '$TMP/out'"

MPROC_SPIN=0 run --quick --reps 5 --only queue.rtt64.cross,raw.pipe.rtt64.cross
check "MPROC_SPIN=0: the line under the table says spinning is off" \
  grep -qE "^Spinning is off \(MPROC_SPIN=0\)" "$TMP/out"

# ---- --compare peers, --tsv -------------------------------------------------------------------------
run --quick --reps 5 --compare peers
check "--compare peers exits 0" test $rc -eq 0
[ $rc -eq 0 ] || echo "$err"
check "--compare peers prints the side-by-side table" grep -q "^Side by side" "$TMP/out"
for row in "raw pipe(2)" "POSIX mq" "ZeroMQ ipc REQ/REP" "ZeroMQ ipc PUSH/PULL" \
  "mproc mp_conn pipe" "mproc mp_queue"; do
  check "--compare peers has row '$row'" grep -qF "  $row  " "$TMP/out"
done
check "--compare peers measures POSIX mq" grep -qE "^  POSIX mq +[0-9.]+ [nµm]?s" "$TMP/out"
check "--compare peers measures ZeroMQ or says why not" bash -c "
  grep -qE '^  ZeroMQ ipc REQ/REP +[0-9.]+ [nµm]?s' '$TMP/out' ||
  grep -q 'peers.zmq_\*: not available' '$TMP/out'"
check "--compare peers leaves the other figures out" \
  bash -c "! grep -qE '^  (lock|array|pool|process|raw\.memcpy)' '$TMP/out'"
check "--compare peers: no line wider than 101 columns" python3 -c "
import sys; sys.exit(any(len(l.rstrip('\\n')) > 101 for l in open('$TMP/out', encoding='utf-8')))"
run --quick --reps 5 --only lock,queue.rtt64.same --tsv
check "--tsv exits 0" test $rc -eq 0
check "--tsv prints only name<TAB>value<TAB>unit lines" \
  bash -c "[ -n \"\$(cat '$TMP/out')\" ] && ! grep -vqP '^[a-z0-9_.]+\t[0-9.e+-]+\t[a-z/]+$' '$TMP/out'"
check "--tsv has the figures" grep -qP "^lock\.uncontended\t[0-9.e+-]+\tns$" "$TMP/out"

# ---- --only ---------------------------------------------------------------------------------------
run --quick --reps 5 --only lock,signal.rtt.same
check "--only exits 0" test $rc -eq 0
check "--only keeps lock" grep -qE "^  lock\.uncontended " "$TMP/out"
check "--only keeps signal.rtt.same" grep -qE "^  signal\.rtt\.same " "$TMP/out"
check "--only drops the rest" bash -c "! grep -qE '^  (pipe|queue|array|raw|pool|process|signal\.rtt\.cross)' '$TMP/out'"
check "--only leaves unmeasured cells marked" grep -q "not measured" "$TMP/out"

run --only lock
check "a full run shows progress on stderr" grep -qE "^mpbench: lock\.uncontended +[0-9.]+ ns" "$TMP/err"
check "a full run prints the figures on stdout" grep -qE "^  lock\.uncontended +[0-9.]+ ns" "$TMP/out"
run --quick --only lock
check "--quick prints no progress lines when stderr is not a terminal" test -z "$err"
run --quick --verbose --only lock
check "--verbose shows progress" grep -q "^mpbench: lock.uncontended" "$TMP/err"
run --list --quick
check "--list --quick lists the quick set only" \
  bash -c "grep -qx pipe.rtt64.same '$TMP/out' && ! grep -qx pipe.rtt4k.same '$TMP/out'"

# ---- --json -------------------------------------------------------------------------------------
run --quick --reps 5 --json --only pipe.rtt64,queue.tput64,lock
check "--json exits 0" test $rc -eq 0
check "--json is valid JSON" python3 -m json.tool "$TMP/out" /dev/null
cat >"$TMP/check.py" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
names = {f["name"] for f in d["figures"]}
want = {"pipe.rtt64.same", "pipe.rtt64.same.p99", "pipe.rtt64.cross", "queue.tput64.cross",
        "lock.uncontended"}
missing = want - names
assert not missing, f"missing figures {missing}"
assert not any(n.startswith(("raw.", "array.", "process.")) for n in names), names
for f in d["figures"]:
    for k in ("name", "value", "unit", "median", "spread", "reps", "samples"):
        assert k in f, (f["name"], k)
    assert isinstance(f["value"], (int, float)) and f["value"] > 0, f
    assert f["reps"] == 5 and len(f["samples"]) == 5, f
    assert f["spread"]["min"] <= f["median"] <= f["spread"]["max"], f
streams = [f for f in d["figures"] if f["name"] == "queue.tput64.cross"]
assert streams[0]["size_bytes"] == 64 and streams[0]["msg_per_s"] > 0 and streams[0]["mb_per_s"] > 0
assert d["reps"] == 5
EOF
check "--json has every expected figure with name, value, unit, median, spread, reps" \
  python3 "$TMP/check.py" "$TMP/out"
run --json --reps 7 --only lock
check "--reps 7 gives 7 samples" python3 -c "
import json,sys; d=json.load(open('$TMP/out')); assert all(f['reps']==7 for f in d['figures'])"

# ---- --plot -------------------------------------------------------------------------------------
if command -v gnuplot >/dev/null; then
  run --quick --reps 5 --only lock,pipe.rtt64 --plot "$TMP/chart.png"
  check "--plot exits 0" test $rc -eq 0
  check "--plot writes a PNG" bash -c "head -c 8 '$TMP/chart.png' | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a'"
  # The chart's script, caught on its way to gnuplot: one colour and one legend entry per
  # source of figures, and a y range whose floor lies below every bar.
  printf '#!/bin/sh\ntee "%s" | gnuplot\n' "$TMP/chart.gp" >"$TMP/gp.sh"
  chmod +x "$TMP/gp.sh"
  MPBENCH_GNUPLOT=$TMP/gp.sh run --quick --reps 5 --only raw.pipe.rtt64,queue.rtt64,lock \
    --compare python --plot "$TMP/chart2.png"
  check "--plot --compare python exits 0" test $rc -eq 0
  cat >"$TMP/checkgp.py" <<'EOF2'
import re, sys
gp = open(sys.argv[1]).read()
titles = re.findall(r"with boxxyerror lc rgb '(#[0-9a-f]{6})' title '([^']+)'", gp)
names = {t for _, t in titles}
for want in ("kernel baseline, no mproc (raw.*)", "mproc", "Python multiprocessing"):
    assert want in names, (want, names)
colours = {}
for c, t in titles:
    colours.setdefault(t, set()).add(c)
assert len({c for cs in colours.values() for c in cs}) == len(colours), colours
# Every bar's value lies above the floor of its panel.
for panel in gp.split("set ylabel")[1:]:
    lo = float(re.search(r"set yrange \[([0-9.e+-]+):", panel).group(1))
    for block in re.findall(r"<< EOD\n(.*?)EOD", panel, re.S):
        for line in block.splitlines():
            v = float(line.split()[1])
            assert v > lo * 1.5, (v, lo)
assert "rotate by 40 right" in gp
EOF2
  check "--plot: baselines, mproc and Python in their own colours, floor below every bar" \
    python3 "$TMP/checkgp.py" "$TMP/chart.gp"
else
  echo "skip - gnuplot is not installed: --plot checked only for its message"
fi
MPBENCH_GNUPLOT=/nonexistent/gnuplot run --quick --only lock --plot "$TMP/x.png"
check "--plot without gnuplot exits 3" test $rc -eq 3
check "--plot without gnuplot says so" grep -q "needs gnuplot" "$TMP/err"
check "--plot without gnuplot writes nothing" test ! -e "$TMP/x.png"

# ---- --compare python -----------------------------------------------------------------------------
if command -v python3 >/dev/null; then
  run --quick --reps 5 --compare python --only pipe.rtt64.same,lock,value.lock_incr.cross
  check "--compare python exits 0" test $rc -eq 0
  [ $rc -eq 0 ] || echo "$err"
  check "--compare python prints a python column" grep -qE "^  figure +mproc +python" "$TMP/out"
  check "--compare python prints ratios" \
    grep -qE "^  pipe\.rtt64\.same .*([0-9.]+x (faster|slower)|about the same)" "$TMP/out"
  check "--compare python compares the lock" \
    grep -qE "^  lock\.uncontended .*([0-9.]+x (faster|slower)|about the same)" "$TMP/out"
  run --quick --reps 5 --compare python --json --only lock
  check "--compare python --json has python figures" python3 -c "
import json; d=json.load(open('$TMP/out')); f=[f for f in d['figures'] if f['name']=='lock.uncontended'][0]
assert f['python'] > 0 and f['speedup_python'] > 0"
else
  echo "skip - python3 is not installed: --compare checked only for its message"
fi
MPBENCH_PYTHON=/nonexistent/python3 run --quick --only lock --compare python
check "--compare python without python3 exits 3" test $rc -eq 3
check "--compare python without python3 says so" grep -q "needs python3" "$TMP/err"

# ---- Ctrl-C: stop, kill and reap the children, exit 130 ---------------------------------------------
unset MPBENCH_TINY
sigint_case() { # sigint_case MIN_PROCS ARGS...: interrupt once MIN_PROCS processes run
  local min=$1
  shift
  setsid "$BIN" "$@" >"$TMP/out" 2>"$TMP/err" &
  local pid=$!
  for _ in $(seq 100); do # wait until it has forked its peers or workers
    [ "$(ps -eo sid=,pid= | awk -v s=$pid '$1 == s' | wc -l)" -ge "$min" ] && break
    sleep 0.05
  done
  kill -INT $pid
  wait $pid
  local rc=$?
  check "SIGINT during '$*' exits 130" test $rc -eq 130
  check "SIGINT during '$*' says so" grep -q "interrupted" "$TMP/err"
  sleep 0.2
  local left
  left=$(ps -eo sid=,pid=,stat=,args= | awk -v s=$pid '$1 == s')
  check "SIGINT during '$*' leaves no process behind" test -z "$left"
  [ -z "$left" ] || ps -eo sid=,pid= | awk -v s=$pid '$1 == s {print $2}' | xargs -r kill -9
}
sigint_case 2 --only pipe,queue,array
sigint_case 3 --only pool.map
if command -v python3 >/dev/null; then
  sigint_case 3 --only lock,pipe.rtt64.same --compare python
fi
check "nothing of mpbench in /dev/shm" bash -c "! ls /dev/shm | grep -q 'mpbench'"

echo "$fails failure(s)"
[ $fails -eq 0 ]
