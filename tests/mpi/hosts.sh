#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# hosts.sh HOSTS_PROGRAM RAW_PROGRAM MPIEXEC SCRIPTS_DIR - two simulated hosts (issue 13).
# 1 rank on "hosta", 2 on "hostb" (scripts/mpi-rsh-agent.sh: each host's orted in a UTS namespace
# of its own). Checks: each rank reports its host's name; ranks on different hosts hold a TCP
# connection to each other (so the traffic really crosses TCP on lo) while the two ranks on hostb
# do not (they share memory, as on one real host); the raw master/worker loop gives correct
# results across the hosts; nothing of the launch is left running afterwards.
# Exit 77 (ctest: skipped) when MPI or UTS namespaces are not available.
# shellcheck disable=SC2015 # pass() always succeeds, so "A && pass || fail" is an if/else
MPI_TEST_NAME="hosts"
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
hosts_prog=${1:?usage: hosts.sh HOSTS_PROGRAM RAW_PROGRAM MPIEXEC SCRIPTS_DIR}
raw=${2:?}
mpi_setup "$hosts_prog" "${3:?}" "${4:?}"
[ -x "$raw" ] || skip "$raw not built"
two_hosts
scale=${MP_TEST_TIMEOUT_SCALE:-1}

tag=$(new_tag)
timeout -s KILL $((20 * scale)) env MPROC_MPI_TAG="$tag" "$MPIEXEC" -np 3 \
  --hostfile "$MPI_TMP/hostfile" "$hosts_prog" </dev/null >"$MPI_TMP/hosts.out" 2>"$MPI_TMP/hosts.err"
rc=$?
echo "--- hosts program: status $rc"
cat "$MPI_TMP/hosts.out" "$MPI_TMP/hosts.err"
[ $rc -eq 0 ] && pass "mpirun -np 3 --hostfile (hosta:1, hostb:2) exits 0" ||
  fail "mpirun exited with status $rc"
has() { grep -qx "$1" "$MPI_TMP/hosts.out"; }
has "rank 0 host hosta" && pass "rank 0 runs on hosta" || fail "rank 0 not on hosta"
has "rank 1 host hostb" && has "rank 2 host hostb" && pass "ranks 1 and 2 run on hostb" ||
  fail "ranks 1, 2 not on hostb"
has "tcp 0 1" && has "tcp 0 2" && pass "hosta and hostb ranks talk over TCP on lo" ||
  fail "no TCP connection between the hosts' ranks"
has "tcp 1 2" && fail "the two ranks on hostb use TCP, not shared memory" ||
  pass "the two ranks on hostb share memory (no TCP between them)"
gone "$tag" 5 && pass "nothing of the launch left running" || fail "left running: $(tagged "$tag")"

tag=$(new_tag)
timeout -s KILL $((20 * scale)) env MPROC_MPI_TAG="$tag" "$MPIEXEC" -np 3 \
  --hostfile "$MPI_TMP/hostfile" "$raw" --tasks 2000 --reps 1 --name mpi.tcp.raw.map_cs1 \
  </dev/null >"$MPI_TMP/raw.out" 2>"$MPI_TMP/raw.err"
rc=$?
echo "--- raw master/worker loop across the hosts: status $rc"
cat "$MPI_TMP/raw.out" "$MPI_TMP/raw.err"
[ $rc -eq 0 ] && grep -qP '^mpi\.tcp\.raw\.map_cs1\.tasks_per_s\t[0-9]+\ttasks/s$' "$MPI_TMP/raw.out" &&
  pass "raw loop across hosts: all results right, one figure line" || fail "raw loop across hosts"
gone "$tag" 5 && pass "nothing of the raw launch left running" || fail "left running: $(tagged "$tag")"

[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
