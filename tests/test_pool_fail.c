/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=90 */
/* test_pool_fail.c - what the pool does when things go wrong: workers that segfault, abort, exit or
 * are SIGKILLed mid-task, random kills across many tasks, task timeouts, the pool's owner killed,
 * the pool used from a task and from a callback, initializers, maxtasksperchild, leftovers. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mp_test.h"
#include "pool_util.h"
#include "mproc/error.h"
#include "mproc/pool.h"

static pid_t main_pid;

/* Workers end with exit() in some tests: LeakSanitizer must not judge the fork copy of the test's
 * heap (the objects the test's main thread refers to look unreachable there). */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
    return main_pid && getpid() != main_pid;
}

static int t_square(const void *arg, size_t len, mp_task_result *res)
{
    int x;
    memcpy(&x, arg, sizeof x);
    x *= x;
    return mp_task_result_set(res, &x, sizeof x);
}
MP_FUNC_REGISTER("f.square", t_square)

/* Spins for arg[1] microseconds, then squares arg[0]. */
static int t_spin_square(const void *arg, size_t len, mp_task_result *res)
{
    int a[2];
    memcpy(a, arg, sizeof a);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        clock_gettime(CLOCK_MONOTONIC, &t1);
    } while ((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000 < a[1]);
    int y = a[0] * a[0];
    return mp_task_result_set(res, &y, sizeof y);
}
MP_FUNC_REGISTER("f.spin_square", t_spin_square)

static int t_die(const void *arg, size_t len, mp_task_result *res)
{
    int how;
    memcpy(&how, arg, sizeof how);
    switch (how) {
    case 0:
        raise(SIGSEGV);
        break;
    case 1:
        abort();
    case 2:
        exit(3);
    case 3:
        mp_test_sleep_ms(100000);
        break;
    }
    return 0;
}
MP_FUNC_REGISTER("f.die", t_die)

MP_FUNC_REGISTER("f.sleep", pool_task_sleep_ms)

MP_FUNC_REGISTER("f.pid", pool_task_pid)

static int get_int(mp_result *r, int *out)
{
    const void *d;
    size_t l;
    int rc = mp_result_get(r, &d, &l, mp_test_timeout(10));
    if (rc == 0) {
        assert_int_equal(l, sizeof(int));
        memcpy(out, d, sizeof *out);
    }
    return rc;
}

/* SIGKILLs pid only if it is still a worker of this test (a child of a pool's worker factory,
 * which is a child of the test): the pid of a worker that was reaped meanwhile could belong to
 * anyone by now. The pidfd pins the process while we check. */
static int kill_worker(pid_t pid)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0 && errno != ENOSYS) return -1;
    /* Ours: a child of one of our children (the pool's worker factory). Checked after the pidfd
     * is open, so the pid cannot be recycled in between; without pidfds (valgrind 3.19) a worker
     * that is a live grandchild of ours cannot have been recycled either: the factory reaps it
     * only after it died, and it is not dead until we kill it. */
    pid_t pp = parent_of(pid);
    int ours = pp > 0 && parent_of(pp) == getpid();
    int rc = -1;
    if (ours)
        rc = fd >= 0 ? (int)syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0)
                     : kill(pid, SIGKILL);
    if (fd >= 0) close(fd);
    return rc;
}

/* ---- each way a worker can die ----------------------------------------------------------------
 */

static void check_death(int how, int want_code, const char *want_msg)
{
    mp_pool *p = new_pool(2);
    enum { N = 40 };
    mp_result *r[N];
    int args[N];
    for (int i = 0; i < N; i++) {
        args[i] = i;
        if (i == 10)
            assert_mp_ok(mp_pool_apply_async(p, "f.die", &how, sizeof how, NULL, &r[i]));
        else
            assert_mp_ok(mp_pool_apply_async(p, "f.square", &args[i], sizeof args[i], NULL, &r[i]));
    }
    for (int i = 0; i < N; i++) {
        int y = -1;
        int rc = get_int(r[i], &y);
        if (i == 10) {
            assert_mp(MP_EWORKERDIED, rc);
            int code;
            const char *msg;
            assert_mp(MP_EWORKERDIED, mp_result_error(r[i], &code, &msg));
            assert_int_equal(code, want_code);
            if (!strstr(msg, want_msg)) fail_msg("message '%s' lacks '%s'", msg, want_msg);
        } else {
            assert_mp_ok(rc);
            assert_int_equal(y, i * i);
        }
        mp_result_free(&r[i]);
    }
    /* the pool goes on with a replacement */
    for (int i = 0; i < 10; i++) {
        mp_result *s;
        int y;
        assert_mp_ok(mp_pool_apply(p, "f.square", &i, sizeof i, &s, mp_test_timeout(10)));
        assert_mp_ok(get_int(s, &y));
        assert_int_equal(y, i * i);
        mp_result_free(&s);
    }
    end_pool(&p);
}

static void test_segfault(void **state)
{
    check_death(0, -SIGSEGV, "killed by signal 11");
}

static void test_abort(void **state)
{
    check_death(1, -SIGABRT, "killed by signal 6");
}

static void test_exit(void **state)
{
    check_death(2, 3, "exited with status 3");
}

static void test_sigkill_mid_task(void **state)
{
    /* one worker, so the test knows which process runs the stuck task; tasks pipelined behind it
     * must be re-sent to the replacement, not lost */
    mp_pool *p = new_pool(1);
    int hang = 3;
    mp_result *stuck, *after[5];
    assert_mp_ok(mp_pool_apply_async(p, "f.die", &hang, sizeof hang, NULL, &stuck));
    for (int i = 0; i < 5; i++)
        assert_mp_ok(mp_pool_apply_async(p, "f.square", &i, sizeof i, NULL, &after[i]));
    pid_t pid;
    assert_int_equal(mp_pool_worker_pids(p, &pid, 1), 1);
    mp_test_sleep_ms(100);
    assert_int_equal(mp_result_is_ready(stuck), 0);
    assert_int_equal(kill_worker(pid), 0);
    assert_mp(MP_EWORKERDIED, mp_result_get(stuck, NULL, NULL, mp_test_timeout(10)));
    int code;
    const char *msg;
    mp_result_error(stuck, &code, &msg);
    assert_int_equal(code, -SIGKILL);
    assert_non_null(strstr(msg, "signal 9"));
    mp_result_free(&stuck);
    for (int i = 0; i < 5; i++) {
        int y;
        assert_mp_ok(get_int(after[i], &y));
        assert_int_equal(y, i * i);
        mp_result_free(&after[i]);
    }
    pid_t now;
    assert_int_equal(mp_pool_worker_pids(p, &now, 1), 1);
    assert_true(now != pid);
    end_pool(&p);
}

static void test_death_in_chunk(void **state)
{
    /* a worker dies inside a chunk of a map: that chunk's undelivered items fail, the rest of
     * the map succeeds */
    mp_pool *p = new_pool(2);
    enum { N = 100 };
    int xs[N];
    mp_buf items[N];
    for (int i = 0; i < N; i++) {
        xs[i] = i == 42 ? 1 : 9; /* 1: abort, 9: unknown "how" -> returns 0 */
        items[i] = (mp_buf){&xs[i], sizeof xs[i]};
    }
    mp_task_options o;
    mp_task_options_init(&o);
    o.chunksize = 10;
    mp_result *r;
    assert_mp(MP_EWORKERDIED, mp_pool_map(p, "f.die", items, N, &o, &r, mp_test_timeout(10)));
    int failed = 0;
    for (int i = 0; i < N; i++) {
        int rc = mp_result_item(r, i, NULL, NULL);
        if (rc) {
            assert_mp(MP_EWORKERDIED, rc);
            assert_true(i >= 40 && i < 50);
            failed++;
        }
    }
    assert_int_equal(failed, 10);
    mp_result_free(&r);
    end_pool(&p);
}

/* ---- random kills --------------------------------------------------------------------------- */

struct killer {
    mp_pool *p;
    atomic_int stop;
    int kills;
};

static void *killer_main(void *arg)
{
    struct killer *k = arg;
    unsigned seed = 12345;
    while (!atomic_load(&k->stop)) {
        mp_test_sleep_ms(2 + (int)(rand_r(&seed) % 6));
        pid_t pids[8];
        int n = mp_pool_worker_pids(k->p, pids, 8);
        if (n <= 0) continue;
        if (kill_worker(pids[rand_r(&seed) % (unsigned)n]) == 0) k->kills++;
    }
    return NULL;
}

static void test_random_kills(void **state)
{
    mp_pool *p = new_pool(2);
    struct killer k = {.p = p};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, killer_main, &k), 0);
    enum { N = 1500 };
    static mp_result *r[N];
    static int args[N][2];
    for (int i = 0; i < N; i++) {
        args[i][0] = i;
        args[i][1] = 20 + (i * 37) % 200;
        assert_mp_ok(mp_pool_apply_async(p, "f.spin_square", args[i], sizeof args[i], NULL, &r[i]));
    }
    /* a map with chunk size 1 at the same time */
    static int mx[N][2];
    static mp_buf items[N];
    for (int i = 0; i < N; i++) {
        mx[i][0] = i;
        mx[i][1] = 30;
        items[i] = (mp_buf){mx[i], sizeof mx[i]};
    }
    mp_task_options o;
    mp_task_options_init(&o);
    o.chunksize = 1;
    mp_result *m;
    assert_mp_ok(mp_pool_map_async(p, "f.spin_square", items, N, &o, &m));
    int ok = 0, died = 0;
    for (int i = 0; i < N; i++) {
        int y = -1;
        int rc = get_int(r[i], &y);
        if (rc == 0) {
            assert_int_equal(y, i * i);
            ok++;
        } else {
            assert_mp(MP_EWORKERDIED, rc);
            int code;
            mp_result_error(r[i], &code, NULL);
            assert_int_equal(code, -SIGKILL);
            died++;
        }
        mp_result_free(&r[i]);
    }
    int rc = mp_result_wait(m, mp_test_timeout(30));
    assert_mp_ok(rc);
    for (int i = 0; i < N; i++) {
        const void *d;
        size_t l;
        rc = mp_result_item(m, i, &d, &l);
        if (rc == 0) {
            int y;
            memcpy(&y, d, sizeof y);
            assert_int_equal(y, i * i);
            ok++;
        } else {
            assert_mp(MP_EWORKERDIED, rc);
            died++;
        }
    }
    mp_result_free(&m);
    atomic_store(&k.stop, 1);
    pthread_join(th, NULL);
    print_message("random kills: %d kills, %d tasks ok, %d failed with MP_EWORKERDIED\n", k.kills,
                  ok, died);
    assert_int_equal(ok + died, 2 * N);
    assert_true(k.kills > 0);
    assert_true(died <= k.kills);
    /* still usable */
    int x = 12, y;
    mp_result *s;
    assert_mp_ok(mp_pool_apply(p, "f.square", &x, sizeof x, &s, mp_test_timeout(10)));
    assert_mp_ok(get_int(s, &y));
    assert_int_equal(y, 144);
    mp_result_free(&s);
    end_pool(&p);
}

/* ---- timeouts ------------------------------------------------------------------------------- */

static void test_task_timeout(void **state)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 1;
    o.task_timeout = 0.3;
    mp_pool *p;
    assert_mp_ok(mp_pool_new(&p, &o));
    int hang = 3;
    mp_result *stuck, *after[3];
    assert_mp_ok(mp_pool_apply_async(p, "f.die", &hang, sizeof hang, NULL, &stuck));
    for (int i = 0; i < 3; i++)
        assert_mp_ok(mp_pool_apply_async(p, "f.square", &i, sizeof i, NULL, &after[i]));
    assert_mp(-ETIMEDOUT, mp_result_get(stuck, NULL, NULL, mp_test_timeout(10)));
    assert_int_equal(mp_result_is_ready(stuck), 1); /* the task timed out, not the get */
    const char *msg;
    mp_result_error(stuck, NULL, &msg);
    assert_non_null(strstr(msg, "task_timeout"));
    mp_result_free(&stuck);
    for (int i = 0; i < 3; i++) {
        int y;
        assert_mp_ok(get_int(after[i], &y));
        assert_int_equal(y, i * i);
        mp_result_free(&after[i]);
    }
    end_pool(&p);
}

/* ---- the owner of the pool is SIGKILLed --------------------------------------------------------
 */

static void test_killed_parent(void **state)
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    pid_t child = mp_test_fork();
    if (child == 0) {
        close(fds[0]);
        mp_pool *p = NULL;
        mp_pool_options o;
        mp_pool_options_init(&o);
        o.processes = 3;
        MP_CHILD_CHECK(mp_pool_new(&p, &o) == 0);
        int hang = 3;
        mp_result *r;
        for (int i = 0; i < 5; i++)
            MP_CHILD_CHECK(mp_pool_apply_async(p, "f.die", &hang, sizeof hang, NULL, &r) == 0);
        pid_t pids[3];
        MP_CHILD_CHECK(mp_pool_worker_pids(p, pids, 3) == 3);
        MP_CHILD_CHECK(write(fds[1], pids, sizeof pids) == sizeof pids);
        for (;;)
            pause();
    }
    close(fds[1]);
    pid_t pids[3];
    assert_int_equal(read(fds[0], pids, sizeof pids), (ssize_t)sizeof pids);
    close(fds[0]);
    mp_test_sleep_ms(50);
    kill(child, SIGKILL);
    assert_int_equal(mp_test_wait_code(child, mp_test_timeout(5)), 128 + SIGKILL);
    /* The workers are reparented to the test (a subreaper); each must be dead within 1 s. */
    double limit = mp_test_timeout(1.0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int reaped = 0;
    int done[3] = {0};
    for (;;) {
        for (int i = 0; i < 3; i++) {
            int st;
            if (!done[i] && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
                done[i] = 1;
                reaped++;
                assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double el = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (reaped == 3 || el > limit) break;
        mp_test_sleep_ms(5);
    }
    for (int i = 0; i < 3; i++) {
        if (done[i]) continue;
        char path[64], line[128];
        snprintf(path, sizeof path, "/proc/%d/status", (int)pids[i]);
        FILE *f = fopen(path, "re");
        fprintf(stderr, "worker %d not reaped:", (int)pids[i]);
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "State", 5) || !strncmp(line, "PPid", 4))
                fprintf(stderr, " %s", line);
        fprintf(stderr, "%s\n", f ? "" : " (no such process)");
        if (f) fclose(f);
    }
    assert_int_equal(reaped, 3);
    /* The pool's worker factory died with its owner too (it went first: the workers die of its
     * death) and came back to the test as well. */
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

/* ---- the pool used from a task and from a callback ------------------------------------------- */

static mp_pool *global_pool;

static int t_use_pool(const void *arg, size_t len, mp_task_result *res)
{
    int x = 1;
    mp_result *r = NULL;
    int rc[4];
    rc[0] = mp_pool_apply_async(global_pool, "f.square", &x, sizeof x, NULL, &r);
    rc[1] = mp_pool_apply(global_pool, "f.square", &x, sizeof x, &r, 1.0);
    rc[2] = mp_pool_close(global_pool);
    rc[3] = mp_pool_free(&global_pool);
    return mp_task_result_set(res, rc, sizeof rc);
}
MP_FUNC_REGISTER("f.use_pool", t_use_pool)

static void test_pool_from_task(void **state)
{
    /* Workers are copies of the program as it was when their pool was created (they are forked
     * by the pool's factory): the workers of a second pool hold a fork copy of the first pool's
     * object, and maxtasksperchild 1 makes the task run in a replacement worker too. */
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 1;
    o.maxtasksperchild = 1;
    assert_mp_ok(mp_pool_new(&global_pool, &o));
    mp_pool *second;
    assert_mp_ok(mp_pool_new(&second, &o));
    mp_result *r;
    assert_mp_ok(mp_pool_apply(second, "f.pid", NULL, 0, &r, mp_test_timeout(10)));
    mp_result_free(&r);
    assert_mp_ok(mp_pool_apply(second, "f.use_pool", NULL, 0, &r, mp_test_timeout(10)));
    const void *d;
    size_t l;
    assert_mp_ok(mp_result_get(r, &d, &l, 0));
    int rc[4];
    assert_int_equal(l, sizeof rc);
    memcpy(rc, d, sizeof rc);
    for (int i = 0; i < 4; i++)
        assert_mp(MP_ECHILD, rc[i]);
    mp_result_free(&r);
    end_pool(&second);
    end_pool(&global_pool);
}

static int cb_rc_apply, cb_rc_async, cb_rc_join, cb_rc_map, cb_rc_wait;
static mp_result *cb_inner;

static void cb_uses_pool(mp_result *r, void *user)
{
    mp_pool *p = user;
    int x = 3;
    mp_result *s = NULL;
    cb_rc_apply = mp_pool_apply(p, "f.square", &x, sizeof x, &s, 1.0);
    mp_result_free(&s);
    cb_rc_map = mp_pool_map(p, "f.square", NULL, 0, NULL, &s, 1.0);
    mp_result_free(&s);
    cb_rc_join = mp_pool_join(p, 1.0);
    int ms = 200; /* still running when waited for below */
    cb_rc_async = mp_pool_apply_async(p, "f.sleep", &ms, sizeof ms, NULL, &cb_inner);
    cb_rc_wait = mp_result_wait(cb_inner, 1.0);
}

static void test_pool_from_callback(void **state)
{
    mp_pool *p = new_pool(2);
    mp_task_options o;
    mp_task_options_init(&o);
    o.callback = cb_uses_pool;
    o.user = p;
    int x = 2;
    mp_result *r;
    assert_mp_ok(mp_pool_apply_async(p, "f.square", &x, sizeof x, &o, &r));
    assert_mp_ok(mp_result_wait(r, mp_test_timeout(10)));
    mp_result_free(&r);
    assert_mp(-EDEADLK, cb_rc_apply);
    assert_mp(-EDEADLK, cb_rc_map);
    assert_mp(-EDEADLK, cb_rc_join);
    assert_mp(-EDEADLK, cb_rc_wait);
    assert_mp_ok(cb_rc_async);
    int y;
    assert_mp_ok(get_int(cb_inner, &y));
    assert_int_equal(y, 200);
    mp_result_free(&cb_inner);
    end_pool(&p);
}

/* ---- initializer, maxtasksperchild ----------------------------------------------------------- */

static int init_count;
static int init_value;

static int t_init(const void *arg, size_t len, mp_task_result *res)
{
    init_count++;
    if (len == sizeof init_value) memcpy(&init_value, arg, len);
    if (init_value == -1) return mp_task_fail(res, 4, "no database");
    return 0;
}
MP_FUNC_REGISTER("f.init", t_init)

static int t_init_state(const void *arg, size_t len, mp_task_result *res)
{
    int v[3] = {init_count, init_value, (int)getpid()};
    return mp_task_result_set(res, v, sizeof v);
}
MP_FUNC_REGISTER("f.init_state", t_init_state)

static void test_initializer(void **state)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 2;
    o.initializer = "f.init";
    int v = 77;
    o.initarg = &v;
    o.initarg_len = sizeof v;
    mp_pool *p;
    assert_mp_ok(mp_pool_new(&p, &o));
    v = 0; /* the pool copied it */
    enum { N = 100 };
    mp_buf items[N];
    for (int i = 0; i < N; i++)
        items[i] = (mp_buf){NULL, 0};
    mp_task_options to;
    mp_task_options_init(&to);
    to.chunksize = 1;
    mp_result *r;
    assert_mp_ok(mp_pool_map(p, "f.init_state", items, N, &to, &r, mp_test_timeout(10)));
    for (int i = 0; i < N; i++) {
        const void *d;
        size_t l;
        assert_mp_ok(mp_result_item(r, i, &d, &l));
        int s[3];
        memcpy(s, d, sizeof s);
        assert_int_equal(s[0], 1); /* once per worker */
        assert_int_equal(s[1], 77);
    }
    mp_result_free(&r);
    end_pool(&p);
    assert_int_equal(init_count, 0); /* it never ran in the parent */

    /* an initializer that fails breaks the pool: tasks fail with its message, nothing hangs;
     * a task submitted while the first worker still initialises reports the message */
    v = -1;
    o.initarg = &v;
    assert_mp_ok(mp_pool_new(&p, &o));
    mp_result *s;
    /* submitted before the failure is known: the task fails; after: submission is refused */
    int rc = mp_pool_apply(p, "f.init_state", NULL, 0, &s, mp_test_timeout(10));
    assert_mp(MP_ETASKFAILED, rc);
    if (s) {
        int code;
        const char *msg;
        mp_result_error(s, &code, &msg);
        assert_int_equal(code, 4);
        assert_string_equal(msg, "initializer failed: no database");
        mp_result_free(&s);
    }
    assert_mp(MP_ETASKFAILED, mp_pool_apply_async(p, "f.init_state", NULL, 0, NULL, &s));
    end_pool(&p);
}

static void test_maxtasksperchild(void **state)
{
    mp_pool_options o;
    mp_pool_options_init(&o);
    o.processes = 2;
    o.maxtasksperchild = 3;
    mp_pool *p;
    assert_mp_ok(mp_pool_new(&p, &o));
    pid_t first[2];
    assert_int_equal(mp_pool_worker_pids(p, first, 2), 2);
    enum { N = 30 };
    mp_buf items[N];
    for (int i = 0; i < N; i++)
        items[i] = (mp_buf){NULL, 0};
    mp_task_options to;
    mp_task_options_init(&to);
    to.chunksize = 1;
    mp_result *r;
    assert_mp_ok(mp_pool_map(p, "f.pid", items, N, &to, &r, mp_test_timeout(20)));
    pid_t seen[N];
    int nseen = 0;
    int count[N] = {0};
    for (int i = 0; i < N; i++) {
        const void *d;
        size_t l;
        assert_mp_ok(mp_result_item(r, i, &d, &l));
        pid_t pid;
        memcpy(&pid, d, sizeof pid);
        int k = 0;
        while (k < nseen && seen[k] != pid)
            k++;
        if (k == nseen) seen[nseen++] = pid;
        count[k]++;
    }
    for (int k = 0; k < nseen; k++)
        assert_true(count[k] <= 3);
    assert_true(nseen >= N / 3);
    mp_result_free(&r);
    end_pool(&p);
}

/* ---- nothing left behind ------------------------------------------------------------------- */

static int count_shared_anon_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "/dev/zero") || strstr(line, "SYSV") || strstr(line, "memfd:mproc")) n++;
    if (f) fclose(f);
    return n;
}

/* ---- terminate while other threads wait ------------------------------------------------------ */

struct waiter {
    mp_pool *p;
    mp_result *r;
    int rc_get, rc_join;
};

static void *wait_get(void *arg)
{
    struct waiter *w = arg;
    w->rc_get = mp_result_get(w->r, NULL, NULL, mp_test_timeout(20));
    return NULL;
}

static void *wait_join(void *arg)
{
    struct waiter *w = arg;
    w->rc_join = mp_pool_join(w->p, mp_test_timeout(20));
    return NULL;
}

static atomic_int ecb_count, ecb_code;

static void on_error(mp_result *r, void *user)
{
    int code;
    atomic_store(&ecb_code, mp_result_error(r, &code, NULL));
    atomic_fetch_add(&ecb_count, 1);
}

static void test_terminate_under_waiters(void **state)
{
    mp_pool *p = new_pool(2);
    int hang = 3;
    struct waiter w = {.p = p};
    mp_task_options o;
    mp_task_options_init(&o);
    o.error_callback = on_error;
    atomic_store(&ecb_count, 0);
    assert_mp_ok(mp_pool_apply_async(p, "f.die", &hang, sizeof hang, &o, &w.r));
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, wait_get, &w), 0);
    assert_mp_ok(mp_pool_close(p));
    assert_int_equal(pthread_create(&b, NULL, wait_join, &w), 0);
    mp_test_sleep_ms(100);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_mp_ok(mp_pool_terminate(p));
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 5 * mp_test_timeout(1));
    assert_mp(MP_ETERMINATED, w.rc_get);
    assert_mp_ok(w.rc_join);
    /* the error callback ran, with the terminated result */
    assert_int_equal(atomic_load(&ecb_count), 1);
    assert_mp(MP_ETERMINATED, atomic_load(&ecb_code));
    mp_result_free(&w.r);
    assert_mp_ok(mp_pool_free(&p));
}

static void test_error_callback_on_death(void **state)
{
    mp_pool *p = new_pool(1);
    mp_task_options o;
    mp_task_options_init(&o);
    o.error_callback = on_error;
    atomic_store(&ecb_count, 0);
    int how = 1;
    mp_result *r;
    assert_mp_ok(mp_pool_apply_async(p, "f.die", &how, sizeof how, &o, &r));
    assert_mp(MP_EWORKERDIED, mp_result_get(r, NULL, NULL, mp_test_timeout(10)));
    assert_int_equal(atomic_load(&ecb_count), 1);
    assert_mp(MP_EWORKERDIED, atomic_load(&ecb_code));
    mp_result_free(&r);
    end_pool(&p);
}

static int count_maps_of(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "re");
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "/dev/zero") || strstr(line, "memfd:mproc-pool")) n++;
    if (f) fclose(f);
    return n;
}

static int two_maps(void *arg)
{
    return count_maps_of(*(pid_t *)arg) >= 2;
}

static void test_workers_hold_only_their_own_rings(void **state)
{
    /* a worker maps its own ring and its pool's page, not another pool's or a sibling's */
    mp_pool *a = new_pool(2);
    mp_pool *b = new_pool(1);
    pid_t pids[2];
    /* a new worker maps its ring (a memfd it receives) itself: wait until it did */
    assert_int_equal(mp_pool_worker_pids(b, pids, 1), 1);
    assert_true(mp_test_eventually(two_maps, &pids[0], mp_test_timeout(5)));
    assert_int_equal(count_maps_of(pids[0]), 2);
    assert_int_equal(mp_pool_worker_pids(a, pids, 2), 2);
    assert_true(mp_test_eventually(two_maps, &pids[0], mp_test_timeout(5)));
    assert_true(mp_test_eventually(two_maps, &pids[1], mp_test_timeout(5)));
    assert_int_equal(count_maps_of(pids[0]), 2);
    assert_int_equal(count_maps_of(pids[1]), 2);
    end_pool(&b);
    end_pool(&a);
}

static void test_no_leftovers(void **state)
{
    /* the leak guard checks children and fds after each case; here also the shared mappings */
    int before = count_shared_anon_maps();
    mp_pool *p = new_pool(3);
    int x = 5;
    mp_result *r;
    assert_mp_ok(mp_pool_apply(p, "f.square", &x, sizeof x, &r, mp_test_timeout(10)));
    mp_result_free(&r);
    assert_true(count_shared_anon_maps() > before);
    assert_mp_ok(mp_pool_close(p));
    assert_mp_ok(mp_pool_join(p, mp_test_timeout(10)));
    assert_int_equal(count_shared_anon_maps(), before);
    assert_mp_ok(mp_pool_free(&p));

    p = new_pool(3);
    int hang = 3;
    assert_mp_ok(mp_pool_apply_async(p, "f.die", &hang, sizeof hang, NULL, &r));
    assert_mp_ok(mp_pool_terminate(p));
    assert_int_equal(count_shared_anon_maps(), before);
    assert_mp(MP_ETERMINATED, mp_result_get(r, NULL, NULL, 0));
    mp_result_free(&r);
    assert_mp_ok(mp_pool_free(&p));
}

int main(void)
{
    main_pid = getpid();
    const struct CMUnitTest tests[] = {
        MP_TEST(test_segfault),
        MP_TEST(test_abort),
        MP_TEST(test_exit),
        MP_TEST(test_sigkill_mid_task),
        MP_TEST(test_death_in_chunk),
        MP_TEST(test_random_kills),
        MP_TEST(test_task_timeout),
        MP_TEST(test_killed_parent),
        MP_TEST(test_pool_from_task),
        MP_TEST(test_pool_from_callback),
        MP_TEST(test_initializer),
        MP_TEST(test_maxtasksperchild),
        MP_TEST(test_terminate_under_waiters),
        MP_TEST(test_error_callback_on_death),
        MP_TEST(test_workers_hold_only_their_own_rings),
        MP_TEST(test_no_leftovers),
    };
    return mp_test_main(__FILE__, tests, sizeof tests / sizeof tests[0]);
}
