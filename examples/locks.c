/* SPDX-License-Identifier: MIT */
/* locks.c - Lock, RLock, Semaphore, Event, Condition, Barrier between processes; a dead holder. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mproc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "locks: check failed: %s (line %d)\n", #cond, __LINE__);               \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* Plain shared memory the primitives protect. */
struct board {
    long counter;
    int inside, max_inside;
    int items;
};

static struct board *bd;
static mp_lock *lock;
static mp_sem *room;
static mp_event *go;
static mp_cond *cond;
static mp_barrier *barrier;

static int start(mp_process **ps, int n, mp_target_fn fn)
{
    for (int i = 0; i < n; i++)
        if (mp_process_new(&ps[i], NULL, fn, NULL) || mp_process_start(ps[i])) return -1;
    return 0;
}

static int join_all(mp_process **ps, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int code = -1;
        mp_process_join(ps[i], 30);
        mp_process_exitcode(ps[i], &code);
        bad |= code != 0;
        mp_process_free(&ps[i]);
    }
    return bad ? -1 : 0;
}

/* Lock: 4 workers add 10000 each to a plain counter. */
static int add(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10000; i++) {
        if (mp_lock_acquire(lock, 10)) return 1;
        bd->counter++;
        mp_lock_release(lock);
    }
    return 0;
}

/* Semaphore(2): at most 2 of the 4 workers inside at once; Event: all start together. */
static int visit(void *arg)
{
    (void)arg;
    if (mp_event_wait(go, 10)) return 1;
    if (mp_sem_acquire(room, 10)) return 1;
    mp_lock_acquire(lock, 10);
    if (++bd->inside > bd->max_inside) bd->max_inside = bd->inside;
    mp_lock_release(lock);
    usleep(20000);
    mp_lock_acquire(lock, 10);
    bd->inside--;
    mp_lock_release(lock);
    return mp_sem_release(room) ? 1 : 0;
}

/* Condition: consumers wait until there is an item. */
static bool has_item(void *arg)
{
    (void)arg;
    return bd->items > 0;
}

static int consume(void *arg)
{
    (void)arg;
    mp_cond_acquire(cond, 10);
    int r = mp_cond_wait_for(cond, has_item, NULL, 10);
    if (r == 0) bd->items--;
    mp_cond_release(cond);
    return r ? 1 : 0;
}

/* Barrier(3, action): three phases, nobody starts phase k+1 before all finished phase k; the
 * action runs once per phase, in the last party to arrive, before anyone goes on. */
static int phase_done(void *arg)
{
    (void)arg;
    bd->items++; /* under the barrier: no other party runs now */
    return 0;
}

static int phases(void *arg)
{
    (void)arg;
    for (int k = 0; k < 3; k++)
        if (mp_barrier_wait(barrier, 10) < 0) return 1;
    return 0;
}

static int die_holding(void *arg)
{
    (void)arg;
    mp_lock_acquire(lock, 10);
    bd->counter = -1; /* a half-done update */
    raise(SIGKILL);
    return 0;
}

int main(void)
{
    bd = mmap(NULL, sizeof *bd, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(bd != MAP_FAILED);
    CHECK(mp_lock_new(&lock) == 0);
    mp_process *ps[4];

    CHECK(start(ps, 4, add) == 0 && join_all(ps, 4) == 0);
    printf("Lock: 4 processes x 10000 increments = %ld\n", bd->counter);
    CHECK(bd->counter == 40000);

    mp_lock *r;
    CHECK(mp_rlock_new(&r) == 0);
    CHECK(mp_lock_acquire(r, 1) == 0 && mp_lock_acquire(r, 1) == 0);
    CHECK(mp_lock_release(r) == 0 && mp_lock_release(r) == 0);
    CHECK(mp_lock_release(r) == MP_ENOTOWNER);
    printf("RLock: acquired twice, released twice; a third release is %s\n",
           mp_err_name(MP_ENOTOWNER));
    mp_lock_free(&r);

    CHECK(mp_sem_new(&room, 2) == 0 && mp_event_new(&go) == 0);
    CHECK(start(ps, 4, visit) == 0);
    usleep(10000);
    mp_event_set(go);
    CHECK(join_all(ps, 4) == 0);
    printf("Semaphore(2): at most %d of 4 processes inside at once\n", bd->max_inside);
    CHECK(bd->max_inside >= 1 && bd->max_inside <= 2);
    mp_sem *bounded;
    CHECK(mp_bsem_new(&bounded, 1) == 0);
    CHECK(mp_sem_release(bounded) == MP_EOVERRELEASE);
    printf("BoundedSemaphore(1): an extra release is %s\n", mp_err_name(MP_EOVERRELEASE));
    mp_sem_free(&bounded);

    CHECK(mp_cond_new(&cond, NULL) == 0);
    CHECK(start(ps, 3, consume) == 0);
    for (int i = 0; i < 3; i++) {
        usleep(5000);
        mp_cond_acquire(cond, 10);
        bd->items++;
        mp_cond_notify(cond, 1);
        mp_cond_release(cond);
    }
    CHECK(join_all(ps, 3) == 0);
    printf("Condition: 3 consumers each took one item, %d left\n", bd->items);
    CHECK(bd->items == 0);

    mp_barrier_options bo;
    mp_barrier_options_init(&bo);
    bo.action = phase_done; /* Python: Barrier(3, action=phase_done, timeout=0.05) */
    bo.timeout = 0.05;      /* the default of mp_barrier_wait_default */
    CHECK(mp_barrier_new_opts(&barrier, 3, &bo) == 0);
    CHECK(start(ps, 3, phases) == 0 && join_all(ps, 3) == 0);
    printf("Barrier(3): 3 processes went through 3 phases together; the action ran %d times\n",
           bd->items);
    CHECK(bd->items == 3);
    CHECK(mp_barrier_wait_default(barrier) == -ETIMEDOUT); /* alone: times out, breaks it */
    CHECK(mp_barrier_wait(barrier, 0) == MP_EBROKEN);
    printf("Barrier: a timeout broke it; waits now return %s until reset\n",
           mp_err_name(MP_EBROKEN));

    /* A holder that dies: the next acquirer gets the lock and -EOWNERDEAD, never a hang. */
    bd->counter = 0;
    CHECK(start(ps, 1, die_holding) == 0);
    mp_process_join(ps[0], 10);
    mp_process_free(&ps[0]);
    int rc = mp_lock_acquire(lock, 5);
    printf("Lock whose holder was SIGKILLed: acquire returns %s; counter %ld repaired to ",
           mp_err_name(rc), bd->counter);
    CHECK(rc == -EOWNERDEAD);
    bd->counter = 0;
    printf("%ld\n", bd->counter);
    CHECK(mp_lock_is_locked(lock) == 1);
    mp_lock_release(lock);
    CHECK(mp_lock_is_locked(lock) == 0);
    CHECK(mp_lock_acquire(lock, 1) == 0 && mp_lock_release(lock) == 0);

    mp_barrier_free(&barrier);
    mp_cond_free(&cond);
    mp_sem_free(&room);
    mp_event_free(&go);
    mp_lock_free(&lock);
    munmap(bd, sizeof *bd);
    return 0;
}
