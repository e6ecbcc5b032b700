/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_process.c - Process: start, join, exit codes, signals, sentinels, children, bad input. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

#include "mproc/error.h"
#include "mproc/process.h"
#include "mp_test.h"

/* ---- targets (run in children) -------------------------------------------------------------- */

static int t_return(void *arg)
{
    return (int)(intptr_t)arg;
}

static int t_exit(void *arg)
{
    if (arg) exit((int)(intptr_t)arg);
    return 0;
}

/* Blocks until killed. */
static int t_block(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

/* Blocks until a byte arrives on the pipe whose read end is arg. */
static int t_wait_byte(void *arg)
{
    char c;
    return read((int)(intptr_t)arg, &c, 1) == 1 ? 0 : 1;
}

static int t_crash(void *arg)
{
    (void)arg;
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none); /* no core file in the build dir */
    /* A real fault, not undefined behaviour a sanitizer would catch first: a PROT_NONE page. */
    volatile int *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return 1;
#ifdef VALGRIND_DISABLE_ERROR_REPORTING
    VALGRIND_DISABLE_ERROR_REPORTING; /* the fault is the point: not an error to report */
#endif
    *page = 1;
    return 0;
}

static int proc_exists(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", (int)pid);
    struct stat st;
    return stat(path, &st) == 0;
}

static mp_process *start(mp_target_fn fn, void *arg)
{
    mp_process *p = NULL;
    assert_mp_ok(mp_process_new(&p, NULL, fn, arg));
    assert_mp_ok(mp_process_start(p));
    return p;
}

static void join_free(mp_process **pp)
{
    assert_mp_ok(mp_process_join(*pp, mp_test_timeout(10)));
    assert_mp_ok(mp_process_free(pp));
    assert_null(*pp);
}

/* ---- names, pids, start, join --------------------------------------------------------------- */

static void names_default_and_given(void **state)
{
    mp_process *a, *b, *c;
    assert_mp_ok(mp_process_new(&a, NULL, t_return, NULL));
    assert_mp_ok(mp_process_new(&b, NULL, t_return, NULL));
    assert_mp_ok(mp_process_new(&c, "worker", t_return, NULL));
    int na, nb;
    assert_int_equal(sscanf(mp_process_name(a), "Process-%d", &na), 1);
    assert_int_equal(sscanf(mp_process_name(b), "Process-%d", &nb), 1);
    assert_int_equal(nb, na + 1);
    assert_string_equal(mp_process_name(c), "worker");
    mp_process_free(&a);
    mp_process_free(&b);
    mp_process_free(&c);

    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_mp_ok(mp_process_new(&a, longname, t_return, NULL));
    assert_int_equal(strlen(mp_process_name(a)), 63);
    mp_process_free(&a);
}

static int t_report_pid(void *arg)
{
    int fd = (int)(intptr_t)arg;
    pid_t me = getpid();
    return write(fd, &me, sizeof me) == sizeof me ? 0 : 1;
}

static void start_join_pid(void **state)
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    mp_process *p;
    assert_mp_ok(mp_process_new(&p, "pid", t_report_pid, (void *)(intptr_t)fds[1]));
    assert_int_equal(mp_process_pid(p), 0);
    assert_mp_ok(mp_process_start(p));
    assert_true(mp_process_pid(p) > 0);
    pid_t seen = 0;
    assert_int_equal(read(fds[0], &seen, sizeof seen), sizeof seen);
    assert_int_equal(seen, mp_process_pid(p));
    assert_mp_ok(mp_process_join(p, MP_FOREVER));
    assert_mp_ok(mp_process_join(p, MP_FOREVER)); /* joining again is fine */
    assert_int_equal(mp_process_pid(p), seen);    /* still known after the end */
    int code = -1;
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(&p);
    close(fds[0]);
    close(fds[1]);
}

static void join_timeout_expires_child_runs(void **state)
{
    mp_process *p = start(t_block, NULL);
    assert_mp(-ETIMEDOUT, mp_process_join(p, 0.05));
    assert_mp(-ETIMEDOUT, mp_process_join(p, 0));
    assert_int_equal(mp_process_is_alive(p), 1);
    assert_true(proc_exists(mp_process_pid(p)));
    int code;
    assert_mp(-EBUSY, mp_process_exitcode(p, &code));
    assert_mp_ok(mp_process_kill(p));
    join_free(&p);
}

static void join_with_timeout_returns_when_done(void **state)
{
    mp_process *p = start(t_return, (void *)(intptr_t)3);
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    int code;
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, 3);
    mp_process_free(&p);
}

static void is_alive_follows_the_child(void **state)
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    mp_process *p;
    assert_mp_ok(mp_process_new(&p, NULL, t_wait_byte, (void *)(intptr_t)fds[0]));
    assert_int_equal(mp_process_is_alive(p), 0); /* before start */
    assert_mp_ok(mp_process_start(p));
    assert_int_equal(mp_process_is_alive(p), 1);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    assert_int_equal(mp_process_is_alive(p), 0);
    mp_process_free(&p);
    close(fds[0]);
    close(fds[1]);
}

static int is_dead(void *arg)
{
    return mp_process_is_alive(arg) == 0;
}

static void is_alive_reaps_without_join(void **state)
{
    mp_process *p = start(t_return, NULL);
    pid_t pid = mp_process_pid(p);
    assert_true(mp_test_eventually(is_dead, p, mp_test_timeout(10)));
    assert_false(proc_exists(pid)); /* is_alive reaped it */
    mp_process_free(&p);
}

/* ---- exit codes ------------------------------------------------------------------------------ */

static int exitcode_of(mp_target_fn fn, void *arg)
{
    mp_process *p = start(fn, arg);
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    int code = 12345;
    assert_mp_ok(mp_process_exitcode(p, &code));
    mp_process_free(&p);
    return code;
}

static void exitcode_from_return_and_exit(void **state)
{
    assert_int_equal(exitcode_of(t_return, (void *)0), 0);
    assert_int_equal(exitcode_of(t_return, (void *)(intptr_t)42), 42);
    assert_int_equal(exitcode_of(t_return, (void *)(intptr_t)256 + 7), 7); /* masked to 0..255 */
    assert_int_equal(exitcode_of(t_exit, (void *)(intptr_t)5), 5);
}

static void exitcode_from_signals(void **state)
{
    mp_process *p = start(t_block, NULL);
    assert_mp_ok(mp_process_terminate(p));
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    int code;
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, -SIGTERM);
    mp_process_free(&p);

    p = start(t_block, NULL);
    assert_mp_ok(mp_process_kill(p));
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, -SIGKILL);
    mp_process_free(&p);

    p = start(t_block, NULL);
    assert_mp_ok(mp_process_signal(p, SIGUSR1));
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, -SIGUSR1);
    mp_process_free(&p);

    assert_int_equal(exitcode_of(t_crash, NULL), -SIGSEGV);
}

/* ---- sentinels and children ------------------------------------------------------------------ */

static void sentinels_poll_many(void **state)
{
    enum { N = 4 };
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    mp_process *p[N];
    struct pollfd pfd[N];
    for (int i = 0; i < N; i++) {
        p[i] = start(t_wait_byte, (void *)(intptr_t)fds[0]);
        pfd[i].fd = mp_process_sentinel(p[i]);
        pfd[i].events = POLLIN;
        assert_true(pfd[i].fd >= 0);
        assert_true(fcntl(pfd[i].fd, F_GETFD) & FD_CLOEXEC);
    }
    assert_int_equal(poll(pfd, N, 0), 0); /* nobody ended yet */
    /* Release them one by one: each byte ends exactly one child, and polling all sentinels at
     * once sees exactly one more of them readable. Ended ones leave the poll set (negative fd). */
    int ended = 0;
    for (int round = 0; round < N; round++) {
        assert_int_equal(write(fds[1], "x", 1), 1);
        int r = poll(pfd, N, (int)(mp_test_timeout(10) * 1000));
        assert_int_equal(r, 1);
        for (int i = 0; i < N; i++) {
            if (pfd[i].fd >= 0 && (pfd[i].revents & POLLIN)) {
                pfd[i].fd = -1;
                ended++;
            }
        }
        assert_int_equal(ended, round + 1);
    }
    for (int i = 0; i < N; i++)
        join_free(&p[i]);
    close(fds[0]);
    close(fds[1]);
}

static void active_children_reaps_finished(void **state)
{
    mp_process *out[8];
    assert_int_equal(mp_process_active_children(out, 8), 0);
    mp_process *done = start(t_return, NULL);
    mp_process *running = start(t_block, NULL);
    pid_t done_pid = mp_process_pid(done);
    struct pollfd pfd = {.fd = mp_process_sentinel(done), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, (int)(mp_test_timeout(10) * 1000)), 1);
    assert_true(proc_exists(done_pid)); /* a zombie until someone reaps it */
    assert_int_equal(mp_process_active_children(out, 8), 1);
    assert_ptr_equal(out[0], running);
    assert_false(proc_exists(done_pid));                      /* active_children reaped it */
    assert_int_equal(mp_process_active_children(NULL, 0), 1); /* count only */
    int code;
    assert_mp_ok(mp_process_exitcode(done, &code));
    assert_int_equal(code, 0);
    assert_mp_ok(mp_process_kill(running));
    join_free(&running);
    assert_int_equal(mp_process_active_children(out, 8), 0);
    mp_process_free(&done);
}

struct who {
    pid_t parent;
    mp_process *obj;
};

static int t_who(void *arg)
{
    struct who *w = arg;
    mp_process *me = mp_process_current();
    MP_CHILD_CHECK(me == w->obj);
    MP_CHILD_CHECK(mp_process_pid(me) == getpid());
    MP_CHILD_CHECK(strcmp(mp_process_name(me), "who") == 0);
    MP_CHILD_CHECK(mp_process_parent_pid() == w->parent);
    MP_CHILD_CHECK(mp_process_is_alive(me) == 1);
    MP_CHILD_CHECK(mp_process_active_children(NULL, 0) == 0); /* the parent's are not ours */
    return 0;
}

static void current_and_parent(void **state)
{
    mp_process *main_obj = mp_process_current();
    assert_non_null(main_obj);
    assert_string_equal(mp_process_name(main_obj), "MainProcess");
    assert_int_equal(mp_process_pid(main_obj), getpid());
    assert_int_equal(mp_process_parent_pid(), 0);
    assert_int_equal(mp_process_is_alive(main_obj), 1);

    mp_process *other = start(t_block, NULL); /* so the child inherits a registry entry */
    struct who w = {.parent = getpid()};
    assert_mp_ok(mp_process_new(&w.obj, "who", t_who, &w));
    assert_mp_ok(mp_process_start(w.obj));
    assert_mp_ok(mp_process_join(w.obj, mp_test_timeout(10)));
    int code;
    assert_mp_ok(mp_process_exitcode(w.obj, &code));
    assert_int_equal(code, 0);
    mp_process_free(&w.obj);
    mp_process_kill(other);
    join_free(&other);
}

/* ---- the parent as an object ---------------------------------------------------------------- */

static int t_parent_view(void *arg)
{
    const char *want = arg;
    mp_process *p = mp_process_parent();
    MP_CHILD_CHECK(p != NULL);
    MP_CHILD_CHECK(mp_process_parent() == p); /* one per process */
    MP_CHILD_CHECK(strcmp(mp_process_name(p), want) == 0);
    MP_CHILD_CHECK(mp_process_pid(p) == getppid());
    MP_CHILD_CHECK(mp_process_pid(p) == mp_process_parent_pid());
    MP_CHILD_CHECK(mp_process_is_alive(p) == 1);
    MP_CHILD_CHECK(mp_process_is_daemon(p) == 0);
    MP_CHILD_CHECK(mp_process_join(p, 0) == -ETIMEDOUT);
    MP_CHILD_CHECK(mp_process_join(p, -0.5) == -ETIMEDOUT); /* only MP_FOREVER is forever */
    MP_CHILD_CHECK(mp_process_join(p, 0.05) == -ETIMEDOUT);
    int s = mp_process_sentinel(p);
    if (s >= 0) {
        struct pollfd pfd = {s, POLLIN, 0};
        MP_CHILD_CHECK(poll(&pfd, 1, 0) == 0); /* the parent runs */
    } else {
        MP_CHILD_CHECK(s == MP_ENOTSUP); /* without pidfds */
    }
    int code = 5;
    MP_CHILD_CHECK(mp_process_exitcode(p, &code) == MP_ECHILD && code == 5);
    MP_CHILD_CHECK(mp_process_kill(p) == MP_ECHILD);
    MP_CHILD_CHECK(mp_process_terminate(p) == MP_ECHILD);
    mp_process *copy = p;
    MP_CHILD_CHECK(mp_process_free(&copy) == MP_ECHILD && copy == p);
    MP_CHILD_CHECK(mp_process_is_alive(p) == 1); /* still usable */
    return 0;
}

static int t_parent_mid(void *arg)
{
    (void)arg;
    mp_process *g = NULL;
    MP_CHILD_CHECK(mp_process_new(&g, "grandchild", t_parent_view, "mid") == 0);
    MP_CHILD_CHECK(mp_process_start(g) == 0);
    MP_CHILD_CHECK(mp_process_join(g, MP_FOREVER) == 0);
    int code = -1;
    MP_CHILD_CHECK(mp_process_exitcode(g, &code) == 0 && code == 0);
    MP_CHILD_CHECK(mp_process_free(&g) == 0);
    return t_parent_view("MainProcess");
}

/* Python's parent_process(): None in the main process; in a child, an object with the parent's
 * name and pid, alive while it runs, which the child may wait for but not reap or signal. */
static void parent_object(void **state)
{
    assert_null(mp_process_parent());
    mp_process *p = start(t_parent_view, "MainProcess");
    int code = -1;
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(&p);
    assert_mp_ok(mp_process_new(&p, "mid", t_parent_mid, NULL));
    assert_mp_ok(mp_process_start(p));
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(&p);
    assert_null(mp_process_parent());
}

struct orphan_plan {
    int ready[2];  /* B -> A: B checked its living parent */
    int report[2]; /* A -> test: B's pid */
    bool late;     /* B asks for its parent only after the parent ended */
};

/* B: outlives its parent A (PDEATHSIG cleared), and waits for A's end with a timeout. */
static int t_orphan(void *arg)
{
    struct orphan_plan *plan = arg;
    MP_CHILD_CHECK(prctl(PR_SET_PDEATHSIG, 0) == 0);
    pid_t a = getppid();
    mp_process *p = NULL;
    if (!plan->late) {
        p = mp_process_parent();
        MP_CHILD_CHECK(p && mp_process_is_alive(p) == 1);
        MP_CHILD_CHECK(mp_process_join(p, 0.02) == -ETIMEDOUT);
    }
    char c = 'r';
    MP_CHILD_CHECK(write(plan->ready[1], &c, 1) == 1);
    if (plan->late) { /* the parent must be gone before the first call: wait for the orphaning */
        double waited = 0;
        while (getppid() == a && waited < mp_test_timeout(10)) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
            waited += 0.005;
        }
        MP_CHILD_CHECK(getppid() != a);
        p = mp_process_parent();
        MP_CHILD_CHECK(p != NULL);
    }
    MP_CHILD_CHECK(mp_process_join(p, mp_test_timeout(10)) == 0); /* bounded: A ends soon */
    MP_CHILD_CHECK(mp_process_is_alive(p) == 0);
    MP_CHILD_CHECK(mp_process_join(p, 0) == 0);
    MP_CHILD_CHECK(mp_process_pid(p) == a);
    MP_CHILD_CHECK(strcmp(mp_process_name(p), "A") == 0);
    int s = mp_process_sentinel(p);
    if (s >= 0) {
        struct pollfd pfd = {s, POLLIN, 0};
        MP_CHILD_CHECK(poll(&pfd, 1, 0) == 1);
    }
    return 0;
}

/* A: starts B, waits until B has looked at it, and ends at once (_exit: no join of B). */
static int t_orphan_parent(void *arg)
{
    struct orphan_plan *plan = arg;
    mp_process *b = NULL;
    MP_CHILD_CHECK(mp_process_new(&b, "B", t_orphan, plan) == 0);
    MP_CHILD_CHECK(mp_process_start(b) == 0);
    char c;
    MP_CHILD_CHECK(read(plan->ready[0], &c, 1) == 1);
    pid_t pid = mp_process_pid(b);
    MP_CHILD_CHECK(write(plan->report[1], &pid, sizeof pid) == sizeof pid);
    _exit(0);
}

static void child_waits_for_parent_end(bool late)
{
    struct orphan_plan plan = {.late = late};
    assert_int_equal(pipe2(plan.ready, O_CLOEXEC), 0);
    assert_int_equal(pipe2(plan.report, O_CLOEXEC), 0);
    mp_process *a = NULL;
    assert_mp_ok(mp_process_new(&a, "A", t_orphan_parent, &plan));
    assert_mp_ok(mp_process_start(a));
    int ja = mp_process_join(a, mp_test_timeout(10));
    pid_t b = 0;
    struct pollfd pfd = {plan.report[0], POLLIN, 0};
    int got = poll(&pfd, 1, 0) == 1 && read(plan.report[0], &b, sizeof b) == sizeof b;
    /* B was adopted by us (the test is a subreaper): reap it. */
    int code_b = got ? mp_test_wait_code(b, mp_test_timeout(10)) : -1;
    int code_a = -1;
    if (ja == 0) mp_process_exitcode(a, &code_a);
    mp_process_free(&a);
    for (int i = 0; i < 2; i++) {
        close(plan.ready[i]);
        close(plan.report[i]);
    }
    assert_mp_ok(ja);
    assert_int_equal(code_a, 0);
    assert_true(got);
    assert_int_equal(code_b, 0);
}

static void child_waits_for_parent_end_with_timeout(void **state)
{
    child_waits_for_parent_end(false);
}

static void child_asks_after_parent_ended(void **state)
{
    child_waits_for_parent_end(true);
}

static void cpu_count(void **state)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    assert_int_equal(mp_cpu_count(), CPU_COUNT(&set));
    assert_true(mp_cpu_count() >= 1);
}

/* ---- no zombies ------------------------------------------------------------------------------ */

static void no_zombie_after_join(void **state)
{
    mp_process *p = start(t_return, NULL);
    pid_t pid = mp_process_pid(p);
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    assert_false(proc_exists(pid));
    mp_process_free(&p);
}

static void no_zombie_after_free(void **state)
{
    mp_process *p = start(t_return, NULL);
    pid_t pid = mp_process_pid(p);
    struct pollfd pfd = {.fd = mp_process_sentinel(p), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, (int)(mp_test_timeout(10) * 1000)), 1);
    assert_true(proc_exists(pid)); /* ended, not reaped */
    assert_mp_ok(mp_process_free(&p));
    assert_null(p);
    assert_false(proc_exists(pid));
}

static void free_running_is_busy(void **state)
{
    mp_process *p = start(t_block, NULL);
    mp_process *keep = p;
    assert_mp(-EBUSY, mp_process_free(&p));
    assert_ptr_equal(p, keep); /* still valid */
    assert_int_equal(mp_process_is_alive(p), 1);
    assert_mp_ok(mp_process_kill(p));
    join_free(&p);
}

/* ---- bad input ------------------------------------------------------------------------------- */

static void null_arguments(void **state)
{
    mp_process *p = NULL;
    int code;
    assert_mp(-EINVAL, mp_process_new(NULL, "x", t_return, NULL));
    assert_mp(-EINVAL, mp_process_new(&p, "x", NULL, NULL));
    assert_null(p);
    assert_mp(-EINVAL, mp_process_set_daemon(NULL, true));
    assert_int_equal(-EINVAL, mp_process_is_daemon(NULL));
    assert_mp(-EINVAL, mp_process_start(NULL));
    assert_mp(-EINVAL, mp_process_join(NULL, 0));
    assert_mp(-EINVAL, mp_process_is_alive(NULL));
    assert_int_equal(mp_process_pid(NULL), -EINVAL);
    assert_string_equal(mp_process_name(NULL), "");
    assert_mp(-EINVAL, mp_process_exitcode(NULL, &code));
    assert_mp(-EINVAL, mp_process_terminate(NULL));
    assert_mp(-EINVAL, mp_process_kill(NULL));
    assert_mp(-EINVAL, mp_process_signal(NULL, SIGTERM));
    assert_mp(-EINVAL, mp_process_sentinel(NULL));
    assert_mp_ok(mp_process_free(NULL));
    assert_mp_ok(mp_process_free(&p));
    assert_mp(-EINVAL, mp_process_base_init(NULL, "x", NULL));
    assert_mp(-EINVAL, mp_process_base_free(NULL));
    assert_mp(-EINVAL, mp_process_active_children(NULL, 3));
    assert_mp(-EINVAL, mp_process_active_children(&p, -1));
    assert_mp(-EINVAL, mp_process_run_detached(NULL, NULL, NULL));

    assert_mp_ok(mp_process_new(&p, NULL, t_return, NULL));
    assert_mp(-EINVAL, mp_process_exitcode(p, NULL));
    assert_mp(-EINVAL, mp_process_signal(p, -1));
    assert_mp_ok(mp_process_start(p));
    assert_mp(-EINVAL, mp_process_signal(p, 100000));
    join_free(&p);
}

static void start_twice(void **state)
{
    mp_process *p = start(t_return, NULL);
    assert_mp(MP_ESTARTED, mp_process_start(p));
    assert_mp(MP_ESTARTED, mp_process_set_daemon(p, true));
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    assert_mp(MP_ESTARTED, mp_process_start(p)); /* also after it ended */
    mp_process_free(&p);
}

static void calls_before_start(void **state)
{
    mp_process *p;
    int code = 77;
    assert_mp_ok(mp_process_new(&p, NULL, t_return, NULL));
    assert_mp(MP_ENOTSTARTED, mp_process_join(p, 0));
    assert_mp(MP_ENOTSTARTED, mp_process_join(p, MP_FOREVER)); /* must not hang */
    assert_mp(MP_ENOTSTARTED, mp_process_exitcode(p, &code));
    assert_int_equal(code, 77);
    assert_mp(MP_ENOTSTARTED, mp_process_kill(p));
    assert_mp(MP_ENOTSTARTED, mp_process_terminate(p));
    assert_mp(MP_ENOTSTARTED, mp_process_signal(p, SIGTERM));
    assert_mp(MP_ENOTSTARTED, mp_process_sentinel(p));
    assert_int_equal(mp_process_is_alive(p), 0);
    assert_int_equal(mp_process_pid(p), 0);
    assert_mp_ok(mp_process_set_daemon(p, true));
    assert_true(mp_process_is_daemon(p));
    assert_mp_ok(mp_process_free(&p)); /* never started: free is fine */
}

static int t_self_ops(void *arg)
{
    mp_process *self = mp_process_current();
    mp_process *sibling = arg;
    MP_CHILD_CHECK(mp_process_join(self, 0) == MP_ESELF);
    MP_CHILD_CHECK(mp_process_join(self, MP_FOREVER) == MP_ESELF);
    MP_CHILD_CHECK(mp_process_kill(self) == MP_ESELF);
    MP_CHILD_CHECK(mp_process_terminate(self) == MP_ESELF);
    MP_CHILD_CHECK(mp_process_signal(self, 0) == MP_ESELF);
    MP_CHILD_CHECK(mp_process_start(self) == MP_ESELF);
    MP_CHILD_CHECK(mp_process_sentinel(self) == MP_ESELF);
    int code;
    MP_CHILD_CHECK(mp_process_exitcode(self, &code) == -EBUSY);
    mp_process *copy = self;
    MP_CHILD_CHECK(mp_process_free(&copy) == MP_ESELF);
    MP_CHILD_CHECK(copy == self);
    /* A sibling (the parent's child, a copy here) is not ours to join or signal. */
    MP_CHILD_CHECK(mp_process_join(sibling, 0) == MP_ECHILD);
    MP_CHILD_CHECK(mp_process_kill(sibling) == MP_ECHILD);
    MP_CHILD_CHECK(mp_process_is_alive(sibling) == MP_ECHILD);
    MP_CHILD_CHECK(mp_process_sentinel(sibling) == MP_ECHILD);
    /* Freeing the copy releases only memory: the pidfd number it remembers was closed at fork
     * and may name another file now, which must survive. */
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    MP_CHILD_CHECK(fd >= 0);
    MP_CHILD_CHECK(mp_process_free(&sibling) == 0 && sibling == NULL);
    MP_CHILD_CHECK(fcntl(fd, F_GETFD) >= 0);
    return 0;
}

static void join_or_kill_self(void **state)
{
    mp_process *main_obj = mp_process_current();
    assert_mp(MP_ESELF, mp_process_join(main_obj, 0));
    assert_mp(MP_ESELF, mp_process_kill(main_obj));
    assert_mp(MP_ESELF, mp_process_start(main_obj));
    mp_process *copy = main_obj;
    assert_mp(MP_ESELF, mp_process_free(&copy));
    assert_ptr_equal(copy, main_obj);

    mp_process *sibling = start(t_block, NULL);
    mp_process *p = start(t_self_ops, sibling);
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    int code;
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(&p);
    mp_process_kill(sibling);
    join_free(&sibling);
}

static void signal_after_reaping(void **state)
{
    mp_process *p = start(t_return, NULL);
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    assert_mp(MP_EREAPED, mp_process_kill(p));
    assert_mp(MP_EREAPED, mp_process_terminate(p));
    assert_mp(MP_EREAPED, mp_process_signal(p, 0));
    mp_process_free(&p);
}

static void signal_ended_not_reaped(void **state)
{
    mp_process *p = start(t_return, NULL);
    struct pollfd pfd = {.fd = mp_process_sentinel(p), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, (int)(mp_test_timeout(10) * 1000)), 1);
    assert_mp_ok(mp_process_terminate(p)); /* a zombie: nothing happens, no error */
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    int code;
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(&p);
}

static void calls_after_free(void **state)
{
    mp_process *p = start(t_return, NULL);
    join_free(&p);
    int code;
    assert_mp(-EINVAL, mp_process_start(p));
    assert_mp(-EINVAL, mp_process_join(p, 0));
    assert_mp(-EINVAL, mp_process_is_alive(p));
    assert_int_equal(mp_process_pid(p), -EINVAL);
    assert_string_equal(mp_process_name(p), "");
    assert_mp(-EINVAL, mp_process_exitcode(p, &code));
    assert_mp(-EINVAL, mp_process_kill(p));
    assert_mp(-EINVAL, mp_process_terminate(p));
    assert_mp(-EINVAL, mp_process_signal(p, SIGKILL));
    assert_mp(-EINVAL, mp_process_sentinel(p));
    assert_mp(-EINVAL, mp_process_set_daemon(p, false));
    assert_mp_ok(mp_process_free(&p));
}

/* ---- fork discipline ------------------------------------------------------------------------- */

static void on_usr1(int sig)
{
    (void)sig;
}

static int t_check_signals(void *arg)
{
    struct sigaction sa;
    MP_CHILD_CHECK(sigaction(SIGUSR1, NULL, &sa) == 0);
    MP_CHILD_CHECK(sa.sa_handler == SIG_DFL);
    MP_CHILD_CHECK(sigaction(SIGPIPE, NULL, &sa) == 0);
    MP_CHILD_CHECK(sa.sa_handler == SIG_IGN); /* ignored stays ignored, as across exec */
    sigset_t mask;
    MP_CHILD_CHECK(sigprocmask(SIG_SETMASK, NULL, &mask) == 0);
    for (int s = 1; s < NSIG; s++)
        MP_CHILD_CHECK(!sigismember(&mask, s));
    return 0;
}

static void child_signals_reset(void **state)
{
    struct sigaction sa = {.sa_handler = on_usr1}, old_usr1, old_pipe;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old_usr1), 0);
    struct sigaction ign = {.sa_handler = SIG_IGN};
    assert_int_equal(sigaction(SIGPIPE, &ign, &old_pipe), 0);
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigaddset(&block, SIGTERM);
    assert_int_equal(sigprocmask(SIG_BLOCK, &block, &old_mask), 0);

    mp_process *p = start(t_check_signals, NULL);
    assert_mp_ok(mp_process_join(p, mp_test_timeout(10)));
    int code;
    assert_mp_ok(mp_process_exitcode(p, &code));
    mp_process_free(&p);

    /* The parent's own mask and handler are untouched by start. */
    sigset_t now;
    sigprocmask(SIG_SETMASK, NULL, &now);
    int usr2_blocked = sigismember(&now, SIGUSR2);
    struct sigaction cur;
    sigaction(SIGUSR1, NULL, &cur);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    assert_int_equal(code, 0);
    assert_true(usr2_blocked);
    assert_ptr_equal(cur.sa_handler, on_usr1);
}

/* Every pipe the library makes is recorded by this interposer (the test links mproc statically,
 * so the library's pipe2 calls resolve here). */
static int pipe_calls, pipe_cloexec_ok;
int pipe2(int fds[2], int flags)
{
    if (syscall(SYS_pipe2, fds, flags) < 0) return -1;
    pipe_calls++;
    if ((fcntl(fds[0], F_GETFD) & FD_CLOEXEC) && (fcntl(fds[1], F_GETFD) & FD_CLOEXEC))
        pipe_cloexec_ok++;
    return 0;
}

static void fds_are_cloexec(void **state)
{
    mp_process *p = start(t_block, NULL);
    int fd = mp_process_sentinel(p);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    mp_process_kill(p);
    join_free(&p);

    pipe_calls = pipe_cloexec_ok = 0;
    pid_t pid = 0;
    assert_mp_ok(mp_process_run_detached(t_return, NULL, &pid));
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(10)), 0);
    assert_true(pipe_calls >= 1);
    assert_int_equal(pipe_cloexec_ok, pipe_calls);
}

/* ---- someone else reaps; signals during waits --------------------------------------------- */

static void tolerates_echild(void **state)
{
    /* With SIGCHLD ignored the kernel reaps children itself: join still ends, the code is lost. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ign.sa_mask);
    assert_int_equal(sigaction(SIGCHLD, &ign, &old), 0);
    mp_process *a = start(t_return, (void *)(intptr_t)3);
    int ja = mp_process_join(a, MP_FOREVER);
    mp_process *b = start(t_return, (void *)(intptr_t)3);
    int jb = mp_process_join(b, mp_test_timeout(10));
    sigaction(SIGCHLD, &old, NULL);
    int code = 77;
    assert_mp_ok(ja);
    assert_mp_ok(jb);
    assert_mp(-ENODATA, mp_process_exitcode(a, &code));
    assert_mp(-ENODATA, mp_process_exitcode(b, &code));
    assert_int_equal(code, 77);
    assert_mp(MP_EREAPED, mp_process_kill(a));
    mp_process_free(&a);
    mp_process_free(&b);

    /* Reaped behind mproc's back by its pid: join returns, exitcode says unknown. */
    mp_process *c = start(t_return, (void *)(intptr_t)4);
    assert_int_equal(mp_test_wait_code(mp_process_pid(c), mp_test_timeout(10)), 4);
    assert_mp_ok(mp_process_join(c, mp_test_timeout(10)));
    assert_mp(-ENODATA, mp_process_exitcode(c, &code));
    mp_process_free(&c);
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

/* Joins keep their deadline while signals keep interrupting them (no SA_RESTART). */
static void join_survives_signals(void **state)
{
    struct sigaction sa = {.sa_handler = on_alarm}, old;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
    struct itimerval every_ms = {{0, 1000}, {0, 1000}}, off = {{0, 0}, {0, 0}};
    alarms = 0;
    setitimer(ITIMER_REAL, &every_ms, NULL);

    mp_process *blocked = start(t_block, NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int timed = mp_process_join(blocked, 0.2);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    mp_process_kill(blocked);
    int killed = mp_process_join(blocked, MP_FOREVER); /* blocking waitid under the storm */
    mp_process *quick = start(t_return, (void *)(intptr_t)9);
    int forever = mp_process_join(quick, MP_FOREVER);

    /* Stop the storm with SIGALRM blocked and drop one still pending before the old disposition
     * comes back: valgrind delivers a queued signal late, which would kill us under SIG_DFL. */
    sigset_t alrm, prev;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alrm, &prev);
    setitimer(ITIMER_REAL, &off, NULL);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&alrm, NULL, &zero) == SIGALRM) {
    }
    sigaction(SIGALRM, &old, NULL);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_mp(-ETIMEDOUT, timed);
    assert_true(waited >= 0.2); /* a lower bound: signals did not cut the wait short */
    assert_true(alarms > 0);
    assert_mp_ok(killed);
    assert_mp_ok(forever);
    int code;
    assert_mp_ok(mp_process_exitcode(quick, &code));
    assert_int_equal(code, 9);
    mp_process_free(&blocked);
    mp_process_free(&quick);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(names_default_and_given),
    MP_TEST(start_join_pid),
    MP_TEST(join_timeout_expires_child_runs),
    MP_TEST(join_with_timeout_returns_when_done),
    MP_TEST(is_alive_follows_the_child),
    MP_TEST(is_alive_reaps_without_join),
    MP_TEST(exitcode_from_return_and_exit),
    MP_TEST(exitcode_from_signals),
    MP_TEST(sentinels_poll_many),
    MP_TEST(active_children_reaps_finished),
    MP_TEST(current_and_parent),
    MP_TEST(parent_object),
    MP_TEST(child_waits_for_parent_end_with_timeout),
    MP_TEST(child_asks_after_parent_ended),
    MP_TEST(cpu_count),
    MP_TEST(no_zombie_after_join),
    MP_TEST(no_zombie_after_free),
    MP_TEST(free_running_is_busy),
    MP_TEST(null_arguments),
    MP_TEST(start_twice),
    MP_TEST(calls_before_start),
    MP_TEST(join_or_kill_self),
    MP_TEST(signal_after_reaping),
    MP_TEST(signal_ended_not_reaped),
    MP_TEST(calls_after_free),
    MP_TEST(child_signals_reset),
    MP_TEST(fds_are_cloexec),
    MP_TEST(tolerates_echild),
    MP_TEST(join_survives_signals),
};
MP_TEST_MAIN(tests)
