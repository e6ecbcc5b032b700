#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kill.sh RAW_PROGRAM MPIEXEC SCRIPTS_DIR - a rank SIGKILLed in the middle of a run (issue 13).
# Documents Open MPI's own behaviour, which the MPI pool backend has to live with: the launch
# ends by itself within 10 s, with a non-zero status and a message naming the rank (and its
# host), nothing of it stays running (no orted, no rank) and its session directories are gone. Two cases: 3 ranks on this host
# (rank 1 killed), and 1 + 2 ranks on two simulated hosts (rank 2 on "hostb" killed; its host's
# daemon was started through scripts/mpi-rsh-agent.sh). The master hands out tasks without end
# (raw_master_worker --forever), so only Open MPI can end the launch.
# Exit 77 (ctest: skipped) when MPI is not available; the second case alone is skipped when UTS
# namespaces are not.
# shellcheck disable=SC2015 # pass() always succeeds, so "A && pass || fail" is an if/else
MPI_TEST_NAME="kill"
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
mpi_setup "${1:?usage: kill.sh RAW_PROGRAM MPIEXEC SCRIPTS_DIR}" "${2:?}" "${3:?}"
scale=${MP_TEST_TIMEOUT_SCALE:-1}
LIMIT_MS=10000 # the issue's bound; deliberately not scaled: it is the behaviour under test

# kill_case NAME RANK NODE NDIRS MPIRUN_ARGS...: launch, wait until tasks flow, SIGKILL rank
# RANK; NDIRS is the number of Open MPI session directories the launch makes (one per daemon).
kill_case() {
  local name=$1 rank=$2 node=$3 ndirs=$4
  shift 4
  local tag out victim="" r t0 t1 rc ms dirs
  tag=$(new_tag)
  out=$MPI_TMP/$name.out
  echo "--- $name: mpirun $* raw_master_worker --forever"
  timeout -s KILL $((30 * scale)) env MPROC_MPI_TAG="$tag" "$MPIEXEC" "$@" "$MPI_PROG" --forever \
    </dev/null >"$out" 2>&1 &
  local mp=$!
  local end=$((SECONDS + 10 * scale))
  while [ $SECONDS -lt $end ]; do
    victim=$(tagged_env "$tag" "OMPI_COMM_WORLD_RANK=$rank")
    [ -n "$victim" ] && grep -q "serves tasks" "$out" && break
    victim=""
    sleep 0.1
  done
  if [ -z "$victim" ]; then
    fail "$name: the job did not start"
    cat "$out"
    return
  fi
  sleep 0.3 # tasks are flowing: this is the middle of a run
  echo "processes of the launch (found by their tag):"
  tagged "$tag" | sed 's/^/    /'
  for r in 0 1 2; do
    [ -n "$(tagged_env "$tag" "OMPI_COMM_WORLD_RANK=$r")" ] || fail "$name: rank $r not found by its tag"
  done
  dirs=$(session_dirs "$tag")
  echo "its session directories:"
  for r in $dirs; do echo "    $r"; done
  [ "$(echo "$dirs" | grep -c .)" -eq "$ndirs" ] || fail "$name: expected $ndirs session directories"
  t0=${EPOCHREALTIME/./}
  kill -9 "$victim"
  wait "$mp"
  rc=$?
  t1=${EPOCHREALTIME/./}
  ms=$(((t1 - t0) / 1000))
  cat "$out"
  echo "$name: mpirun ended ${ms} ms after the SIGKILL of rank $rank (pid $victim), status $rc"
  [ $rc -ne 0 ] && pass "$name: non-zero exit ($rc)" || fail "$name: mpirun exited 0"
  [ $ms -lt $LIMIT_MS ] && pass "$name: ended within 10 s (${ms} ms)" || fail "$name: took ${ms} ms"
  grep -qE "process rank $rank with PID [0-9]+ on node $node exited on signal 9" "$out" &&
    pass "$name: the message names rank $rank on node $node and signal 9" ||
    fail "$name: no message naming rank $rank on $node"
  gone "$tag" 2 && pass "$name: nothing of the launch left running" ||
    fail "$name: left running: $(tagged "$tag")"
  # shellcheck disable=SC2086 # one path a line, no blanks in them
  none_exist $dirs && pass "$name: its session directories are removed" ||
    fail "$name: session directories left behind"
}

kill_case one_host 1 "[^ ]+" 1 -np 3 # Open MPI may shorten the hostname
if how=$("$MPI_SCRIPTS/mpi-rsh-agent.sh" --check 2>&1); then
  printf 'hosta slots=1\nhostb slots=2\n' >"$MPI_TMP/hostfile"
  mproc_mpi_two_hosts
  kill_case two_hosts 2 hostb 3 -np 3 --hostfile "$MPI_TMP/hostfile"
else
  echo "SKIP two_hosts: $how"
fi
[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
