/* SPDX-License-Identifier: MIT */
/* pool.c - the pool's MPI backend under mpirun (issue 13), driven by tests/mpi/pool.sh.
 *
 *   mpirun -np 3 mpi_pool MODE
 * MODE:
 *   portable  the portable part of the pool tests on 2 worker ranks: apply, apply_async,
 *             callbacks, map at chunk sizes 1, 2, 7 and automatic, map_fixed, imap,
 *             imap_unordered, starmap, task errors (code + message), initializer,
 *             maxtasksperchild, close/join, terminate (with a task running), a pool after it, and
 *             the bad inputs: a function registered on rank 0 only, an oversized argument
 *   hosts     a map whose results are the hostname each task ran on: prints "host NAME COUNT"
 *   forever   maps tiny tasks without end (prints "serving" first): the kill test's victim
 *   crash     item 500 of a map segfaults its rank
 *   timeout   a task sleeps past the pool's task_timeout
 *   leak      maps, then returns from main with the pool neither joined nor freed: mproc's atexit
 *             handler releases the worker ranks and finalises MPI, the job ends with status 0
 *   norank    (-np 1) asks for the MPI backend: must get MP_ENOTSUP with a message
 *   nolib     (built without libmproc-mpi) asks for the MPI backend: MP_ENOTSUP with a message
 * Prints "ok ..." / "FAIL ..." lines; exits 1 when a check failed. Worker ranks never get past
 * mp_init. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"

static int fails;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            printf("ok   ");                                                                       \
        } else {                                                                                   \
            printf("FAIL ");                                                                       \
            fails++;                                                                               \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
    } while (0)

static int square(const void *arg, size_t len, mp_task_result *res)
{
    int64_t x;
    if (len != sizeof x) return mp_task_fail(res, 1, "want 8 bytes, got %zu", len);
    memcpy(&x, arg, sizeof x);
    if (x == -7) return mp_task_fail(res, 42, "negative seven on pid %d", (int)getpid());
    x *= x;
    return mp_task_result_set(res, &x, sizeof x);
}
MP_FUNC_REGISTER("square", square)

static int host(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    char h[64] = {0};
    gethostname(h, sizeof h - 1);
    usleep(200); /* long enough that both hosts get tasks */
    return mp_task_result_set(res, h, strlen(h));
}
MP_FUNC_REGISTER("host", host)

static int snooze(const void *arg, size_t len, mp_task_result *res)
{
    double s;
    memcpy(&s, arg, sizeof s < len ? sizeof s : len);
    usleep((useconds_t)(s * 1e6));
    return mp_task_result_set(res, "z", 1);
}
MP_FUNC_REGISTER("snooze", snooze)

static int crash(const void *arg, size_t len, mp_task_result *res)
{
    int64_t x;
    memcpy(&x, arg, sizeof x);
    if (x == 500) raise(SIGSEGV);
    (void)len;
    return mp_task_result_set(res, &x, sizeof x);
}
MP_FUNC_REGISTER("crash", crash)

static int sum_args(const void *arg, size_t len, mp_task_result *res)
{
    mp_buf v[4];
    size_t n;
    int r = mp_args_unpack(arg, len, v, 4, &n);
    if (r) return mp_task_fail(res, r, "unpack");
    int64_t s = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t x;
        memcpy(&x, v[i].data, sizeof x);
        s += x;
    }
    return mp_task_result_set(res, &s, sizeof s);
}
MP_FUNC_REGISTER("sum_args", sum_args)

static int pid_of(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    int32_t p = (int32_t)getpid();
    return mp_task_result_set(res, &p, sizeof p);
}
MP_FUNC_REGISTER("pid_of", pid_of)

static int64_t init_value; /* set by the initializer, in the worker rank */
static int init_fn(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    memcpy(&init_value, arg, len < sizeof init_value ? len : sizeof init_value);
    return 0;
}
MP_FUNC_REGISTER("init_fn", init_fn)

static int read_init(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    return mp_task_result_set(res, &init_value, sizeof init_value);
}
MP_FUNC_REGISTER("read_init", read_init)

static int bad_init(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    return mp_task_fail(res, 9, "no configuration on this rank");
}
MP_FUNC_REGISTER("bad_init", bad_init)

static int rank0_only(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    (void)res;
    return 0;
}

static mp_pool *new_pool(int processes, const mp_pool_options *base)
{
    mp_pool_options o;
    if (base)
        o = *base;
    else
        mp_pool_options_init(&o);
    o.processes = processes;
    o.backend = MP_POOL_BACKEND_MPI;
    mp_pool *p = NULL;
    int r = mp_pool_new(&p, &o);
    if (r) {
        printf("FAIL mp_pool_new: %s (%s)\n", mp_strerror(r), mp_last_error());
        exit(1);
    }
    return p;
}

static int64_t item_i64(mp_result *r, size_t i, int *status)
{
    const void *d;
    size_t l;
    int64_t v = -1;
    *status = mp_result_item(r, i, &d, &l);
    if (*status == 0 && l == sizeof v) memcpy(&v, d, sizeof v);
    return v;
}

static int check_map(mp_pool *p, size_t n, size_t chunksize)
{
    int64_t *in = malloc(n * sizeof *in);
    mp_buf *items = malloc(n * sizeof *items);
    for (size_t i = 0; i < n; i++) {
        in[i] = (int64_t)i;
        items[i] = (mp_buf){&in[i], sizeof in[i]};
    }
    mp_task_options to;
    mp_task_options_init(&to);
    to.chunksize = chunksize;
    mp_result *r = NULL;
    int rc = mp_pool_map(p, "square", items, n, &to, &r, 60);
    int bad = rc != 0;
    for (size_t i = 0; i < n && !bad; i++) {
        int st;
        if (item_i64(r, i, &st) != (int64_t)(i * i) || st) bad = 1;
    }
    mp_result_free(&r);
    free(items);
    free(in);
    return bad;
}

static _Atomic int cb_ok, cb_err;
static void on_ok(mp_result *r, void *u)
{
    (void)r;
    (void)u;
    cb_ok++;
}
static void on_err(mp_result *r, void *u)
{
    (void)r;
    (void)u;
    cb_err++;
}

struct counter {
    int64_t next, end, cur;
};
static int iter_next(void *user, const void **data, size_t *len)
{
    struct counter *c = user;
    if (c->next >= c->end) return 0;
    c->cur = c->next++;
    *data = &c->cur;
    *len = sizeof c->cur;
    return 1;
}

static void portable(void)
{
    mp_pool *p = new_pool(MP_POOL_CPUS, NULL);
    CHECK(mp_pool_processes(p) == 2, "processes = the 2 worker ranks (%d)", mp_pool_processes(p));
    pid_t pids[4];
    int np = mp_pool_worker_pids(p, pids, 4);
    CHECK(np == 2 && pids[0] > 0 && pids[1] > 0, "worker pids reported (%d)", np);

    int64_t x = 12;
    mp_result *r = NULL;
    const void *d;
    size_t l;
    int rc = mp_pool_apply(p, "square", &x, sizeof x, &r, 30);
    int64_t y = -1;
    if (rc == 0 && mp_result_get(r, &d, &l, 0) == 0 && l == sizeof y) memcpy(&y, d, sizeof y);
    CHECK(rc == 0 && y == 144, "apply square(12) = %lld", (long long)y);
    mp_result_free(&r);

    x = -7;
    rc = mp_pool_apply(p, "square", &x, sizeof x, &r, 30);
    int code = 0;
    const char *msg = "";
    mp_result_error(r, &code, &msg);
    CHECK(rc == MP_ETASKFAILED && code == 42 && strstr(msg, "negative seven"),
          "task error comes back: %s, code %d, \"%s\"", mp_strerror(rc), code, msg);
    mp_result_free(&r);

    mp_task_options to;
    mp_task_options_init(&to);
    to.callback = on_ok;
    to.error_callback = on_err;
    mp_result *rs[20];
    for (int i = 0; i < 20; i++) {
        int64_t v = i == 5 ? -7 : i;
        mp_pool_apply_async(p, "square", &v, sizeof v, &to, &rs[i]);
    }
    int allok = 1;
    for (int i = 0; i < 20; i++) {
        int g = mp_result_wait(rs[i], 30);
        allok &= g == 0;
        mp_result_free(&rs[i]);
    }
    CHECK(allok && cb_ok == 19 && cb_err == 1, "apply_async x20: callbacks %d ok, %d error",
          (int)cb_ok, (int)cb_err);

    size_t sizes[] = {1, 2, 7, 0};
    for (int i = 0; i < 4; i++)
        CHECK(check_map(p, 5000, sizes[i]) == 0, "map of 5000 items, chunksize %zu", sizes[i]);
    CHECK(check_map(p, 0, 0) == 0, "map of 0 items");

    enum { NF = 3000 };
    static int64_t fin[NF], fout[NF];
    for (int i = 0; i < NF; i++)
        fin[i] = i;
    rc = mp_pool_map_fixed(p, "square", fin, NF, sizeof fin[0], fout, sizeof fout[0], NULL, &r, 60);
    int fbad = rc != 0;
    for (int i = 0; i < NF && !fbad; i++)
        fbad = fout[i] != (int64_t)i * i;
    CHECK(!fbad, "map_fixed of %d items", NF);
    mp_result_free(&r);

    for (int unordered = 0; unordered < 2; unordered++) {
        struct counter c = {0, 2000, 0};
        mp_imap *it = NULL;
        mp_task_options io;
        mp_task_options_init(&io);
        io.chunksize = unordered ? 3 : 1;
        rc = unordered ? mp_pool_imap_unordered(p, "square", iter_next, &c, &io, &it)
                       : mp_pool_imap(p, "square", iter_next, &c, &io, &it);
        int n = 0, bad = rc != 0;
        size_t idx;
        while (!bad && (rc = mp_imap_next(it, &d, &l, &idx, 30)) == 0) {
            int64_t v;
            memcpy(&v, d, sizeof v);
            if (v != (int64_t)(idx * idx) || (!unordered && idx != (size_t)n)) bad = 1;
            n++;
        }
        CHECK(!bad && rc == MP_EEOF && n == 2000, "%s of 2000 items (%d, end %s)",
              unordered ? "imap_unordered" : "imap", n, mp_strerror(rc));
        mp_imap_free(&it);
    }

    enum { NS = 500 };
    static int64_t sa[NS][3];
    static mp_buf sb[NS][3];
    static mp_args args[NS];
    for (int i = 0; i < NS; i++) {
        for (int k = 0; k < 3; k++) {
            sa[i][k] = i * (k + 1);
            sb[i][k] = (mp_buf){&sa[i][k], sizeof sa[i][k]};
        }
        args[i] = (mp_args){sb[i], 3};
    }
    rc = mp_pool_starmap(p, "sum_args", args, NS, NULL, &r, 60);
    int sbad = rc != 0;
    for (int i = 0; i < NS && !sbad; i++) {
        int st;
        sbad = item_i64(r, (size_t)i, &st) != 6 * i || st;
    }
    CHECK(!sbad, "starmap of %d 3-argument items", NS);
    mp_result_free(&r);

    /* Bad input: a function the worker ranks do not have (registered at run time on rank 0). */
    mp_result *rr = NULL;
    rc = mp_pool_apply(p, "only_on_rank0", &x, sizeof x, &rr, 30);
    CHECK(rc == MP_ENOFUNC, "function registered after the pool: %s (%s)", mp_strerror(rc),
          mp_last_error());
    mp_result_free(&rr);
    /* Bad input: an argument over max_message. */
    size_t big = 300 * 1024;
    char *bigarg = calloc(1, big);
    rc = mp_pool_apply_async(p, "square", bigarg, big, NULL, &rr);
    CHECK(rc == MP_ETOOBIG, "argument of %zu bytes: %s", big, mp_strerror(rc));
    free(bigarg);

    CHECK(mp_pool_close(p) == 0, "close");
    x = 3;
    CHECK(mp_pool_apply_async(p, "square", &x, sizeof x, NULL, &rr) == MP_ECLOSED,
          "apply after close: MP_ECLOSED");
    CHECK(mp_pool_join(p, 30) == 0, "join");
    mp_pool_free(&p);

    /* A function registered on rank 0 only, before the pool: the worker ranks say they lack it. */
    mp_func_register("only_on_rank0", rank0_only, NULL);
    p = new_pool(2, NULL);
    rc = mp_pool_apply(p, "only_on_rank0", &x, sizeof x, &rr, 30);
    mp_result_error(rr, &code, &msg);
    CHECK(rc == MP_ENOFUNC && strstr(msg, "not registered on MPI rank"),
          "function registered on rank 0 only: %s, \"%s\"", mp_strerror(rc), msg);
    mp_result_free(&rr);

    /* terminate with a task running: never hangs, the running task fails MP_ETERMINATED. */
    double s = 0.5;
    mp_pool_apply_async(p, "snooze", &s, sizeof s, NULL, &rr);
    usleep(100000);
    int64_t t0 = (int64_t)time(NULL);
    CHECK(mp_pool_terminate(p) == 0, "terminate with a task running");
    rc = mp_result_wait(rr, 5);
    CHECK(rc == 0 && mp_result_error(rr, NULL, NULL) == MP_ETERMINATED, "the running task: %s",
          mp_strerror(mp_result_error(rr, NULL, NULL)));
    CHECK((int64_t)time(NULL) - t0 < 3, "terminate returned at once");
    mp_result_free(&rr);
    mp_pool_free(&p);

    /* A pool right after: its ranks come back once the terminated task is done. */
    mp_pool_options o;
    mp_pool_options_init(&o);
    int64_t iv = 77;
    o.initializer = "init_fn";
    o.initarg = &iv;
    o.initarg_len = sizeof iv;
    o.maxtasksperchild = 3;
    p = new_pool(MP_POOL_CPUS, &o);
    CHECK(mp_pool_processes(p) == 2, "a pool after terminate gets both ranks back");
    rc = mp_pool_apply(p, "read_init", NULL, 0, &rr, 30);
    int64_t got = -1;
    if (rc == 0 && mp_result_get(rr, &d, &l, 0) == 0) memcpy(&got, d, sizeof got);
    CHECK(got == 77, "initializer ran on the rank (%lld)", (long long)got);
    mp_result_free(&rr);
    mp_task_options one;
    mp_task_options_init(&one);
    one.chunksize = 1;
    mp_buf e[20];
    for (int i = 0; i < 20; i++)
        e[i] = (mp_buf){NULL, 0};
    rc = mp_pool_map(p, "read_init", e, 20, &one, &rr, 60);
    int ibad = rc != 0;
    for (int i = 0; i < 20 && !ibad; i++) {
        int st;
        ibad = item_i64(rr, (size_t)i, &st) != 77;
    }
    CHECK(!ibad, "maxtasksperchild 3: 20 tasks, the initializer re-run for each session");
    mp_result_free(&rr);
    mp_pool_close(p);
    CHECK(mp_pool_join(p, 30) == 0, "join");
    mp_pool_free(&p);

    /* A failing initializer breaks the pool as with fork: tasks fail "initializer failed". */
    mp_pool_options_init(&o);
    o.initializer = "bad_init";
    p = new_pool(MP_POOL_CPUS, &o);
    rr = NULL;
    rc = mp_pool_apply(p, "square", &x, sizeof x, &rr, 30);
    /* Refused at submission once the pool knows (no result then), or the task's outcome. */
    msg = "initializer failed: no configuration (refused at submission)";
    if (rr) mp_result_error(rr, &code, &msg);
    CHECK(rc == MP_ETASKFAILED && strstr(msg, "initializer failed") &&
              strstr(msg, "no configuration"),
          "failing initializer: %s, \"%s\"", mp_strerror(rc), msg);
    mp_result_free(&rr);
    CHECK(mp_pool_terminate(p) == 0, "terminate the broken pool");
    mp_pool_free(&p);
    p = new_pool(2, NULL);
    rc = mp_pool_apply(p, "square", &x, sizeof x, &rr, 30);
    CHECK(rc == 0, "a pool after the broken one works: %s", mp_strerror(rc));
    mp_result_free(&rr);
    mp_pool_close(p);
    mp_pool_join(p, 30);
    mp_pool_free(&p);
}

static void hosts(void)
{
    mp_pool *p = new_pool(MP_POOL_CPUS, NULL);
    enum { N = 400 };
    mp_buf items[N];
    for (int i = 0; i < N; i++)
        items[i] = (mp_buf){NULL, 0};
    mp_task_options to;
    mp_task_options_init(&to);
    to.chunksize = 1;
    mp_result *r = NULL;
    int rc = mp_pool_map(p, "host", items, N, &to, &r, 60);
    CHECK(rc == 0, "map of %d tasks recording their host", N);
    char names[8][64];
    int counts[8] = {0}, nn = 0;
    for (int i = 0; i < N && rc == 0; i++) {
        const void *d;
        size_t l;
        if (mp_result_item(r, (size_t)i, &d, &l) || l >= 64) continue;
        char h[64];
        memcpy(h, d, l);
        h[l] = 0;
        int k = 0;
        while (k < nn && strcmp(names[k], h))
            k++;
        if (k == nn && nn < 8) strcpy(names[nn++], h);
        if (k < 8) counts[k]++;
    }
    for (int k = 0; k < nn; k++)
        printf("host %s %d\n", names[k], counts[k]);
    mp_result_free(&r);
    mp_pool_close(p);
    mp_pool_join(p, 30);
    mp_pool_free(&p);
}

static void forever(const char *func)
{
    mp_pool *p = new_pool(MP_POOL_CPUS, NULL);
    enum { N = 2000 };
    static int64_t in[N];
    static mp_buf items[N];
    for (int i = 0; i < N; i++) {
        in[i] = i;
        items[i] = (mp_buf){&in[i], sizeof in[i]};
    }
    mp_task_options to;
    mp_task_options_init(&to);
    to.chunksize = 1;
    printf("serving\n");
    fflush(stdout);
    for (;;) {
        mp_result *r = NULL;
        int rc = mp_pool_map(p, func, items, N, &to, &r, MP_FOREVER);
        printf("map: %s\n", mp_strerror(rc));
        fflush(stdout);
        mp_result_free(&r);
    }
}

static void timeout(void)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.task_timeout = 0.5;
    mp_pool *p = new_pool(MP_POOL_CPUS, &o);
    double s = 30;
    mp_result *r = NULL;
    int rc = mp_pool_apply(p, "snooze", &s, sizeof s, &r, 60);
    printf("apply returned %s\n", mp_strerror(rc)); /* not reached: the job ends */
}

static void expect_notsup(const char *what)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.backend = MP_POOL_BACKEND_MPI;
    mp_pool *p = NULL;
    int rc = mp_pool_new(&p, &o);
    CHECK(rc == MP_ENOTSUP && *mp_last_error(), "%s: %s: %s", what, mp_strerror(rc),
          mp_last_error());
    o.backend = MP_POOL_BACKEND_AUTO;
    rc = mp_pool_new(&p, &o);
    if (rc == 0) {
        mp_pool_terminate(p);
        mp_pool_free(&p);
    }
    printf("auto: %s %s\n", mp_strerror(rc), rc ? mp_last_error() : "");
}

int main(int argc, char **argv)
{
    mp_init(&argc, &argv); /* worker ranks serve tasks in here and never return */
    const char *mode = argc > 1 ? argv[1] : "portable";
    if (!strcmp(mode, "portable"))
        portable();
    else if (!strcmp(mode, "hosts"))
        hosts();
    else if (!strcmp(mode, "forever"))
        forever("square");
    else if (!strcmp(mode, "crash"))
        forever("crash");
    else if (!strcmp(mode, "leak")) {
        mp_pool *p = new_pool(MP_POOL_CPUS, NULL);
        CHECK(check_map(p, 1000, 1) == 0, "map before leaving main with the pool alive");
        double s = 0.2;
        mp_result *r = NULL;
        mp_pool_apply_async(p, "snooze", &s, sizeof s, NULL, &r); /* still running at exit */
    } else if (!strcmp(mode, "timeout"))
        timeout();
    else if (!strcmp(mode, "norank"))
        expect_notsup("launched with 1 rank");
    else if (!strcmp(mode, "nolib"))
        expect_notsup("without libmproc-mpi");
    else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    printf("%s: %d failure(s)\n", mode, fails);
    return fails ? 1 : 0;
}
