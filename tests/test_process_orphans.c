/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_process_orphans.c - mproc never leaves an orphan: children die with a SIGKILLed parent;
 * a parent that exits normally terminates its daemons and joins the rest; the double fork's
 * grandchild is adopted by the nearest subreaper (this test process) and its pid returned. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/process.h"
#include "mp_test.h"

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Reads exactly len bytes within timeout_s; returns 0 or -1. */
static int read_timed(int fd, void *buf, size_t len, double timeout_s)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)(timeout_s * 1000));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        ssize_t n = read(fd, p + got, len - got);
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

/* Says it runs (so PDEATHSIG is in place, not just the race check), then blocks. */
static int t_ready_block(void *arg)
{
    (void)!write((int)(intptr_t)arg, "r", 1);
    for (;;)
        pause();
    return 0;
}

/* ---- parent SIGKILLed ------------------------------------------------------------------------ */

static void killed_parent_takes_its_children(void **state)
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    pid_t mid = mp_test_fork();
    assert_true(mid >= 0);
    if (mid == 0) {
        close(fds[0]);
        int rdy[2];
        MP_CHILD_CHECK(pipe2(rdy, O_CLOEXEC) == 0);
        void *arg = (void *)(intptr_t)rdy[1];
        mp_process *d, *n;
        MP_CHILD_CHECK(mp_process_new(&d, "daemon", t_ready_block, arg) == 0);
        MP_CHILD_CHECK(mp_process_set_daemon(d, true) == 0);
        MP_CHILD_CHECK(mp_process_new(&n, "plain", t_ready_block, arg) == 0);
        MP_CHILD_CHECK(mp_process_start(d) == 0);
        MP_CHILD_CHECK(mp_process_start(n) == 0);
        char r[2];
        MP_CHILD_CHECK(read_timed(rdy[0], r, 2, 10) == 0);
        pid_t pids[2] = {mp_process_pid(d), mp_process_pid(n)};
        MP_CHILD_CHECK(write(fds[1], pids, sizeof pids) == sizeof pids);
        for (;;)
            pause();
    }
    close(fds[1]);
    pid_t pids[2] = {0, 0};
    int got = read_timed(fds[0], pids, sizeof pids, mp_test_timeout(10));
    close(fds[0]);
    kill(mid, SIGKILL);
    assert_int_equal(mp_test_wait_code(mid, mp_test_timeout(10)), 128 + SIGKILL);
    assert_int_equal(got, 0);

    sleep_s(mp_test_timeout(1.0));
    /* Orphans come to us (the test is a subreaper): each must be dead by now, killed by SIGKILL. */
    int alive = 0, killed = 0;
    for (int i = 0; i < 2; i++) {
        int st;
        pid_t r = waitpid(pids[i], &st, WNOHANG);
        if (r == pids[i]) {
            killed += WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
        } else {
            alive++;
            kill(pids[i], SIGKILL);
            waitpid(pids[i], &st, 0);
        }
    }
    assert_int_equal(alive, 0);
    assert_int_equal(killed, 2);
}

static int t_block(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

/* The parent dies right after start, often before a child reached prctl(PR_SET_PDEATHSIG): the
 * getppid() check must catch those. */
static void parent_dies_during_start(void **state)
{
    enum { N = 4 };
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    pid_t mid = mp_test_fork();
    assert_true(mid >= 0);
    if (mid == 0) {
        close(fds[0]);
        for (int i = 0; i < N; i++) {
            mp_process *p;
            MP_CHILD_CHECK(mp_process_new(&p, NULL, t_block, NULL) == 0);
            MP_CHILD_CHECK(mp_process_start(p) == 0);
            pid_t pid = mp_process_pid(p);
            MP_CHILD_CHECK(write(fds[1], &pid, sizeof pid) == sizeof pid);
        }
        raise(SIGKILL);
    }
    close(fds[1]);
    pid_t pids[N] = {0};
    int got = read_timed(fds[0], pids, sizeof pids, mp_test_timeout(10));
    close(fds[0]);
    assert_int_equal(mp_test_wait_code(mid, mp_test_timeout(10)), 128 + SIGKILL);
    sleep_s(mp_test_timeout(1.0));
    int alive = 0, killed = 0;
    for (int i = 0; i < N && got == 0; i++) {
        int st;
        pid_t r = waitpid(pids[i], &st, WNOHANG);
        if (r == pids[i]) {
            killed += WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
        } else {
            alive++;
            kill(pids[i], SIGKILL);
            waitpid(pids[i], &st, 0);
        }
    }
    assert_int_equal(got, 0);
    assert_int_equal(alive, 0);
    assert_int_equal(killed, N);
}

/* ---- parent exits normally ------------------------------------------------------------------- */

static int result_fd, ready_fd;

static void on_term(int sig)
{
    (void)sig;
    (void)!write(result_fd, "T", 1);
    _exit(0);
}

/* A daemon that notes SIGTERM. */
static int t_daemon_noting(void *arg)
{
    struct sigaction sa = {.sa_handler = on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    (void)!write(ready_fd, "r", 1);
    for (;;)
        pause();
    return 0;
}

/* A daemon that ignores SIGTERM: only the SIGKILL after 1 s ends it. */
static int t_daemon_stubborn(void *arg)
{
    signal(SIGTERM, SIG_IGN);
    (void)!write(ready_fd, "r", 1);
    for (;;)
        pause();
    return 0;
}

/* A non-daemon that takes a while: the parent's exit must wait for it. */
static int t_slow_worker(void *arg)
{
    (void)!write(ready_fd, "r", 1);
    sleep_s(0.2);
    (void)!write(result_fd, "J", 1);
    return 0;
}

static void normal_exit_terminates_daemons_joins_others(void **state)
{
    int res[2], pidp[2];
    assert_int_equal(pipe2(res, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pidp, O_CLOEXEC), 0);
    pid_t mid = mp_test_fork();
    assert_true(mid >= 0);
    if (mid == 0) {
        close(res[0]);
        close(pidp[0]);
        int rdy[2];
        MP_CHILD_CHECK(pipe2(rdy, O_CLOEXEC) == 0);
        result_fd = res[1];
        ready_fd = rdy[1];
        mp_target_fn fns[3] = {t_daemon_noting, t_daemon_stubborn, t_slow_worker};
        pid_t pids[3];
        for (int i = 0; i < 3; i++) {
            mp_process *p;
            MP_CHILD_CHECK(mp_process_new(&p, NULL, fns[i], NULL) == 0);
            MP_CHILD_CHECK(mp_process_set_daemon(p, i < 2) == 0);
            MP_CHILD_CHECK(mp_process_start(p) == 0);
            pids[i] = mp_process_pid(p); /* the objects stay alive: exit handles them */
        }
        char r[3];
        MP_CHILD_CHECK(read_timed(rdy[0], r, 3, 10) == 0);
        MP_CHILD_CHECK(write(pidp[1], pids, sizeof pids) == sizeof pids);
        fflush(NULL);
        exit(0); /* a normal exit: atexit handlers run */
    }
    close(res[1]);
    close(pidp[1]);
    pid_t pids[3] = {0};
    int got_pids = read_timed(pidp[0], pids, sizeof pids, mp_test_timeout(10));
    assert_int_equal(mp_test_wait_code(mid, mp_test_timeout(10)), 0);
    char marks[3] = {0};
    int got_marks = read_timed(res[0], marks, 2, mp_test_timeout(5));
    close(res[0]);
    close(pidp[0]);
    assert_int_equal(got_pids, 0);
    assert_int_equal(got_marks, 0);
    assert_non_null(strchr(marks, 'T')); /* the daemon got SIGTERM */
    assert_non_null(strchr(marks, 'J')); /* the worker was joined: it finished before the exit */
    /* All three were reaped by their parent: none came to us as an orphan or zombie. */
    for (int i = 0; i < 3; i++)
        assert_false(mp_test_pid_exists(pids[i]));
}

/* ---- double fork ----------------------------------------------------------------------------- */

struct adopt {
    pid_t reaper; /* the subreaper that should adopt the grandchild: this test process */
    int fd;
};

static int t_adopted(void *arg)
{
    struct adopt *a = arg;
    /* The intermediate child exits right after forking us; wait to be adopted. */
    for (int i = 0; i < 5000 && getppid() != a->reaper; i++)
        sleep_s(0.001);
    pid_t report[2] = {getpid(), getppid()};
    return write(a->fd, report, sizeof report) == sizeof report ? 7 : 1;
}

static int children_of_self(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    int n = 0, pid;
    while (fscanf(f, "%d", &pid) == 1)
        n++;
    fclose(f);
    return n;
}

static void double_fork_grandchild_adopted(void **state)
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    int before = children_of_self();
    struct adopt a = {.reaper = getpid(), .fd = fds[1]};
    pid_t pid = 0;
    assert_mp_ok(mp_process_run_detached(t_adopted, &a, &pid));
    assert_true(pid > 0);
    /* The intermediate child is already reaped: the only new child is the adopted grandchild. */
    pid_t report[2] = {0, 0};
    int got = read_timed(fds[0], report, sizeof report, mp_test_timeout(10));
    int during = children_of_self();
    int code = mp_test_wait_code(pid, mp_test_timeout(10));
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(got, 0);
    assert_int_equal(report[0], pid);      /* the pid returned is the grandchild's */
    assert_int_equal(report[1], getpid()); /* adopted by the subreaper */
    assert_int_equal(during, before + 1);
    assert_int_equal(code, 7); /* its target ran */
    assert_int_equal(children_of_self(), before);
}

static int t_wait_byte(void *arg)
{
    char c;
    return read((int)(intptr_t)arg, &c, 1) == 1 ? 0 : 1;
}

/* Detached on purpose: unlike Process children, the grandchild survives its caller's death. */
static void detached_survives_caller(void **state)
{
    int go[2], pidp[2];
    assert_int_equal(pipe2(go, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pidp, O_CLOEXEC), 0);
    pid_t mid = mp_test_fork();
    if (mid == 0) {
        pid_t g = 0;
        MP_CHILD_CHECK(mp_process_run_detached(t_wait_byte, (void *)(intptr_t)go[0], &g) == 0);
        MP_CHILD_CHECK(write(pidp[1], &g, sizeof g) == sizeof g);
        for (;;)
            pause();
    }
    pid_t g = 0;
    int got = read_timed(pidp[0], &g, sizeof g, mp_test_timeout(10));
    kill(mid, SIGKILL);
    int mid_code = mp_test_wait_code(mid, mp_test_timeout(10));
    sleep_s(0.1);
    int alive = got == 0 && mp_test_pid_exists(g);
    if (got == 0) assert_int_equal(write(go[1], "x", 1), 1);
    int code = got == 0 ? mp_test_wait_code(g, mp_test_timeout(10)) : -1;
    for (int i = 0; i < 2; i++) {
        close(go[i]);
        close(pidp[i]);
    }
    assert_int_equal(got, 0);
    assert_int_equal(mid_code, 128 + SIGKILL);
    assert_true(alive);
    assert_int_equal(code, 0);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(killed_parent_takes_its_children),
    MP_TEST(parent_dies_during_start),
    MP_TEST(normal_exit_terminates_daemons_joins_others),
    MP_TEST(double_fork_grandchild_adopted),
    MP_TEST(detached_survives_caller),
};
MP_TEST_MAIN(tests)
