/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=240 labels=slow */
/* test_pool_start.c - the portable part of the pool tests under each start method (fork, spawn,
 * forkserver), and a program with running threads, one of which holds a mutex of the program's
 * own whenever a pool or a worker starts.
 *
 * Every case runs once per method: all three, or only the one MPROC_START_METHOD names. main calls
 * mp_init() first (a spawned factory runs from there), then starts the forkserver with a warm-up
 * pool, so that it exists before the leak guard's first snapshot (it lives as long as the test).
 * Also: the owner SIGKILLed (no worker outlives it), spawn/forkserver without mp_init (a fresh
 * exec of this program that skips it), functions registered at run time, and the forkserver
 * SIGKILLed under a running pool. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mp_test.h"
#include "pool_util.h"
#include "mproc/error.h"
#include "mproc/pool.h"
#include "mproc/start.h"

static mp_start_method methods[3];
static int nmethods;
static char *self_argv0;

/* ---- tasks --------------------------------------------------------------------------------- */

static int s_square(const void *arg, size_t len, mp_task_result *res)
{
    int x;
    if (len != sizeof x) return mp_task_fail(res, 1, "want an int, got %zu bytes", len);
    memcpy(&x, arg, sizeof x);
    if (x == -9) raise(SIGKILL);
    x *= x;
    return mp_task_result_set(res, &x, sizeof x);
}
MP_FUNC_REGISTER("s.square", s_square)

MP_FUNC_REGISTER("s.fail", pool_task_fail)

MP_FUNC_REGISTER("s.sleep_ms", pool_task_sleep_ms)

MP_FUNC_REGISTER("s.pid", pool_task_pid)

static int s_ppid(const void *arg, size_t len, mp_task_result *res)
{
    pid_t pid = getppid();
    return mp_task_result_set(res, &pid, sizeof pid);
}
MP_FUNC_REGISTER("s.ppid", s_ppid)

static int s_mul(const void *arg, size_t len, mp_task_result *res)
{
    mp_buf v[2];
    size_t n;
    int rc = mp_args_unpack(arg, len, v, 2, &n);
    if (rc || n != 2 || v[0].len != 4 || v[1].len != 4) return mp_task_fail(res, 2, "want 2 ints");
    int a, b;
    memcpy(&a, v[0].data, 4);
    memcpy(&b, v[1].data, 4);
    int c = a * b;
    return mp_task_result_set(res, &c, sizeof c);
}
MP_FUNC_REGISTER("s.mul", s_mul)

/* Set in the test process before its pools start: a worker forked from it sees the value, a
 * worker of a spawned (or forkserver) factory sees the program as it was at load time. */
static int marker;
static char init_seen[64];

static int s_marker(const void *arg, size_t len, mp_task_result *res)
{
    return mp_task_result_set(res, &marker, sizeof marker);
}
MP_FUNC_REGISTER("s.marker", s_marker)

static int s_init(const void *arg, size_t len, mp_task_result *res)
{
    if (len >= sizeof init_seen) return mp_task_fail(res, 3, "initarg too long");
    memcpy(init_seen, arg, len);
    init_seen[len] = 0;
    return 0;
}
MP_FUNC_REGISTER("s.init", s_init)

static int s_init_seen(const void *arg, size_t len, mp_task_result *res)
{
    return mp_task_result_set(res, init_seen, strlen(init_seen));
}
MP_FUNC_REGISTER("s.init_seen", s_init_seen)

/* The program's own mutex: the threaded cases hold it in another thread at every start. */
static pthread_mutex_t prog_lock = PTHREAD_MUTEX_INITIALIZER;

static int s_take_lock(const void *arg, size_t len, mp_task_result *res)
{
    pthread_mutex_lock(&prog_lock);
    pthread_mutex_unlock(&prog_lock);
    int ok = 1;
    return mp_task_result_set(res, &ok, sizeof ok);
}
MP_FUNC_REGISTER("s.take_lock", s_take_lock)

/* ---- helpers ------------------------------------------------------------------------------- */

static mp_pool *pool_with(mp_start_method m, int n, mp_pool_options *base)
{
    mp_pool_options o;
    if (base)
        o = *base;
    else
        mp_pool_options_init(&o);
    o.processes = n;
    o.start_method = m;
    mp_pool *p = NULL;
    int rc = mp_pool_new(&p, &o);
    if (rc)
        fail_msg("mp_pool_new under %s: %s (%s)", mp_start_method_name(m), mp_err_name(rc),
                 mp_last_error());
    return p;
}

static int get_int(mp_result *r)
{
    const void *d;
    size_t l;
    assert_mp_ok(mp_result_get(r, &d, &l, mp_test_timeout(20)));
    assert_int_equal(l, sizeof(int));
    int x;
    memcpy(&x, d, sizeof x);
    return x;
}

#define FOR_EACH_METHOD(m)                                                                         \
    for (int mi_ = 0; mi_ < nmethods; mi_++)                                                       \
        for (mp_start_method m = methods[mi_]; m; m = 0)                                           \
            if ((fprintf(stderr, "  [%s]\n", mp_start_method_name(m)), 1))

/* ---- the portable pool tests ---------------------------------------------------------------- */

static void check_map(mp_pool *p, size_t n, size_t chunksize)
{
    int *xs = malloc(n * sizeof *xs + 1);
    mp_buf *items = malloc(n * sizeof *items + 1);
    for (size_t i = 0; i < n; i++) {
        xs[i] = (int)(i % 30000);
        items[i] = (mp_buf){&xs[i], sizeof xs[i]};
    }
    mp_task_options o;
    mp_task_options_init(&o);
    o.chunksize = chunksize;
    mp_result *r = NULL;
    assert_mp_ok(mp_pool_map(p, "s.square", items, n, &o, &r, mp_test_timeout(30)));
    assert_int_equal(mp_result_count(r), n);
    for (size_t i = 0; i < n; i++) {
        const void *d;
        size_t l;
        assert_mp_ok(mp_result_item(r, i, &d, &l));
        int y;
        memcpy(&y, d, sizeof y);
        assert_int_equal(y, xs[i] * xs[i]);
    }
    mp_result_free(&r);
    free(xs);
    free(items);
}

struct counter {
    int next, limit, buf;
};

static int count_iter(void *user, const void **data, size_t *len)
{
    struct counter *c = user;
    if (c->next >= c->limit) return 0;
    c->buf = c->next++;
    *data = &c->buf;
    *len = sizeof c->buf;
    return 1;
}

static void test_apply_map(void **state)
{
    FOR_EACH_METHOD(m)
    {
        mp_pool *p = pool_with(m, 2, NULL);
        for (int i = 0; i < 30; i++) {
            mp_result *r = NULL;
            assert_mp_ok(mp_pool_apply(p, "s.square", &i, sizeof i, &r, mp_test_timeout(20)));
            assert_int_equal(get_int(r), i * i);
            mp_result_free(&r);
        }
        check_map(p, 0, 0);
        check_map(p, 1, 0);
        check_map(p, 1000, 0);
        check_map(p, 1000, 1);
        check_map(p, 1000, 7);
        check_map(p, 20000, 0);
        /* map_fixed */
        enum { N = 5000 };
        int *in = malloc(N * sizeof *in), *out = calloc(N, sizeof *out);
        for (int i = 0; i < N; i++)
            in[i] = i;
        mp_result *r;
        assert_mp_ok(mp_pool_map_fixed(p, "s.square", in, N, sizeof *in, out, sizeof *out, NULL, &r,
                                       mp_test_timeout(20)));
        for (int i = 0; i < N; i++)
            assert_int_equal(out[i], i * i);
        mp_result_free(&r);
        free(in);
        free(out);
        /* starmap */
        int xs[50], ys[50];
        mp_buf args[50][2];
        mp_args items[50];
        for (int i = 0; i < 50; i++) {
            xs[i] = i;
            ys[i] = i + 3;
            args[i][0] = (mp_buf){&xs[i], 4};
            args[i][1] = (mp_buf){&ys[i], 4};
            items[i] = (mp_args){args[i], 2};
        }
        assert_mp_ok(mp_pool_starmap(p, "s.mul", items, 50, NULL, &r, mp_test_timeout(20)));
        for (int i = 0; i < 50; i++) {
            const void *d;
            size_t l;
            assert_mp_ok(mp_result_item(r, i, &d, &l));
            int c;
            memcpy(&c, d, 4);
            assert_int_equal(c, i * (i + 3));
        }
        mp_result_free(&r);
        /* imap and imap_unordered */
        for (int unordered = 0; unordered < 2; unordered++) {
            struct counter c = {0, 500, 0};
            mp_imap *it;
            if (unordered)
                assert_mp_ok(mp_pool_imap_unordered(p, "s.square", count_iter, &c, NULL, &it));
            else
                assert_mp_ok(mp_pool_imap(p, "s.square", count_iter, &c, NULL, &it));
            long sum = 0;
            for (int i = 0; i < 500; i++) {
                const void *d;
                size_t l, idx;
                assert_mp_ok(mp_imap_next(it, &d, &l, &idx, mp_test_timeout(20)));
                int y;
                memcpy(&y, d, sizeof y);
                assert_int_equal(y, (int)(idx * idx));
                if (!unordered) assert_int_equal(idx, i);
                sum += y;
            }
            assert_true(sum == 499L * 500 * 999 / 6);
            assert_mp(MP_EEOF, mp_imap_next(it, NULL, NULL, NULL, mp_test_timeout(10)));
            mp_imap_free(&it);
        }
        end_pool(&p);
    }
}

static atomic_int cb_ok, cb_err;

static void on_ok(mp_result *r, void *user)
{
    atomic_fetch_add(&cb_ok, 1);
}

static void on_err(mp_result *r, void *user)
{
    int code;
    if (mp_result_error(r, &code, NULL) == MP_ETASKFAILED && code == 7)
        atomic_fetch_add(&cb_err, 1);
}

static void test_callbacks_errors(void **state)
{
    FOR_EACH_METHOD(m)
    {
        mp_pool *p = pool_with(m, 2, NULL);
        atomic_store(&cb_ok, 0);
        atomic_store(&cb_err, 0);
        mp_task_options o;
        mp_task_options_init(&o);
        o.callback = on_ok;
        o.error_callback = on_err;
        mp_result *r[10];
        for (int i = 0; i < 10; i++)
            assert_mp_ok(
                mp_pool_apply_async(p, i < 6 ? "s.square" : "s.fail", &i, sizeof i, &o, &r[i]));
        for (int i = 0; i < 10; i++) {
            if (i < 6) {
                assert_int_equal(get_int(r[i]), i * i);
            } else {
                assert_mp(MP_ETASKFAILED, mp_result_get(r[i], NULL, NULL, mp_test_timeout(10)));
                int code;
                const char *msg;
                assert_mp(MP_ETASKFAILED, mp_result_error(r[i], &code, &msg));
                assert_int_equal(code, 7);
                char want[32];
                snprintf(want, sizeof want, "bad input %d", i);
                assert_string_equal(msg, want);
            }
            mp_result_free(&r[i]);
        }
        assert_int_equal(atomic_load(&cb_ok), 6);
        assert_int_equal(atomic_load(&cb_err), 4);
        /* A name no process of this program registered. */
        mp_result *x = NULL;
        assert_mp(MP_ENOFUNC, mp_pool_apply_async(p, "s.nope", NULL, 0, NULL, &x));
        end_pool(&p);
    }
}

/* A worker that dies mid-task: that task fails with MP_EWORKERDIED and -SIGKILL, the pool goes on
 * with a new worker. */
static void test_worker_crash(void **state)
{
    FOR_EACH_METHOD(m)
    {
        mp_pool *p = pool_with(m, 2, NULL);
        int die = -9;
        mp_result *r;
        assert_mp(MP_EWORKERDIED,
                  mp_pool_apply(p, "s.square", &die, sizeof die, &r, mp_test_timeout(20)));
        int code;
        const char *msg;
        assert_mp(MP_EWORKERDIED, mp_result_error(r, &code, &msg));
        assert_int_equal(code, -SIGKILL);
        assert_non_null(strstr(msg, "signal 9"));
        mp_result_free(&r);
        for (int i = 0; i < 20; i++) {
            assert_mp_ok(mp_pool_apply(p, "s.square", &i, sizeof i, &r, mp_test_timeout(20)));
            assert_int_equal(get_int(r), i * i);
            mp_result_free(&r);
        }
        end_pool(&p);
    }
}

static void test_task_timeout(void **state)
{
    FOR_EACH_METHOD(m)
    {
        mp_pool_options o;
        mp_pool_options_init(&o);
        o.task_timeout = 0.3;
        mp_pool *p = pool_with(m, 1, &o);
        int ms = 60000;
        mp_result *r;
        assert_mp(-ETIMEDOUT,
                  mp_pool_apply(p, "s.sleep_ms", &ms, sizeof ms, &r, mp_test_timeout(20)));
        assert_int_equal(mp_result_is_ready(r), 1);
        mp_result_free(&r);
        int x = 5;
        assert_mp_ok(mp_pool_apply(p, "s.square", &x, sizeof x, &r, mp_test_timeout(20)));
        assert_int_equal(get_int(r), 25);
        mp_result_free(&r);
        end_pool(&p);
    }
}

/* maxtasksperchild, the initializer and its argument (they travel in the factory's payload), and
 * proof that the factory really is a fresh image under spawn and forkserver. */
static void test_maxtasks_init(void **state)
{
    marker = 42;
    FOR_EACH_METHOD(m)
    {
        mp_pool_options o;
        mp_pool_options_init(&o);
        o.maxtasksperchild = 2;
        o.initializer = "s.init";
        o.initarg = "hello";
        o.initarg_len = 5;
        o.pipeline = 1;
        mp_pool *p = pool_with(m, 1, &o);
        pid_t pids[8];
        for (int i = 0; i < 8; i++) {
            mp_result *r;
            assert_mp_ok(mp_pool_apply(p, "s.pid", NULL, 0, &r, mp_test_timeout(20)));
            const void *d;
            size_t l;
            assert_mp_ok(mp_result_get(r, &d, &l, 0));
            memcpy(&pids[i], d, sizeof pids[i]);
            mp_result_free(&r);
        }
        for (int i = 0; i + 2 < 8; i += 2) {
            assert_int_equal(pids[i], pids[i + 1]);
            assert_int_not_equal(pids[i], pids[i + 2]);
        }
        mp_result *r;
        const void *d;
        size_t l;
        assert_mp_ok(mp_pool_apply(p, "s.init_seen", NULL, 0, &r, mp_test_timeout(20)));
        assert_mp_ok(mp_result_get(r, &d, &l, 0));
        assert_int_equal(l, 5);
        assert_memory_equal(d, "hello", 5);
        mp_result_free(&r);
        assert_mp_ok(mp_pool_apply(p, "s.marker", NULL, 0, &r, mp_test_timeout(20)));
        assert_int_equal(get_int(r), m == MP_START_FORK ? 42 : 0);
        mp_result_free(&r);
        /* The workers' parent is the factory: the test's child under fork and spawn, the
         * forkserver's under forkserver. */
        assert_mp_ok(mp_pool_apply(p, "s.ppid", NULL, 0, &r, mp_test_timeout(20)));
        pid_t fac = get_int(r);
        mp_result_free(&r);
        assert_true(fac > 0 && fac != getpid());
        if (m == MP_START_FORKSERVER)
            assert_int_equal(parent_of(fac), mp_forkserver_pid());
        else
            assert_int_equal(parent_of(fac), getpid());
        end_pool(&p);
    }
    marker = 0;
}

static void test_close_join_terminate(void **state)
{
    FOR_EACH_METHOD(m)
    {
        mp_pool *p = pool_with(m, 2, NULL);
        assert_mp(MP_ESTATE, mp_pool_join(p, 0));
        int ms = 30;
        mp_result *r[4];
        for (int i = 0; i < 4; i++)
            assert_mp_ok(mp_pool_apply_async(p, "s.sleep_ms", &ms, sizeof ms, NULL, &r[i]));
        assert_mp_ok(mp_pool_close(p));
        assert_mp_ok(mp_pool_join(p, mp_test_timeout(20)));
        for (int i = 0; i < 4; i++) {
            assert_int_equal(get_int(r[i]), 30);
            mp_result_free(&r[i]);
        }
        assert_int_equal(mp_pool_worker_pids(p, NULL, 0), 0);
        assert_mp_ok(mp_pool_free(&p));

        p = pool_with(m, 2, NULL);
        ms = 100000;
        mp_result *s[4];
        for (int i = 0; i < 4; i++)
            assert_mp_ok(mp_pool_apply_async(p, "s.sleep_ms", &ms, sizeof ms, NULL, &s[i]));
        mp_test_sleep_ms(50);
        assert_mp_ok(mp_pool_terminate(p));
        for (int i = 0; i < 4; i++) {
            assert_mp(MP_ETERMINATED, mp_result_get(s[i], NULL, NULL, 0));
            mp_result_free(&s[i]);
        }
        assert_mp_ok(mp_pool_join(p, 0));
        assert_mp_ok(mp_pool_free(&p));

        /* free without close or join: terminates */
        p = pool_with(m, 1, NULL);
        assert_mp_ok(mp_pool_free(&p));
    }
}

/* MP_START_DEFAULT follows mp_set_start_method at mp_pool_new; a bad method is refused. */
static void test_default_and_bad(void **state)
{
    mp_start_method before = mp_get_start_method();
    marker = 0;
    FOR_EACH_METHOD(m)
    {
        assert_mp_ok(mp_set_start_method(m));
        mp_pool *p = pool_with(MP_START_DEFAULT, 1, NULL);
        assert_mp_ok(mp_set_start_method(before)); /* the pool keeps its own */
        marker = 42;
        mp_result *r;
        assert_mp_ok(mp_pool_apply(p, "s.marker", NULL, 0, &r, mp_test_timeout(20)));
        /* a fork factory was forked while marker was 0: both read 0 */
        assert_int_equal(get_int(r), 0);
        mp_result_free(&r);
        marker = 0;
        end_pool(&p);
    }
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 1;
    o.start_method = 7;
    mp_pool *p = NULL;
    assert_mp(-EINVAL, mp_pool_new(&p, &o));
    assert_null(p);
}

/* A function registered at run time (mp_func_register) exists in the registering process and its
 * forks only: a fork pool runs it; a spawn or forkserver pool refuses it at submission (its
 * workers are a fresh image of the program, with MP_FUNC_REGISTER's functions only). */
static int s_runtime(const void *arg, size_t len, mp_task_result *res)
{
    int x = 11;
    return mp_task_result_set(res, &x, sizeof x);
}

static void test_runtime_registered(void **state)
{
    static int registered;
    if (!registered) assert_mp_ok(mp_func_register("s.runtime", s_runtime, NULL));
    registered = 1;
    FOR_EACH_METHOD(m)
    {
        mp_pool *p = pool_with(m, 1, NULL);
        mp_result *r = NULL;
        int rc = mp_pool_apply(p, "s.runtime", NULL, 0, &r, mp_test_timeout(20));
        if (m == MP_START_FORK) {
            assert_mp_ok(rc);
            assert_int_equal(get_int(r), 11);
            mp_result_free(&r);
        } else {
            assert_mp(MP_ENOFUNC, rc);
            assert_null(r);
            assert_non_null(strstr(mp_last_error(), "run time"));
        }
        /* the same for an initializer */
        mp_pool_options o;
        mp_pool_options_init(&o);
        o.processes = 1;
        o.start_method = m;
        o.initializer = "s.runtime";
        mp_pool *q = NULL;
        rc = mp_pool_new(&q, &o);
        if (m == MP_START_FORK) {
            assert_mp_ok(rc);
            end_pool(&q);
        } else {
            assert_mp(MP_ENOFUNC, rc);
            assert_null(q);
            assert_non_null(strstr(mp_last_error(), "run time"));
        }
        /* the load-time ones still work */
        int x = 3;
        assert_mp_ok(mp_pool_apply(p, "s.square", &x, sizeof x, &r, mp_test_timeout(20)));
        assert_int_equal(get_int(r), 9);
        mp_result_free(&r);
        end_pool(&p);
    }
}

/* The pool's owner is SIGKILLed: every worker (and the factory) is dead within a second. */
static void test_owner_killed(void **state)
{
    FOR_EACH_METHOD(m)
    {
        int fds[2];
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        pid_t child = mp_test_fork();
        if (child == 0) {
            close(fds[0]);
            mp_pool_options o;
            mp_pool_options_init(&o);
            o.processes = 3;
            o.start_method = m;
            mp_pool *p = NULL;
            MP_CHILD_CHECK(mp_pool_new(&p, &o) == 0);
            int ms = 100000;
            mp_result *r;
            for (int i = 0; i < 5; i++)
                MP_CHILD_CHECK(mp_pool_apply_async(p, "s.sleep_ms", &ms, sizeof ms, NULL, &r) == 0);
            pid_t pids[6];
            MP_CHILD_CHECK(mp_pool_worker_pids(p, pids, 3) == 3);
            pids[3] = parent_of(pids[0]);
            pids[4] = mp_forkserver_pid();
            /* A raw fork of the program's own that outlives it, holding a copy of every fd it
             * had (the pool's socket included): the factory must not wait for it. */
            pids[5] = fork();
            if (pids[5] == 0) {
                for (int i = 0; i < 1000; i++)
                    usleep(10000);
                _exit(0);
            }
            MP_CHILD_CHECK(write(fds[1], pids, sizeof pids) == sizeof pids);
            for (;;)
                pause();
        }
        close(fds[1]);
        pid_t pids[6];
        assert_int_equal(read(fds[0], pids, sizeof pids), (ssize_t)sizeof pids);
        close(fds[0]);
        mp_test_sleep_ms(50);
        kill(child, SIGKILL);
        assert_int_equal(mp_test_wait_code(child, mp_test_timeout(5)), 128 + SIGKILL);
        /* The test is a subreaper: the workers come back to it (or to our forkserver, when the
         * child used it, which reaps the factory). Each must be gone within 1 s. */
        int watch = 4;
        if (pids[4] > 0 && pids[4] != mp_forkserver_pid()) watch = 5; /* the child's own server */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        double limit = mp_test_timeout(1.0);
        int left;
        for (;;) {
            left = 0;
            for (int i = 0; i < watch; i++) {
                if (pids[i] <= 0) continue;
                waitpid(pids[i], NULL, WNOHANG);
                if (mp_test_pid_exists(pids[i]) && mp_test_proc_state(pids[i]) != 'Z') left++;
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double el = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
            if (left == 0 || el > limit) break;
            mp_test_sleep_ms(5);
        }
        for (int i = 0; i < watch; i++)
            if (pids[i] > 0 && mp_test_pid_exists(pids[i]) && mp_test_proc_state(pids[i]) != 'Z')
                fprintf(stderr, "  pid %d (%s) still runs, state %c\n", (int)pids[i],
                        i < 3    ? "worker"
                        : i == 3 ? "factory"
                                 : "forkserver",
                        mp_test_proc_state(pids[i]));
        assert_int_equal(left, 0);
        kill(pids[5], SIGKILL); /* the raw fork came back to us (a subreaper) */
        assert_true(mp_test_wait(pids[5], mp_test_timeout(5)) != -1);
        /* Reap the zombies that came back to us (only those: our forkserver runs on). */
        for (int k = 0; k < 200; k++) {
            int z = 0;
            for (int i = 0; i < watch; i++) {
                if (pids[i] <= 0) continue;
                waitpid(pids[i], NULL, WNOHANG);
                if (mp_test_pid_exists(pids[i]) && parent_of(pids[i]) == getpid()) z++;
            }
            if (!z) break;
            mp_test_sleep_ms(5);
        }
    }
}

/* ---- a program with threads ------------------------------------------------------------------
 * Four threads run: one holds prog_lock for as long as the pool lives (so it is held at the
 * pool's creation and at every worker start), three others keep busy with stdio and malloc. A task
 * that takes prog_lock runs in a fresh worker each time (maxtasksperchild 1). Under spawn and
 * forkserver nothing of the program's state reaches a worker: the task always gets the lock.
 * Under fork the factory (and so every worker) is a copy made while another thread held it: the
 * task waits forever; shown here with a task timeout so that it cannot hang the test. */

static atomic_int threads_stop;
static atomic_int holder_has_lock;

static void *holder(void *arg)
{
    pthread_mutex_lock(&prog_lock);
    atomic_store(&holder_has_lock, 1);
    while (!atomic_load(&threads_stop))
        mp_test_sleep_ms(1);
    pthread_mutex_unlock(&prog_lock);
    return NULL;
}

static void *busy(void *arg)
{
    char buf[256];
    FILE *f = fopen("/dev/null", "we");
    while (!atomic_load(&threads_stop)) {
        void *x = malloc(1000 + (size_t)(intptr_t)arg * 100);
        snprintf(buf, sizeof buf, "%p", x);
        if (f) fputs(buf, f);
        free(x);
    }
    if (f) fclose(f);
    return NULL;
}

static void run_threaded(mp_start_method m)
{
    atomic_store(&threads_stop, 0);
    atomic_store(&holder_has_lock, 0);
    pthread_t t[4];
    assert_int_equal(pthread_create(&t[0], NULL, holder, NULL), 0);
    for (int i = 1; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, busy, (void *)(intptr_t)i), 0);
    while (!atomic_load(&holder_has_lock))
        mp_test_sleep_ms(1);
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.maxtasksperchild = 1;
    if (m == MP_START_FORK) o.task_timeout = 0.5;
    mp_pool *p = pool_with(m, 2, &o);
    int rounds = m == MP_START_FORK ? 1 : 10;
    for (int i = 0; i < rounds; i++) {
        mp_result *r;
        int rc = mp_pool_apply(p, "s.take_lock", NULL, 0, &r, mp_test_timeout(20));
        if (m == MP_START_FORK) {
            /* The documented trap: the worker's copy of the lock is held by nobody, forever. */
            assert_mp(-ETIMEDOUT, rc);
            assert_int_equal(mp_result_is_ready(r), 1);
        } else {
            assert_mp_ok(rc);
            assert_int_equal(get_int(r), 1);
        }
        mp_result_free(&r);
    }
    end_pool(&p);
    atomic_store(&threads_stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
}

static void test_threaded_program(void **state)
{
    FOR_EACH_METHOD(m)
    run_threaded(m);
}

/* ---- without mp_init ------------------------------------------------------------------------- */

/* Runs in a fresh image of this program that skipped mp_init: spawn and forkserver pools are
 * refused with MP_ENOTSUP and a message naming mp_init; fork pools work; nothing is left. */
static int no_init_main(void)
{
    const mp_start_method ms[2] = {MP_START_SPAWN, MP_START_FORKSERVER};
    for (int i = 0; i < 2; i++) {
        mp_pool_options o;
        mp_pool_options_init(&o);
        o.processes = 1;
        o.start_method = ms[i];
        mp_pool *p = NULL;
        int rc = mp_pool_new(&p, &o);
        if (rc != MP_ENOTSUP || p) {
            fprintf(stderr, "%s without mp_init: %s\n", mp_start_method_name(ms[i]),
                    mp_err_name(rc));
            return 1;
        }
        if (!strstr(mp_last_error(), "mp_init")) {
            fprintf(stderr, "message without mp_init: \"%s\"\n", mp_last_error());
            return 2;
        }
    }
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) return 3; /* nothing started */
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 1;
    o.start_method = MP_START_FORK;
    mp_pool *p = NULL;
    if (mp_pool_new(&p, &o) != 0) return 4;
    int x = 3;
    mp_result *r;
    if (mp_pool_apply(p, "s.square", &x, sizeof x, &r, 20) != 0) return 5;
    mp_result_free(&r);
    mp_pool_close(p);
    mp_pool_join(p, 20);
    mp_pool_free(&p);
    return 0;
}

static void test_without_init(void **state)
{
    pid_t pid = mp_test_fork();
    if (pid == 0) {
        setenv("MP_POOLSTART_NO_INIT", "1", 1);
        char *argv[] = {self_argv0, NULL};
        execv(mp_test_self_exe(), argv); /* not the link: valgrind */
        mp_test_child_exit(97);
    }
    assert_int_equal(mp_test_wait_code(pid, mp_test_timeout(30)), 0);
}

/* The forkserver is SIGKILLed while a forkserver pool runs: the pool's factory is not tied to the
 * server (only to its pool's socket), so the pool goes on; the next pool starts a new server.
 * Last and without the leak guard: the new server outlives the case, as the first one did. */
static void test_forkserver_killed(void **state)
{
    int has = 0;
    for (int i = 0; i < nmethods; i++)
        has |= methods[i] == MP_START_FORKSERVER;
    if (!has) skip();
    mp_pool *p = pool_with(MP_START_FORKSERVER, 2, NULL);
    mp_result *r;
    assert_mp_ok(mp_pool_apply(p, "s.ppid", NULL, 0, &r, mp_test_timeout(20)));
    pid_t fac = get_int(r);
    mp_result_free(&r);
    pid_t fs = mp_forkserver_pid();
    assert_true(fs > 0);
    assert_int_equal(parent_of(fac), fs);
    assert_int_equal(kill(fs, SIGKILL), 0);
    for (int i = 0; i < 1000 && mp_test_pid_exists(fs) && mp_test_proc_state(fs) != 'Z'; i++)
        mp_test_sleep_ms(2);
    for (int i = 0; i < 20; i++) {
        assert_mp_ok(mp_pool_apply(p, "s.square", &i, sizeof i, &r, mp_test_timeout(20)));
        assert_int_equal(get_int(r), i * i);
        mp_result_free(&r);
    }
    assert_mp_ok(mp_pool_apply(p, "s.ppid", NULL, 0, &r, mp_test_timeout(20)));
    assert_int_equal(get_int(r), fac);
    mp_result_free(&r);
    end_pool(&p);
    /* The factory, orphaned by the server, came back to the test (a subreaper) when it ended. */
    for (int i = 0; i < 1000 && mp_test_pid_exists(fac); i++) {
        waitpid(fac, NULL, WNOHANG);
        mp_test_sleep_ms(2);
    }
    assert_false(mp_test_pid_exists(fac));
    p = pool_with(MP_START_FORKSERVER, 1, NULL);
    int x = 4;
    assert_mp_ok(mp_pool_apply(p, "s.square", &x, sizeof x, &r, mp_test_timeout(20)));
    assert_int_equal(get_int(r), 16);
    mp_result_free(&r);
    end_pool(&p);
    assert_true(mp_forkserver_pid() > 0 && mp_forkserver_pid() != fs);
    waitpid(fs, NULL, WNOHANG);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(test_apply_map),          MP_TEST(test_callbacks_errors),
    MP_TEST(test_worker_crash),       MP_TEST(test_task_timeout),
    MP_TEST(test_maxtasks_init),      MP_TEST(test_close_join_terminate),
    MP_TEST(test_default_and_bad),    MP_TEST(test_owner_killed),
    MP_TEST(test_threaded_program),   MP_TEST(test_without_init),
    MP_TEST(test_runtime_registered), cmocka_unit_test(test_forkserver_killed),
};

int main(int argc, char **argv)
{
    self_argv0 = argv[0];
    if (getenv("MP_POOLSTART_NO_INIT")) return no_init_main();
    mp_init(&argc, &argv); /* a spawned factory never returns from here */
    const char *env = getenv("MPROC_START_METHOD");
    mp_start_method one;
    if (env && *env && mp_start_method_parse(env, &one) == 0) {
        methods[nmethods++] = one;
    } else {
        methods[nmethods++] = MP_START_FORK;
        methods[nmethods++] = MP_START_SPAWN;
        methods[nmethods++] = MP_START_FORKSERVER;
    }
    for (int i = 0; i < nmethods; i++) {
        if (methods[i] != MP_START_FORKSERVER) continue;
        /* Start the forkserver now: it outlives every case (the leak guard must see it in its
         * first snapshot, not as a child a case left behind). */
        mp_pool_options o;
        mp_pool_options_init(&o);
        o.processes = 1;
        o.start_method = MP_START_FORKSERVER;
        mp_pool *p = NULL;
        int rc = mp_pool_new(&p, &o);
        if (rc)
            fprintf(stderr, "warm-up forkserver pool: %s (%s)\n", mp_err_name(rc), mp_last_error());
        else
            mp_pool_free(&p);
    }
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
