/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=180 labels=slow */
/* test_pool_hard.c - promises of the pool found broken from outside (issue 9): a pool freed while
 * other threads wait on its results, output printed twice by workers, function names, the
 * state after close + join, map's size limit, deaths while SIGCHLD is ignored. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mp_test.h"
#include "pool_util.h"
#include "mproc/error.h"
#include "mproc/pool.h"

static int h_sleep(const void *arg, size_t len, mp_task_result *res)
{
    int ms = 0;
    if (len == sizeof ms) memcpy(&ms, arg, sizeof ms);
    mp_test_sleep_ms(ms);
    return mp_task_result_set(res, &ms, sizeof ms);
}
MP_FUNC_REGISTER("h.sleep", h_sleep)

static int h_echo(const void *arg, size_t len, mp_task_result *res)
{
    return mp_task_result_set(res, arg, len);
}
MP_FUNC_REGISTER("h.echo", h_echo)

/* ---- a pool freed while other threads use its results (use-after-free) ---------------------- */

struct user {
    mp_result *r;
    mp_imap *it;
    atomic_int started, stop;
    int last;
};

/* Polls a result of the pool the main thread frees meanwhile: every call reads the pool through
 * the result, right when it may be going away. */
static void *poll_result(void *arg)
{
    struct user *u = arg;
    atomic_store(&u->started, 1);
    while (!atomic_load(&u->stop)) {
        mp_result_is_ready(u->r);
        u->last = mp_result_wait(u->r, 0.0);
    }
    return NULL;
}

static int endless(void *user, const void **data, size_t *len)
{
    static const int ms = 20;
    *data = &ms;
    *len = sizeof ms;
    return 1;
}

static void *poll_imap(void *arg)
{
    struct user *u = arg;
    atomic_store(&u->started, 1);
    while (!atomic_load(&u->stop)) {
        int rc = mp_imap_next(u->it, NULL, NULL, NULL, 0.0);
        if (rc == MP_ETERMINATED || rc == MP_EEOF) break;
    }
    mp_imap_free(&u->it);
    return NULL;
}

static void test_free_while_results_are_used(void **state)
{
    /* The header allows mp_pool_free while results live, from another thread. The results and
     * imaps hold references on the pool, so the threads polling them never touch freed memory
     * (ASan: heap-use-after-free in wait_for before the fix). */
    for (int round = 0; round < 30; round++) {
        mp_pool *p = new_pool(1);
        int ms = 2000;
        struct user a = {0}, b = {0};
        assert_mp_ok(mp_pool_apply_async(p, "h.sleep", &ms, sizeof ms, NULL, &a.r));
        mp_task_options o;
        mp_task_options_init(&o);
        o.window = 4;
        assert_mp_ok(mp_pool_imap(p, "h.sleep", endless, NULL, &o, &b.it));
        pthread_t ta, tb;
        assert_int_equal(pthread_create(&ta, NULL, poll_result, &a), 0);
        assert_int_equal(pthread_create(&tb, NULL, poll_imap, &b), 0);
        while (!atomic_load(&a.started) || !atomic_load(&b.started))
            sched_yield();
        if (round % 3) mp_test_sleep_ms(round % 7);
        assert_mp_ok(mp_pool_free(&p));
        mp_test_sleep_ms(1);
        atomic_store(&a.stop, 1);
        atomic_store(&b.stop, 1);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        assert_mp(MP_ETERMINATED, mp_result_get(a.r, NULL, NULL, 0));
        mp_result_free(&a.r);
    }
}

/* ---- no output printed twice ---------------------------------------------------------------- */

static int h_nothing(const void *arg, size_t len, mp_task_result *res)
{
    return 0;
}
MP_FUNC_REGISTER("h.nothing", h_nothing)

struct churn {
    mp_pool *p;
    atomic_int stop;
    int rc;
};

static void *churn_workers(void *arg)
{
    struct churn *c = arg;
    mp_buf items[32];
    for (int i = 0; i < 32; i++)
        items[i] = (mp_buf){NULL, 0};
    mp_task_options o;
    mp_task_options_init(&o);
    o.chunksize = 1;
    while (!atomic_load(&c->stop) && c->rc == 0) {
        mp_result *r = NULL;
        c->rc = mp_pool_map(c->p, "h.nothing", items, 32, &o, &r, mp_test_timeout(30));
        mp_result_free(&r);
    }
    return NULL;
}

/* Checks that the file holds exactly "line 0".."line n-1", in order, once each. */
static int check_lines(const char *path, int n)
{
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    char line[128];
    int i = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        char want[64];
        snprintf(want, sizeof want, "line %d of the main thread\n", i);
        if (strcmp(line, want) != 0) {
            if (bad++ < 3) fprintf(stderr, "line %d: got '%.60s'\n", i, line);
        }
        i++;
    }
    fclose(f);
    if (i != n) fprintf(stderr, "%d lines, expected %d\n", i, n);
    return bad == 0 && i == n ? 0 : -1;
}

static void test_no_output_printed_twice(void **state)
{
    /* The main thread prints (stdout to a file, fully buffered) while maxtasksperchild=1 workers
     * are replaced all the time. A worker must never write bytes it did not produce: no line
     * twice, none torn. Before the factory, workers were forked from the supervisor thread while
     * the main thread refilled the buffer: duplicated lines in 10 runs of 10. */
    char path[] = "/tmp/mproc-pool-out-XXXXXX";
    for (int run = 0; run < 10; run++) {
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        fflush(stdout);
        int saved = dup(1);
        assert_true(saved >= 0);
        assert_int_equal(dup2(fd, 1), 1);
        close(fd);
        static char buf[8192];
        setvbuf(stdout, buf, _IOFBF, sizeof buf);

        mp_pool_options o;
        mp_pool_options_init(&o);
        o.processes = 2;
        o.maxtasksperchild = 1;
        struct churn c = {0};
        int rc = mp_pool_new(&c.p, &o);
        pthread_t t;
        if (rc == 0) pthread_create(&t, NULL, churn_workers, &c);
        enum { LINES = 20000 };
        for (int i = 0; i < LINES && rc == 0; i++)
            printf("line %d of the main thread\n", i);
        fflush(stdout);
        if (rc == 0) {
            atomic_store(&c.stop, 1);
            pthread_join(t, NULL);
            rc = c.rc;
            int rc2 = mp_pool_close(c.p);
            if (!rc2) rc2 = mp_pool_join(c.p, mp_test_timeout(30));
            if (!rc) rc = rc2;
            mp_pool_free(&c.p);
        }
        fflush(stdout);
        setvbuf(stdout, NULL, _IOLBF, 0);
        dup2(saved, 1);
        close(saved);
        assert_mp_ok(rc);
        int ok = check_lines(path, LINES);
        unlink(path);
        strcpy(path, "/tmp/mproc-pool-out-XXXXXX");
        if (ok != 0) fail_msg("run %d: the output file has duplicated or torn lines", run);
    }
}

/* ---- function names ------------------------------------------------------------------------- */

static void test_enofunc_names_the_function(void **state)
{
    mp_pool *p = new_pool(1);
    mp_result *r = NULL;
    int x = 1;
    assert_mp(MP_ENOFUNC, mp_pool_apply_async(p, "h.no_such_function", &x, sizeof x, NULL, &r));
    assert_null(r);
    assert_non_null(strstr(mp_pool_last_error(), "\"h.no_such_function\""));
    mp_func *f;
    assert_mp(MP_ENOFUNC, mp_func_find("h.other_missing", &f));
    assert_non_null(strstr(mp_pool_last_error(), "\"h.other_missing\""));
    /* a runtime clash names both the name and where the first came from */
    assert_mp(-EEXIST, mp_func_register("h.echo", h_sleep, NULL));
    assert_non_null(strstr(mp_pool_last_error(), "\"h.echo\""));
    assert_non_null(strstr(mp_pool_last_error(), "test_pool_hard.c:"));
    end_pool(&p);
}

static int h_after(const void *arg, size_t len, mp_task_result *res)
{
    return 0;
}

static void test_registered_after_the_pool(void **state)
{
    /* refused at submission, for every kind of submission; a later pool has it */
    mp_pool *p = new_pool(1);
    assert_mp_ok(mp_func_register("h.after", h_after, NULL));
    mp_result *r = NULL;
    assert_mp(MP_ENOFUNC, mp_pool_apply_async(p, "h.after", NULL, 0, NULL, &r));
    assert_non_null(strstr(mp_pool_last_error(), "registered after the pool"));
    int in = 1, out;
    assert_mp(MP_ENOFUNC, mp_pool_map_fixed_async(p, "h.after", &in, 1, 4, &out, 4, NULL, &r));
    mp_imap *it = NULL;
    assert_mp(MP_ENOFUNC, mp_pool_imap(p, "h.after", endless, NULL, NULL, &it));
    assert_null(it);
    assert_null(r);
    mp_pool *q = new_pool(1);
    assert_mp_ok(mp_pool_apply(q, "h.after", NULL, 0, &r, mp_test_timeout(10)));
    mp_result_free(&r);
    end_pool(&q);
    end_pool(&p);
}

/* ---- after close + join; map's limit; deaths while SIGCHLD is ignored ----------------------- */

static void test_closed_after_join(void **state)
{
    mp_pool *p = new_pool(1);
    assert_mp_ok(mp_pool_close(p));
    assert_mp_ok(mp_pool_join(p, mp_test_timeout(10)));
    mp_result *r = NULL;
    int x = 1;
    /* the header: later submissions fail with MP_ECLOSED (not MP_ETERMINATED) */
    assert_mp(MP_ECLOSED, mp_pool_apply_async(p, "h.echo", &x, sizeof x, NULL, &r));
    assert_mp(MP_ECLOSED, mp_pool_map_async(p, "h.echo", NULL, 0, NULL, &r));
    assert_null(r);
    assert_mp_ok(mp_pool_close(p));
    /* terminate after join: from then on it says terminated */
    assert_mp_ok(mp_pool_terminate(p));
    assert_mp(MP_ETERMINATED, mp_pool_apply_async(p, "h.echo", &x, sizeof x, NULL, &r));
    assert_mp_ok(mp_pool_free(&p));
}

static int next_big(void *user, const void **data, size_t *len)
{
    int *left = user;
    static char big[4096];
    if ((*left)-- <= 0) return 0;
    *data = big;
    *len = 4096 - 64 + 1;
    return 1;
}

static void test_map_refuses_what_apply_refuses(void **state)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 1;
    o.max_message = 4096;
    mp_pool *p;
    assert_mp_ok(mp_pool_new(&p, &o));
    static char big[4096];
    size_t limit = 4096 - 64;
    mp_result *r = NULL;
    assert_mp(MP_ETOOBIG, mp_pool_apply_async(p, "h.echo", big, limit + 1, NULL, &r));
    mp_buf items[3] = {{big, 1}, {big, limit + 1}, {big, 1}};
    assert_mp(MP_ETOOBIG, mp_pool_map_async(p, "h.echo", items, 3, NULL, &r));
    assert_null(r);
    assert_non_null(strstr(mp_pool_last_error(), "map item 1"));
    /* exactly at the limit: fine, as apply */
    items[1].len = limit;
    assert_mp_ok(mp_pool_map(p, "h.echo", items, 3, NULL, &r, mp_test_timeout(10)));
    mp_result_free(&r);
    /* imap's items come later: the oversized one fails with MP_ETOOBIG */
    int left = 1;
    mp_imap *it;
    assert_mp_ok(mp_pool_imap(p, "h.echo", next_big, &left, NULL, &it));
    assert_mp(MP_ETOOBIG, mp_imap_next(it, NULL, NULL, NULL, mp_test_timeout(10)));
    assert_mp(MP_EEOF, mp_imap_next(it, NULL, NULL, NULL, mp_test_timeout(10)));
    mp_imap_free(&it);
    end_pool(&p);
}

static void test_death_while_sigchld_ignored(void **state)
{
    /* With SIGCHLD ignored the kernel reaps the program's children itself. A worker's death must
     * still not read as "exit status 0": the pool reports its true code (its factory reaps it). */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGCHLD, &ign, &old);
    mp_pool *p = new_pool(1);
    int ms = 100000;
    mp_result *r;
    assert_mp_ok(mp_pool_apply_async(p, "h.sleep", &ms, sizeof ms, NULL, &r));
    mp_test_sleep_ms(100);
    pid_t pid;
    assert_int_equal(mp_pool_worker_pids(p, &pid, 1), 1);
    kill(pid, SIGKILL);
    assert_mp(MP_EWORKERDIED, mp_result_get(r, NULL, NULL, mp_test_timeout(10)));
    int code;
    const char *msg;
    assert_mp(MP_EWORKERDIED, mp_result_error(r, &code, &msg));
    if (code != -SIGKILL) fail_msg("code %d, message '%s'", code, msg);
    assert_non_null(strstr(msg, "killed by signal 9"));
    mp_result_free(&r);
    end_pool(&p);
    sigaction(SIGCHLD, &old, NULL);
}

static void test_factory_killed(void **state)
{
    /* The worker factory killed from outside: its workers die with it and nothing can start
     * new ones. The pool must say so (tasks fail, submissions are refused), never hang, and
     * still close, join and free. */
    mp_pool *p = new_pool(2);
    int ms = 100000;
    mp_result *r;
    assert_mp_ok(mp_pool_apply_async(p, "h.sleep", &ms, sizeof ms, NULL, &r));
    pid_t w[2];
    assert_int_equal(mp_pool_worker_pids(p, w, 2), 2);
    pid_t factory = parent_of(w[0]);
    assert_int_equal(parent_of(factory), getpid());
    assert_int_equal(kill(factory, SIGKILL), 0);
    int code;
    const char *msg;
    assert_mp(MP_EWORKERDIED, mp_result_get(r, NULL, NULL, mp_test_timeout(10)));
    assert_mp(MP_EWORKERDIED, mp_result_error(r, &code, &msg));
    assert_mp(MP_EREAPED, code);
    mp_result_free(&r);
    int x = 1;
    assert_mp(MP_EWORKERDIED, mp_pool_apply_async(p, "h.echo", &x, sizeof x, NULL, &r));
    end_pool(&p);
    /* its workers came back to the test (a subreaper), killed by their PDEATHSIG */
    for (int i = 0; i < 2; i++) {
        int st;
        assert_int_equal(waitpid(w[i], &st, 0), w[i]);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_free_while_results_are_used), MP_TEST(test_no_output_printed_twice),
        MP_TEST(test_enofunc_names_the_function),  MP_TEST(test_registered_after_the_pool),
        MP_TEST(test_closed_after_join),           MP_TEST(test_map_refuses_what_apply_refuses),
        MP_TEST(test_death_while_sigchld_ignored), MP_TEST(test_factory_killed),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
