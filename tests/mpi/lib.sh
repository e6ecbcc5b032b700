# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# lib.sh - sourced by the tests/mpi/*.sh tests: the Open MPI settings, a tag that finds every
# process of one launch, and a cleanup that leaves nothing running.
#
# Each launch gets MPROC_MPI_TAG=<unique> in mpirun's environment only (not the test's own).
# Everything mpirun starts inherits it: the ranks, and with two simulated hosts the rsh agent,
# its shells and the remote orted daemons, whose ranks inherit it in turn. So the processes of a
# launch are exactly those whose /proc/PID/environ holds the tag, whatever became of their
# parents, and the cleanup can SIGKILL precisely those.
set -u
MPI_TEST_NAME=${MPI_TEST_NAME:-mpi}
MPI_TMP=$(mktemp -d "/tmp/mproc-$MPI_TEST_NAME.XXXXXX")
MPI_TAGS=""
fails=0
pass() { echo "ok   $*"; }
fail() {
  echo "FAIL $*"
  fails=$((fails + 1))
}
skip() {
  echo "SKIP: $*"
  exit 77
}

# tagged TAG: "PID COMM" of every process whose environment holds MPROC_MPI_TAG=TAG.
# One grep reads every /proc/PID/environ (NUL-separated entries, hence -z).
tagged() {
  local f pid
  while read -r f; do
    pid=${f#/proc/}
    pid=${pid%/environ}
    echo "$pid $(cat "/proc/$pid/comm" 2>/dev/null)"
  done < <(grep -lzxF "MPROC_MPI_TAG=$1" /proc/[0-9]*/environ 2>/dev/null)
}

# tagged_env TAG NAME=VALUE: PIDs of the tagged processes that also have NAME=VALUE.
tagged_env() {
  local pid rest files=()
  while read -r pid rest; do files+=("/proc/$pid/environ"); done < <(tagged "$1")
  [ ${#files[@]} -gt 0 ] || return 0
  grep -lzxF "$2" "${files[@]}" 2>/dev/null | sed 's|^/proc/||; s|/environ$||'
}

# session_dirs TAG: the Open MPI session directories of a running launch. mpirun keeps its own in
# $TMPDIR/ompi.<host>.<uid>/pid.<mpirun pid>, each remote daemon in .../ompi.<its host>.<uid>/
# jf.<job family>, the family being the upper 16 bits of the job id on its command line.
session_dirs() {
  local pid comm jobid d
  while read -r pid comm; do
    case "$comm" in
    mpirun | mpiexec | orterun)
      for d in "${TMPDIR:-/tmp}"/ompi.*/pid."$pid"; do [ -d "$d" ] && echo "$d"; done
      ;;
    orted)
      jobid=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -A1 -x ess_base_jobid | tail -n 1 | tr -d '"')
      [ -n "$jobid" ] || continue
      for d in "${TMPDIR:-/tmp}"/ompi.*/jf.$((jobid >> 16)); do [ -d "$d" ] && echo "$d"; done
      ;;
    esac
  done < <(tagged "$1") | sort -u
}

# none_exist PATH...: true when none of the paths exists (any that does is printed).
none_exist() {
  local p left=0
  for p in "$@"; do
    [ -e "$p" ] && { echo "still there: $p"; left=1; }
  done
  return $left
}

new_tag() {
  local t="mproc-$MPI_TEST_NAME-$$-$RANDOM$RANDOM"
  MPI_TAGS="$MPI_TAGS $t"
  echo "$t"
}

# gone TAG SECONDS: true once no tagged process is left, polling up to SECONDS.
gone() {
  local end=$((SECONDS + $2))
  while [ -n "$(tagged "$1")" ]; do
    [ $SECONDS -ge $end ] && return 1
    sleep 0.1
  done
  return 0
}

mpi_cleanup() {
  local t pid rest
  for t in $MPI_TAGS; do
    while read -r pid rest; do
      echo "cleanup: killing leftover $pid ($rest) of $t"
      kill -9 "$pid" 2>/dev/null
    done < <(tagged "$t")
  done
  rm -rf "$MPI_TMP"
}
trap mpi_cleanup EXIT
trap 'exit 1' INT TERM

# mpi_setup RAW_OR_PROGRAM MPIEXEC SCRIPTS_DIR: the settings, or skip (77) when they cannot work.
mpi_setup() {
  MPI_PROG=$1
  MPIEXEC=$2
  MPI_SCRIPTS=$3
  [ -x "$MPI_PROG" ] || skip "$MPI_PROG not built"
  command -v "$MPIEXEC" >/dev/null || skip "no mpiexec ($MPIEXEC)"
  # shellcheck source-path=SCRIPTDIR/../..
  # shellcheck source=scripts/mpi-env.sh
  . "$MPI_SCRIPTS/mpi-env.sh"
}

# two_hosts: a hostfile with 1 slot on "hosta" and 2 on "hostb", launched through the agent;
# skips when this machine cannot make UTS namespaces (not root, no user namespaces).
two_hosts() {
  local how
  how=$("$MPI_SCRIPTS/mpi-rsh-agent.sh" --check 2>&1) || skip "two simulated hosts impossible here: $how"
  printf 'hosta slots=1\nhostb slots=2\n' >"$MPI_TMP/hostfile"
  mproc_mpi_two_hosts
}
