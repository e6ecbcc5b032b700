/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=240 labels=slow */
/* test_start_process.c - the guarantees of a Process under every start method (fork, spawn,
 * forkserver; issue 12): a named target runs with its argument bytes, exit codes (0, return n,
 * mp_task_fail, -signal), terminate/kill, the sentinel, join timeouts, is_alive, crash isolation,
 * the daemon flag, no orphan when the parent is SIGKILLed, mp_process_current() and
 * mp_process_parent_pid() inside the child, pointer targets refused under spawn/forkserver, and
 * MPROC_START_METHOD honoured as the default.
 *
 * Every case runs its work in a forked child that stands for a whole program (a "program child"):
 * the forkserver and every grandchild belong to it, so the leak guard of the case sees exactly
 * what that program left behind. The program child ends with exit() (mproc's atexit handlers run:
 * daemons terminated, forkserver stopped); whatever is still alive 1 s later comes back to the
 * test process (a subreaper) and is counted as left running. Children report through their exit
 * status: CK/CK_EQ print the method, the values and mp_last_error(), then exit 99. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "mproc/start.h"
#include "mp_test.h"
#include "start_util.h"

/* ---- named targets -------------------------------------------------------------------------- */

static unsigned char pattern_byte(size_t i, size_t len)
{
    return (unsigned char)(i * 131u + len * 7u + 1u);
}

/* Checks its argument bytes against the pattern: 0 when all match, 42 for an empty argument,
 * 11 for a wrong byte. */
static int t_args(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    if (len == 0) return 42;
    const unsigned char *b = arg;
    for (size_t i = 0; i < len; i++)
        if (b[i] != pattern_byte(i, len)) return 11;
    return 0;
}
MP_FUNC_REGISTER("st_args", t_args)

MP_FUNC_REGISTER("st_ret", start_task_ret)

static int t_fail(const void *arg, size_t len, mp_task_result *res)
{
    int code = get_int(arg, len);
    return mp_task_fail(res, code, "failing on purpose with %d", code);
}
MP_FUNC_REGISTER("st_fail", t_fail)

static int t_exit(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    exit(get_int(arg, len));
}
MP_FUNC_REGISTER("st_exit", t_exit)

MP_FUNC_REGISTER("st_block", start_task_block)

MP_FUNC_REGISTER("st_sleep_ret", start_task_sleep_ret)

static int t_segv(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    (void)res;
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none); /* no core file in the build dir */
    /* The default action, whatever a sanitizer runtime installed at the exec's start: the test
     * is about isolation, not about handler resets. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGSEGV, &sa, NULL);
    volatile int *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return 1;
    *page = 1;
    return 0;
}
MP_FUNC_REGISTER("st_segv", t_segv)

struct whoami {
    pid_t ppid;
    int daemon;
    char name[64];
};

/* Returns 0 when the child sees itself as the parent described it; 20.. for each mismatch. */
static int t_whoami(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    struct whoami w;
    if (len != sizeof w) return 20;
    memcpy(&w, arg, sizeof w);
    mp_process *cur = mp_process_current();
    if (!cur) return 21;
    if (strcmp(mp_process_name(cur), w.name) != 0) {
        fprintf(stderr, "child: name \"%s\", want \"%s\"\n", mp_process_name(cur), w.name);
        return 22;
    }
    if (mp_process_parent_pid() != w.ppid) {
        fprintf(stderr, "child: parent pid %d, want %d\n", (int)mp_process_parent_pid(),
                (int)w.ppid);
        return 23;
    }
    if (mp_process_pid(cur) != getpid()) return 24;
    if (mp_process_is_daemon(cur) != w.daemon) return 25;
    if (mp_process_is_alive(cur) != 1) return 26;
    /* Under forkserver the kernel's parent is the server: mproc's answer is the starter's pid. */
    return 0;
}
MP_FUNC_REGISTER("st_whoami", t_whoami)

/* ---- cases ---------------------------------------------------------------------------------- */

static int prog_args(mp_start_method m, void *ctx)
{
    (void)ctx;
    static const size_t lens[] = {0, 1, 7, 4096, 65537, (1u << 20) + 3};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        size_t len = lens[k];
        unsigned char *buf = len ? malloc(len) : NULL;
        CK(len == 0 || buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = pattern_byte(i, len);
        int code = run_named(m, "st_args", buf, len);
        if (code != (len ? 0 : 42))
            fprintf(stderr, "[%s] argument of %zu bytes: exit code %d\n", g_method, len, code);
        CK_EQ(len ? 0 : 42, code);
        /* The argument was copied at new: changing the buffer after new changes nothing. */
        if (len) {
            mp_process *p = NULL;
            CK_EQ(0, mp_process_new_func(&p, NULL, "st_args", buf, len));
            memset(buf, 0xEE, len);
            CK_EQ(0, mp_process_set_start_method(p, m));
            CK_EQ(0, mp_process_start(p));
            CK_EQ(0, finish(&p));
        }
        free(buf);
    }
    return 0;
}

static void named_target_gets_its_argument_bytes(void **state)
{
    (void)state;
    run_all(prog_args, NULL, 60);
}

static int prog_exitcodes(mp_start_method m, void *ctx)
{
    (void)ctx;
    struct {
        const char *func;
        int arg, want;
    } cases[] = {
        {"st_ret", 0, 0},     {"st_ret", 7, 7},  {"st_ret", 255, 255},  {"st_ret", 256, 1},
        {"st_ret", -1, 1},    {"st_fail", 3, 3}, {"st_fail", 200, 200}, {"st_fail", 0, 1},
        {"st_fail", 1000, 1}, {"st_exit", 0, 0}, {"st_exit", 9, 9},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int code = run_named(m, cases[k].func, &cases[k].arg, sizeof cases[k].arg);
        if (code != cases[k].want)
            fprintf(stderr, "[%s] %s(%d): exit code %d, want %d\n", g_method, cases[k].func,
                    cases[k].arg, code, cases[k].want);
        CK_EQ(cases[k].want, code);
    }
    /* -signal when a signal ends it. */
    int sigs[] = {SIGTERM, SIGKILL, SIGUSR1, SIGINT};
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
        mp_process *p = start_named(m, NULL, "st_block", NULL, 0, false);
        if (sigs[k] == SIGTERM)
            CK_EQ(0, mp_process_terminate(p));
        else if (sigs[k] == SIGKILL)
            CK_EQ(0, mp_process_kill(p));
        else
            CK_EQ(0, mp_process_signal(p, sigs[k]));
        CK_EQ(-sigs[k], finish(&p));
    }
    return 0;
}

static void exit_codes(void **state)
{
    (void)state;
    run_all(prog_exitcodes, NULL, 60);
}

static int readable(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&pfd, 1, ms);
    while (r < 0 && errno == EINTR);
    return r == 1 && (pfd.revents & (POLLIN | POLLHUP));
}

static int prog_lifecycle(mp_start_method m, void *ctx)
{
    (void)ctx;
    for (int how = 0; how < 2; how++) {
        mp_process *p = start_named(m, "blocker", "st_block", NULL, 0, false);
        CK_EQ(1, mp_process_is_alive(p));
        int fd = mp_process_sentinel(p);
        CK(fd >= 0);
        CK(!readable(fd, 0));
        double t0 = now_s();
        CK_EQ(-ETIMEDOUT, mp_process_join(p, 0.2));
        CK(now_s() - t0 >= 0.15);
        CK_EQ(-ETIMEDOUT, mp_process_join(p, 0));
        int code = 777;
        CK_EQ(-EBUSY, mp_process_exitcode(p, &code));
        CK_EQ(777, code);
        CK_EQ(-EBUSY, mp_process_free(&p));
        CK(p != NULL);
        CK_EQ(1, mp_process_is_alive(p));
        CK_EQ(0, mp_process_signal(p, 0));
        CK_EQ(0, how ? mp_process_kill(p) : mp_process_terminate(p));
        CK(readable(fd, (int)(mp_test_timeout(10) * 1000)));
        CK_EQ(0, mp_process_join(p, mp_test_timeout(10)));
        CK_EQ(0, mp_process_is_alive(p));
        CK_EQ(0, mp_process_exitcode(p, &code));
        CK_EQ(how ? -SIGKILL : -SIGTERM, code);
        CK_SOFT(readable(fd, 0)); /* stays readable after the reap (process.h) */
        CK_EQ(fd, mp_process_sentinel(p));
        CK_EQ(0, mp_process_join(p, 0));
        CK_EQ(MP_EREAPED, mp_process_terminate(p));
        CK_EQ(MP_ESTARTED, mp_process_start(p));
        CK_EQ(MP_ESTARTED, mp_process_set_start_method(p, m));
        CK_EQ(0, mp_process_free(&p));
    }
    /* A child that ends on its own: is_alive turns 0 and the sentinel readable without a join. */
    int v = 5;
    mp_process *p = start_named(m, NULL, "st_sleep_ret", &v, sizeof v, false);
    int fd = mp_process_sentinel(p);
    CK(readable(fd, (int)(mp_test_timeout(10) * 1000)));
    double end = now_s() + mp_test_timeout(5);
    while (mp_process_is_alive(p) == 1 && now_s() < end)
        sleep_s(0.005);
    CK_EQ(0, mp_process_is_alive(p));
    int code = -1;
    CK_EQ(0, mp_process_exitcode(p, &code));
    CK_EQ(5, code);
    CK_EQ(0, mp_process_free(&p));
    return 0;
}

static void terminate_kill_sentinel_join_timeouts(void **state)
{
    (void)state;
    run_all(prog_lifecycle, NULL, 60);
}

static int prog_crash(mp_start_method m, void *ctx)
{
    (void)ctx;
    CK_EQ(-SIGSEGV, run_named(m, "st_segv", NULL, 0));
    /* The parent goes on starting children. */
    int v = 0;
    CK_EQ(0, run_named(m, "st_ret", &v, sizeof v));
    return 0;
}

static void crash_isolation(void **state)
{
    (void)state;
    run_all(prog_crash, NULL, 60);
}

static int prog_identity(mp_start_method m, void *ctx)
{
    (void)ctx;
    for (int daemon = 0; daemon < 2; daemon++) {
        struct whoami w;
        memset(&w, 0, sizeof w);
        w.ppid = getpid();
        w.daemon = daemon;
        snprintf(w.name, sizeof w.name, "who-%s-%d", g_method, daemon);
        mp_process *p = start_named(m, w.name, "st_whoami", &w, sizeof w, daemon);
        CK_EQ(0, strcmp(mp_process_name(p), w.name));
        CK_EQ(0, finish(&p));
    }
    return 0;
}

static void current_and_parent_inside_the_child(void **state)
{
    (void)state;
    run_all(prog_identity, NULL, 60);
}

/* A daemon that blocks and a plain child that ends after 0.3 s; the program then exits
 * normally: the daemon is terminated, the plain child joined, nothing is left running (checked by
 * run_all), and the exit does not hang. */
static int prog_daemon(mp_start_method m, void *ctx)
{
    (void)ctx;
    mp_process *d = start_named(m, "daemon", "st_block", NULL, 0, true);
    CK_EQ(1, mp_process_is_daemon(d));
    int v = 0;
    mp_process *n = start_named(m, "plain", "st_sleep_ret", &v, sizeof v, false);
    CK_EQ(0, mp_process_is_daemon(n));
    CK_EQ(2, mp_process_active_children(NULL, 0));
    return 0; /* exit() with both running */
}

static void daemon_flag_and_normal_exit(void **state)
{
    (void)state;
    run_all(prog_daemon, NULL, 30);
}

/* ---- the parent SIGKILLed leaves no orphan ------------------------------------------------- */

static int read_timed(int fd, void *buf, size_t len, double timeout_s)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        if (!readable(fd, (int)(timeout_s * 1000))) return -1;
        ssize_t n = read(fd, p + got, len - got);
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

static void killed_parent_leaves_no_orphan(void **state)
{
    (void)state;
    char msg[1024] = "";
    size_t off = 0;
    for (int i = 0; i < NMETHODS; i++) {
        mp_start_method m = methods[i];
        int fds[2];
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        pid_t mid = mp_test_fork();
        assert_true(mid >= 0);
        if (mid == 0) {
            close(fds[0]);
            g_method = mp_start_method_name(m);
            mp_process *a = start_named(m, "a", "st_block", NULL, 0, false);
            mp_process *b = start_named(m, "b", "st_block", NULL, 0, true);
            sleep_s(0.1);
            pid_t pids[3] = {mp_process_pid(a), mp_process_pid(b), mp_forkserver_pid()};
            CK(write(fds[1], pids, sizeof pids) == sizeof pids);
            for (;;)
                pause();
        }
        close(fds[1]);
        pid_t pids[3] = {0, 0, 0};
        int got = read_timed(fds[0], pids, sizeof pids, mp_test_timeout(20));
        close(fds[0]);
        kill(mid, SIGKILL);
        int mcode = mp_test_wait_code(mid, mp_test_timeout(10));
        sleep_s(mp_test_timeout(1.0));
        /* Every descendant of the middle comes to us (subreaper); none may be alive now. */
        char what[256];
        int left = strays_settle(0, what, sizeof what);
        if (got != 0 || mcode != 128 + SIGKILL || left != 0)
            off += (size_t)snprintf(msg + off, sizeof msg - off,
                                    "[%s: middle reported %s, ended %d, %d alive 1 s later:%s "
                                    "(children %d %d, forkserver %d)] ",
                                    mp_start_method_name(m), got ? "nothing" : "its pids", mcode,
                                    left, what, (int)pids[0], (int)pids[1], (int)pids[2]);
        if (m == MP_START_FORKSERVER && got == 0 && pids[2] == 0)
            off += (size_t)snprintf(msg + off, sizeof msg - off,
                                    "[forkserver: mp_forkserver_pid() was 0 after a start] ");
    }
    if (off) fail_msg("%s", msg);
}

/* ---- pointer targets ------------------------------------------------------------------------- */

static int t_ptr(void *arg)
{
    (void)arg;
    return 3;
}

static int base_run(mp_process_base *self)
{
    (void)self;
    return 4;
}

static int prog_pointer(mp_start_method m, void *ctx)
{
    (void)ctx;
    mp_process *p = NULL;
    CK_EQ(0, mp_process_new(&p, NULL, t_ptr, NULL));
    CK_EQ(0, mp_process_set_start_method(p, m));
    if (m == MP_START_FORK) {
        CK_EQ(0, mp_process_start(p));
        CK_EQ(3, finish(&p));
        return 0;
    }
    CK_EQ(MP_ENOTSUP, mp_process_start(p));
    CK(mp_last_error()[0] != 0);
    CK_EQ(0, mp_process_pid(p));
    CK_EQ(0, mp_process_is_alive(p));
    CK_EQ(MP_ENOTSTARTED, mp_process_join(p, 0));
    CK_EQ(0, mp_process_free(&p));
    /* The process-class form (mp_process_base) is a pointer target too. */
    mp_process_base b;
    CK_EQ(0, mp_process_base_init(&b, "class", base_run));
    CK_EQ(0, mp_process_set_start_method(b.proc, m));
    CK_EQ(MP_ENOTSUP, mp_process_start(b.proc));
    CK_EQ(0, mp_process_base_free(&b));
    return 0;
}

static void pointer_target_refused_under_spawn_and_forkserver(void **state)
{
    (void)state;
    run_all(prog_pointer, NULL, 30);
}

/* ---- MPROC_START_METHOD is the default ------------------------------------------------------ */

/* In a re-exec of this binary with MPROC_START_METHOD=<m> and ST_ENV_EXPECT=<m>: the default is
 * m, a process that follows the default is started with m, and its named target runs. */
static void default_from_environment(void **state)
{
    (void)state;
    const char *expect = getenv("ST_ENV_EXPECT");
    if (expect) {
        mp_start_method want;
        assert_mp_ok(mp_start_method_parse(expect, &want));
        assert_int_equal(mp_get_start_method(), want);
        mp_process *p = NULL;
        int v = 17;
        assert_mp_ok(mp_process_new_func(&p, NULL, "st_ret", &v, sizeof v));
        assert_int_equal(mp_process_start_method(p), MP_START_DEFAULT);
        assert_mp_ok(mp_process_start(p));
        assert_int_equal(mp_process_start_method(p), want);
        if (want == MP_START_FORKSERVER) assert_true(mp_forkserver_pid() > 0);
        if (want != MP_START_FORKSERVER) assert_int_equal(mp_forkserver_pid(), 0);
        assert_mp_ok(mp_process_join(p, mp_test_timeout(20)));
        int code = -1;
        assert_mp_ok(mp_process_exitcode(p, &code));
        assert_int_equal(code, 17);
        assert_mp_ok(mp_process_free(&p));
        /* The server of this test process would outlive the case: the leak guard counts it. */
        assert_mp_ok(mp_forkserver_stop());
        assert_int_equal(mp_forkserver_pid(), 0);
        return;
    }
    char msg[512] = "";
    size_t off = 0;
    for (int i = 0; i < NMETHODS; i++) {
        const char *name = mp_start_method_name(methods[i]);
        const char *exe = mp_test_self_exe();
        pid_t pid = mp_test_fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            setenv("MPROC_START_METHOD", name, 1);
            setenv("ST_ENV_EXPECT", name, 1);
            setenv("MP_TEST_FILTER", "default_from_environment", 1);
            unsetenv("MP_TEST_SKIP");
            char *argv[] = {"test_start_process", NULL};
            execv(exe, argv);
            _exit(127);
        }
        int code = mp_test_wait_code(pid, mp_test_timeout(60));
        char what[256];
        int left = strays_settle(mp_test_timeout(1.0), what, sizeof what);
        if (code != 0 || left)
            off += (size_t)snprintf(msg + off, sizeof msg - off, "[%s: exit %d, %d left%s] ", name,
                                    code, left, what);
    }
    if (off) fail_msg("%s", msg);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(named_target_gets_its_argument_bytes),
    MP_TEST(exit_codes),
    MP_TEST(terminate_kill_sentinel_join_timeouts),
    MP_TEST(crash_isolation),
    MP_TEST(current_and_parent_inside_the_child),
    MP_TEST(daemon_flag_and_normal_exit),
    MP_TEST(killed_parent_leaves_no_orphan),
    MP_TEST(pointer_target_refused_under_spawn_and_forkserver),
    MP_TEST(default_from_environment),
};

MP_TEST_MAIN_INIT(tests)
