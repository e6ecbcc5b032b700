/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=120 */
/* test_process_fds.c - what a child gets and leaves: no mproc fd leaks into it, no byte another
 * thread buffered is written twice, its own children are joined or terminated when its target
 * returns, a daemon's children are daemons, and a dead stdout reader gives exit code 1, not
 * SIGPIPE. Each case runs with pidfds and again through the pidfd-less fallback (the death
 * sockets of platform.h), which test_process_nopidfd.c also runs the whole of test_process.c
 * through. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/process.h"
#include "mproc/signals.h"
#include "mp_test.h"
#include "platform/platform.h"
#include "process_internal.h"

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static mp_process *start(mp_target_fn fn, void *arg, bool daemon)
{
    mp_process *p = NULL;
    assert_mp_ok(mp_process_new(&p, NULL, fn, arg));
    assert_mp_ok(mp_process_set_daemon(p, daemon));
    assert_mp_ok(mp_process_start(p));
    return p;
}

static int exitcode_of(mp_process *p)
{
    int code = -1000;
    assert_mp_ok(mp_process_join(p, mp_test_timeout(20)));
    assert_mp_ok(mp_process_exitcode(p, &code));
    return code;
}

/* Runs fn in a helper child of the test (so it may force the fallback, redirect stdout, start
 * threads) and asserts it exits 0. */
static void in_helper(void (*fn)(bool), bool fallback)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        if (fallback) mp__pidfd_force_fallback();
        fn(fallback);
        mp_test_child_exit(0);
    }
    assert_true(pid > 0);
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(60)), 0);
}

/* ---- 1. nothing of mproc's leaks into a child ------------------------------------------------ */

static int t_count_fds(void *arg)
{
    (void)arg;
    int n = mp_test_count_fds();
    return n < 0 || n > 250 ? 255 : n;
}

static int t_block(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

/* The fds of a child started with nothing else around, and the same with blocked children (their
 * pidfds or death sockets), sigwaiters (signalfds) and a finished-but-unreaped child around. */
static void fd_count_is_baseline_body(bool fallback)
{
    (void)fallback;
    mp_process *p = start(t_count_fds, NULL, false);
    int baseline = exitcode_of(p);
    MP_CHILD_CHECK(mp_process_free(&p) == 0);
    MP_CHILD_CHECK(baseline > 0 && baseline < 250);

    mp_process *blocked[3];
    for (int i = 0; i < 3; i++) {
        MP_CHILD_CHECK(mp_process_new(&blocked[i], NULL, t_block, NULL) == 0);
        MP_CHILD_CHECK(mp_process_start(blocked[i]) == 0);
    }
    mp_process *ended;
    MP_CHILD_CHECK(mp_process_new(&ended, NULL, t_count_fds, NULL) == 0);
    MP_CHILD_CHECK(mp_process_start(ended) == 0);
    sleep_s(0.05); /* it ends; nobody reaps it yet */
    mp_sigwaiter *w1, *w2;
    int s1 = SIGUSR1, s2 = SIGUSR2;
    MP_CHILD_CHECK(mp_sigwaiter_new(&w1, &s1, 1) == 0);
    MP_CHILD_CHECK(mp_sigwaiter_new(&w2, &s2, 1) == 0);

    mp_process *q;
    MP_CHILD_CHECK(mp_process_new(&q, NULL, t_count_fds, NULL) == 0);
    MP_CHILD_CHECK(mp_process_start(q) == 0);
    MP_CHILD_CHECK(mp_process_join(q, mp_test_timeout(20)) == 0);
    int code = -1;
    MP_CHILD_CHECK(mp_process_exitcode(q, &code) == 0);
    if (code != baseline)
        fprintf(stderr, "child fds: %d beside processes and sigwaiters, %d alone\n", code,
                baseline);
    MP_CHILD_CHECK(code == baseline);
    mp_process_free(&q);

    for (int i = 0; i < 3; i++) {
        MP_CHILD_CHECK(mp_process_kill(blocked[i]) == 0);
        MP_CHILD_CHECK(mp_process_join(blocked[i], mp_test_timeout(20)) == 0);
        mp_process_free(&blocked[i]);
    }
    MP_CHILD_CHECK(mp_process_join(ended, mp_test_timeout(20)) == 0);
    mp_process_free(&ended);
    mp_sigwaiter_free(&w1);
    mp_sigwaiter_free(&w2);
}

static void fd_count_is_baseline(void **state)
{
    (void)state;
    in_helper(fd_count_is_baseline_body, false);
}

static void fd_count_is_baseline_fallback(void **state)
{
    (void)state;
    in_helper(fd_count_is_baseline_body, true);
}

/* ---- 2. a returning target joins its children, terminates its daemons ------------------------ */

struct marks {
    _Atomic int joined_done;   /* the non-daemon grandchild finished its work */
    _Atomic int daemon_termed; /* the daemon grandchild saw SIGTERM */
    _Atomic int daemon_ready;
};
static struct marks *marks;

static int t_slow_worker(void *arg)
{
    (void)arg;
    sleep_s(0.3);
    atomic_store(&marks->joined_done, 1);
    return 0;
}

static void on_term(int sig)
{
    (void)sig;
    atomic_store(&marks->daemon_termed, 1);
    _exit(0);
}

static int t_daemon(void *arg)
{
    (void)arg;
    struct sigaction sa = {.sa_handler = on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    atomic_store(&marks->daemon_ready, 1);
    for (;;)
        pause();
    return 0;
}

static int t_parent_returns(void *arg)
{
    (void)arg;
    mp_process *worker, *daemon;
    if (mp_process_new(&worker, NULL, t_slow_worker, NULL) || mp_process_start(worker)) return 10;
    if (mp_process_new(&daemon, NULL, t_daemon, NULL) || mp_process_set_daemon(daemon, true) ||
        mp_process_start(daemon))
        return 11;
    for (int i = 0; i < 2000 && !atomic_load(&marks->daemon_ready); i++)
        sleep_s(0.005);
    return 0; /* neither joined nor freed: mproc's exit path must handle both */
}

static void children_of_returning_target_body(bool fallback)
{
    (void)fallback;
    marks = mmap(NULL, sizeof *marks, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    MP_CHILD_CHECK(marks != MAP_FAILED);
    mp_process *p;
    MP_CHILD_CHECK(mp_process_new(&p, NULL, t_parent_returns, NULL) == 0);
    MP_CHILD_CHECK(mp_process_start(p) == 0);
    MP_CHILD_CHECK(mp_process_join(p, mp_test_timeout(20)) == 0);
    int code = -1;
    MP_CHILD_CHECK(mp_process_exitcode(p, &code) == 0);
    MP_CHILD_CHECK(code == 0);
    mp_process_free(&p);
    /* Both were settled before the child's exit: nothing left for PDEATHSIG to kill. */
    MP_CHILD_CHECK(atomic_load(&marks->joined_done) == 1);
    MP_CHILD_CHECK(atomic_load(&marks->daemon_termed) == 1);
    munmap(marks, sizeof *marks);
}

static void children_of_returning_target(void **state)
{
    (void)state;
    in_helper(children_of_returning_target_body, false);
}

static void children_of_returning_target_fallback(void **state)
{
    (void)state;
    in_helper(children_of_returning_target_body, true);
}

/* ---- 3. a daemon's children are daemons by default ------------------------------------------- */

static int t_return0(void *arg)
{
    (void)arg;
    return 0;
}

static int t_daemon_flag_of_new(void *arg)
{
    (void)arg;
    mp_process *q;
    if (mp_process_new(&q, NULL, t_return0, NULL)) return 50;
    int d = mp_process_is_daemon(q) ? 1 : 0;
    mp_process_free(&q);
    return d;
}

static void daemon_flag_inherited(void **state)
{
    (void)state;
    mp_process *d = start(t_daemon_flag_of_new, NULL, true);
    int in_daemon = exitcode_of(d);
    mp_process_free(&d);
    mp_process *n = start(t_daemon_flag_of_new, NULL, false);
    int in_other = exitcode_of(n);
    mp_process_free(&n);
    assert_int_equal(in_daemon, 1);
    assert_int_equal(in_other, 0);
    /* In the main program a new object is not a daemon. */
    mp_process *m;
    assert_mp_ok(mp_process_new(&m, NULL, t_return0, NULL));
    bool main_daemon = mp_process_is_daemon(m);
    mp_process_free(&m);
    assert_false(main_daemon);
}

/* ---- 4. no SIGPIPE death in the final flush ----------------------------------------------------
 */

static int t_print_and_succeed(void *arg)
{
    (void)arg;
    fputs("nobody reads this\n", stdout); /* a pipe: fully buffered, written at exit */
    return 0;
}

static void broken_stdout_body(bool fallback)
{
    (void)fallback;
    int fds[2];
    MP_CHILD_CHECK(pipe(fds) == 0);
    close(fds[0]); /* no reader */
    MP_CHILD_CHECK(dup2(fds[1], STDOUT_FILENO) == STDOUT_FILENO);
    close(fds[1]);
    mp_process *p;
    MP_CHILD_CHECK(mp_process_new(&p, NULL, t_print_and_succeed, NULL) == 0);
    MP_CHILD_CHECK(mp_process_start(p) == 0);
    MP_CHILD_CHECK(mp_process_join(p, mp_test_timeout(20)) == 0);
    int code = -1000;
    MP_CHILD_CHECK(mp_process_exitcode(p, &code) == 0);
    if (code != 1) fprintf(stderr, "exit code %d, want 1 (as CPython)\n", code);
    MP_CHILD_CHECK(code == 1);
    mp_process_free(&p);
}

static void broken_stdout_exits_1(void **state)
{
    (void)state;
    in_helper(broken_stdout_body, false);
}

/* ---- 6. a child never writes bytes another thread buffered -------------------------------------
 */

static atomic_bool printing_stop;
static atomic_int lines_printed;

static void *printer(void *arg)
{
    (void)arg;
    for (int i = 0; !atomic_load(&printing_stop); i++) {
        printf("line %d of the main program's printer thread\n", i);
        atomic_store(&lines_printed, i + 1);
        if (i % 32 == 31) sched_yield(); /* valgrind runs one thread at a time: let the other in */
    }
    return NULL;
}

static void *starter(void *arg)
{
    int *failures = arg;
    /* 100 starts, or fewer when they are slow (valgrind): at least 10, then up to 3 s. */
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 100; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (i >= 10 && t.tv_sec - t0.tv_sec >= 3) break;
        mp_process *p;
        if (mp_process_new(&p, NULL, t_return0, NULL) || mp_process_start(p)) {
            (*failures)++;
            continue;
        }
        int code = -1;
        if (mp_process_join(p, mp_test_timeout(20)) || mp_process_exitcode(p, &code) || code)
            (*failures)++;
        mp_process_free(&p);
    }
    return NULL;
}

static void no_duplicated_output_body(bool fallback)
{
    (void)fallback;
    char path[] = "/tmp/mproc-dup-XXXXXX";
    int fd = mkstemp(path);
    MP_CHILD_CHECK(fd >= 0);
    unlink(path);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    MP_CHILD_CHECK(dup2(fd, STDOUT_FILENO) == STDOUT_FILENO);
    setvbuf(stdout, NULL, _IOFBF, 4096);
    atomic_store(&printing_stop, false);
    pthread_t tp, ts;
    int failures = 0;
    MP_CHILD_CHECK(pthread_create(&tp, NULL, printer, NULL) == 0);
    MP_CHILD_CHECK(pthread_create(&ts, NULL, starter, &failures) == 0);
    pthread_join(ts, NULL);
    atomic_store(&printing_stop, true);
    pthread_join(tp, NULL);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    MP_CHILD_CHECK(failures == 0);

    /* Every line once, in order, whole. */
    int n = atomic_load(&lines_printed);
    FILE *f = fdopen(fd, "r");
    MP_CHILD_CHECK(f != NULL);
    rewind(f);
    char buf[256];
    int expect = 0, bad = 0;
    while (fgets(buf, sizeof buf, f)) {
        int k = -1;
        char tail[128];
        if (sscanf(buf, "line %d of the main program's printer %127s", &k, tail) != 2 ||
            k != expect) {
            if (bad++ < 3) fprintf(stderr, "line %d: got \"%.60s\"\n", expect, buf);
            if (k >= 0) expect = k;
        }
        expect++;
    }
    fclose(f);
    if (expect != n) fprintf(stderr, "%d lines read, %d printed\n", expect, n);
    MP_CHILD_CHECK(bad == 0);
    MP_CHILD_CHECK(expect == n);
}

static void no_duplicated_output(void **state)
{
    (void)state;
    in_helper(no_duplicated_output_body, false);
}

/* ---- 5. the fallback's own promises ------------------------------------------------------------
 */

static void fallback_contract_body(bool fallback)
{
    (void)fallback;
    MP_CHILD_CHECK(mp__pidfd_fallback());
    /* Only our own fresh children get a handle: never a pid mproc did not fork for this thread. */
    pid_t other = mp_test_fork();
    if (other == 0) {
        pause();
        mp_test_child_exit(0);
    }
    MP_CHILD_CHECK(mp__pidfd_open(other) == -ENOSYS);
    MP_CHILD_CHECK(mp__pidfd_open(getppid()) == -ENOSYS);
    kill(other, SIGKILL);
    MP_CHILD_CHECK(mp_test_wait_code(other, mp_test_timeout(10)) == 128 + SIGKILL);

    /* A handle is a readable-on-end, close-on-exec, internal fd; signals reach the child until it
     * is reaped, never after. */
    mp_process *p;
    MP_CHILD_CHECK(mp_process_new(&p, NULL, t_block, NULL) == 0);
    MP_CHILD_CHECK(mp_process_start(p) == 0);
    int fd = mp_process_sentinel(p);
    MP_CHILD_CHECK(fd >= 0);
    MP_CHILD_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    MP_CHILD_CHECK(mp__fd_is_internal(fd));
    mp__deadline soon = mp__deadline_in(0.05);
    MP_CHILD_CHECK(mp__poll_one(fd, POLLIN, &soon) == 0);
    MP_CHILD_CHECK(mp_process_is_alive(p) == 1);
    MP_CHILD_CHECK(mp_process_signal(p, 0) == 0);
    MP_CHILD_CHECK(mp_process_terminate(p) == 0);
    mp__deadline later = mp__deadline_in(mp_test_timeout(10));
    MP_CHILD_CHECK(mp__poll_one(fd, POLLIN, &later) & POLLIN);
    sleep_s(0.02);
    MP_CHILD_CHECK(mp_process_signal(p, 0) == 0); /* a zombie: still ours */
    MP_CHILD_CHECK(mp_process_join(p, mp_test_timeout(10)) == 0);
    int code = 0;
    MP_CHILD_CHECK(mp_process_exitcode(p, &code) == 0 && code == -SIGTERM);
    MP_CHILD_CHECK(mp_process_kill(p) == MP_EREAPED);
    MP_CHILD_CHECK(mp__pidfd_send_signal(fd, 0) == -ESRCH); /* the table says reaped */
    mp_process_free(&p);
    MP_CHILD_CHECK(!mp__fd_is_internal(fd)); /* released with the object */
}

/* A child that execs closes its death socket early: join still waits for its real end. */
static int t_exec_sleep(void *arg)
{
    (void)arg;
    execl("/bin/sleep", "sleep", "0.3", (char *)NULL);
    return 127;
}

static void fallback_exec_body(bool fallback)
{
    (void)fallback;
    mp_process *p;
    MP_CHILD_CHECK(mp_process_new(&p, NULL, t_exec_sleep, NULL) == 0);
    MP_CHILD_CHECK(mp_process_start(p) == 0);
    sleep_s(0.1); /* exec'd by now: the socket reads as closed */
    MP_CHILD_CHECK(mp_process_is_alive(p) == 1);
    MP_CHILD_CHECK(mp_process_join(p, 0.05) == -ETIMEDOUT);
    MP_CHILD_CHECK(mp_process_join(p, mp_test_timeout(10)) == 0);
    int code = -1;
    MP_CHILD_CHECK(mp_process_exitcode(p, &code) == 0 && code == 0);
    mp_process_free(&p);
}

static void fallback_contract(void **state)
{
    (void)state;
    in_helper(fallback_contract_body, true);
    in_helper(fallback_exec_body, true);
}

/* Through the fallback, a signal sent while another thread reaps reaches the child or nobody:
 * the pid is freed only after every sender in flight is done. Many rounds of a race. */
struct race {
    mp_process *p;
    atomic_int go;
    int bad;
};

static void *sender(void *arg)
{
    struct race *r = arg;
    while (!atomic_load(&r->go)) {
    }
    for (int i = 0; i < 1000; i++) {
        int s = mp_process_signal(r->p, 0);
        if (s != 0 && s != MP_EREAPED) r->bad++;
        if (s == MP_EREAPED) break;
    }
    return NULL;
}

static void fallback_signal_reap_race_body(bool fallback)
{
    (void)fallback;
    for (int round = 0; round < 50; round++) {
        struct race r = {0};
        MP_CHILD_CHECK(mp_process_new(&r.p, NULL, t_return0, NULL) == 0);
        MP_CHILD_CHECK(mp_process_start(r.p) == 0);
        pthread_t t;
        MP_CHILD_CHECK(pthread_create(&t, NULL, sender, &r) == 0);
        atomic_store(&r.go, 1);
        MP_CHILD_CHECK(mp_process_join(r.p, mp_test_timeout(10)) == 0);
        pthread_join(t, NULL);
        MP_CHILD_CHECK(r.bad == 0);
        MP_CHILD_CHECK(mp_process_signal(r.p, 0) == MP_EREAPED);
        mp_process_free(&r.p);
    }
}

static void fallback_signal_reap_race(void **state)
{
    (void)state;
    in_helper(fallback_signal_reap_race_body, true);
}

/* The death socket closes in the child's exit a moment before it becomes a zombie: a caller
 * woken by the sentinel must still find it ended (free succeeds, is_alive says 0). Pinned to one
 * CPU with a busy sibling thread and a SCHED_IDLE child, so that gap is stretched. */
static atomic_bool spin_stop;
static void *spin(void *arg)
{
    (void)arg;
    while (!atomic_load(&spin_stop)) {
    }
    return NULL;
}

/* Ends at the lowest priority: on the CPU the busy thread holds, every step of its exit (the gap
 * between closing its fds and becoming a zombie included) waits a long while for a turn. */
static int t_idle_return(void *arg)
{
    (void)arg;
    struct sched_param none = {0};
    sched_setscheduler(0, SCHED_IDLE, &none);
    return 0;
}

static void sentinel_then_free_body(bool fallback)
{
    (void)fallback;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one);
    atomic_store(&spin_stop, false);
    pthread_t t;
    MP_CHILD_CHECK(pthread_create(&t, NULL, spin, NULL) == 0);
    int busy = 0;
    for (int i = 0; i < 100; i++) {
        mp_process *p;
        MP_CHILD_CHECK(mp_process_new(&p, NULL, t_idle_return, NULL) == 0);
        MP_CHILD_CHECK(mp_process_start(p) == 0);
        mp__deadline dl = mp__deadline_in(mp_test_timeout(10));
        MP_CHILD_CHECK(mp__poll_one(mp_process_sentinel(p), POLLIN, &dl) & POLLIN);
        if (mp_process_is_alive(p) != 0) busy++;
        if (mp_process_free(&p) != 0) {
            busy++;
            MP_CHILD_CHECK(mp_process_join(p, mp_test_timeout(10)) == 0);
            mp_process_free(&p);
        }
    }
    atomic_store(&spin_stop, true);
    pthread_join(t, NULL);
    if (busy) fprintf(stderr, "%d of 100 still running after their sentinel fired\n", busy);
    MP_CHILD_CHECK(busy == 0);
}

static void sentinel_then_free(void **state)
{
    (void)state;
    in_helper(sentinel_then_free_body, false);
    in_helper(sentinel_then_free_body, true);
}

/* ---- a child reaped by someone else before mproc watches it ---------------------------------- */

/* The library's pthread_sigmask calls resolve here (static link). mp__fork restores the parent's
 * mask right after fork and before the pidfd_open; a delay there lets a quick child end and, with
 * SIGCHLD ignored, be reaped by the kernel first: the race of a loaded machine, made certain. */
static atomic_bool delay_after_fork;
static pid_t delaying_pid;
int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    if (atomic_load(&delay_after_fork) && getpid() == delaying_pid && how == SIG_SETMASK) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    long r = syscall(SYS_rt_sigprocmask, how, set, old, (size_t)(_NSIG / 8));
    return r < 0 ? errno : 0;
}

static void reaped_before_watched_body(bool fallback)
{
    (void)fallback;
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigemptyset(&ign.sa_mask);
    MP_CHILD_CHECK(sigaction(SIGCHLD, &ign, NULL) == 0);
    delaying_pid = getpid();
    atomic_store(&delay_after_fork, true);
    mp_process *p;
    MP_CHILD_CHECK(mp_process_new(&p, NULL, t_return0, NULL) == 0);
    int started = mp_process_start(p);
    atomic_store(&delay_after_fork, false);
    if (started != 0) fprintf(stderr, "start: %d (%s)\n", started, mp_err_name(started));
    MP_CHILD_CHECK(started == 0);
    MP_CHILD_CHECK(mp_process_join(p, mp_test_timeout(10)) == 0);
    int code = 77;
    MP_CHILD_CHECK(mp_process_exitcode(p, &code) == -ENODATA && code == 77);
    MP_CHILD_CHECK(mp_process_is_alive(p) == 0);
    MP_CHILD_CHECK(mp_process_kill(p) == MP_EREAPED);
    mp__deadline now = mp__deadline_in(0);
    MP_CHILD_CHECK(mp__poll_one(mp_process_sentinel(p), POLLIN, &now) & POLLIN);
    MP_CHILD_CHECK(mp_process_free(&p) == 0);
}

static void reaped_before_watched(void **state)
{
    (void)state;
    in_helper(reaped_before_watched_body, false);
    in_helper(reaped_before_watched_body, true);
}

/* Exit hooks (process_internal.h; shared.c's cleanup is one): registered once however often it
 * is added, run once when a child's target returns (mp__child_exit) and once when it calls
 * exit() (the atexit path); never in the parent, which did not add it. */
static int hook_fd = -1;

static void hook_write(void)
{
    char c = 'h';
    if (write(hook_fd, &c, 1) != 1) _exit(99);
}

static int t_hook(void *arg)
{
    MP_CHILD_CHECK(mp__exit_hook_add(hook_write) == 0);
    MP_CHILD_CHECK(mp__exit_hook_add(hook_write) == 0); /* already there: nothing */
    MP_CHILD_CHECK(mp__exit_hook_add(NULL) == -EINVAL);
    if (arg) exit(0);
    return 0;
}

static void exit_hooks_run_once(void **state)
{
    (void)state;
    for (int via_exit = 0; via_exit < 2; via_exit++) {
        int fds[2];
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        hook_fd = fds[1];
        mp_process *p = start(t_hook, via_exit ? (void *)1 : NULL, false);
        assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
        int code = -1;
        assert_mp_ok(mp_process_exitcode(p, &code));
        assert_mp_ok(mp_process_free(&p));
        close(fds[1]);
        hook_fd = -1;
        char buf[8];
        ssize_t n = read(fds[0], buf, sizeof buf);
        close(fds[0]);
        assert_int_equal(code, 0);
        assert_int_equal(n, 1);
    }
}

static const struct CMUnitTest tests[] = {
    MP_TEST(fd_count_is_baseline),         MP_TEST(fd_count_is_baseline_fallback),
    MP_TEST(children_of_returning_target), MP_TEST(children_of_returning_target_fallback),
    MP_TEST(daemon_flag_inherited),        MP_TEST(broken_stdout_exits_1),
    MP_TEST(no_duplicated_output),         MP_TEST(fallback_contract),
    MP_TEST(fallback_signal_reap_race),    MP_TEST(reaped_before_watched),
    MP_TEST(sentinel_then_free),           MP_TEST(exit_hooks_run_once),
};
MP_TEST_MAIN(tests)
