/* SPDX-License-Identifier: MIT */
/* start_util.h - what the start-method tests (test_start_*.c) share: the "program child".
 *
 * Each case runs its per-method work in a forked child that stands for a whole program: the
 * forkserver and every grandchild belong to it, so the leak guard of the case sees exactly what
 * that program left behind. The program child ends with exit() (mproc's atexit handlers run:
 * daemons terminated, forkserver stopped); whatever is still alive 1 s later comes back to the
 * test process (a subreaper) and is counted as left running. Children report through their exit
 * status: CK/CK_EQ print the method, the values and mp_last_error(), then exit 99; CK_SOFT goes
 * on and makes the program child end with 97.
 *
 * Include it once per test program (it defines static state). */
#ifndef MP_TEST_START_UTIL_H
#define MP_TEST_START_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
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

static const mp_start_method methods[] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};
#define NMETHODS ((int)(sizeof methods / sizeof methods[0]))
static const char *g_method = "-";

#define CK(cond)                                                                                   \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: [%s] check failed: %s (last error: \"%s\")\n", __FILE__,       \
                    __LINE__, g_method, #cond, mp_last_error());                                   \
            mp_test_child_exit(99);                                                                \
        }                                                                                          \
    } while (0)

#define CK_EQ(want, call)                                                                          \
    do {                                                                                           \
        long ck_got_ = (long)(call);                                                               \
        long ck_want_ = (long)(want);                                                              \
        if (ck_got_ != ck_want_) {                                                                 \
            fprintf(stderr, "%s:%d: [%s] %s = %ld (%s), want %ld (%s); last error: \"%s\"\n",      \
                    __FILE__, __LINE__, g_method, #call, ck_got_, mp_err_name((int)ck_got_),       \
                    ck_want_, mp_err_name((int)ck_want_), mp_last_error());                        \
            mp_test_child_exit(99);                                                                \
        }                                                                                          \
    } while (0)

/* A check whose failure does not stop the program child: it is reported, the child goes on and
 * ends with exit code 97 (so one run lists every such failure). */
static int g_soft_failed;
#define CK_SOFT(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: [%s] check failed (going on): %s (last error: \"%s\")\n",      \
                    __FILE__, __LINE__, g_method, #cond, mp_last_error());                         \
            g_soft_failed = 1;                                                                     \
        }                                                                                          \
    } while (0)

static inline void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The children of the test process now (all threads' children files), up to max. */
static inline int list_children(pid_t *out, int max)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        if (e->d_name[0] == '.') continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        int pid;
        while (n < max && fscanf(f, "%d", &pid) == 1)
            out[n++] = pid;
        fclose(f);
    }
    closedir(d);
    return n;
}

/* Called when the case has no child of its own left: every child of the test process is an
 * orphan of a program child. Waits up to grace_s for all of them to end, reaping them; kills and
 * reaps those still alive then, describes them in what, and returns how many they were. */
static inline int strays_settle(double grace_s, char *what, size_t cap)
{
    double end = now_s() + grace_s;
    if (what && cap) what[0] = 0;
    for (;;) {
        pid_t kids[256];
        int n = list_children(kids, 256);
        int alive = 0;
        for (int i = 0; i < n; i++) {
            int st;
            if (waitpid(kids[i], &st, WNOHANG) != kids[i]) alive++;
        }
        if (alive == 0) return 0;
        if (now_s() >= end) {
            n = list_children(kids, 256);
            int left = 0;
            size_t off = 0;
            for (int i = 0; i < n; i++) {
                char comm[64] = "?";
                char path[64];
                snprintf(path, sizeof path, "/proc/%d/comm", (int)kids[i]);
                FILE *f = fopen(path, "r");
                if (f) {
                    if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
                    fclose(f);
                }
                if (what && off < cap)
                    off += (size_t)snprintf(what + off, cap - off, " %d(%s,%c)", (int)kids[i], comm,
                                            mp_test_proc_state(kids[i]));
                kill(kids[i], SIGKILL);
                waitpid(kids[i], NULL, 0);
                left++;
            }
            return left;
        }
        sleep_s(0.01);
    }
}

typedef int (*prog_fn)(mp_start_method m, void *ctx);

/* Runs fn(m, ctx) in a program child; returns its exit code (-1: timed out and killed) and, in
 * *strays, how many of its descendants were still alive 1 s after it ended. */
static inline int run_prog(prog_fn fn, mp_start_method m, void *ctx, double timeout_s, int *strays,
                           char *what, size_t cap)
{
    pid_t pid = mp_test_fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        g_method = mp_start_method_name(m);
        int rc = fn(m, ctx);
        if (rc == 0 && g_soft_failed) rc = 97;
        fflush(NULL);
        exit(rc); /* a normal exit: mproc's atexit handlers run */
    }
    int code = mp_test_wait_code(pid, mp_test_timeout(timeout_s));
    *strays = strays_settle(mp_test_timeout(1.0), what, cap);
    return code;
}

/* Runs fn under each method; fails the case naming every method whose program child failed. */
static inline void run_all(prog_fn fn, void *ctx, double timeout_s)
{
    char msg[1024] = "";
    size_t off = 0;
    int bad = 0;
    for (int i = 0; i < NMETHODS; i++) {
        int strays;
        char what[256];
        int code = run_prog(fn, methods[i], ctx, timeout_s, &strays, what, sizeof what);
        if (code != 0 || strays != 0) {
            bad++;
            off +=
                (size_t)snprintf(msg + off, sizeof msg - off, "[%s: exit %d%s, %d left running%s] ",
                                 mp_start_method_name(methods[i]), code,
                                 code == -1 ? " (timed out)" : "", strays, what);
        }
    }
    if (bad) fail_msg("%s", msg);
}

/* Starts a named target under m; returns the object. */
static inline mp_process *start_named(mp_start_method m, const char *name, const char *func,
                                      const void *arg, size_t len, bool daemon)
{
    mp_process *p = NULL;
    CK_EQ(0, mp_process_new_func(&p, name, func, arg, len));
    CK_EQ(0, mp_process_set_start_method(p, m));
    CK_EQ(m, mp_process_start_method(p));
    if (daemon) CK_EQ(0, mp_process_set_daemon(p, true));
    CK_EQ(0, mp_process_start(p));
    CK(mp_process_pid(p) > 0);
    return p;
}

/* Joins within 20 s (scaled) and returns the exit code; frees p. */
static inline int finish(mp_process **pp)
{
    int code = -12345;
    int r = mp_process_join(*pp, mp_test_timeout(20));
    if (r == -ETIMEDOUT) {
        fprintf(stderr, "[%s] child %d did not end within 20 s\n", g_method,
                (int)mp_process_pid(*pp));
        mp_process_kill(*pp);
        mp_process_join(*pp, mp_test_timeout(10));
    }
    CK_EQ(0, r);
    CK_EQ(0, mp_process_exitcode(*pp, &code));
    CK_EQ(0, mp_process_free(pp));
    return code;
}

static inline int run_named(mp_start_method m, const char *func, const void *arg, size_t len)
{
    mp_process *p = start_named(m, NULL, func, arg, len, false);
    return finish(&p);
}

/* Forks and re-executes the test program (named argv0) with its stderr on a pipe, after applying
 * env in the child: "NAME=value" sets NAME, "NAME" unsets it (NULL-terminated). Returns the pid;
 * *rd is the pipe's read end (the parent's write end is closed). */
static inline pid_t exec_self_stderr(const char *argv0, const char *const *env, int *rd)
{
    int err[2];
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    const char *exe = mp_test_self_exe();
    pid_t pid = mp_test_fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(err[1], 2);
        for (int i = 0; env[i]; i++) {
            char name[128];
            const char *eq = strchr(env[i], '=');
            size_t n = eq ? (size_t)(eq - env[i]) : strlen(env[i]);
            if (n >= sizeof name) _exit(126);
            memcpy(name, env[i], n);
            name[n] = 0;
            if (eq)
                setenv(name, eq + 1, 1);
            else
                unsetenv(name);
        }
        char *argv[] = {(char *)argv0, NULL};
        execv(exe, argv);
        _exit(127);
    }
    close(err[1]);
    *rd = err[0];
    return pid;
}

/* ---- targets several start tests register, each under its own name -------------------------- */

/* The int argument of a target, or -999 when the argument is not an int. */
static inline int get_int(const void *arg, size_t len)
{
    int v = -999;
    if (len == sizeof v) memcpy(&v, arg, sizeof v);
    return v;
}

/* Ends with the int argument as the exit code. */
static inline int start_task_ret(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    return get_int(arg, len);
}

/* Never ends by itself. */
static inline int start_task_block(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    (void)res;
    for (;;)
        pause();
    return 0;
}

/* Sleeps 0.3 s, then ends with the int argument as the exit code. */
static inline int start_task_sleep_ret(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    sleep_s(0.3);
    return get_int(arg, len);
}

#endif
