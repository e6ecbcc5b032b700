/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=180 labels=slow */
/* test_start_forkserver.c - the forkserver's life (issue 12): one server serves every start and
 * mp_forkserver_pid() names it; SIGKILLed while the program runs, the next start restarts it
 * transparently (the design chosen: no error, never a hang), mp_forkserver_pid() changes, the
 * children of the killed server die with it and their exit code reads -ENODATA; the program's
 * normal exit leaves no forkserver; SIGKILL of the program leaves none behind 1 s later; starts
 * from two threads at once are all served.
 *
 * As in test_start_process.c, each case runs in a forked "program child", which ends with
 * exit(); whatever of it is still alive 1 s later counts as left running. A start that could
 * hang runs under alarm(): a hang ends the program child with SIGALRM (exit 142). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "mproc/start.h"
#include "mp_test.h"
#include "start_util.h"

/* ---- targets --------------------------------------------------------------------------------- */

MP_FUNC_REGISTER("sf_ret", start_task_ret)
MP_FUNC_REGISTER("sf_block", start_task_block)
MP_FUNC_REGISTER("sf_sleep_ret", start_task_sleep_ret)

static unsigned alarm_s(double base)
{
    return (unsigned)(mp_test_timeout(base) + 0.5);
}

/* The pid's state: 0 when it no longer exists, else its /proc state letter ('Z' for a zombie
 * nobody reaped). */
static char pid_state(pid_t pid)
{
    if (!mp_test_pid_exists(pid)) return 0;
    char s = mp_test_proc_state(pid);
    return s ? s : '?';
}

static pid_t ppid_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int pp = 0;
    char st;
    /* pid (comm) state ppid: comm may hold spaces but not ") " in our binaries */
    if (fscanf(f, "%*d (%*[^)]) %c %d", &st, &pp) != 2) pp = 0;
    fclose(f);
    return pp;
}

/* Waits up to timeout_s for pid to be gone; returns its last state. A zombie whose parent is
 * not the calling program counts as gone: an orphan of a killed server is adopted by the nearest
 * subreaper (the test process here, init in a real program), which reaps it. */
static char wait_gone(pid_t pid, double timeout_s)
{
    double end = now_s() + timeout_s;
    char s;
    while ((s = pid_state(pid)) != 0 && now_s() < end) {
        if (s == 'Z' && ppid_of(pid) != getpid()) return 0;
        sleep_s(0.01);
    }
    if (s == 'Z' && ppid_of(pid) != getpid()) return 0;
    return s;
}

static void run_one(prog_fn fn, void *ctx, double timeout_s)
{
    int strays;
    char what[256];
    int code = run_prog(fn, MP_START_FORKSERVER, ctx, timeout_s, &strays, what, sizeof what);
    if (code != 0 || strays != 0)
        fail_msg("program child: exit %d%s%s, %d left running:%s", code,
                 code == 128 + SIGALRM ? " (a start or join hung: SIGALRM)" : "",
                 code == -1 ? " (timed out)" : "", strays, what);
}

/* ---- one server, its pid ------------------------------------------------------------------- */

static int prog_pid(mp_start_method m, void *ctx)
{
    (void)m;
    (void)ctx;
    CK_EQ(0, mp_forkserver_pid());
    int v = 0;
    CK_EQ(0, run_named(MP_START_FORK, "sf_ret", &v, sizeof v));
    CK_EQ(0, run_named(MP_START_SPAWN, "sf_ret", &v, sizeof v));
    CK_EQ(0, mp_forkserver_pid()); /* only a forkserver start starts it */
    alarm(alarm_s(30));
    CK_EQ(0, run_named(MP_START_FORKSERVER, "sf_ret", &v, sizeof v));
    pid_t fs = mp_forkserver_pid();
    CK(fs > 0);
    CK(fs != getpid());
    for (int i = 0; i < 10; i++) {
        v = i + 1;
        mp_process *p = start_named(MP_START_FORKSERVER, NULL, "sf_ret", &v, sizeof v, false);
        CK(mp_process_pid(p) != fs);
        CK_EQ(i + 1, finish(&p));
        CK_EQ(fs, mp_forkserver_pid()); /* the same server serves every start */
    }
    alarm(0);
    char st = pid_state(fs);
    CK(st == 'S' || st == 'R'); /* alive, waiting for requests */
    return 0;
}

static void one_server_serves_every_start(void **state)
{
    (void)state;
    run_one(prog_pid, NULL, 60);
}

/* ---- the server SIGKILLed while the program runs --------------------------------------------- */

static int prog_killed(mp_start_method m, void *ctx)
{
    (void)m;
    (void)ctx;
    int v = 0;
    alarm(alarm_s(60));
    CK_EQ(0, run_named(MP_START_FORKSERVER, "sf_ret", &v, sizeof v));
    for (int round = 0; round < 3; round++) {
        pid_t fs = mp_forkserver_pid();
        CK(fs > 0);
        /* A child of the server that runs when the server is killed. */
        mp_process *a = start_named(MP_START_FORKSERVER, "orphaned", "sf_block", NULL, 0, false);
        pid_t apid = mp_process_pid(a);
        CK_EQ(1, mp_process_is_alive(a));
        CK_EQ(0, kill(fs, SIGKILL));
        /* The server's children die with it: the join returns, the exit code is lost. */
        int r = mp_process_join(a, mp_test_timeout(10));
        if (r != 0)
            fprintf(stderr, "[forkserver] child %d of the killed server: join %d (%s), state %c\n",
                    (int)apid, r, mp_err_name(r), pid_state(apid));
        CK_EQ(0, r);
        CK_EQ(0, mp_process_is_alive(a));
        int code = 12345;
        CK_EQ(-ENODATA, mp_process_exitcode(a, &code));
        CK_EQ(12345, code);
        CK_EQ(0, mp_process_free(&a));
        char s = wait_gone(apid, mp_test_timeout(1.0));
        if (s)
            fprintf(stderr, "[forkserver] child %d of the killed server: state %c\n", (int)apid, s);
        CK_EQ(0, s);
        /* The next start restarts the server transparently. */
        v = 40 + round;
        mp_process *p = NULL;
        CK_EQ(0, mp_process_new_func(&p, NULL, "sf_ret", &v, sizeof v));
        CK_EQ(0, mp_process_set_start_method(p, MP_START_FORKSERVER));
        double t0 = now_s();
        r = mp_process_start(p);
        if (r != 0)
            fprintf(stderr, "[forkserver] start after the kill: %d (%s) after %.2f s: \"%s\"\n", r,
                    mp_err_name(r), now_s() - t0, mp_last_error());
        CK_EQ(0, r);
        CK_EQ(40 + round, finish(&p));
        pid_t fs2 = mp_forkserver_pid();
        CK(fs2 > 0);
        CK(fs2 != fs);
        /* The killed server was reaped (no zombie kept by the program). */
        s = wait_gone(fs, mp_test_timeout(1.0));
        if (s) fprintf(stderr, "[forkserver] killed server %d: state %c\n", (int)fs, s);
        CK_EQ(0, s);
    }
    /* A kill while idle, then a start right away, several times in a row. */
    for (int i = 0; i < 3; i++) {
        CK_EQ(0, kill(mp_forkserver_pid(), SIGKILL));
        v = i;
        CK_EQ(i, run_named(MP_START_FORKSERVER, "sf_ret", &v, sizeof v));
    }
    alarm(0);
    return 0;
}

static void killed_server_is_restarted(void **state)
{
    (void)state;
    run_one(prog_killed, NULL, 90);
}

/* ---- mp_forkserver_stop ------------------------------------------------------------------------
 */

static int prog_stop(mp_start_method m, void *ctx)
{
    (void)m;
    (void)ctx;
    CK_EQ(0, mp_forkserver_stop()); /* none runs: 0 */
    alarm(alarm_s(30));
    int v = 0;
    CK_EQ(0, run_named(MP_START_FORKSERVER, "sf_ret", &v, sizeof v));
    pid_t fs = mp_forkserver_pid();
    CK(fs > 0);
    mp_process *a = start_named(MP_START_FORKSERVER, "running", "sf_block", NULL, 0, false);
    pid_t apid = mp_process_pid(a);
    CK_EQ(0, mp_forkserver_stop());
    CK_EQ(0, mp_forkserver_pid());
    /* The server was reaped before stop returned; its running child was killed. */
    char s = pid_state(fs);
    if (s) fprintf(stderr, "[forkserver] stopped server %d: state %c\n", (int)fs, s);
    CK_EQ(0, s);
    CK_EQ(0, mp_process_join(a, mp_test_timeout(10)));
    int code = 12345;
    int r = mp_process_exitcode(a, &code);
    CK(r == -ENODATA || (r == 0 && code == -SIGKILL));
    CK_EQ(0, mp_process_free(&a));
    CK_EQ(0, wait_gone(apid, mp_test_timeout(1.0)));
    /* The next forkserver start starts a new server. */
    v = 6;
    CK_EQ(6, run_named(MP_START_FORKSERVER, "sf_ret", &v, sizeof v));
    CK(mp_forkserver_pid() > 0);
    CK(mp_forkserver_pid() != fs);
    alarm(0);
    return 0;
}

static void forkserver_stop(void **state)
{
    (void)state;
    run_one(prog_stop, NULL, 60);
}

/* ---- the program's exit leaves no server ------------------------------------------------------
 */

static int g_report_fd = -1;

static int prog_exit(mp_start_method m, void *ctx)
{
    (void)m;
    int how = *(int *)ctx;
    int v = 0;
    alarm(alarm_s(30));
    CK_EQ(0, run_named(MP_START_FORKSERVER, "sf_ret", &v, sizeof v));
    pid_t pids[2] = {mp_forkserver_pid(), 0};
    if (how >= 1) {
        /* A daemon still running at exit (terminated by the exit). */
        mp_process *d = start_named(MP_START_FORKSERVER, "d", "sf_block", NULL, 0, true);
        pids[1] = mp_process_pid(d);
    }
    if (how == 2) {
        /* A plain child still running at exit (joined by the exit). */
        v = 3;
        (void)start_named(MP_START_FORKSERVER, "p", "sf_sleep_ret", &v, sizeof v, false);
    }
    CK(write(g_report_fd, pids, sizeof pids) == sizeof pids);
    alarm(0);
    return 0;
}

static void program_exit_leaves_no_server(void **state)
{
    (void)state;
    for (int how = 0; how < 3; how++) {
        int fds[2];
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        g_report_fd = fds[1];
        int strays;
        char what[256];
        int code = run_prog(prog_exit, MP_START_FORKSERVER, &how, 30, &strays, what, sizeof what);
        close(fds[1]);
        pid_t pids[2] = {0, 0};
        ssize_t n = read(fds[0], pids, sizeof pids);
        close(fds[0]);
        /* run_prog waited up to 1 s for its descendants and reaped them. */
        char s0 = pids[0] > 0 ? pid_state(pids[0]) : 0;
        char s1 = pids[1] > 0 ? pid_state(pids[1]) : 0;
        if (code != 0 || strays != 0 || n != (ssize_t)sizeof pids || pids[0] <= 0 || s0 || s1)
            fail_msg("variant %d: exit %d%s, %d left running:%s; server %d (state %c), daemon %d "
                     "(state %c)",
                     how, code, code == 128 + SIGALRM ? " (hung)" : "", strays, what, (int)pids[0],
                     s0 ? s0 : '-', (int)pids[1], s1 ? s1 : '-');
    }
}

/* ---- the program SIGKILLed leaves none ------------------------------------------------------ */

static void program_sigkilled_leaves_no_server(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    pid_t prog = mp_test_fork();
    assert_true(prog >= 0);
    if (prog == 0) {
        close(fds[0]);
        g_method = "forkserver";
        mp_process *a = start_named(MP_START_FORKSERVER, "a", "sf_block", NULL, 0, false);
        mp_process *b = start_named(MP_START_FORKSERVER, "b", "sf_block", NULL, 0, true);
        pid_t pids[3] = {mp_forkserver_pid(), mp_process_pid(a), mp_process_pid(b)};
        CK(write(fds[1], pids, sizeof pids) == sizeof pids);
        for (;;)
            pause();
    }
    close(fds[1]);
    pid_t pids[3] = {0, 0, 0};
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    ssize_t n = -1;
    if (poll(&pfd, 1, (int)(mp_test_timeout(30) * 1000)) == 1) n = read(fds[0], pids, sizeof pids);
    close(fds[0]);
    kill(prog, SIGKILL);
    int pcode = mp_test_wait_code(prog, mp_test_timeout(10));
    sleep_s(mp_test_timeout(1.0));
    char what[256];
    int left = strays_settle(0, what, sizeof what);
    if (n != (ssize_t)sizeof pids || pids[0] <= 0 || pcode != 128 + SIGKILL || left)
        fail_msg("program reported %zd bytes (server %d, children %d %d), ended %d; 1 s after "
                 "its SIGKILL %d still alive:%s",
                 n, (int)pids[0], (int)pids[1], (int)pids[2], pcode, left, what);
}

/* ---- starts from two threads at once --------------------------------------------------------- */

struct thr {
    int base, bad;
};

static void *starter(void *arg)
{
    struct thr *t = arg;
    for (int i = 0; i < 20; i++) {
        int v = t->base + i;
        mp_process *p = NULL;
        if (mp_process_new_func(&p, NULL, "sf_ret", &v, sizeof v) != 0 ||
            mp_process_set_start_method(p, MP_START_FORKSERVER) != 0 || mp_process_start(p) != 0) {
            fprintf(stderr, "[forkserver] thread start %d failed: \"%s\"\n", i, mp_last_error());
            t->bad++;
            mp_process_free(&p);
            continue;
        }
        int code = -1;
        if (mp_process_join(p, mp_test_timeout(20)) != 0) {
            mp_process_kill(p);
            mp_process_join(p, mp_test_timeout(10));
            t->bad++;
        } else if (mp_process_exitcode(p, &code) != 0 || code != v) {
            t->bad++;
        }
        mp_process_free(&p);
    }
    return NULL;
}

static int prog_threads(mp_start_method m, void *ctx)
{
    (void)m;
    (void)ctx;
    alarm(alarm_s(90));
    struct thr t[2] = {{10, 0}, {100, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CK_EQ(0, pthread_create(&th[i], NULL, starter, &t[i]));
    for (int i = 0; i < 2; i++)
        CK_EQ(0, pthread_join(th[i], NULL));
    alarm(0);
    CK_EQ(0, t[0].bad);
    CK_EQ(0, t[1].bad);
    return 0;
}

static void starts_from_two_threads(void **state)
{
    (void)state;
    run_one(prog_threads, NULL, 120);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(one_server_serves_every_start),
    MP_TEST(killed_server_is_restarted),
    MP_TEST(forkserver_stop),
    MP_TEST(program_exit_leaves_no_server),
    MP_TEST(program_sigkilled_leaves_no_server),
    MP_TEST(starts_from_two_threads),
};

MP_TEST_MAIN_INIT(tests)
