/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=180 */
/* test_start_bad.c - bad input to the start methods (issue 12), each a clear error with nothing
 * left running: an unknown method name (parse -> -EINVAL; MPROC_START_METHOD=bogus -> a warning
 * and fork), an unknown target name (MP_ENOFUNC at new), spawn and forkserver from a program
 * without mp_init() (tests/helpers/start_noinit.c: MP_ENOTSUP naming mp_init, main never runs
 * twice), an argument above MP_PROCESS_ARG_MAX (MP_ETOOBIG; exactly the maximum works), more than
 * MP_PROCESS_PASS_MAX objects (-ENOSPC; exactly the maximum works).
 *
 * As in test_start_process.c, per-method work runs in a forked "program child" ending with
 * exit(); whatever of it is still alive 1 s later counts as left running. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
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
#include "mproc/sync.h"
#include "mp_test.h"

/* ---- the program child and its checks ------------------------------------------------------ */

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

/* The path /proc/self/exe names (under valgrind the link names the tool's binary, which an exec
 * cannot run), or the link itself when it cannot be read. */
static const char *self_exe(void)
{
    static char exe[4096];
    if (!exe[0]) {
        ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (k <= 0 || (size_t)k >= sizeof exe - 1)
            strcpy(exe, "/proc/self/exe");
        else
            exe[k] = 0;
    }
    return exe;
}

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

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The children of the test process now (all threads' children files), up to max. */
static int list_children(pid_t *out, int max)
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
static int strays_settle(double grace_s, char *what, size_t cap)
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
static int run_prog(prog_fn fn, mp_start_method m, void *ctx, double timeout_s, int *strays,
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
static void run_all(prog_fn fn, void *ctx, double timeout_s)
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
static mp_process *start_named(mp_start_method m, const char *name, const char *func,
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
static int finish(mp_process **pp)
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

static int run_named(mp_start_method m, const char *func, const void *arg, size_t len)
{
    mp_process *p = start_named(m, NULL, func, arg, len, false);
    return finish(&p);
}

/* Reads everything from fd until EOF or timeout_s; returns a malloc'd NUL-terminated string. */
static char *slurp(int fd, double timeout_s)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    double end = now_s() + timeout_s;
    for (;;) {
        double left = end - now_s();
        if (left <= 0) break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (len + 1024 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
    }
    buf[len] = 0;
    return buf;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ---- method names -----------------------------------------------------------------------------
 */

static void method_names(void **state)
{
    (void)state;
    mp_start_method m = (mp_start_method)77;
    assert_mp(-EINVAL, mp_start_method_parse("bogus", &m));
    assert_int_equal(m, 77); /* untouched */
    assert_mp(-EINVAL, mp_start_method_parse("", &m));
    assert_mp(-EINVAL, mp_start_method_parse(NULL, &m));
    assert_mp(-EINVAL, mp_start_method_parse("default", &m));
    assert_mp(-EINVAL, mp_start_method_parse("fork ", &m));
    assert_mp(-EINVAL, mp_start_method_parse("fork", NULL));
    const mp_start_method all[] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};
    for (int i = 0; i < 3; i++) {
        assert_mp_ok(mp_start_method_parse(mp_start_method_name(all[i]), &m));
        assert_int_equal(m, all[i]);
    }
    assert_string_equal(mp_start_method_name(MP_START_DEFAULT), "default");
    assert_string_equal(mp_start_method_name((mp_start_method)99), "?");
    assert_string_equal(mp_start_method_name((mp_start_method)-1), "?");
    /* The program-wide default accepts only the three methods. */
    mp_start_method before = mp_get_start_method();
    assert_mp(-EINVAL, mp_set_start_method(MP_START_DEFAULT));
    assert_mp(-EINVAL, mp_set_start_method((mp_start_method)99));
    assert_int_equal(mp_get_start_method(), before);
    assert_mp_ok(mp_set_start_method(MP_START_SPAWN));
    assert_int_equal(mp_get_start_method(), MP_START_SPAWN);
    assert_mp_ok(mp_set_start_method(before));
    /* Per process. */
    mp_process *p = NULL;
    assert_mp_ok(mp_process_new_func(&p, NULL, "sb_ret0", NULL, 0));
    assert_int_equal(mp_process_start_method(p), MP_START_DEFAULT);
    assert_mp(-EINVAL, mp_process_set_start_method(p, (mp_start_method)99));
    assert_mp(-EINVAL, mp_process_set_start_method(NULL, MP_START_FORK));
    assert_int_equal(mp_process_start_method(p), MP_START_DEFAULT);
    assert_int_equal((int)mp_process_start_method(NULL), -EINVAL);
    assert_mp_ok(mp_process_free(&p));
    /* Kinds. */
    assert_string_equal(mp_kind_name(MP_KIND_QUEUE), "queue");
    assert_string_equal(mp_kind_name((mp_kind)0), "?");
    assert_string_equal(mp_kind_name((mp_kind)99), "?");
    /* The entry call again is harmless. */
    assert_int_equal(mp_is_initialized(), 1);
    assert_mp_ok(mp_init(NULL, NULL));
}

static int t_ret0(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    (void)res;
    return 0;
}
MP_FUNC_REGISTER("sb_ret0", t_ret0)

/* ---- MPROC_START_METHOD=bogus: a warning, then fork -------------------------------------------
 */

static void env_bogus_warns_and_forks(void **state)
{
    (void)state;
    if (getenv("ST_BAD_SUBRUN")) {
        /* In the re-exec: the default is fork, and a process following it forks. */
        assert_int_equal(mp_get_start_method(), MP_START_FORK);
        mp_process *p = NULL;
        assert_mp_ok(mp_process_new_func(&p, NULL, "sb_ret0", NULL, 0));
        assert_mp_ok(mp_process_start(p));
        assert_int_equal(mp_process_start_method(p), MP_START_FORK);
        assert_mp_ok(mp_process_join(p, mp_test_timeout(20)));
        assert_mp_ok(mp_process_free(&p));
        assert_int_equal(mp_forkserver_pid(), 0);
        return;
    }
    int err[2];
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    const char *exe = self_exe();
    pid_t pid = mp_test_fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(err[1], 2);
        setenv("MPROC_START_METHOD", "bogus", 1);
        setenv("ST_BAD_SUBRUN", "1", 1);
        setenv("MP_TEST_FILTER", "env_bogus_warns_and_forks", 1);
        unsetenv("MP_TEST_SKIP");
        char *argv[] = {"test_start_bad", NULL};
        execv(exe, argv);
        _exit(127);
    }
    close(err[1]);
    char *text = slurp(err[0], mp_test_timeout(30));
    close(err[0]);
    int code = mp_test_wait_code(pid, mp_test_timeout(10));
    char what[256];
    int left = strays_settle(mp_test_timeout(1.0), what, sizeof what);
    int warned = count_of(text, "MPROC_START_METHOD=bogus");
    if (code != 0 || left || warned != 1)
        fail_msg("re-exec with MPROC_START_METHOD=bogus: exit %d, %d left%s, the warning %d "
                 "time(s) (want 1); its stderr:\n%s",
                 code, left, what, warned, text);
    free(text);
}

/* ---- unknown target name ----------------------------------------------------------------------
 */

static void unknown_target_name(void **state)
{
    (void)state;
    mp_process *p = NULL;
    assert_mp(MP_ENOFUNC, mp_process_new_func(&p, "x", "sb_no_such_function", NULL, 0));
    assert_null(p);
    if (!strstr(mp_last_error(), "sb_no_such_function"))
        fail_msg("mp_last_error() does not name the function: \"%s\"", mp_last_error());
    assert_mp(-EINVAL, mp_process_new_func(NULL, "x", "sb_ret0", NULL, 0));
    assert_mp(-EINVAL, mp_process_new_func(&p, "x", NULL, NULL, 0));
    assert_mp(-EINVAL, mp_process_new_func(&p, "x", "sb_ret0", NULL, 5));
    assert_mp(MP_ENOFUNC, mp_process_new_func(&p, "x", "", NULL, 0));
    assert_null(p);
}

/* ---- spawn from a program without mp_init -----------------------------------------------------
 */

static void spawn_without_init(void **state)
{
    (void)state;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 20);
    assert_true(n > 0);
    exe[n] = 0;
    char helper[PATH_MAX + 32];
    snprintf(helper, sizeof helper, "%s/start_noinit", dirname(exe));
    assert_int_equal(access(helper, X_OK), 0);
    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    pid_t pid = mp_test_fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        unsetenv("NOINIT_CHILD");
        unsetenv("MPROC_START_METHOD");
        execl(helper, "start_noinit", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char *text = slurp(out[0], mp_test_timeout(30));
    close(out[0]);
    int code = mp_test_wait_code(pid, mp_test_timeout(10));
    char what[256];
    int left = strays_settle(mp_test_timeout(1.0), what, sizeof what);
    int mains = count_of(text, "main-start");
    if (code != 0 || left || mains != 1)
        fail_msg("start_noinit: exit %d, main ran %d time(s) (want 1), %d left%s; its output:\n%s",
                 code, mains, left, what, text);
    free(text);
}

/* ---- an argument too large --------------------------------------------------------------------
 */

static int t_bigarg(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    const unsigned char *b = arg;
    if (len != MP_PROCESS_ARG_MAX) return 10;
    for (size_t i = 0; i < len; i += 4093)
        if (b[i] != (unsigned char)(i / 4093)) return 11;
    if (b[len - 1] != 0x5A) return 12;
    return 0;
}
MP_FUNC_REGISTER("sb_bigarg", t_bigarg)

static int prog_bigarg(mp_start_method m, void *ctx)
{
    (void)ctx;
    size_t max = MP_PROCESS_ARG_MAX;
    unsigned char *buf = calloc(1, max + 1);
    CK(buf != NULL);
    for (size_t i = 0; i < max; i += 4093)
        buf[i] = (unsigned char)(i / 4093);
    buf[max - 1] = 0x5A;
    mp_process *p = NULL;
    CK_EQ(MP_ETOOBIG, mp_process_new_func(&p, NULL, "sb_bigarg", buf, max + 1));
    CK(p == NULL);
    CK_EQ(MP_ETOOBIG, mp_process_new_func(&p, NULL, "sb_bigarg", buf, SIZE_MAX));
    CK(p == NULL);
    /* Exactly the maximum travels. */
    CK_EQ(0, run_named(m, "sb_bigarg", buf, max));
    free(buf);
    return 0;
}

static void argument_too_big(void **state)
{
    (void)state;
    run_all(prog_bigarg, NULL, 60);
}

/* ---- too many objects -------------------------------------------------------------------------
 */

static int t_many(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    (void)res;
    for (int i = 0; i < MP_PROCESS_PASS_MAX; i++) {
        mp_lock *l = NULL;
        if (mp_process_passed(i, MP_KIND_LOCK, &l) != 0 || !l) return 20;
        if (mp_lock_acquire(l, 10) != 0) return 21;
        if (mp_lock_release(l) != 0) return 22;
    }
    mp_lock *l = NULL;
    if (mp_process_passed(MP_PROCESS_PASS_MAX, MP_KIND_LOCK, &l) != -ENOENT) return 23;
    return 0;
}
MP_FUNC_REGISTER("sb_many", t_many)

static int prog_many(mp_start_method m, void *ctx)
{
    (void)ctx;
    mp_lock *locks[MP_PROCESS_PASS_MAX + 1];
    for (int i = 0; i <= MP_PROCESS_PASS_MAX; i++)
        CK_EQ(0, mp_lock_new(&locks[i]));
    mp_process *p = NULL;
    CK_EQ(0, mp_process_new_func(&p, NULL, "sb_many", NULL, 0));
    CK_EQ(0, mp_process_set_start_method(p, m));
    for (int i = 0; i < MP_PROCESS_PASS_MAX; i++)
        CK_EQ(i, mp_process_pass(p, MP_KIND_LOCK, locks[i]));
    CK_EQ(-ENOSPC, mp_process_pass(p, MP_KIND_LOCK, locks[MP_PROCESS_PASS_MAX]));
    CK_EQ(0, mp_process_start(p));
    CK_EQ(0, finish(&p));
    for (int i = 0; i <= MP_PROCESS_PASS_MAX; i++)
        CK_EQ(0, mp_lock_free(&locks[i]));
    return 0;
}

static void too_many_objects(void **state)
{
    (void)state;
    run_all(prog_many, NULL, 60);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(method_names),       MP_TEST(env_bogus_warns_and_forks), MP_TEST(unknown_target_name),
    MP_TEST(spawn_without_init), MP_TEST(argument_too_big),          MP_TEST(too_many_objects),
};

MP_TEST_MAIN_INIT(tests)
