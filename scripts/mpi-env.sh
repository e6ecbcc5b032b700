# SPDX-License-Identifier: MIT
# shellcheck shell=sh
# mpi-env.sh - the Open MPI settings mproc's MPI runs use on one machine (issue 13, docs/mpi.md).
# Source it (bash or sh), then launch with stdin from /dev/null (mpirun forwards its stdin to
# rank 0 and would otherwise hold a terminal or a test's pipe):
#     . scripts/mpi-env.sh && mpirun -np 3 ./prog </dev/null
# Two simulated hosts on this machine (scripts/mpi-rsh-agent.sh):
#     . scripts/mpi-env.sh && mproc_mpi_two_hosts && mpirun -np 3 --hostfile FILE ./prog </dev/null
# Every setting is an ordinary environment variable, so a value already set is overridden; unset
# one after sourcing to get Open MPI's default back.

# Open MPI refuses to run as root without both of these (CI containers run as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# More ranks than CPUs (3 ranks on a 2-CPU machine) is normal here, not an error.
export OMPI_MCA_rmaps_base_oversubscribe=1
# The ob1 messaging layer over shared memory (vader) within a host and TCP between hosts; the
# other transports Debian builds in (UCX, libfabric, verbs) only probe for hardware that is not
# there and print warnings.
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp
# All traffic on loopback: ranks and daemons never use (or wait for) another interface.
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo

# mproc_mpi_two_hosts: launch the daemons of a hostfile's hosts through mpi-rsh-agent.sh, each in
# a UTS namespace named after its host. The agent is looked up next to this file when sourced from
# bash; elsewhere set MPROC_MPI_RSH_AGENT to its path first.
# shellcheck disable=SC3028,SC3054 # BASH_SOURCE is read only when the shell has it
mproc_mpi_scripts=$(cd "$(dirname "${BASH_SOURCE:-${MPROC_MPI_RSH_AGENT:-.}}")" 2>/dev/null && pwd)
mproc_mpi_two_hosts() {
  OMPI_MCA_plm_rsh_agent=${MPROC_MPI_RSH_AGENT:-$mproc_mpi_scripts/mpi-rsh-agent.sh}
  if [ ! -x "$OMPI_MCA_plm_rsh_agent" ]; then
    echo "mpi-env.sh: no rsh agent at $OMPI_MCA_plm_rsh_agent (set MPROC_MPI_RSH_AGENT)" >&2
    return 1
  fi
  export OMPI_MCA_plm_rsh_agent
  # Ranks on one "host" share the CPUs with the other host's ranks: let busy-polling ranks yield.
  export OMPI_MCA_mpi_yield_when_idle=1
}
