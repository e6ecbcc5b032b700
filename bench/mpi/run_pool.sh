#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run_pool.sh POOL_VS_RAW MPIEXEC - the pool on MPI ranks against the raw master/worker loop in
# the same launch (issue 13), run by <build>/bench/bench_mpi_pool. stdout: only figure lines.
#   mpi.map_cs1.ratio_raw, mpi.map.ratio_raw (+ the tasks/s behind them): 3 ranks on this machine
#   mpi.tcp.map_cs1.tasks_per_s (+ mpi.tcp.*): rank 0 on "hosta", the 2 workers on "hostb"
#       (scripts/mpi-rsh-agent.sh): every task crosses TCP on lo
# Medians of BENCH_REPS (at least 5) reps; BENCH_QUICK shrinks the task counts.
set -u
prog=${1:-}
mpiexec=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
scripts=$here/../../scripts
note() { echo "bench_mpi_pool: $*" >&2; }
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
launch() {
  local name=$1
  shift
  note "$name: $mpiexec $*"
  timeout -s KILL 600 "$mpiexec" "$@" </dev/null |
    awk '/^mpi\.[A-Za-z0-9_.]+\t[0-9.]+\t/ { print; fflush(); next } { print > "/dev/stderr" }'
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    note "$name: mpirun failed with status $rc"
    status=1
  fi
}
launch mpi -np 3 "$prog" --tasks "$shm_tasks" --reps "$reps" --name mpi
if ! "$scripts/mpi-rsh-agent.sh" --check >/dev/null 2>&1; then
  note "mpi.tcp: no UTS namespace here (unshare --uts needs root or user namespaces): skipped"
  exit $status
fi
tmp=$(mktemp -d /tmp/mproc-mpi-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
printf 'hosta slots=1\nhostb slots=2\n' >"$tmp/hostfile"
mproc_mpi_two_hosts
launch mpi.tcp -np 3 --hostfile "$tmp/hostfile" "$prog" --tasks "$tcp_tasks" --reps "$reps" \
  --name mpi.tcp
note "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
