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
#include "start_util.h"

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
    static const char *const env[] = {"MPROC_START_METHOD=bogus", "ST_BAD_SUBRUN=1",
                                      "MP_TEST_FILTER=env_bogus_warns_and_forks", "MP_TEST_SKIP",
                                      NULL};
    int rd;
    pid_t pid = exec_self_stderr("test_start_bad", env, &rd);
    char *text = slurp(rd, mp_test_timeout(30));
    close(rd);
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
