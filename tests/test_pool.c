/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=60 */
/* test_pool.c - the pool's core: apply, apply_async, results, callbacks, map, starmap, close/join/
 * terminate, task errors, bad input. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mp_test.h"
#include "pool_util.h"
#include "mproc/error.h"
#include "mproc/pool.h"

static int t_square(const void *arg, size_t len, mp_task_result *res)
{
    int x;
    if (len != sizeof x) return mp_task_fail(res, 1, "want an int, got %zu bytes", len);
    memcpy(&x, arg, sizeof x);
    x *= x;
    return mp_task_result_set(res, &x, sizeof x);
}
MP_FUNC_REGISTER("t.square", t_square)

static int t_echo(const void *arg, size_t len, mp_task_result *res)
{
    return mp_task_result_set(res, arg, len);
}
MP_FUNC_REGISTER("t.echo", t_echo)

MP_FUNC_REGISTER("t.fail", pool_task_fail)

static int t_ret5(const void *arg, size_t len, mp_task_result *res)
{
    return 5;
}
MP_FUNC_REGISTER("t.ret5", t_ret5)

MP_FUNC_REGISTER("t.sleep_ms", pool_task_sleep_ms)

MP_FUNC_REGISTER("t.pid", pool_task_pid)

/* starmap: (int a, int b) -> a * b + number of arguments */
static int t_mul(const void *arg, size_t len, mp_task_result *res)
{
    mp_buf v[4];
    size_t n;
    int rc = mp_args_unpack(arg, len, v, 4, &n);
    if (rc) return mp_task_fail(res, rc, "unpack: %s", mp_strerror(rc));
    if (n != 2 || v[0].len != 4 || v[1].len != 4) return mp_task_fail(res, 2, "want 2 ints");
    int a, b;
    memcpy(&a, v[0].data, 4);
    memcpy(&b, v[1].data, 4);
    int c = a * b;
    return mp_task_result_set(res, &c, sizeof c);
}
MP_FUNC_REGISTER("t.mul", t_mul)

static int get_int(mp_result *r)
{
    const void *d;
    size_t l;
    assert_mp_ok(mp_result_get(r, &d, &l, mp_test_timeout(10)));
    assert_int_equal(l, sizeof(int));
    int x;
    memcpy(&x, d, sizeof x);
    return x;
}

static void test_apply(void **state)
{
    mp_pool *p = new_pool(2);
    assert_int_equal(mp_pool_processes(p), 2);
    for (int i = 0; i < 50; i++) {
        mp_result *r = NULL;
        assert_mp_ok(mp_pool_apply(p, "t.square", &i, sizeof i, &r, mp_test_timeout(10)));
        assert_int_equal(get_int(r), i * i);
        mp_result_free(&r);
        assert_null(r);
    }
    end_pool(&p);
}

static void test_apply_async(void **state)
{
    mp_pool *p = new_pool(2);
    enum { N = 200 };
    mp_result *r[N];
    for (int i = 0; i < N; i++)
        assert_mp_ok(mp_pool_apply_async(p, "t.square", &i, sizeof i, NULL, &r[i]));
    for (int i = N - 1; i >= 0; i--) {
        assert_mp_ok(mp_result_wait(r[i], mp_test_timeout(10)));
        assert_int_equal(mp_result_is_ready(r[i]), 1);
        assert_int_equal(mp_result_is_successful(r[i]), 1);
        assert_int_equal(get_int(r[i]), i * i);
        int code = -1;
        const char *msg = NULL;
        assert_int_equal(mp_result_error(r[i], &code, &msg), 0);
        assert_int_equal(code, 0);
        assert_string_equal(msg, "");
        assert_int_equal(mp_result_count(r[i]), 1);
        mp_result_free(&r[i]);
    }
    /* get with a timeout on a task that is still running */
    int ms = 300;
    mp_result *s;
    assert_mp_ok(mp_pool_apply_async(p, "t.sleep_ms", &ms, sizeof ms, NULL, &s));
    assert_mp(-ETIMEDOUT, mp_result_get(s, NULL, NULL, 0.01));
    assert_int_equal(mp_result_is_ready(s), 0);
    assert_mp(MP_ESTATE, mp_result_is_successful(s));
    assert_mp(MP_ESTATE, mp_result_error(s, NULL, NULL));
    assert_mp(MP_ESTATE, mp_result_item(s, 0, NULL, NULL));
    assert_mp(-ETIMEDOUT, mp_result_wait(s, 0));
    assert_int_equal(get_int(s), 300);
    mp_result_free(&s);
    /* a result freed before it is ready is finished by the pool */
    assert_mp_ok(mp_pool_apply_async(p, "t.sleep_ms", &ms, sizeof ms, NULL, &s));
    mp_result_free(&s);
    /* empty argument and empty result */
    assert_mp_ok(mp_pool_apply_async(p, "t.echo", NULL, 0, NULL, &s));
    const void *d = (void *)1;
    size_t l = 99;
    assert_mp_ok(mp_result_get(s, &d, &l, mp_test_timeout(10)));
    assert_int_equal(l, 0);
    mp_result_free(&s);
    end_pool(&p);
}

static void test_big_payload(void **state)
{
    mp_pool *p = new_pool(2);
    size_t n = 200 * 1024;
    char *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(i * 7);
    mp_result *r;
    for (int k = 0; k < 20; k++) {
        assert_mp_ok(mp_pool_apply_async(p, "t.echo", buf, n, NULL, &r));
        const void *d;
        size_t l;
        assert_mp_ok(mp_result_get(r, &d, &l, mp_test_timeout(10)));
        assert_int_equal(l, n);
        assert_memory_equal(d, buf, n);
        assert_int_equal((uintptr_t)d % 16, 0);
        mp_result_free(&r);
    }
    r = NULL;
    assert_mp(MP_ETOOBIG, mp_pool_apply_async(p, "t.echo", buf, 300 * 1024, NULL, &r));
    assert_null(r);
    free(buf);
    end_pool(&p);
}

static void test_task_error(void **state)
{
    mp_pool *p = new_pool(2);
    mp_result *r[20];
    for (int i = 0; i < 20; i++)
        assert_mp_ok(
            mp_pool_apply_async(p, i % 2 ? "t.fail" : "t.square", &i, sizeof i, NULL, &r[i]));
    for (int i = 0; i < 20; i++) {
        if (i % 2 == 0) {
            assert_int_equal(get_int(r[i]), i * i);
        } else {
            assert_mp(MP_ETASKFAILED, mp_result_get(r[i], NULL, NULL, mp_test_timeout(10)));
            assert_int_equal(mp_result_is_successful(r[i]), 0);
            int code;
            const char *msg;
            assert_mp(MP_ETASKFAILED, mp_result_error(r[i], &code, &msg));
            assert_int_equal(code, 7);
            char want[64];
            snprintf(want, sizeof want, "bad input %d", i);
            assert_string_equal(msg, want);
        }
        mp_result_free(&r[i]);
    }
    mp_result *s;
    assert_mp(MP_ETASKFAILED, mp_pool_apply(p, "t.ret5", NULL, 0, &s, mp_test_timeout(10)));
    int code;
    const char *msg;
    assert_mp(MP_ETASKFAILED, mp_result_error(s, &code, &msg));
    assert_int_equal(code, 5);
    assert_non_null(strstr(msg, "5"));
    mp_result_free(&s);
    end_pool(&p);
}

static atomic_int cb_ok, cb_err;
static atomic_int cb_saw_value;
static pthread_t cb_thread;

static void on_ok(mp_result *r, void *user)
{
    const void *d;
    size_t l;
    if (mp_result_get(r, &d, &l, 0) == 0 && l == sizeof(int)) {
        int x;
        memcpy(&x, d, sizeof x);
        atomic_fetch_add(&cb_saw_value, x);
    }
    cb_thread = pthread_self();
    atomic_fetch_add(&cb_ok, 1);
    (void)user;
}

static void on_err(mp_result *r, void *user)
{
    int code;
    if (mp_result_error(r, &code, NULL) == MP_ETASKFAILED && code == 7)
        atomic_fetch_add(&cb_err, 1);
    *(int *)user += 1;
}

static void test_callbacks(void **state)
{
    mp_pool *p = new_pool(2);
    atomic_store(&cb_ok, 0);
    atomic_store(&cb_err, 0);
    atomic_store(&cb_saw_value, 0);
    int user_count = 0;
    mp_task_options o;
    mp_task_options_init(&o);
    o.callback = on_ok;
    o.error_callback = on_err;
    o.user = &user_count;
    mp_result *r[10];
    int sum = 0;
    for (int i = 0; i < 10; i++) {
        assert_mp_ok(
            mp_pool_apply_async(p, i < 7 ? "t.square" : "t.fail", &i, sizeof i, &o, &r[i]));
        if (i < 7) sum += i * i;
    }
    for (int i = 0; i < 10; i++) {
        mp_result_wait(r[i], mp_test_timeout(10));
        mp_result_free(&r[i]);
    }
    /* when a result is ready its callback has run */
    assert_int_equal(atomic_load(&cb_ok), 7);
    assert_int_equal(atomic_load(&cb_err), 3);
    assert_int_equal(user_count, 3);
    assert_int_equal(atomic_load(&cb_saw_value), sum);
    assert_false(pthread_equal(cb_thread, pthread_self()));
    /* map_async callback: once for the whole map */
    atomic_store(&cb_ok, 0);
    int xs[5] = {1, 2, 3, 4, 5};
    mp_buf items[5];
    for (int i = 0; i < 5; i++)
        items[i] = (mp_buf){&xs[i], sizeof xs[i]};
    mp_result *m;
    assert_mp_ok(mp_pool_map_async(p, "t.square", items, 5, &o, &m));
    assert_mp_ok(mp_result_wait(m, mp_test_timeout(10)));
    assert_int_equal(atomic_load(&cb_ok), 1);
    mp_result_free(&m);
    end_pool(&p);
}

static void check_map(mp_pool *p, size_t n, size_t chunksize)
{
    int *xs = malloc(n * sizeof *xs);
    mp_buf *items = malloc(n * sizeof *items);
    for (size_t i = 0; i < n; i++) {
        xs[i] = (int)(i % 30000); /* squares fit in an int */
        items[i] = (mp_buf){&xs[i], sizeof xs[i]};
    }
    mp_task_options o;
    mp_task_options_init(&o);
    o.chunksize = chunksize;
    mp_result *r = NULL;
    assert_mp_ok(mp_pool_map(p, "t.square", items, n, &o, &r, mp_test_timeout(20)));
    assert_int_equal(mp_result_count(r), n);
    for (size_t i = 0; i < n; i++) {
        const void *d;
        size_t l;
        assert_mp_ok(mp_result_item(r, i, &d, &l));
        assert_int_equal(l, sizeof(int));
        int y;
        memcpy(&y, d, sizeof y);
        assert_int_equal(y, xs[i] * xs[i]);
    }
    assert_mp(MP_ERANGE, mp_result_item(r, n, NULL, NULL));
    mp_result_free(&r);
    free(xs);
    free(items);
}

static void test_map(void **state)
{
    mp_pool *p = new_pool(2);
    check_map(p, 0, 0);
    check_map(p, 1, 0);
    check_map(p, 1000, 0); /* automatic: 125 per chunk */
    check_map(p, 1001, 0); /* rounding up */
    check_map(p, 1000, 1); /* chunk size 1 */
    check_map(p, 1000, 7); /* chunks that do not divide the input */
    check_map(p, 1000, 5000);
    check_map(p, 100000, 0);
    /* a map with failing items: the first failure is reported, every item can be inspected */
    int xs[10];
    mp_buf items[10];
    for (int i = 0; i < 10; i++) {
        xs[i] = i;
        items[i] = (mp_buf){&xs[i], i == 3 || i == 8 ? 1 : sizeof xs[i]};
    }
    mp_result *r;
    assert_mp(MP_ETASKFAILED, mp_pool_map(p, "t.square", items, 10, NULL, &r, mp_test_timeout(10)));
    int code;
    const char *msg;
    assert_mp(MP_ETASKFAILED, mp_result_error(r, &code, &msg));
    assert_int_equal(code, 1);
    assert_string_equal(msg, "want an int, got 1 bytes");
    assert_mp(MP_ETASKFAILED, mp_result_item(r, 8, NULL, NULL));
    assert_mp(MP_ETASKFAILED, mp_result_item_error(r, 3, &code, &msg));
    assert_mp_ok(mp_result_item(r, 9, NULL, NULL));
    mp_result_free(&r);
    end_pool(&p);
}

static void test_map_async(void **state)
{
    mp_pool *p = new_pool(2);
    enum { N = 5000 };
    static int xs[N];
    static mp_buf items[N];
    for (int i = 0; i < N; i++) {
        xs[i] = i;
        items[i] = (mp_buf){&xs[i], sizeof xs[i]};
    }
    mp_result *a, *b;
    mp_task_options o1;
    mp_task_options_init(&o1);
    o1.chunksize = 3;
    assert_mp_ok(mp_pool_map_async(p, "t.square", items, N, &o1, &a));
    assert_mp_ok(mp_pool_map_async(p, "t.echo", items, N, NULL, &b));
    assert_mp_ok(mp_result_get(b, NULL, NULL, mp_test_timeout(10)));
    assert_mp_ok(mp_result_get(a, NULL, NULL, mp_test_timeout(10)));
    for (int i = 0; i < N; i++) {
        const void *d;
        size_t l;
        int y;
        assert_mp_ok(mp_result_item(a, i, &d, &l));
        memcpy(&y, d, sizeof y);
        assert_int_equal(y, i * i);
        assert_mp_ok(mp_result_item(b, i, &d, &l));
        memcpy(&y, d, sizeof y);
        assert_int_equal(y, i);
    }
    mp_result_free(&a);
    mp_result_free(&b);
    end_pool(&p);
}

struct pt {
    int x, y;
};
struct sq {
    long long d2;
};

static int t_dist2(const void *arg, size_t len, mp_task_result *res)
{
    struct pt p;
    memcpy(&p, arg, sizeof p);
    struct sq *out = mp_task_result_alloc(res, sizeof *out);
    if (!out) return -1;
    struct sq s = {(long long)p.x * p.x + (long long)p.y * p.y};
    memcpy(out, &s, sizeof s);
    if (p.x == -1) return mp_task_fail(res, 9, "negative");
    if (p.x == -2) return mp_task_result_set(res, &s, 3); /* wrong size */
    return 0;
}
MP_FUNC_REGISTER("t.dist2", t_dist2)

static void test_map_fixed(void **state)
{
    mp_pool *p = new_pool(2);
    enum { N = 20000 };
    struct pt *in = malloc(N * sizeof *in);
    struct sq *out = calloc(N, sizeof *out);
    for (int i = 0; i < N; i++)
        in[i] = (struct pt){i, i + 1};
    mp_result *r;
    assert_mp_ok(mp_pool_map_fixed(p, "t.dist2", in, N, sizeof *in, out, sizeof *out, NULL, &r,
                                   mp_test_timeout(10)));
    const void *d;
    size_t l;
    assert_mp_ok(mp_result_get(r, &d, &l, 0));
    assert_ptr_equal(d, out);
    assert_int_equal(l, N * sizeof *out);
    for (int i = 0; i < N; i++)
        assert_true(out[i].d2 == (long long)i * i + (long long)(i + 1) * (i + 1));
    mp_result_free(&r);
    /* failures: a task error and a result of the wrong size */
    in[10].x = -1;
    in[20].x = -2;
    memset(out, 0, N * sizeof *out);
    mp_task_options o;
    mp_task_options_init(&o);
    o.chunksize = 1;
    assert_mp(MP_ETASKFAILED, mp_pool_map_fixed(p, "t.dist2", in, 100, sizeof *in, out, sizeof *out,
                                                &o, &r, mp_test_timeout(10)));
    int code;
    const char *msg;
    assert_mp(MP_ETASKFAILED, mp_result_error(r, &code, &msg));
    assert_int_equal(code, 9);
    assert_string_equal(msg, "negative");
    assert_mp(MP_ERANGE, mp_result_item(r, 20, NULL, NULL));
    assert_mp_ok(mp_result_item(r, 21, &d, &l));
    assert_int_equal(l, sizeof *out);
    assert_true(((const struct sq *)d)->d2 == 21LL * 21 + 22LL * 22);
    mp_result_free(&r);
    free(in);
    free(out);
    end_pool(&p);
}

static void test_starmap(void **state)
{
    /* pack/unpack round trip and malformed input */
    int a = 6, b = 7;
    mp_buf v[2] = {{&a, 4}, {&b, 4}};
    char buf[64];
    size_t need;
    assert_mp(MP_ETOOSMALL, mp_args_pack(v, 2, NULL, 0, &need));
    assert_int_equal(need, 4 + 8 + 8);
    assert_mp_ok(mp_args_pack(v, 2, buf, sizeof buf, &need));
    mp_buf u[2];
    size_t n;
    assert_mp_ok(mp_args_unpack(buf, need, u, 2, &n));
    assert_int_equal(n, 2);
    assert_memory_equal(u[1].data, &b, 4);
    assert_mp(MP_ETOOSMALL, mp_args_unpack(buf, need, u, 1, &n));
    assert_int_equal(n, 2);
    assert_mp(MP_ECORRUPT, mp_args_unpack(buf, need - 1, u, 2, &n));
    assert_mp(MP_ECORRUPT, mp_args_unpack(buf, 3, u, 2, &n));
    assert_mp(-EINVAL, mp_args_unpack(NULL, 3, u, 2, &n));
    assert_mp(-EINVAL, mp_args_pack(NULL, 1, buf, sizeof buf, &need));

    mp_pool *p = new_pool(2);
    enum { N = 300 };
    int xs[N], ys[N];
    mp_buf args[N][2];
    mp_args items[N];
    for (int i = 0; i < N; i++) {
        xs[i] = i;
        ys[i] = i + 3;
        args[i][0] = (mp_buf){&xs[i], 4};
        args[i][1] = (mp_buf){&ys[i], 4};
        items[i] = (mp_args){args[i], 2};
    }
    mp_result *r;
    assert_mp_ok(mp_pool_starmap(p, "t.mul", items, N, NULL, &r, mp_test_timeout(10)));
    for (int i = 0; i < N; i++) {
        const void *d;
        size_t l;
        assert_mp_ok(mp_result_item(r, i, &d, &l));
        int c;
        memcpy(&c, d, 4);
        assert_int_equal(c, i * (i + 3));
    }
    mp_result_free(&r);
    items[5].n = 1;
    assert_mp_ok(mp_pool_starmap_async(p, "t.mul", items, N, NULL, &r));
    assert_mp(MP_ETASKFAILED, mp_result_get(r, NULL, NULL, mp_test_timeout(10)));
    assert_mp(MP_ETASKFAILED, mp_result_item(r, 5, NULL, NULL));
    assert_mp_ok(mp_result_item(r, 6, NULL, NULL));
    mp_result_free(&r);
    end_pool(&p);
}

static void test_close_join_terminate(void **state)
{
    mp_pool *p = new_pool(2);
    /* join before close is a state error (as Python) */
    assert_mp(MP_ESTATE, mp_pool_join(p, 0));
    int ms = 50;
    mp_result *r[6];
    for (int i = 0; i < 6; i++)
        assert_mp_ok(mp_pool_apply_async(p, "t.sleep_ms", &ms, sizeof ms, NULL, &r[i]));
    assert_mp_ok(mp_pool_close(p));
    assert_mp_ok(mp_pool_close(p)); /* idempotent */
    mp_result *x = NULL;
    assert_mp(MP_ECLOSED, mp_pool_apply_async(p, "t.square", &ms, sizeof ms, NULL, &x));
    assert_null(x);
    assert_mp(MP_ECLOSED, mp_pool_map_async(p, "t.square", NULL, 0, NULL, &x));
    assert_mp_ok(mp_pool_join(p, mp_test_timeout(10)));
    /* every task submitted before close ran */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(get_int(r[i]), 50);
        mp_result_free(&r[i]);
    }
    assert_int_equal(mp_pool_worker_pids(p, NULL, 0), 0);
    assert_mp_ok(mp_pool_join(p, 0)); /* again: nothing to do */
    assert_mp_ok(mp_pool_free(&p));

    /* terminate with tasks stuck in workers and queued: never hangs, everything fails */
    p = new_pool(2);
    ms = 100000;
    mp_result *s[5];
    for (int i = 0; i < 5; i++)
        assert_mp_ok(mp_pool_apply_async(p, "t.sleep_ms", &ms, sizeof ms, NULL, &s[i]));
    usleep(50000);
    assert_mp_ok(mp_pool_terminate(p));
    assert_mp_ok(mp_pool_terminate(p));
    for (int i = 0; i < 5; i++) {
        assert_mp(MP_ETERMINATED, mp_result_get(s[i], NULL, NULL, 0));
        mp_result_free(&s[i]);
    }
    assert_mp(MP_ETERMINATED, mp_pool_apply_async(p, "t.square", &ms, sizeof ms, NULL, &x));
    assert_mp(MP_ETERMINATED, mp_pool_close(p));
    assert_mp_ok(mp_pool_join(p, 0));
    assert_mp_ok(mp_pool_free(&p));

    /* free without close: terminates; results outlive the pool */
    p = new_pool(1);
    int v = 9;
    mp_result *t;
    assert_mp_ok(mp_pool_apply(p, "t.square", &v, sizeof v, &t, mp_test_timeout(10)));
    assert_mp_ok(mp_pool_free(&p));
    assert_int_equal(get_int(t), 81);
    mp_result_free(&t);
}

static void test_bad_input(void **state)
{
    mp_pool *p = NULL;
    mp_pool_options o;
    mp_pool_options_init(&o);
    assert_mp(-EINVAL, mp_pool_new(NULL, NULL));
    o.processes = 0;
    assert_mp(-EINVAL, mp_pool_new(&p, &o));
    o.processes = -5;
    assert_mp(-EINVAL, mp_pool_new(&p, &o));
    o.processes = 100000;
    assert_mp(-EINVAL, mp_pool_new(&p, &o));
    o.processes = 1;
    o.initializer = "no.such.function";
    assert_mp(MP_ENOFUNC, mp_pool_new(&p, &o));
    o.initializer = NULL;
    o.max_message = 10;
    assert_mp(-EINVAL, mp_pool_new(&p, &o));
    o.max_message = 0;
    o.ncpus = 1;
    assert_mp(-EINVAL, mp_pool_new(&p, &o));
    assert_null(p);

    /* registry */
    assert_mp(-EINVAL, mp_func_register(NULL, t_echo, NULL));
    assert_mp(-EINVAL, mp_func_register("x", NULL, NULL));
    assert_mp(-EINVAL, mp_func_register("", t_echo, NULL));
    assert_mp(-EEXIST, mp_func_register("t.echo", t_square, NULL));
    assert_mp_ok(mp_func_register("t.echo", t_echo, NULL));
    mp_func *f;
    assert_mp(MP_ENOFUNC, mp_func_find("nope", &f));
    assert_mp_ok(mp_func_find("t.echo", &f));
    assert_string_equal(mp_func_name(f), "t.echo");
    assert_true(mp_func_id(f) != 0);
    assert_null(mp_func_name(NULL));
    assert_mp(-EINVAL, mp_task_result_set(NULL, "x", 1));
    assert_mp(-EINVAL, mp_task_fail(NULL, 1, "x"));

    /* NULL pool */
    mp_result *r = NULL;
    int x = 1;
    assert_mp(-EINVAL, mp_pool_apply_async(NULL, "t.echo", &x, 1, NULL, &r));
    assert_mp(-EINVAL, mp_pool_apply(NULL, "t.echo", &x, 1, &r, 1));
    assert_mp(-EINVAL, mp_pool_map(NULL, "t.echo", NULL, 0, NULL, &r, 1));
    assert_mp(-EINVAL, mp_pool_map_async(NULL, "t.echo", NULL, 0, NULL, &r));
    assert_mp(-EINVAL, mp_pool_map_fixed(NULL, "t.echo", &x, 1, 4, &x, 4, NULL, &r, 1));
    assert_mp(-EINVAL, mp_pool_starmap(NULL, "t.echo", NULL, 0, NULL, &r, 1));
    assert_mp(-EINVAL, mp_pool_imap(NULL, "t.echo", NULL, NULL, NULL, NULL));
    assert_mp(-EINVAL, mp_pool_close(NULL));
    assert_mp(-EINVAL, mp_pool_join(NULL, 0));
    assert_mp(-EINVAL, mp_pool_terminate(NULL));
    assert_mp(-EINVAL, mp_pool_processes(NULL));
    assert_mp(-EINVAL, mp_pool_worker_pids(NULL, NULL, 0));
    assert_mp_ok(mp_pool_free(NULL));
    assert_mp_ok(mp_pool_free(&p));
    assert_mp(-EINVAL, mp_result_get(NULL, NULL, NULL, 0));
    assert_mp(-EINVAL, mp_result_wait(NULL, 0));
    assert_mp(-EINVAL, mp_result_is_ready(NULL));
    assert_mp(-EINVAL, mp_result_is_successful(NULL));
    assert_mp(-EINVAL, mp_result_error(NULL, NULL, NULL));
    assert_mp(-EINVAL, mp_result_item(NULL, 0, NULL, NULL));
    assert_int_equal(mp_result_count(NULL), 0);
    mp_result_free(NULL);
    mp_result_free(&r);
    assert_mp(-EINVAL, mp_imap_next(NULL, NULL, NULL, NULL, 0));
    assert_mp(-EINVAL, mp_imap_error(NULL, NULL, NULL));
    assert_mp(-EINVAL, mp_result_item_error(NULL, 0, NULL, NULL));
    assert_mp(-EINVAL, mp_pool_imap_unordered(NULL, "t.echo", NULL, NULL, NULL, NULL));
    assert_mp(-EINVAL, mp_pool_starmap_async(NULL, "t.echo", NULL, 0, NULL, &r));
    assert_mp(-EINVAL, mp_pool_map_fixed_async(NULL, "t.echo", &x, 1, 4, &x, 4, NULL, &r));
    assert_mp(-EINVAL, mp_func_find(NULL, &f));
    assert_mp(-EINVAL, mp_func_find("t.echo", NULL));
    assert_null(mp_task_result_alloc(NULL, 1));
    mp_buf bad = {NULL, 3};
    assert_mp(-EINVAL, mp_args_pack(&bad, 1, NULL, 0, NULL));
    mp_imap_free(NULL);

    p = new_pool(1);
    assert_mp(-EINVAL, mp_pool_apply_async(p, NULL, &x, 1, NULL, &r));
    assert_mp(-EINVAL, mp_pool_apply_async(p, "t.echo", NULL, 1, NULL, &r));
    assert_mp(-EINVAL, mp_pool_apply_async(p, "t.echo", &x, 1, NULL, NULL));
    assert_mp(MP_ENOFUNC, mp_pool_apply_async(p, "no.such", &x, 1, NULL, &r));
    assert_mp(MP_ENOFUNC, mp_pool_map_async(p, "no.such", NULL, 0, NULL, &r));
    assert_mp(-EINVAL, mp_pool_map_async(p, "t.echo", NULL, 3, NULL, &r));
    assert_mp(-EINVAL, mp_pool_map_fixed_async(p, "t.echo", &x, 1, 0, &x, 4, NULL, &r));
    assert_mp(-EINVAL, mp_pool_map_fixed_async(p, "t.echo", NULL, 1, 4, &x, 4, NULL, &r));
    assert_mp(MP_ENOFUNC, mp_pool_imap(p, "no.such", (mp_iter_fn)1, NULL, NULL, (mp_imap **)&r));
    assert_null(r);
    mp_imap *it = NULL;
    assert_mp(-EINVAL, mp_pool_imap(p, "t.echo", NULL, NULL, NULL, &it));
    assert_mp(-EINVAL, mp_pool_imap(p, "t.echo", (mp_iter_fn)1, NULL, NULL, NULL));
    assert_mp(-EINVAL, mp_pool_starmap_async(p, "t.mul", NULL, 2, NULL, &r));
    assert_mp(-EINVAL, mp_pool_map_fixed_async(p, "t.echo", &x, 1, 4, NULL, 4, NULL, &r));
    assert_mp(-EINVAL, mp_pool_worker_pids(p, NULL, 3));
    assert_mp(-EINVAL, mp_pool_apply(p, "t.echo", &x, 1, NULL, 1));
    assert_mp(-EINVAL, mp_pool_map(p, "t.echo", NULL, 0, NULL, NULL, 1));
    mp_args one_bad = {&bad, 1};
    assert_mp(-EINVAL, mp_pool_starmap_async(p, "t.mul", &one_bad, 1, NULL, &r));
    assert_null(r);
    end_pool(&p);
    /* use after free: the destructor cleared the pointer */
    assert_null(p);
    assert_mp(-EINVAL, mp_pool_apply_async(p, "t.echo", &x, 1, NULL, &r));
    assert_mp(-EINVAL, mp_pool_close(p));
}

static int t_affinity(const void *arg, size_t len, mp_task_result *res)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    int v[2] = {CPU_COUNT(&set), CPU_ISSET(0, &set)};
    return mp_task_result_set(res, v, sizeof v);
}
MP_FUNC_REGISTER("t.affinity", t_affinity)

static void test_pinning(void **state)
{
    int cpus[1] = {0};
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 2;
    o.cpus = cpus;
    o.ncpus = 1;
    mp_pool *p;
    assert_mp_ok(mp_pool_new(&p, &o));
    mp_buf items[8] = {{NULL, 0}};
    mp_task_options to;
    mp_task_options_init(&to);
    to.chunksize = 1;
    mp_result *r;
    assert_mp_ok(mp_pool_map(p, "t.affinity", items, 8, &to, &r, mp_test_timeout(10)));
    for (int i = 0; i < 8; i++) {
        const void *d;
        size_t l;
        assert_mp_ok(mp_result_item(r, i, &d, &l));
        int v[2];
        memcpy(v, d, sizeof v);
        assert_int_equal(v[0], 1);
        assert_int_equal(v[1], 1);
    }
    mp_result_free(&r);
    end_pool(&p);
}

static int t_late(const void *arg, size_t len, mp_task_result *res)
{
    return 0;
}

static void test_registered_too_late(void **state)
{
    /* a function registered after the workers were forked is unknown to them: refused at
     * submission, with the name in the detail, never sent to a worker */
    mp_pool *p = new_pool(1);
    assert_mp_ok(mp_func_register("t.late", t_late, NULL));
    mp_result *r = NULL;
    assert_mp(MP_ENOFUNC, mp_pool_apply(p, "t.late", NULL, 0, &r, mp_test_timeout(10)));
    assert_null(r);
    assert_non_null(strstr(mp_pool_last_error(), "\"t.late\" was registered after the pool"));
    mp_buf item = {NULL, 0};
    assert_mp(MP_ENOFUNC, mp_pool_map_async(p, "t.late", &item, 1, NULL, &r));
    assert_null(r);
    /* a pool created after the registration knows it */
    mp_pool *q = new_pool(1);
    assert_mp_ok(mp_pool_apply(q, "t.late", NULL, 0, &r, mp_test_timeout(10)));
    mp_result_free(&r);
    end_pool(&q);
    end_pool(&p);
}

/* ---- conventions (docs/conventions.md) ------------------------------------------------------ */

static mp_result *conv_slow;
static int conv_rc_neg, conv_rc_nan, conv_rc_pos, conv_rc_other, conv_other_val;
static mp_pool *conv_other;

static void conv_cb(mp_result *r, void *user)
{
    /* Only MP_FOREVER (or a positive timeout) waits: a negative or NaN timeout is "do not wait",
     * so from a callback it is an ordinary not-yet (-ETIMEDOUT), not a deadlock (-EDEADLK). */
    conv_rc_neg = mp_result_wait(conv_slow, -0.5);
    conv_rc_nan = mp_result_wait(conv_slow, NAN);
    conv_rc_pos = mp_result_wait(conv_slow, 0.5);
    /* -EDEADLK is about its own pool: another pool's blocking calls work from a callback */
    int x = 5;
    mp_result *o = NULL;
    conv_rc_other = mp_pool_apply(conv_other, "t.square", &x, sizeof x, &o, mp_test_timeout(10));
    const void *d;
    size_t len;
    if (conv_rc_other == 0 && mp_result_get(o, &d, &len, 0) == 0 && len == sizeof x)
        memcpy(&conv_other_val, d, sizeof x);
    mp_result_free(&o);
}

static void test_conventions(void **state)
{
    mp_pool_options o;
    memset(&o, 0x5a, sizeof o);
    mp_pool_options_init(&o);
    assert_int_equal(o.processes, MP_POOL_CPUS);
    assert_null(o.initializer);
    assert_int_equal(o.initarg_len, 0);
    assert_int_equal(o.maxtasksperchild, 0);
    assert_true(o.task_timeout == 0);
    assert_null(o.cpus);
    assert_int_equal(o.max_message, 0);
    assert_int_equal(o.pipeline, 0);
    mp_task_options t;
    memset(&t, 0x5a, sizeof t);
    mp_task_options_init(&t);
    assert_null(t.callback);
    assert_null(t.error_callback);
    assert_null(t.user);
    assert_int_equal(t.chunksize, 0);
    assert_int_equal(t.window, 0);
    mp_pool_options_init(NULL);
    mp_task_options_init(NULL);

    /* destructors: NULL and &NULL are no-ops returning 0 */
    mp_result *none = NULL;
    mp_imap *inone = NULL;
    assert_mp_ok(mp_result_free(NULL));
    assert_mp_ok(mp_result_free(&none));
    assert_mp_ok(mp_imap_free(NULL));
    assert_mp_ok(mp_imap_free(&inone));

    mp_pool *p = new_pool(2);
    int ms = 100000;
    assert_mp_ok(mp_pool_apply_async(p, "t.sleep_ms", &ms, sizeof ms, NULL, &conv_slow));
    /* negative (not MP_FOREVER) and NaN timeouts act as 0 */
    assert_mp(-ETIMEDOUT, mp_result_get(conv_slow, NULL, NULL, -0.5));
    assert_mp(-ETIMEDOUT, mp_result_wait(conv_slow, NAN));
    assert_mp(-ETIMEDOUT, mp_result_wait(conv_slow, -INFINITY));
    assert_int_equal(mp_result_is_ready(conv_slow), 0);

    conv_other = new_pool(1);
    int x = 3;
    mp_result *r;
    mp_task_options_init(&t);
    t.callback = conv_cb;
    assert_mp_ok(mp_pool_apply_async(p, "t.square", &x, sizeof x, &t, &r));
    assert_mp_ok(mp_result_wait(r, mp_test_timeout(10)));
    assert_mp(-ETIMEDOUT, conv_rc_neg);
    assert_mp(-ETIMEDOUT, conv_rc_nan);
    assert_mp(-EDEADLK, conv_rc_pos);
    assert_mp_ok(conv_rc_other);
    assert_int_equal(conv_other_val, 25);
    end_pool(&conv_other);
    assert_mp_ok(mp_result_free(&r));

    /* a forked copy of a result cannot be freed there: MP_ECHILD, the handle kept */
    pid_t child = mp_test_fork();
    if (child == 0) {
        mp_result *copy = conv_slow;
        MP_CHILD_CHECK(mp_result_free(&copy) == MP_ECHILD);
        MP_CHILD_CHECK(copy == conv_slow);
        mp_test_child_exit(0);
    }
    assert_child_ok(child);

    assert_mp_ok(mp_pool_close(p));
    assert_mp(-ETIMEDOUT, mp_pool_join(p, -2.0)); /* the slow task still runs */
    assert_mp_ok(mp_pool_terminate(p));
    assert_mp(MP_ETERMINATED, mp_result_get(conv_slow, NULL, NULL, 0));
    assert_mp_ok(mp_result_free(&conv_slow));
    assert_null(conv_slow);
    assert_mp_ok(mp_pool_free(&p));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MP_TEST(test_apply),
        MP_TEST(test_apply_async),
        MP_TEST(test_big_payload),
        MP_TEST(test_task_error),
        MP_TEST(test_callbacks),
        MP_TEST(test_map),
        MP_TEST(test_map_async),
        MP_TEST(test_map_fixed),
        MP_TEST(test_starmap),
        MP_TEST(test_close_join_terminate),
        MP_TEST(test_bad_input),
        MP_TEST(test_pinning),
        MP_TEST(test_registered_too_late),
        MP_TEST(test_conventions),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
