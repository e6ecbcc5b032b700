/* SPDX-License-Identifier: MIT */
/* mp_test.h - the test harness: cmocka plus a leak guard, timeouts and fork helpers.
 *
 * Rules every test file follows:
 *   - Register cases with MP_TEST(fn): the leak guard snapshots the process's children, open fds
 *     and /dev/shm before the case and fails the case when any of them is left over afterwards
 *     (it then kills, reaps, closes or unlinks the leftovers so later cases start clean).
 *   - main() is MP_TEST_MAIN(tests): it makes the test process a child subreaper, so even a
 *     double-forked grandchild comes back to it and is seen by the guard.
 *   - A forked child never calls cmocka asserts. It reports through its exit status: use
 *     MP_CHILD_CHECK(cond) and mp_test_child_exit(code); the parent asserts on mp_test_wait().
 *   - Every wait has a timeout from mp_test_timeout(base): base seconds scaled by the environment
 *     variable MP_TEST_TIMEOUT_SCALE (sanitizers and valgrind set it), which also scales ctest's
 *     TIMEOUT for the file (see tests/CMakeLists.txt, "mp-test: timeout=N" in the file's head).
 */
#ifndef MP_TEST_H
#define MP_TEST_H

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

/* base_s scaled by MP_TEST_TIMEOUT_SCALE (default 1). */
double mp_test_timeout(double base_s);

/* ---- leak guard ---------------------------------------------------------------------------- */

typedef struct mp_test_snapshot {
    int nfds;
    int fds[1024];
    int nchildren;
    pid_t children[1024];
    int nshm;
    char shm[256][64];
} mp_test_snapshot;

void mp_test_snapshot_take(mp_test_snapshot *s);
/* Compares the present state with `before`. Writes a description of every leftover into report
 * (when not NULL) and returns how many there are. With cleanup, kills and reaps leftover
 * children, closes leftover fds and unlinks leftover /dev/shm entries. */
int mp_test_snapshot_diff(const mp_test_snapshot *before, char *report, size_t len, int cleanup);

int mp_test_guard_setup(void **state);
int mp_test_guard_teardown(void **state);

#define MP_TEST(fn) cmocka_unit_test_setup_teardown(fn, mp_test_guard_setup, mp_test_guard_teardown)

int mp_test_main(const char *name, const struct CMUnitTest *tests, size_t n);
#define MP_TEST_MAIN(tests)                                                                        \
    int main(void)                                                                                 \
    {                                                                                              \
        return mp_test_main(__FILE__, tests, sizeof(tests) / sizeof(tests[0]));                    \
    }

/* As MP_TEST_MAIN, for test programs that start children under spawn or forkserver: main calls
 * mp_init(&argc, &argv) first, so a child that mproc spawns from this binary (or the forkserver)
 * runs what it was started for there and never reaches cmocka. The file must include
 * mproc/start.h. */
#define MP_TEST_MAIN_INIT(tests)                                                                   \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        mp_init(&argc, &argv);                                                                     \
        return mp_test_main(__FILE__, tests, sizeof(tests) / sizeof(tests[0]));                    \
    }

/* ---- children ------------------------------------------------------------------------------ */

/* fork() for tests: flushes stdio first; in the child, sets PR_SET_PDEATHSIG(SIGKILL) so that a
 * test runner killed by its timeout takes its children with it. */
pid_t mp_test_fork(void);

/* End a forked child: flush, dump coverage counters, _exit(code). */
__attribute__((noreturn)) void mp_test_child_exit(int code);

#define MP_CHILD_CHECK(cond)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: child check failed: %s\n", __FILE__, __LINE__, #cond);         \
            mp_test_child_exit(99);                                                                \
        }                                                                                          \
    } while (0)

/* Forks (mp_test_fork) and re-executes the test program (/proc/self/exe) as
 * `prog MP_TEST_EXEC_MARK args[0] args[1] ...` (args NULL-terminated), with the n fds in `fds`
 * inherited at the same numbers (their close-on-exec flag is cleared in the child only). Returns
 * the child's pid (reap it with mp_test_wait*), or -1. */
pid_t mp_test_exec_self(const char *const *args, const int *fds, int n);

/* The path /proc/self/exe names (what an exec of the test program should run: under valgrind the
 * link itself names the tool's binary), or "/proc/self/exe" when the link cannot be read. */
const char *mp_test_self_exe(void);

/* main() for tests whose objects cross exec (spawn, forkserver): the program calls
 * mp_init(&argc, &argv) before any case runs, so the objects the cases make are memfd-backed.
 * When a case re-executed the program (mp_test_exec_self: argv[1] is MP_TEST_EXEC_MARK), main runs
 * child(argc, argv) instead of the cases and exits with its result; child makes its own mp_init()
 * call (or not: a child may show what happens before it). The test includes mproc.h and
 * <string.h>. */
#define MP_TEST_EXEC_MARK "--mp-test-exec-child"
#define MP_TEST_MAIN_EXEC(tests, child)                                                            \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        if (argc > 1 && strcmp(argv[1], MP_TEST_EXEC_MARK) == 0)                                   \
            mp_test_child_exit((child)(argc, argv));                                               \
        mp_init(&argc, &argv);                                                                     \
        return mp_test_main(__FILE__, tests, sizeof(tests) / sizeof(tests[0]));                    \
    }

/* Wait for a child of the test for at most timeout_s (already scaled by the caller, usually via
 * mp_test_timeout). Returns the raw wait status, or -1 after a timeout (the child is then
 * SIGKILLed and reaped, so nothing leaks). */
int mp_test_wait(pid_t pid, double timeout_s);

/* The exit code of a child that exited, 128+signal when a signal killed it, -1 on timeout. */
int mp_test_wait_code(pid_t pid, double timeout_s);

/* Asserts that pid exits with code 0 within 10 s (scaled). */
#define assert_child_ok(pid) assert_int_equal(mp_test_wait_code((pid), mp_test_timeout(10)), 0)

/* Asserts that an mproc call returned `expected`, printing both names when it did not. */
#define assert_mp(expected, call)                                                                  \
    do {                                                                                           \
        int mp__got_ = (call);                                                                     \
        int mp__want_ = (expected);                                                                \
        if (mp__got_ != mp__want_)                                                                 \
            fail_msg("%s returned %d (%s), expected %d (%s)", #call, mp__got_,                     \
                     mp_err_name(mp__got_), mp__want_, mp_err_name(mp__want_));                    \
    } while (0)
#define assert_mp_ok(call) assert_mp(0, call)

/* Poll until `pred(arg)` is true or timeout_s passes; returns 1 when it became true. */
int mp_test_eventually(int (*pred)(void *arg), void *arg, double timeout_s);

/* True when pid exists (alive or zombie). */
int mp_test_pid_exists(pid_t pid);

/* ---- small helpers several tests share ------------------------------------------------------ */

/* xorshift64 step: a cheap, seedable random stream (seed must not be 0). */
static inline uint64_t mp_test_rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* FNV-1a-style checksum of n bytes, continuing from h (callers salt h per message). */
static inline uint32_t mp_test_fnv(const unsigned char *p, size_t n, uint32_t h)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* Writes all n bytes to fd (asserts each write makes progress). */
void mp_test_write_all(int fd, const void *p, size_t n);

/* Open fds of the calling process, the directory stream's own fd not counted; -1 on error. */
int mp_test_count_fds(void);

/* Makes the robust mutex m unrecoverable: a child locks it and dies holding it, and the next
 * locker (the caller) gets EOWNERDEAD and unlocks it without marking it consistent. */
void mp_test_make_mutex_unrecoverable(pthread_mutex_t *m);

/* Sleeps ms milliseconds, resuming after signals. */
void mp_test_sleep_ms(int ms);

/* Busy-waits us microseconds of CLOCK_MONOTONIC (no sleep: the caller stays on the CPU). */
void mp_test_spin_us(long us);

/* Pins the caller to the first CPU it may run on (the same one for every process that calls it
 * with the same affinity); 0 or -1 (errno). */
int mp_test_pin_first_cpu(void);

/* The state letter of /proc/<pid>/stat ('R', 'S', 'Z', ...), or 0. */
char mp_test_proc_state(pid_t pid);

#endif
