/* SPDX-License-Identifier: MIT */
/* mp-test: timeout=300 lock=shm labels=slow */
/* test_start_objects.c - every kind of object handed to a child (mp_process_pass) works under
 * every start method (issue 12), used from both sides at once against the same shared state:
 * producer/consumer over a Queue and a JoinableQueue, a Lock and an RLock contended from both (a
 * non-atomic counter stays exact), a Value and an Array incremented from both (exact totals), a
 * Semaphore, Event and Condition ping-pong, a Barrier, a Pipe/Connection end (the child echoes
 * what it got), a named block (mp_shm). mp_process_passed: wrong kind -> MP_ETYPE, bad index ->
 * -ENOENT.
 *
 * As in test_start_process.c, each case runs in a forked "program child" per method, which ends
 * with exit(); whatever of it is still alive 1 s later counts as left running. Targets check with
 * TCK/TCK_EQ (print, then exit code 98). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mproc/error.h"
#include "mproc/pipe.h"
#include "mproc/pool.h"
#include "mproc/process.h"
#include "mproc/queue.h"
#include "mproc/shared.h"
#include "mproc/start.h"
#include "mproc/sync.h"
#include "mp_test.h"
#include "start_util.h"

/* ---- helpers ------------------------------------------------------------------------------- */

#define TCK(cond)                                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: target check failed: %s (last error: \"%s\")\n", __FILE__,     \
                    __LINE__, #cond, mp_last_error());                                             \
            return 98;                                                                             \
        }                                                                                          \
    } while (0)

#define TCK_EQ(want, call)                                                                         \
    do {                                                                                           \
        long t_got_ = (long)(call);                                                                \
        long t_want_ = (long)(want);                                                               \
        if (t_got_ != t_want_) {                                                                   \
            fprintf(stderr, "%s:%d: target: %s = %ld (%s), want %ld (%s); last error: \"%s\"\n",   \
                    __FILE__, __LINE__, #call, t_got_, mp_err_name((int)t_got_), t_want_,          \
                    mp_err_name((int)t_want_), mp_last_error());                                   \
            return 98;                                                                             \
        }                                                                                          \
    } while (0)

#define WAIT_S 20.0 /* any single wait of a case: far above need, bounded */

/* Starts the registered function func with the int k as argument under m, after passing the n
 * objects (kinds[i], objs[i]); checks that their indexes are 0..n-1. */
static mp_process *start_with(mp_start_method m, const char *func, int k, const mp_kind *kinds,
                              void *const *objs, int n)
{
    mp_process *p = NULL;
    CK_EQ(0, mp_process_new_func(&p, NULL, func, &k, sizeof k));
    CK_EQ(0, mp_process_set_start_method(p, m));
    for (int i = 0; i < n; i++)
        CK_EQ(i, mp_process_pass(p, kinds[i], objs[i]));
    CK_EQ(0, mp_process_start(p));
    return p;
}

static int arg_int(const void *arg, size_t len)
{
    int v = 0;
    if (len >= sizeof v) memcpy(&v, arg, sizeof v);
    return v;
}

static size_t qmsg_len(int i)
{
    return sizeof(int) + (size_t)(i % 97) * 13;
}

static void qmsg_fill(unsigned char *buf, int i)
{
    memcpy(buf, &i, sizeof i);
    for (size_t j = sizeof i; j < qmsg_len(i); j++)
        buf[j] = (unsigned char)(i + (int)j);
}

static int qmsg_ok(const unsigned char *buf, size_t len, int i)
{
    int got;
    if (len != qmsg_len(i)) return 0;
    memcpy(&got, buf, sizeof got);
    if (got != i) return 0;
    for (size_t j = sizeof i; j < len; j++)
        if (buf[j] != (unsigned char)(i + (int)j)) return 0;
    return 1;
}

/* Both sides pass the gate (a Barrier of 2 passed as object `index`) before their loops, so the
 * loops overlap even when the child took long to start (an exec). Returns 0 or -1. */
static int gate_child(int index)
{
    mp_barrier *g = NULL;
    if (mp_process_passed(index, MP_KIND_BARRIER, &g) != 0) return -1;
    int w = mp_barrier_wait(g, WAIT_S);
    return w == 0 || w == 1 ? 0 : -1;
}

static void gate_parent(mp_barrier *g)
{
    int w = mp_barrier_wait(g, mp_test_timeout(WAIT_S));
    CK(w == 0 || w == 1);
}

/* ---- Queue: the child consumes what the parent produces, then produces for the parent ------ */

static int t_queue(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    int k = arg_int(arg, len);
    mp_queue *in = NULL, *out = NULL;
    TCK_EQ(0, mp_process_passed(0, MP_KIND_QUEUE, &in));
    TCK_EQ(0, mp_process_passed(1, MP_KIND_QUEUE, &out));
    unsigned char buf[4096];
    for (int i = 0; i < k; i++) {
        size_t n = 0;
        TCK_EQ(0, mp_queue_get(in, buf, sizeof buf, &n, WAIT_S));
        TCK(qmsg_ok(buf, n, i));
    }
    for (int i = 0; i < k; i++) {
        qmsg_fill(buf, i);
        TCK_EQ(0, mp_queue_put(out, buf, qmsg_len(i), WAIT_S));
    }
    return 0;
}
MP_FUNC_REGISTER("so_queue", t_queue)

static int prog_queue(mp_start_method m, void *ctx)
{
    (void)ctx;
    enum { K = 2000 };
    mp_queue *in = NULL, *out = NULL;
    /* Small bounds: both sides block on each other many times. */
    CK_EQ(0, mp_queue_new(&in, 16, 0));
    CK_EQ(0, mp_queue_new(&out, 16, 4096));
    mp_kind kinds[] = {MP_KIND_QUEUE, MP_KIND_QUEUE};
    void *objs[] = {in, out};
    mp_process *p = start_with(m, "so_queue", K, kinds, objs, 2);
    unsigned char buf[4096];
    for (int i = 0; i < K; i++) {
        qmsg_fill(buf, i);
        CK_EQ(0, mp_queue_put(in, buf, qmsg_len(i), mp_test_timeout(WAIT_S)));
    }
    for (int i = 0; i < K; i++) {
        size_t n = 0;
        CK_EQ(0, mp_queue_get(out, buf, sizeof buf, &n, mp_test_timeout(WAIT_S)));
        CK(qmsg_ok(buf, n, i));
    }
    CK_EQ(0, finish(&p));
    CK_EQ(1, mp_queue_is_empty(in));
    CK_EQ(1, mp_queue_is_empty(out));
    CK_EQ(0, mp_queue_free(&in));
    CK_EQ(0, mp_queue_free(&out));
    return 0;
}

static void queue_producer_consumer(void **state)
{
    (void)state;
    run_all(prog_queue, NULL, 90);
}

/* ---- JoinableQueue: the child marks every task done; the parent's join returns ------------ */

static int t_jqueue(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    int k = arg_int(arg, len);
    mp_queue *q = NULL;
    TCK_EQ(0, mp_process_passed(0, MP_KIND_QUEUE, &q));
    unsigned char buf[4096];
    for (int i = 0; i < k; i++) {
        size_t n = 0;
        TCK_EQ(0, mp_queue_get(q, buf, sizeof buf, &n, WAIT_S));
        TCK(qmsg_ok(buf, n, i));
        TCK_EQ(0, mp_queue_task_done(q));
    }
    return 0;
}
MP_FUNC_REGISTER("so_jqueue", t_jqueue)

static int prog_jqueue(mp_start_method m, void *ctx)
{
    (void)ctx;
    enum { K = 1000 };
    mp_queue *q = NULL;
    CK_EQ(0, mp_queue_new_joinable(&q, 8, 0));
    mp_kind kinds[] = {MP_KIND_QUEUE};
    void *objs[] = {q};
    mp_process *p = start_with(m, "so_jqueue", K, kinds, objs, 1);
    unsigned char buf[4096];
    for (int i = 0; i < K; i++) {
        qmsg_fill(buf, i);
        CK_EQ(0, mp_queue_put(q, buf, qmsg_len(i), mp_test_timeout(WAIT_S)));
    }
    CK_EQ(0, mp_queue_join(q, mp_test_timeout(WAIT_S)));
    CK_EQ(0, mp_queue_unfinished(q));
    CK_EQ(0, finish(&p));
    CK_EQ(0, mp_queue_tasks_lost(q));
    CK_EQ(0, mp_queue_free(&q));
    return 0;
}

static void joinable_queue_task_done_from_the_child(void **state)
{
    (void)state;
    run_all(prog_jqueue, NULL, 90);
}

/* ---- Lock and RLock: a plain counter in shared memory stays exact ------------------------ */

static int t_lock(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    int k = arg_int(arg, len);
    mp_lock *l = NULL;
    mp_value *v = NULL;
    TCK_EQ(0, mp_process_passed(0, MP_KIND_LOCK, &l));
    TCK_EQ(0, mp_process_passed(1, MP_KIND_VALUE, &v));
    volatile int64_t *c = mp_value_ptr(v);
    TCK(c != NULL);
    int rec = mp_lock_is_recursive(l);
    TCK_EQ(0, gate_child(2));
    for (int i = 0; i < k; i++) {
        TCK_EQ(0, mp_lock_acquire(l, WAIT_S));
        if (rec) TCK_EQ(0, mp_lock_acquire(l, WAIT_S));
        TCK_EQ(1, mp_lock_is_owned(l));
        int64_t x = *c;
        if (i % 32 == 0) sched_yield(); /* widen the window a lost update would need */
        *c = x + 1;
        if (rec) TCK_EQ(0, mp_lock_release(l));
        TCK_EQ(0, mp_lock_release(l));
    }
    return 0;
}
MP_FUNC_REGISTER("so_lock", t_lock)

static int prog_lock_common(mp_start_method m, bool recursive)
{
    enum { K = 20000 };
    mp_lock *l = NULL;
    mp_value *v = NULL;
    mp_barrier *g = NULL;
    CK_EQ(0, recursive ? mp_rlock_new(&l) : mp_lock_new(&l));
    CK_EQ(0, mp_value_new(&v, MP_TYPE_LONGLONG, NULL, false));
    CK_EQ(0, mp_barrier_new(&g, 2));
    mp_kind kinds[] = {MP_KIND_LOCK, MP_KIND_VALUE, MP_KIND_BARRIER};
    void *objs[] = {l, v, g};
    mp_process *p = start_with(m, "so_lock", K, kinds, objs, 3);
    volatile int64_t *c = mp_value_ptr(v);
    gate_parent(g);
    for (int i = 0; i < K; i++) {
        CK_EQ(0, mp_lock_acquire(l, mp_test_timeout(WAIT_S)));
        if (recursive) CK_EQ(0, mp_lock_acquire(l, mp_test_timeout(WAIT_S)));
        int64_t x = *c;
        if (i % 32 == 0) sched_yield();
        *c = x + 1;
        if (recursive) CK_EQ(0, mp_lock_release(l));
        CK_EQ(0, mp_lock_release(l));
    }
    CK_EQ(0, finish(&p));
    CK_EQ(2 * K, *c);
    CK_EQ(0, mp_lock_is_locked(l));
    CK_EQ(0, mp_barrier_free(&g));
    CK_EQ(0, mp_value_free(&v));
    CK_EQ(0, mp_lock_free(&l));
    return 0;
}

static int prog_lock(mp_start_method m, void *ctx)
{
    (void)ctx;
    return prog_lock_common(m, false);
}

static int prog_rlock(mp_start_method m, void *ctx)
{
    (void)ctx;
    return prog_lock_common(m, true);
}

static void lock_contended_from_both(void **state)
{
    (void)state;
    run_all(prog_lock, NULL, 90);
}

static void rlock_contended_from_both(void **state)
{
    (void)state;
    run_all(prog_rlock, NULL, 90);
}

/* ---- Value and Array: increments from both sides, exact totals ---------------------------- */

/* Two values: `a` only ever changes by mp_value_add (lock-free), `b` only under its own lock
 * (get then set, a read-modify-write the lock must make exact). Mixing both ways on one value
 * would race by design: mp_value_add does not take the lock. */
static int value_side(mp_value *a, mp_value *b, int k, double wait_s)
{
    mp_lock *l = mp_value_lock(b);
    if (!l) return 1;
    for (int i = 0; i < k; i++) {
        if (mp_value_add(a, 1, NULL) != 0) return 2;
        if (mp_lock_acquire(l, wait_s) != 0) return 3;
        int64_t x = 0;
        if (mp_value_get_i64(b, &x) != 0) return 4;
        if (i % 32 == 0) sched_yield();
        if (mp_value_set_i64(b, x + 1) != 0) return 5;
        if (mp_lock_release(l) != 0) return 6;
    }
    return 0;
}

static int t_value(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    int k = arg_int(arg, len);
    mp_value *a = NULL, *b = NULL;
    TCK_EQ(0, mp_process_passed(0, MP_KIND_VALUE, &a));
    TCK_EQ(0, mp_process_passed(1, MP_KIND_VALUE, &b));
    TCK_EQ(MP_TYPE_LONGLONG, mp_value_type(a));
    TCK_EQ(MP_TYPE_LONGLONG, mp_value_type(b));
    TCK_EQ(0, gate_child(2));
    TCK_EQ(0, value_side(a, b, k, WAIT_S));
    return 0;
}
MP_FUNC_REGISTER("so_value", t_value)

static int prog_value(mp_start_method m, void *ctx)
{
    (void)ctx;
    enum { K = 5000 };
    mp_value *a = NULL, *b = NULL;
    int64_t init = 1000;
    CK_EQ(0, mp_value_new(&a, MP_TYPE_LONGLONG, &init, true));
    CK_EQ(0, mp_value_new(&b, MP_TYPE_LONGLONG, &init, true));
    mp_barrier *g = NULL;
    CK_EQ(0, mp_barrier_new(&g, 2));
    mp_kind kinds[] = {MP_KIND_VALUE, MP_KIND_VALUE, MP_KIND_BARRIER};
    void *objs[] = {a, b, g};
    mp_process *p = start_with(m, "so_value", K, kinds, objs, 3);
    gate_parent(g);
    CK_EQ(0, value_side(a, b, K, mp_test_timeout(WAIT_S)));
    CK_EQ(0, finish(&p));
    int64_t total = 0;
    CK_EQ(0, mp_value_get_i64(a, &total));
    CK_EQ(1000 + 2 * K, total);
    CK_EQ(0, mp_value_get_i64(b, &total));
    CK_EQ(1000 + 2 * K, total);
    CK_EQ(0, mp_value_free(&a));
    CK_EQ(0, mp_value_free(&b));
    CK_EQ(0, mp_barrier_free(&g));
    return 0;
}

static void value_incremented_from_both(void **state)
{
    (void)state;
    run_all(prog_value, NULL, 90);
}

enum { ARR_N = 64 };

static int t_array(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    int k = arg_int(arg, len);
    mp_array *a = NULL;
    TCK_EQ(0, mp_process_passed(0, MP_KIND_ARRAY, &a));
    TCK_EQ(ARR_N, mp_array_len(a));
    TCK_EQ(0, gate_child(1));
    for (int i = 0; i < k; i++) {
        TCK_EQ(0, mp_array_add(a, 0, 1, NULL));
        size_t j = 1 + 2 * (size_t)(i % (ARR_N / 2)); /* odd slots are the child's */
        if (j < ARR_N) TCK_EQ(0, mp_array_set_i64(a, j, 1000 + (int64_t)j));
    }
    return 0;
}
MP_FUNC_REGISTER("so_array", t_array)

static int prog_array(mp_start_method m, void *ctx)
{
    (void)ctx;
    enum { K = 5000 };
    mp_array *a = NULL;
    CK_EQ(0, mp_array_new(&a, MP_TYPE_LONGLONG, ARR_N, NULL, true));
    mp_barrier *g = NULL;
    CK_EQ(0, mp_barrier_new(&g, 2));
    mp_kind kinds[] = {MP_KIND_ARRAY, MP_KIND_BARRIER};
    void *objs[] = {a, g};
    mp_process *p = start_with(m, "so_array", K, kinds, objs, 2);
    gate_parent(g);
    for (int i = 0; i < K; i++) {
        CK_EQ(0, mp_array_add(a, 0, 1, NULL));
        size_t j = 2 + 2 * (size_t)(i % (ARR_N / 2 - 1)); /* even slots but 0 are ours */
        CK_EQ(0, mp_array_set_i64(a, j, 2000 + (int64_t)j));
    }
    CK_EQ(0, finish(&p));
    int64_t x = 0;
    CK_EQ(0, mp_array_get_i64(a, 0, &x));
    CK_EQ(2 * K, x);
    for (size_t j = 1; j < ARR_N; j++) {
        CK_EQ(0, mp_array_get_i64(a, j, &x));
        CK_EQ((j % 2 ? 1000 : 2000) + (int64_t)j, x);
    }
    CK_EQ(0, mp_array_free(&a));
    CK_EQ(0, mp_barrier_free(&g));
    return 0;
}

static void array_written_from_both(void **state)
{
    (void)state;
    run_all(prog_array, NULL, 90);
}

/* ---- Semaphore, Event, Condition, Barrier: ping-pong ----------------------------------- */

static int t_sem(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    int k = arg_int(arg, len);
    mp_sem *ping = NULL, *pong = NULL;
    TCK_EQ(0, mp_process_passed(0, MP_KIND_SEM, &ping));
    TCK_EQ(0, mp_process_passed(1, MP_KIND_SEM, &pong));
    for (int i = 0; i < k; i++) {
        TCK_EQ(0, mp_sem_acquire(ping, WAIT_S));
        TCK_EQ(0, mp_sem_release(pong));
    }
    return 0;
}
MP_FUNC_REGISTER("so_sem", t_sem)

static int prog_sem(mp_start_method m, void *ctx)
{
    (void)ctx;
    enum { K = 1000 };
    mp_sem *ping = NULL, *pong = NULL;
    CK_EQ(0, mp_sem_new(&ping, 0));
    CK_EQ(0, mp_bsem_new(&pong, 1)); /* bounded at 1: a double release would be MP_EOVERRELEASE */
    CK_EQ(0, mp_sem_acquire(pong, 0));
    mp_kind kinds[] = {MP_KIND_SEM, MP_KIND_SEM};
    void *objs[] = {ping, pong};
    mp_process *p = start_with(m, "so_sem", K, kinds, objs, 2);
    for (int i = 0; i < K; i++) {
        CK_EQ(0, mp_sem_release(ping));
        CK_EQ(0, mp_sem_acquire(pong, mp_test_timeout(WAIT_S)));
    }
    CK_EQ(0, finish(&p));
    unsigned v1 = 9, v2 = 9;
    CK_EQ(0, mp_sem_get_value(ping, &v1));
    CK_EQ(0, mp_sem_get_value(pong, &v2));
    CK_EQ(0, v1);
    CK_EQ(0, v2);
    CK_EQ(0, mp_sem_free(&ping));
    CK_EQ(0, mp_sem_free(&pong));
    return 0;
}

static void semaphore_ping_pong(void **state)
{
    (void)state;
    run_all(prog_sem, NULL, 90);
}

static int t_event(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    int k = arg_int(arg, len);
    mp_event *e1 = NULL, *e2 = NULL;
    TCK_EQ(0, mp_process_passed(0, MP_KIND_EVENT, &e1));
    TCK_EQ(0, mp_process_passed(1, MP_KIND_EVENT, &e2));
    for (int i = 0; i < k; i++) {
        TCK_EQ(0, mp_event_wait(e1, WAIT_S));
        TCK_EQ(0, mp_event_clear(e1));
        TCK_EQ(0, mp_event_set(e2));
    }
    return 0;
}
MP_FUNC_REGISTER("so_event", t_event)

static int prog_event(mp_start_method m, void *ctx)
{
    (void)ctx;
    enum { K = 1000 };
    mp_event *e1 = NULL, *e2 = NULL;
    CK_EQ(0, mp_event_new(&e1));
    CK_EQ(0, mp_event_new(&e2));
    mp_kind kinds[] = {MP_KIND_EVENT, MP_KIND_EVENT};
    void *objs[] = {e1, e2};
    mp_process *p = start_with(m, "so_event", K, kinds, objs, 2);
    for (int i = 0; i < K; i++) {
        CK_EQ(0, mp_event_set(e1));
        CK_EQ(0, mp_event_wait(e2, mp_test_timeout(WAIT_S)));
        CK_EQ(0, mp_event_clear(e2));
    }
    CK_EQ(0, finish(&p));
    CK_EQ(0, mp_event_is_set(e1));
    CK_EQ(0, mp_event_is_set(e2));
    CK_EQ(0, mp_event_free(&e1));
    CK_EQ(0, mp_event_free(&e2));
    return 0;
}

static void event_ping_pong(void **state)
{
    (void)state;
    run_all(prog_event, NULL, 90);
}

static bool turn_is_odd(void *arg)
{
    return (*(volatile int64_t *)arg) % 2 == 1;
}

static bool turn_is_even(void *arg)
{
    return (*(volatile int64_t *)arg) % 2 == 0;
}

static int t_cond(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    int k = arg_int(arg, len);
    mp_cond *c = NULL;
    mp_value *turn = NULL;
    TCK_EQ(0, mp_process_passed(0, MP_KIND_COND, &c));
    TCK_EQ(0, mp_process_passed(1, MP_KIND_VALUE, &turn));
    volatile int64_t *t = mp_value_ptr(turn);
    for (int i = 0; i < k; i++) {
        TCK_EQ(0, mp_cond_acquire(c, WAIT_S));
        TCK_EQ(0, mp_cond_wait_for(c, turn_is_odd, (void *)t, WAIT_S));
        *t = *t + 1;
        TCK_EQ(0, mp_cond_notify_all(c));
        TCK_EQ(0, mp_cond_release(c));
    }
    return 0;
}
MP_FUNC_REGISTER("so_cond", t_cond)

static int prog_cond(mp_start_method m, void *ctx)
{
    (void)ctx;
    enum { K = 500 };
    mp_cond *c = NULL;
    mp_value *turn = NULL;
    CK_EQ(0, mp_cond_new(&c, NULL));
    CK_EQ(0, mp_value_new(&turn, MP_TYPE_LONGLONG, NULL, false));
    mp_kind kinds[] = {MP_KIND_COND, MP_KIND_VALUE};
    void *objs[] = {c, turn};
    mp_process *p = start_with(m, "so_cond", K, kinds, objs, 2);
    volatile int64_t *t = mp_value_ptr(turn);
    for (int i = 0; i < K; i++) {
        CK_EQ(0, mp_cond_acquire(c, mp_test_timeout(WAIT_S)));
        CK_EQ(0, mp_cond_wait_for(c, turn_is_even, (void *)t, mp_test_timeout(WAIT_S)));
        *t = *t + 1;
        CK_EQ(0, mp_cond_notify_all(c));
        CK_EQ(0, mp_cond_release(c));
    }
    CK_EQ(0, finish(&p));
    CK_EQ(2 * K, *t);
    CK_EQ(0, mp_cond_free(&c));
    CK_EQ(0, mp_value_free(&turn));
    return 0;
}

static void condition_turns(void **state)
{
    (void)state;
    run_all(prog_cond, NULL, 90);
}

static int t_barrier(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    int k = arg_int(arg, len);
    mp_barrier *b = NULL;
    mp_array *a = NULL;
    TCK_EQ(0, mp_process_passed(0, MP_KIND_BARRIER, &b));
    TCK_EQ(0, mp_process_passed(1, MP_KIND_ARRAY, &a));
    TCK_EQ(2, mp_barrier_parties(b));
    for (int r = 1; r <= k; r++) {
        TCK_EQ(0, mp_array_set_i64(a, 1, r));
        int w = mp_barrier_wait(b, WAIT_S);
        TCK(w == 0 || w == 1);
        int64_t other = 0;
        TCK_EQ(0, mp_array_get_i64(a, 0, &other));
        TCK_EQ(r, other);
        w = mp_barrier_wait(b, WAIT_S);
        TCK(w == 0 || w == 1);
    }
    return 0;
}
MP_FUNC_REGISTER("so_barrier", t_barrier)

static int prog_barrier(mp_start_method m, void *ctx)
{
    (void)ctx;
    enum { K = 300 };
    mp_barrier *b = NULL;
    mp_array *a = NULL;
    CK_EQ(0, mp_barrier_new(&b, 2));
    CK_EQ(0, mp_array_new(&a, MP_TYPE_LONGLONG, 2, NULL, true));
    mp_kind kinds[] = {MP_KIND_BARRIER, MP_KIND_ARRAY};
    void *objs[] = {b, a};
    mp_process *p = start_with(m, "so_barrier", K, kinds, objs, 2);
    for (int r = 1; r <= K; r++) {
        CK_EQ(0, mp_array_set_i64(a, 0, r));
        int w = mp_barrier_wait(b, mp_test_timeout(WAIT_S));
        CK(w == 0 || w == 1);
        int64_t other = 0;
        CK_EQ(0, mp_array_get_i64(a, 1, &other));
        CK_EQ(r, other);
        w = mp_barrier_wait(b, mp_test_timeout(WAIT_S));
        CK(w == 0 || w == 1);
    }
    CK_EQ(0, finish(&p));
    CK_EQ(0, mp_barrier_is_broken(b));
    CK_EQ(0, mp_barrier_free(&b));
    CK_EQ(0, mp_array_free(&a));
    return 0;
}

static void barrier_rounds(void **state)
{
    (void)state;
    run_all(prog_barrier, NULL, 90);
}

/* ---- Pipe / Connection: the child echoes what it got ------------------------------------ */

static int t_conn(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    (void)arg;
    (void)len;
    mp_conn *c = NULL, *w = NULL;
    TCK_EQ(0, mp_process_passed(0, MP_KIND_CONN, &c));
    TCK_EQ(0, mp_process_passed(1, MP_KIND_CONN, &w));
    TCK_EQ(1, mp_conn_is_writable(w));
    TCK_EQ(0, mp_conn_is_readable(w));
    pid_t me = getpid();
    TCK_EQ(0, mp_conn_send(w, &me, sizeof me, WAIT_S));
    for (;;) {
        void *buf = NULL;
        size_t n = 0;
        TCK_EQ(0, mp_conn_recv_alloc(c, &buf, &n, WAIT_S));
        if (n == 0) {
            free(buf);
            break; /* the parent's "stop" */
        }
        int r = mp_conn_send(c, buf, n, WAIT_S);
        free(buf);
        TCK_EQ(0, r);
    }
    return 0;
}
MP_FUNC_REGISTER("so_conn", t_conn)

static int prog_conn(mp_start_method m, void *ctx)
{
    (void)ctx;
    enum { K = 300 };
    mp_conn *a = NULL, *b = NULL, *r = NULL, *w = NULL;
    CK_EQ(0, mp_pipe_new(&a, &b, true));
    CK_EQ(0, mp_pipe_new(&r, &w, false));
    mp_kind kinds[] = {MP_KIND_CONN, MP_KIND_CONN};
    void *objs[] = {b, w};
    mp_process *p = start_with(m, "so_conn", 0, kinds, objs, 2);
    /* The child has its own ends now: ours go (Python closes them in the parent too). */
    CK_EQ(0, mp_conn_free(&b));
    CK_EQ(0, mp_conn_free(&w));
    pid_t got = 0;
    size_t n = 0;
    CK_EQ(0, mp_conn_recv(r, &got, sizeof got, &n, mp_test_timeout(WAIT_S)));
    CK_EQ(sizeof got, n);
    CK_EQ(mp_process_pid(p), got);
    size_t cap = 300000;
    unsigned char *msg = malloc(cap), *back = malloc(cap);
    CK(msg && back);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < K; i++) {
        size_t len = 1 + (size_t)(mp_test_rng_next(&rng) % (i % 10 == 0 ? cap - 1 : 512));
        for (size_t j = 0; j < len; j++)
            msg[j] = (unsigned char)(mp_test_rng_next(&rng) >> 24);
        CK_EQ(0, mp_conn_send(a, msg, len, mp_test_timeout(WAIT_S)));
        CK_EQ(0, mp_conn_recv(a, back, cap, &n, mp_test_timeout(WAIT_S)));
        CK_EQ(len, n);
        CK(memcmp(msg, back, len) == 0);
    }
    CK_EQ(0, mp_conn_send(a, "", 0, mp_test_timeout(WAIT_S)));
    CK_EQ(0, finish(&p));
    free(msg);
    free(back);
    CK_EQ(0, mp_conn_free(&a));
    CK_EQ(0, mp_conn_free(&r));
    return 0;
}

static void connection_echo(void **state)
{
    (void)state;
    run_all(prog_conn, NULL, 90);
}

/* ---- a named block ----------------------------------------------------------------------------
 */

struct shm_arg {
    int k;
    char name[208];
};

static int t_shm(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    struct shm_arg sa;
    TCK_EQ(sizeof sa, len);
    memcpy(&sa, arg, sizeof sa);
    mp_shm *s = NULL;
    TCK_EQ(0, mp_process_passed(0, MP_KIND_SHM, &s));
    TCK_EQ(4096, mp_shm_size(s));
    TCK_EQ(0, strcmp(mp_shm_name(s), sa.name));
    unsigned char *mem = mp_shm_ptr(s);
    _Atomic int64_t *ctr = (_Atomic int64_t *)(void *)mem;
    TCK_EQ(0, gate_child(1));
    for (int i = 0; i < sa.k; i++)
        atomic_fetch_add(ctr, 1);
    memset(mem + 2048, 0xC1, 1024);
    return 0;
}
MP_FUNC_REGISTER("so_shm", t_shm)

static int prog_shm(mp_start_method m, void *ctx)
{
    (void)ctx;
    struct shm_arg sa;
    memset(&sa, 0, sizeof sa);
    sa.k = 100000;
    mp_shm *s = NULL;
    CK_EQ(0, mp_shm_new(&s, NULL, 4096));
    snprintf(sa.name, sizeof sa.name, "%s", mp_shm_name(s));
    mp_process *p = NULL;
    CK_EQ(0, mp_process_new_func(&p, NULL, "so_shm", &sa, sizeof sa));
    CK_EQ(0, mp_process_set_start_method(p, m));
    CK_EQ(0, mp_process_pass(p, MP_KIND_SHM, s));
    mp_barrier *g = NULL;
    CK_EQ(0, mp_barrier_new(&g, 2));
    CK_EQ(1, mp_process_pass(p, MP_KIND_BARRIER, g));
    CK_EQ(0, mp_process_start(p));
    unsigned char *mem = mp_shm_ptr(s);
    _Atomic int64_t *ctr = (_Atomic int64_t *)(void *)mem;
    gate_parent(g);
    for (int i = 0; i < sa.k; i++)
        atomic_fetch_add(ctr, 1);
    CK_EQ(0, finish(&p));
    CK_EQ(2 * (int64_t)sa.k, atomic_load(ctr));
    for (int i = 2048; i < 3072; i++)
        CK_EQ(0xC1, mem[i]);
    /* The child did not unlink the name: it is not the creator. */
    mp_shm *again = NULL;
    CK_EQ(0, mp_shm_attach(&again, sa.name));
    CK_EQ(0, mp_shm_free(&again));
    CK_EQ(0, mp_shm_free(&s));
    CK_EQ(0, mp_barrier_free(&g));
    return 0;
}

static void named_block_shared(void **state)
{
    (void)state;
    run_all(prog_shm, NULL, 90);
}

/* ---- mp_process_pass / mp_process_passed errors ------------------------------------------ */

static int t_passed_errors(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    (void)arg;
    (void)len;
    mp_queue *q = NULL;
    mp_lock *l = NULL;
    TCK_EQ(MP_ETYPE, mp_process_passed(0, MP_KIND_LOCK, &l));
    TCK(l == NULL);
    TCK_EQ(MP_ETYPE, mp_process_passed(1, MP_KIND_QUEUE, &q));
    TCK_EQ(-ENOENT, mp_process_passed(2, MP_KIND_QUEUE, &q));
    TCK_EQ(-ENOENT, mp_process_passed(-1, MP_KIND_QUEUE, &q));
    TCK_EQ(-ENOENT, mp_process_passed(MP_PROCESS_PASS_MAX, MP_KIND_QUEUE, &q));
    TCK_EQ(-EINVAL, mp_process_passed(0, MP_KIND_QUEUE, NULL));
    TCK(q == NULL);
    TCK_EQ(0, mp_process_passed(0, MP_KIND_QUEUE, &q));
    TCK_EQ(0, mp_process_passed(1, MP_KIND_LOCK, &l));
    TCK(q != NULL && l != NULL);
    return 0;
}
MP_FUNC_REGISTER("so_passed_errors", t_passed_errors)

static int t_nothing_passed(const void *arg, size_t len, mp_task_result *res)
{
    (void)res;
    (void)arg;
    (void)len;
    mp_queue *q = NULL;
    TCK_EQ(-ENOENT, mp_process_passed(0, MP_KIND_QUEUE, &q));
    return 0;
}
MP_FUNC_REGISTER("so_nothing_passed", t_nothing_passed)

static int prog_pass_errors(mp_start_method m, void *ctx)
{
    (void)ctx;
    mp_queue *q = NULL, *none = NULL;
    mp_lock *l = NULL;
    CK_EQ(0, mp_queue_new(&q, 0, 0));
    CK_EQ(0, mp_lock_new(&l));
    /* Not a child started with objects. */
    CK_EQ(-ENOENT, mp_process_passed(0, MP_KIND_QUEUE, &none));
    mp_process *p = NULL;
    CK_EQ(0, mp_process_new_func(&p, NULL, "so_passed_errors", NULL, 0));
    CK_EQ(0, mp_process_set_start_method(p, m));
    CK_EQ(-EINVAL, mp_process_pass(NULL, MP_KIND_QUEUE, q));
    CK_EQ(-EINVAL, mp_process_pass(p, MP_KIND_QUEUE, NULL));
    CK_EQ(-EINVAL, mp_process_pass(p, (mp_kind)0, q));
    CK_EQ(-EINVAL, mp_process_pass(p, (mp_kind)77, q));
    CK_EQ(0, mp_process_pass(p, MP_KIND_QUEUE, q));
    CK_EQ(1, mp_process_pass(p, MP_KIND_LOCK, l));
    CK_EQ(0, mp_process_start(p));
    CK_EQ(MP_ESTARTED, mp_process_pass(p, MP_KIND_LOCK, l));
    CK_EQ(0, finish(&p));
    /* A child given nothing finds nothing. */
    CK_EQ(0, run_named(m, "so_nothing_passed", NULL, 0));
    CK_EQ(0, mp_queue_free(&q));
    CK_EQ(0, mp_lock_free(&l));
    return 0;
}

static void pass_and_passed_errors(void **state)
{
    (void)state;
    run_all(prog_pass_errors, NULL, 60);
}

/* ---- an object that cannot travel: a clear error at start ------------------------------------ */

static int t_ignore(const void *arg, size_t len, mp_task_result *res)
{
    (void)arg;
    (void)len;
    (void)res;
    return 0;
}
MP_FUNC_REGISTER("so_ignore", t_ignore)

static int prog_cannot_travel(mp_start_method m, void *ctx)
{
    (void)ctx;
    mp_conn *a = NULL, *b = NULL;
    CK_EQ(0, mp_pipe_new(&a, &b, true));
    CK_EQ(0, mp_conn_close(b)); /* the end lost its fd */
    mp_process *p = NULL;
    CK_EQ(0, mp_process_new_func(&p, NULL, "so_ignore", NULL, 0));
    CK_EQ(0, mp_process_set_start_method(p, m));
    CK_EQ(0, mp_process_pass(p, MP_KIND_CONN, b));
    int r = mp_process_start(p);
    if (m == MP_START_FORK) {
        /* Under fork the child gets its copy of the object as it is: nothing travels. */
        CK_EQ(0, r);
        CK_EQ(0, finish(&p));
    } else {
        CK_EQ(MP_ENOTSUP, r);
        CK(strstr(mp_last_error(), "conn") != NULL);
        CK_EQ(0, mp_process_pid(p));
        CK_EQ(0, mp_process_free(&p));
    }
    CK_EQ(0, mp_conn_free(&a));
    CK_EQ(0, mp_conn_free(&b));
    return 0;
}

static void object_that_cannot_travel(void **state)
{
    (void)state;
    run_all(prog_cannot_travel, NULL, 30);
}

static const struct CMUnitTest tests[] = {
    MP_TEST(queue_producer_consumer),
    MP_TEST(joinable_queue_task_done_from_the_child),
    MP_TEST(lock_contended_from_both),
    MP_TEST(rlock_contended_from_both),
    MP_TEST(value_incremented_from_both),
    MP_TEST(array_written_from_both),
    MP_TEST(semaphore_ping_pong),
    MP_TEST(event_ping_pong),
    MP_TEST(condition_turns),
    MP_TEST(barrier_rounds),
    MP_TEST(connection_echo),
    MP_TEST(named_block_shared),
    MP_TEST(pass_and_passed_errors),
    MP_TEST(object_that_cannot_travel),
};

MP_TEST_MAIN_INIT(tests)
