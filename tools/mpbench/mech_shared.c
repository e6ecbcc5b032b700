/* SPDX-License-Identifier: MIT */
/* mech_shared.c - shared memory: Array bulk transfer, Value under its lock, atomic Value.
 *
 * array.*  A synchronized byte Array per direction, handed over with a raw atomic Value (0: the
 *          slot is empty, 1: full): mp_array_write, flag up; the peer waits for the flag,
 *          mp_array_read, flag down. Waiting spins briefly, then yields the CPU, so the same-CPU
 *          case lets the peer run and the cross-CPU case never sleeps.
 * value.*  Two processes each do n increments of Value('q') under its lock (Python's
 *          `with v.get_lock(): v.value += 1`); the total is checked after every rep.
 * atomic.* The same with mp_value_add on a raw Value (Python has no equivalent).
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "avail.h"
#include "mpbench.h"

#ifdef MPB_HAVE_SHARED
#include "mproc/error.h"
#include "mproc/shared.h"

#define TIMEOUT 30.0

/* The CPU's spin-wait hint, kept here because mpbench sees only mproc's public headers (the
 * library's own copy is private to it). */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

struct slot {
    mp_array *data;
    mp_value *full; /* raw 'i': 0 empty, 1 full */
};

struct array_st {
    struct slot s[2]; /* s[0]: parent -> child, s[1]: child -> parent */
};

/* Waits until the flag reads `want`, spinning a little, then yielding; gives up after TIMEOUT. */
static int wait_flag(mp_value *v, int want)
{
    int *p = mp_value_ptr(v);
    double end = 0;
    for (unsigned i = 0;; i++) {
        if (__atomic_load_n(p, __ATOMIC_ACQUIRE) == want) return 0;
        if (i < 64) {
            cpu_relax();
            continue;
        }
        sched_yield();
        if ((i & 1023) == 0) {
            double now = mpb_now();
            if (end == 0)
                end = now + TIMEOUT;
            else if (now > end)
                return -ETIMEDOUT;
        }
    }
}

static int a_open(void **st, size_t maxmsg)
{
    struct array_st *a = calloc(1, sizeof *a);
    if (!a) return -ENOMEM;
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        rc = mp_array_new(&a->s[i].data, MP_TYPE_UBYTE, maxmsg ? maxmsg : 1, NULL, true);
        if (rc == 0) rc = mp_value_new(&a->s[i].full, MP_TYPE_INT, NULL, false);
    }
    if (rc < 0) {
        for (int i = 0; i < 2; i++) {
            mp_array_free(&a->s[i].data);
            mp_value_free(&a->s[i].full);
        }
        free(a);
        return rc;
    }
    *st = a;
    return 0;
}

static void a_side(void *st, int side) {}

static int a_send(void *st, int side, const void *buf, size_t len)
{
    struct slot *s = &((struct array_st *)st)->s[side];
    int rc = wait_flag(s->full, 0);
    if (rc == 0) rc = mp_array_write(s->data, 0, buf, len);
    if (rc == 0) rc = mp_value_add(s->full, 1, NULL);
    return rc;
}

static int a_recv(void *st, int side, void *buf, size_t len)
{
    struct slot *s = &((struct array_st *)st)->s[!side];
    int rc = wait_flag(s->full, 1);
    if (rc == 0) rc = mp_array_read(s->data, 0, buf, len);
    if (rc == 0) rc = mp_value_add(s->full, -1, NULL);
    return rc;
}

static void a_close(void *st, int side)
{
    struct array_st *a = st;
    for (int i = 0; i < 2; i++) {
        mp_array_free(&a->s[i].data);
        mp_value_free(&a->s[i].full);
    }
    if (side == 0) free(a);
}

static const mpb_chan array_chan = {"mp Array", a_open, a_side, a_send, a_recv, a_close};

void mpb_bench_array(void)
{
    mpb_chan_suite("array", "mp Array", &array_chan, MPB_SALL);
}

/* ---- counters ------------------------------------------------------------------------------ */

static int reset_value(void *arg, long n)
{
    return mp_value_set_i64(arg, 0);
}

static int check_value(void *arg, long total)
{
    int64_t x = -1;
    mp_value_get_i64(arg, &x);
    return x == total ? 0 : -1;
}

#ifdef MPB_HAVE_SYNC
static int locked_incr(void *arg, long n)
{
    mp_value *v = arg;
    mp_lock *l = mp_value_lock(v);
    for (long i = 0; i < n; i++) {
        int64_t x;
        int rc = mp_lock_acquire(l, TIMEOUT);
        if (rc < 0 && rc != -EOWNERDEAD) return rc;
        rc = mp_value_get_i64(v, &x);
        if (rc == 0) rc = mp_value_set_i64(v, x + 1);
        mp_lock_release(l);
        if (rc < 0) return rc;
    }
    return 0;
}
#endif

static int atomic_incr(void *arg, long n)
{
    for (long i = 0; i < n; i++) {
        int rc = mp_value_add(arg, 1, NULL);
        if (rc < 0) return rc;
    }
    return 0;
}

static void counter_suite(const char *prefix, const char *what, bool sync, mpb_loop_fn fn)
{
    static const char *plname[] = {"same", "cross"};
    static const char *plhuman[] = {"same CPU", "cross-CPU"};
    for (int pl = 0; pl < 2; pl++) {
        char name[64], label[96];
        snprintf(name, sizeof name, "%s.%s", prefix, plname[pl]);
        if (!mpb_wantq(name, pl == MPB_CROSS)) continue;
        snprintf(label, sizeof label, "%s, 2 processes, %s", what, plhuman[pl]);
        mp_value *v;
        int rc = mp_value_new(&v, MP_TYPE_LONGLONG, NULL, sync);
        if (rc < 0) {
            mpb_fail(name, "mp_value_new: %s", mp_strerror(rc));
            continue;
        }
        mpb_par(name, label, (mpb_place)pl, fn, reset_value, check_value, v);
        mp_value_free(&v);
    }
}

void mpb_bench_value(void)
{
#ifdef MPB_HAVE_SYNC
    counter_suite("value.lock_incr", "Value('q') += 1 under its lock", true, locked_incr);
#endif
}

void mpb_bench_atomic(void)
{
    counter_suite("atomic.incr", "mp_value_add(v, 1) on a raw Value", false, atomic_incr);
}
#else
void mpb_bench_array(void) {}
void mpb_bench_value(void) {}
void mpb_bench_atomic(void) {}
#endif
