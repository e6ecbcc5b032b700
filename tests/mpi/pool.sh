#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# pool.sh POOL_PROGRAM POOL_NOLIB_PROGRAM MPIEXEC SCRIPTS_DIR OWN_MPI_PROGRAM - the pool on MPI
# ranks (issue 13).
#   1. the portable part of the pool tests (tests/mpi/pool.c "portable") under mpirun -np 3;
#   2. bad launches: -np 1 (no worker ranks) and a program without libmproc-mpi ask for the MPI
#      backend: MP_ENOTSUP with a message saying why;
#   3. a program that initialises and finalises MPI itself (own_mpi.c), with its pool joined and
#      with it leaked: the job ends cleanly either way;
#   4. two simulated hosts (scripts/mpi-rsh-agent.sh; rank 0 and 1 on hosta, rank 2 on hostb): a
#      map whose results are the host each task ran on names both hosts.
# Every launch has a time limit; nothing of it may stay running. Exit 77 without MPI; the two-host
# part alone is skipped without UTS namespaces.
# shellcheck disable=SC2015 # pass() always succeeds, so "A && pass || fail" is an if/else
MPI_TEST_NAME="pool"
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
prog=${1:?usage: pool.sh POOL_PROGRAM POOL_NOLIB_PROGRAM MPIEXEC SCRIPTS_DIR}
nolib=${2:?}
mpi_setup "$prog" "${3:?}" "${4:?}"
own_mpi=${5:?}
scale=${MP_TEST_TIMEOUT_SCALE:-1}

# run NAME LIMIT_S ARGS...: one launch with a tag, output in $MPI_TMP/NAME.out, status in $rc.
run() {
  local name=$1 limit=$2 tag
  shift 2
  tag=$(new_tag)
  timeout -s KILL $((limit * scale)) env MPROC_MPI_TAG="$tag" "$@" </dev/null >"$MPI_TMP/$name.out" 2>&1
  rc=$?
  echo "--- $name: $* (status $rc)"
  cat "$MPI_TMP/$name.out"
  gone "$tag" 5 && pass "$name: nothing of the launch left running" ||
    fail "$name: left running: $(tagged "$tag")"
}

run portable 90 "$MPIEXEC" -np 3 "$prog" portable
[ $rc -eq 0 ] && grep -q '^portable: 0 failure(s)$' "$MPI_TMP/portable.out" &&
  pass "portable pool tests under mpirun -np 3" || fail "portable pool tests (status $rc)"

run leak 30 "$MPIEXEC" -np 3 "$prog" leak
[ $rc -eq 0 ] && grep -q '^leak: 0 failure(s)$' "$MPI_TMP/leak.out" &&
  pass "returning from main with a pool alive: mproc finalises, clean end" || fail "leak (status $rc)"

run norank 30 "$MPIEXEC" -np 1 "$prog" norank
[ $rc -eq 0 ] && grep -q '^ok   launched with 1 rank: .*no worker ranks' "$MPI_TMP/norank.out" &&
  pass "-np 1: MP_ENOTSUP, no worker ranks" || fail "-np 1 (status $rc)"

run nolib 30 "$nolib" nolib
[ $rc -eq 0 ] && grep -q '^ok   without libmproc-mpi: .*not linked with libmproc-mpi' "$MPI_TMP/nolib.out" &&
  pass "without libmproc-mpi: MP_ENOTSUP, says so" || fail "without libmproc-mpi (status $rc)"

for how in "" leak; do
  run "own_mpi${how:+_$how}" 60 "$MPIEXEC" -np 3 "$own_mpi" $how
  [ $rc -eq 0 ] && grep -q "^own_mpi${how:+ $how}: 2 worker ranks, map success, 0 failure(s)$" "$MPI_TMP/own_mpi${how:+_$how}.out" &&
    pass "program's own MPI_Init/MPI_Finalize${how:+ (pool leaked)}: clean end" ||
    fail "program's own MPI${how:+ (pool leaked)} (status $rc)"
done

if how=$("$MPI_SCRIPTS/mpi-rsh-agent.sh" --check 2>&1); then
  printf 'hosta slots=2\nhostb slots=1\n' >"$MPI_TMP/hostfile"
  mproc_mpi_two_hosts
  run hosts 60 "$MPIEXEC" -np 3 --hostfile "$MPI_TMP/hostfile" "$prog" hosts
  [ $rc -eq 0 ] && grep -qE '^host hosta [1-9][0-9]*$' "$MPI_TMP/hosts.out" &&
    grep -qE '^host hostb [1-9][0-9]*$' "$MPI_TMP/hosts.out" &&
    pass "two hosts: the map's tasks ran on hosta and on hostb" || fail "two hosts (status $rc)"
else
  echo "SKIP two hosts: $how"
fi
[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
