#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run_raw.sh RAW_PROGRAM MPIEXEC - the raw MPI master/worker baseline (issue 13), run by
# <build>/bench/bench_mpi_raw. stdout: only figure lines; progress and Open MPI's chatter on stderr.
#   mpi.raw.map_cs1.tasks_per_s      3 ranks (1 master, 2 workers) on this machine: shared memory
#   mpi.tcp.raw.map_cs1.tasks_per_s  1 master on "hosta", 2 workers on "hostb": two simulated hosts
#                                    (scripts/mpi-rsh-agent.sh), every task crosses TCP on lo
# Each is the median of BENCH_REPS (at least 5) reps in one launch; BENCH_QUICK shrinks the reps.
# An empty RAW_PROGRAM means the build has no MPI: a note on stderr and exit 0.
set -u
raw=${1:-}
mpiexec=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
scripts=$here/../../scripts
note() { echo "bench_mpi_raw: $*" >&2; }

if [ -z "$raw" ] || [ ! -x "$raw" ]; then
  note "MPI parts not built (configure with -DMPROC_MPI=ON and Open MPI installed): skipped"
  exit 0
fi
if [ -z "$mpiexec" ] || ! command -v "$mpiexec" >/dev/null; then
  note "no mpiexec ($mpiexec): skipped"
  exit 0
fi
# shellcheck source-path=SCRIPTDIR/../..
# shellcheck source=scripts/mpi-env.sh
. "$scripts/mpi-env.sh"

reps=${BENCH_REPS:-5}
[ "$reps" -ge 5 ] 2>/dev/null || reps=5
shm_tasks=100000
tcp_tasks=20000
case "${BENCH_QUICK:-0}" in "" | 0) ;; *) shm_tasks=20000 tcp_tasks=4000 ;; esac
note "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"

status=0
# launch NAME ARGS...: one mpirun; figure lines to stdout, everything else to stderr.
launch() {
  local name=$1
  shift
  note "$name: $mpiexec $*"
  # A hang must not stall make bench forever: 10 minutes is far beyond any sane run.
  timeout -s KILL 600 "$mpiexec" "$@" </dev/null |
    awk '/^mpi\.[A-Za-z0-9_.]+\t[0-9.]+\t/ { print; fflush(); next } { print > "/dev/stderr" }'
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    note "$name: mpirun failed with status $rc"
    status=1
  fi
}

launch mpi.raw.map_cs1 -np 3 "$raw" --tasks "$shm_tasks" --reps "$reps" --name mpi.raw.map_cs1

if ! "$scripts/mpi-rsh-agent.sh" --check >/dev/null 2>&1; then
  note "mpi.tcp.raw.map_cs1: no UTS namespace here (unshare --uts needs root or user namespaces): skipped"
  exit $status
fi
tmp=$(mktemp -d /tmp/mproc-mpi-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
printf 'hosta slots=1\nhostb slots=2\n' >"$tmp/hostfile"
mproc_mpi_two_hosts
launch mpi.tcp.raw.map_cs1 -np 3 --hostfile "$tmp/hostfile" "$raw" --tasks "$tcp_tasks" \
  --reps "$reps" --name mpi.tcp.raw.map_cs1
note "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
