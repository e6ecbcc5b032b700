#!/usr/bin/env bash
# Runs the tests that valgrind can follow under memcheck (--trace-children=yes), one at a time:
#   scripts/valgrind.sh [BUILD_DIR]
# Left out, and why: valgrind 3.19 does not know pidfd_open (syscall 434), so every test that
# starts an mp_process (process, pool, pipe's sentinel case, examples) fails there; the queue's
# kill and stress tests need more speed than valgrind's 20-50x slow-down leaves them; and the signal
# storms (a SIGALRM every 100 us) make valgrind's futex emulation hand glibc's robust mutex an
# error code it does not expect ("The futex facility returned an unexpected error code", abort),
# which native runs never see.
set -u
build=${1:-build}
tests="test_error test_leakguard test_sync test_shared test_shared_contention
       test_socket test_queue"
export MP_TEST_TIMEOUT_SCALE=${MP_TEST_TIMEOUT_SCALE:-10}
export MP_TEST_SHM_GUARD=1 # one test at a time: the /dev/shm check is safe
status=0
for t in $tests; do
  log=$(mktemp)
  if valgrind -q --error-exitcode=42 --trace-children=yes --leak-check=no \
       "$build/tests/$t" >"$log" 2>&1; then
    echo "valgrind: $t ok"
  else
    echo "valgrind: $t FAILED"; tail -40 "$log"; status=1
  fi
  rm -f "$log"
done
exit $status
