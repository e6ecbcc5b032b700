#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh TOOL PROGRAM MPIEXEC SHM_NAME TCP_NAME - one MPI benchmark program (issue 13), launched
# twice: 3 ranks on this machine (shared memory), then rank 0 on "hosta" and 2 workers on "hostb",
# two simulated hosts (scripts/mpi-rsh-agent.sh) where every task crosses TCP on lo. The program
# prints its figures under the --name it is given (SHM_NAME, TCP_NAME). Run by
# <build>/bench/bench_mpi_raw (the raw master/worker baseline: mpi.raw.map_cs1.*,
# mpi.tcp.raw.map_cs1.*) and <build>/bench/bench_mpi_pool (the pool against the raw loop in the
# same launch: mpi.map_cs1.ratio_raw, mpi.map.ratio_raw, mpi.tcp.map_cs1.tasks_per_s, ...).
# stdout: only figure lines; progress and Open MPI's chatter on stderr. Medians of BENCH_REPS (at
# least 5) reps in one launch; BENCH_QUICK shrinks the task counts. An empty PROGRAM means the
# build has no MPI: a note on stderr and exit 0.
set -u
tool=${1:-bench_mpi}
prog=${2:-}
mpiexec=${3:-}
shm_name=${4:-mpi}
tcp_name=${5:-mpi.tcp}
here=$(cd "$(dirname "$0")" && pwd)
scripts=$here/../../scripts
note() { echo "$tool: $*" >&2; }

if [ -z "$prog" ] || [ ! -x "$prog" ]; then
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

launch "$shm_name" -np 3 "$prog" --tasks "$shm_tasks" --reps "$reps" --name "$shm_name"

if ! "$scripts/mpi-rsh-agent.sh" --check >/dev/null 2>&1; then
  note "$tcp_name: no UTS namespace here (unshare --uts needs root or user namespaces): skipped"
  exit $status
fi
tmp=$(mktemp -d /tmp/mproc-mpi-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
printf 'hosta slots=1\nhostb slots=2\n' >"$tmp/hostfile"
mproc_mpi_two_hosts
launch "$tcp_name" -np 3 --hostfile "$tmp/hostfile" "$prog" --tasks "$tcp_tasks" --reps "$reps" \
  --name "$tcp_name"
note "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
