#!/bin/sh
# SPDX-License-Identifier: MIT
# mpi-rsh-agent.sh - a stand-in for ssh that lets one machine play several MPI hosts (issue 13).
#
# Open MPI's launcher starts the daemon (orted) of every host in a hostfile through an "rsh agent"
# (ssh by default), called as `AGENT HOST ARGS...`; like ssh, the agent joins ARGS with spaces and
# hands them to a shell (Open MPI quotes them for that). This agent runs the command here, but
# inside a UTS namespace of its own whose hostname is HOST. Open MPI names its session directory
# and shared-memory segments after the hostname, so the "hosts" do not clash, and ranks on
# different hosts talk over the TCP BTL (on lo with scripts/mpi-env.sh), as on a real cluster.
#
#   export OMPI_MCA_plm_rsh_agent=/path/to/scripts/mpi-rsh-agent.sh
#   printf 'hosta slots=1\nhostb slots=2\n' > hostfile
#   mpirun -np 3 --hostfile hostfile ./prog
#
# Needs `unshare --uts` (util-linux) as root, or unprivileged user namespaces (then it runs the
# daemon as a mapped root, `unshare --user --map-root-user --uts`). `mpi-rsh-agent.sh --check`
# exits 0 when one of the two works here and names it; MPROC_MPI_NS_MODE=uts|userns skips the probe.
set -eu

pick_mode() {
  if unshare --uts sh -c 'hostname mproc-probe' 2>/dev/null; then
    echo uts
  elif unshare --user --map-root-user --uts sh -c 'hostname mproc-probe' 2>/dev/null; then
    echo userns
  else
    echo none
  fi
}

if [ "${1:-}" = --check ]; then
  mode=$(pick_mode)
  echo "mpi-rsh-agent: namespace mode: $mode"
  [ "$mode" != none ]
  exit
fi

[ $# -ge 2 ] || { echo "usage: mpi-rsh-agent.sh HOST COMMAND... | --check" >&2; exit 2; }
host=$1
shift
# ssh would take options before the host; Open MPI passes none unless the agent string has them.
case "$host" in
-*|*[!A-Za-z0-9.-]*|'') echo "mpi-rsh-agent: not a host name: $host" >&2; exit 2 ;;
esac
# ssh semantics: the remote shell sees the arguments joined by spaces.
cmd="$*"
mode=${MPROC_MPI_NS_MODE:-$(pick_mode)}
# shellcheck disable=SC2016 # $1 and $2 belong to the inner shell
case "$mode" in
uts) exec unshare --uts sh -c 'hostname "$1" && exec sh -c "$2"' sh "$host" "$cmd" ;;
userns) exec unshare --user --map-root-user --uts sh -c 'hostname "$1" && exec sh -c "$2"' sh "$host" "$cmd" ;;
*) echo "mpi-rsh-agent: cannot make a UTS namespace here (unshare --uts fails; not root?)" >&2; exit 1 ;;
esac
